//! What can go wrong talking to Pulsar.

#[derive(Debug, thiserror::Error)]
pub enum PulsarError {
    /// A credential file the config named could not be read (the message names it).
    #[error("{0}")]
    CredentialFile(String),
    #[error("cannot connect to Pulsar at {url}")]
    Connect {
        url: String,
        #[source]
        source: ::pulsar::Error,
    },
    #[error("cannot subscribe to Pulsar topic {topic:?} as {subscription:?}")]
    Subscribe {
        topic: String,
        subscription: String,
        #[source]
        source: ::pulsar::Error,
    },
    #[error("reading from Pulsar topic {topic:?} failed")]
    Receive {
        topic: String,
        #[source]
        source: ::pulsar::Error,
    },
}
