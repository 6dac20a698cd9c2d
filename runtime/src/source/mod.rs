//! Where records come from. A source yields records, each with an [`AckHandle`]; the pipeline
//! acks a record only after Kafka acknowledged every output it produced.

mod driver;
mod gcp_pubsub;
mod gcp_pubsub_unary;
mod pulsar;
mod redelivery;

use std::sync::Arc;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{PubSubPull, SourceConfig};
use crate::record::InputRecord;

pub use gcp_pubsub::PubSubSource;
pub use gcp_pubsub_unary::UnaryPubSubSource;
pub use pulsar::PulsarSource;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot connect to Pulsar at {url}")]
    PulsarConnect {
        url: String,
        #[source]
        source: ::pulsar::Error,
    },
    #[error("cannot subscribe to Pulsar topic {topic:?} as {subscription:?}")]
    PulsarSubscribe {
        topic: String,
        subscription: String,
        #[source]
        source: ::pulsar::Error,
    },
    #[error("reading from Pulsar topic {topic:?} failed")]
    PulsarReceive {
        topic: String,
        #[source]
        source: ::pulsar::Error,
    },
    #[error("cannot create the Pub/Sub subscriber client")]
    PubSubClient(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("reading from Pub/Sub subscription {subscription:?} failed")]
    PubSubReceive {
        subscription: String,
        #[source]
        source: google_cloud_pubsub::Error,
    },
    #[error("pulling from Pub/Sub subscription {subscription:?} failed")]
    PubSubPull {
        subscription: String,
        #[source]
        source: gcloud_gax::grpc::Status,
    },
    #[error("the {system} stream stopped delivering messages")]
    StreamEnded { system: &'static str },
}

/// One record read from a source, with the handle that acknowledges it.
pub struct SourceMessage {
    pub record: InputRecord,
    pub ack: AckHandle,
}

/// Acknowledges (or negatively acknowledges) one source message. Holding it also holds one
/// slot of the pipeline's in-flight budget; dropping it without acking frees the slot and
/// leaves the message to be redelivered.
pub struct AckHandle {
    token: Option<AckToken>,
    commands: mpsc::UnboundedSender<AckCommand>,
    _slot: OwnedSemaphorePermit,
}

impl AckHandle {
    pub(crate) fn new(
        token: AckToken,
        commands: mpsc::UnboundedSender<AckCommand>,
        slot: OwnedSemaphorePermit,
    ) -> Self {
        Self {
            token: Some(token),
            commands,
            _slot: slot,
        }
    }

    /// The record is done: every output is in Kafka.
    pub fn ack(mut self) {
        self.send(AckCommand::Ack);
    }

    /// The record could not be handled now; ask the source to deliver it again.
    pub fn nack(mut self) {
        self.send(AckCommand::Nack);
    }

    fn send(&mut self, command: fn(AckToken) -> AckCommand) {
        if let Some(token) = self.token.take() {
            // A closed channel means the source already stopped: the message is redelivered.
            let _ = self.commands.send(command(token));
        }
    }
}

impl Drop for AckHandle {
    fn drop(&mut self) {
        self.send(AckCommand::Release);
    }
}

/// What identifies a message to its source for acking.
pub(crate) enum AckToken {
    Pulsar {
        topic: String,
        id: ::pulsar::proto::MessageIdData,
        /// Messages in the batch (entry) this one came in; 1 when unbatched.
        batch_size: u32,
    },
    /// Dropping the handler nacks the message.
    PubSub {
        message_id: String,
        handler: google_cloud_pubsub::subscriber::handler::Handler,
    },
    /// `pull = "unary"`. Dropping the lease nacks the message.
    PubSubUnary {
        message_id: String,
        lease: gcp_pubsub_unary::Lease,
    },
}

pub(crate) enum AckCommand {
    Ack(AckToken),
    Nack(AckToken),
    /// Dropped without a verdict (the pipeline stopped): redelivery will bring it back.
    Release(AckToken),
}

/// A running source: its records, and the task that reads them.
pub struct RunningSource {
    pub messages: mpsc::Receiver<SourceMessage>,
    pub task: JoinHandle<Result<(), SourceError>>,
}

/// Budget of messages between source read and source ack.
pub(crate) struct InFlight {
    slots: Arc<Semaphore>,
    capacity: usize,
}

impl InFlight {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(capacity)),
            capacity,
        }
    }

    pub(crate) async fn reserve(&self) -> OwnedSemaphorePermit {
        self.slots
            .clone()
            .acquire_owned()
            .await
            .expect("in-flight semaphore is never closed")
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether every slot is taken: reading waits for an ack.
    pub(crate) fn is_full(&self) -> bool {
        self.slots.available_permits() == 0
    }

    /// Messages handed out and not yet settled.
    pub(crate) fn taken(&self) -> usize {
        self.capacity - self.slots.available_permits()
    }

    /// Whether every message handed out has been acked or dropped.
    pub(crate) fn is_idle(&self) -> bool {
        self.slots.available_permits() == self.capacity
    }
}

/// Connects to the configured source and starts reading. Reading stops when `stop` is
/// cancelled; the task then waits for the acks of what is in flight and closes the consumer.
/// `in_flight` is kept at the number of records read and not yet settled.
pub async fn start(
    config: &SourceConfig,
    max_in_flight: usize,
    in_flight: Gauge,
    stop: CancellationToken,
) -> Result<RunningSource, SourceError> {
    Ok(match config {
        SourceConfig::Pulsar(pulsar) => driver::start(
            PulsarSource::connect(pulsar, max_in_flight).await?,
            max_in_flight,
            in_flight,
            stop,
        ),
        SourceConfig::GcpPubsub(pubsub) if pubsub.pull == PubSubPull::Unary => driver::start(
            UnaryPubSubSource::connect(pubsub, max_in_flight, stop.clone()).await?,
            max_in_flight,
            in_flight,
            stop,
        ),
        SourceConfig::GcpPubsub(pubsub) => driver::start(
            PubSubSource::connect(pubsub, max_in_flight).await?,
            max_in_flight,
            in_flight,
            stop,
        ),
    })
}
