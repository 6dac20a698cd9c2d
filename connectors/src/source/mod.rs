//! The source contract: a source yields records, each with an [`AckHandle`]; the pipeline
//! acks a record only after the sink acknowledged every output it produced.
//!
//! A connector implements [`SourceClient`] (receive, ack, nack, close, with its own ack
//! token and error types) and [`ConnectSource`] (connect from its config); the shared read
//! loop (`driver.rs`) does the rest: the in-flight budget, dropping redeliveries, applying
//! acks in the client's task, draining on stop. Each record also says where it sits in its
//! source ([`Placement`]), which exactly-once with Kafka transactions commits.

mod ack;
mod driver;
mod in_flight;
mod merged;
pub mod metadata;
mod placement;
mod redelivery;

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use sluice_record::InputRecord;

pub use ack::AckHandle;
pub use driver::{Received, SourceClient};
pub use merged::MergedSource;
pub use placement::{Placement, Position};

/// Why a source stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The connector's client failed (its own error type: connect, subscribe, receive).
    #[error(transparent)]
    Client(Box<dyn std::error::Error + Send + Sync>),
    #[error("the {system} stream stopped delivering messages")]
    StreamEnded { system: &'static str },
    /// The broker refused the source's credentials or the source refused the broker's
    /// certificate: no restart cures that, the user has to fix the config or the secrets.
    #[error("{connection} refused: {cause}")]
    Refused { connection: String, cause: String },
}

impl SourceError {
    /// Wraps a connector's own error.
    pub fn client(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        SourceError::Client(Box::new(error))
    }

    /// Whether a new source session may cure this (a broker restarting, a network outage).
    pub fn is_transient(&self) -> bool {
        !matches!(self, SourceError::Refused { .. })
    }
}

/// One record read from a source, with the handle that acknowledges it.
pub struct SourceMessage {
    pub record: InputRecord,
    pub ack: AckHandle,
}

/// A running source: its records, and the task that reads them.
pub struct RunningSource {
    pub messages: mpsc::Receiver<SourceMessage>,
    pub task: JoinHandle<Result<(), SourceError>>,
}

/// What a source reports while it runs, for the pipeline's stats.
pub trait SourceObserver: Send + Sync + 'static {
    /// A record was handed to the pipeline: once per record the source delivered (a
    /// redelivery the source drops is not one), in the order the source delivered them.
    fn received(&self, placement: &Placement);
    /// Records handed out and not yet settled; sampled, not exact at every instant.
    fn in_flight(&self, count: usize);
}

/// A source that can be connected and started: a connector's config, or a test's in-memory
/// source.
pub trait ConnectSource: Send + Sync + 'static {
    /// `kind` as the config writes it (`pulsar`, `gcp_pubsub`, …).
    fn kind(&self) -> &'static str;

    /// Connects and starts reading as `start` says (usually: connect a client, then
    /// [`SourceStart::run`] it).
    fn start(&self, start: SourceStart) -> BoxFuture<'_, Result<RunningSource, SourceError>>;

    /// Whether the source moves partitions between the instances reading it while they run
    /// (a Pulsar failover subscription): then a writer fenced by another instance means one
    /// partition moved ([`AckHandle::relinquish`]), not that this instance was replaced.
    fn hands_over_partitions(&self) -> bool {
        false
    }

    /// [`ConnectSource::hands_over_partitions`] for the source with index `source`
    /// ([`Placement::source`]): a [`MergedSource`] answers for each of its sources.
    fn hands_over_partitions_of(&self, source: u32) -> bool {
        let _ = source;
        self.hands_over_partitions()
    }
}

/// How a pipeline starts its source: at most `max_in_flight` records handed out and not yet
/// settled, each reported to `observer`. Reading stops when `stop` is cancelled; the source
/// then waits for the acks of what is in flight and closes the connection.
pub struct SourceStart {
    pub max_in_flight: usize,
    pub observer: Arc<dyn SourceObserver>,
    pub stop: CancellationToken,
    /// Which of the pipeline's sources this is ([`Placement::source`]); 0 for a pipeline of
    /// one source.
    pub source: u32,
}

impl SourceStart {
    /// Runs the shared read loop over `client` on a task of its own.
    pub fn run<C: SourceClient>(self, client: C) -> RunningSource {
        driver::start(
            client,
            self.max_in_flight,
            self.observer,
            self.stop,
            self.source,
        )
    }
}
