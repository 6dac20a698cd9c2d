//! What can go wrong talking to Pub/Sub, in either pull mode.

#[derive(Debug, thiserror::Error)]
pub enum PubSubError {
    #[error("cannot create the Pub/Sub subscriber client")]
    Client(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("reading from Pub/Sub subscription {subscription:?} failed")]
    Receive {
        subscription: String,
        #[source]
        source: google_cloud_pubsub::Error,
    },
    #[error("pulling from Pub/Sub subscription {subscription:?} failed")]
    Pull {
        subscription: String,
        #[source]
        source: gcloud_gax::grpc::Status,
    },
}
