//! The sink contract: where outputs go. Kafka is Sluice's destination, so the contract speaks
//! Kafka's language (topics, partitions' tails, acks=all delivery reports); `kafka/` speaks it
//! through librdkafka, `memory/` stands in for it in tests.
//!
//! A pipeline writes each output with [`Sink::send`] and acks the source record once every
//! [`Sink::Delivery`] of it resolved. The read-back exactly-once mode asks the sink what this
//! pipeline already wrote ([`Sink::read_back`]); exactly-once on transactions writes through
//! the sink's transactional writers instead ([`Sink::open_writer`], `transactions.rs`).

use std::future::Future;

use serde::Deserialize;
use sluice_record::identity::WrittenOutput;
use sluice_record::validation::SinkLimits;
use sluice_record::{Bytes, OutputRecord};

use crate::transactions::{ChangelogRecord, Resume, TransactionalWriter, WriterScope};

/// The error of a sink's client library, whatever it is.
pub type ClientError = Box<dyn std::error::Error + Send + Sync>;

/// What can go wrong writing to the sink. The pipeline acts on the class: a transient failure
/// (the connection) gets a new connection and the unacked records again, a refusal of one
/// record (`Refused`) dead-letters that record, `Config` and `MissingTopic` are the user's to
/// fix.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("invalid Kafka producer configuration")]
    Config(#[source] ClientError),
    #[error("cannot reach Kafka at {brokers}")]
    Unreachable {
        brokers: String,
        #[source]
        source: ClientError,
    },
    /// Kafka refused the sink's credentials, or its certificate was not trusted: the user's
    /// to fix.
    #[error("Kafka at {brokers} refused the connection: {cause}")]
    AccessRefused { brokers: String, cause: String },
    #[error("Kafka topic {topic:?} does not exist on {brokers}")]
    MissingTopic { topic: String, brokers: String },
    #[error("cannot create Kafka topic {topic:?}")]
    CreateTopic {
        topic: String,
        #[source]
        source: ClientError,
    },
    #[error("Kafka refused a record for topic {topic:?}")]
    Produce {
        topic: String,
        #[source]
        source: ClientError,
    },
    /// Kafka (or its client) refused this one record — too large, an invalid topic or
    /// timestamp, a record the broker found invalid — while the connection is fine.
    #[error("Kafka refused a record for topic {topic:?}{}", if *too_large { " as too large" } else { "" })]
    Refused {
        topic: String,
        /// Refused for its size (`sink.oversized` decides what happens).
        too_large: bool,
        #[source]
        source: ClientError,
    },
    #[error("Kafka did not acknowledge a record for topic {topic:?}")]
    Delivery {
        topic: String,
        #[source]
        source: ClientError,
    },
    #[error("the Kafka producer shut down before acknowledging a record for topic {topic:?}")]
    Canceled { topic: String },
    #[error(
        "reading back what was written stalled: nothing came from {partitions} partition(s) \
         (e.g. of topic {topic:?}) for 30 s"
    )]
    ReadBackStalled { topic: String, partitions: usize },
    #[error(
        "fenced by a newer writer with transactional.id {transactional_id:?}: another \
         instance took over"
    )]
    Fenced { transactional_id: String },
    /// With transactions: Kafka refused an output in its delivery report (after the pre-send
    /// checks and the client took it). Kafka then aborts the whole transaction, so the record
    /// cannot be dead-lettered alone, as it is outside transactions; and since it would fail
    /// every transaction it is written in again, this is not retried: the pipeline stops.
    #[error(
        "Kafka refused an output of the transaction of transactional.id {transactional_id:?} \
         in its delivery report, after the pre-send checks let it through: the transaction was \
         aborted (nothing of it is visible; its source records stay unacked and come again). \
         A refused record fails every transaction it is in, so the pipeline stops rather than \
         retry it; check the topic's config (max.message.bytes, timestamps, policies) against \
         the sink's limits"
    )]
    RefusedInTransaction {
        transactional_id: String,
        #[source]
        source: Box<SinkError>,
    },
    #[error("Kafka transaction of transactional.id {transactional_id:?} failed")]
    Transaction {
        transactional_id: String,
        #[source]
        source: ClientError,
    },
    #[error("reading the checkpoints of topic {topic:?}, partition {partition}, failed")]
    Checkpoints {
        topic: String,
        partition: i32,
        #[source]
        source: ClientError,
    },
}

impl SinkError {
    /// Whether the error is in the user's hands (bad config, missing topic) rather than a
    /// runtime failure.
    pub fn is_user_input_error(&self) -> bool {
        matches!(self, SinkError::Config(_) | SinkError::MissingTopic { .. })
    }

    /// Whether the sink refused one record (its size or content), not the connection: the
    /// record is the problem, and dead-lettering it lets the others go on.
    pub fn is_record_refusal(&self) -> bool {
        matches!(self, SinkError::Refused { .. })
    }

    /// Whether the broker failed (unreachable, restarting, refusing requests) rather than the
    /// configuration or the record: a fresh connection may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SinkError::Unreachable { .. }
                | SinkError::Produce { .. }
                | SinkError::Delivery { .. }
                | SinkError::Canceled { .. }
                | SinkError::CreateTopic { .. }
                | SinkError::ReadBackStalled { .. }
                | SinkError::Transaction { .. }
                | SinkError::Checkpoints { .. }
        )
    }
}

/// Whether a topic can be written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicStatus {
    Exists,
    Missing,
}

/// `sink.oversized`: a record the sink cannot take (larger than `message.max.bytes`, or than
/// the topic's `max.message.bytes`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OversizedPolicy {
    /// Dead-letter the source record with kind `too-large` (its copy reduced until it fits),
    /// and go on.
    #[default]
    DeadLetter,
    /// Stop the pipeline with an error; the record is not acked and comes back on restart.
    Fail,
}

/// What a read-back found.
#[derive(Debug, Default)]
pub struct ReadBack {
    /// Outputs of the pipeline, in partition order.
    pub outputs: Vec<WrittenOutput>,
    /// Records read, the pipeline's and others'.
    pub records_read: u64,
    pub partitions: usize,
}

/// A connected sink.
pub trait Sink: Send + Sync + 'static {
    /// Resolves once the sink acknowledged one record for good (Kafka: all in-sync replicas),
    /// or failed after the client's own retries.
    type Delivery: Future<Output = Result<(), SinkError>> + Send + Unpin + 'static;

    /// Writes the outputs of one scope in transactions (exactly-once on transactions).
    type Writer: TransactionalWriter;

    /// Where an output without a topic of its own goes.
    fn default_topic(&self) -> &str;

    fn dead_letter_topic(&self) -> Option<&str>;

    /// Every topic outputs may go to when they may only go where the config says: the
    /// default topic, the dead-letter topic and the declared route topics.
    fn declared_topics(&self) -> Vec<String>;

    /// What to do with a record larger than the sink takes.
    fn oversized(&self) -> OversizedPolicy;

    /// What `topic` takes of one record: checked before each send, so that a record the sink
    /// would refuse is dead-lettered instead (docs/sandbox.md, "What a guest returns"). Known
    /// once [`Sink::ensure_topic`] (or the connection, for the sink and dead-letter topics)
    /// looked the topic up; the defaults of Kafka and librdkafka before.
    fn record_limits(&self, topic: &str) -> SinkLimits {
        let _ = topic;
        SinkLimits::default()
    }

    /// Whether `topic` exists, creating it if configured to.
    fn ensure_topic(
        &self,
        topic: &str,
    ) -> impl Future<Output = Result<TopicStatus, SinkError>> + Send;

    /// Hands a record to the client, waiting while its queue is full (backpressure).
    fn send(
        &self,
        record: &OutputRecord,
    ) -> impl Future<Output = Result<Self::Delivery, SinkError>> + Send;

    /// Reads the last `window` records of every partition of the declared topics (those that
    /// exist) and returns the outputs `pipeline` wrote there (their identity headers).
    fn read_back(
        &self,
        pipeline: &str,
        window: usize,
    ) -> impl Future<Output = Result<ReadBack, SinkError>> + Send;

    /// Makes sure the changelog `topic` of keyed state exists, compacted, with more than
    /// `partition` partitions. A sink without durable state (the in-memory one) has nothing
    /// to do.
    fn ensure_changelog(
        &self,
        topic: &str,
        partition: i32,
    ) -> impl Future<Output = Result<(), SinkError>> + Send {
        let _ = (topic, partition);
        async { Ok(()) }
    }

    /// Hands a changelog record of keyed state to the client outside any transaction (the
    /// guarantees other than exactly-once on transactions: the source is acked only once it
    /// is delivered). A sink without durable state (the in-memory one) drops it.
    fn send_changelog(
        &self,
        record: ChangelogRecord<'_>,
    ) -> impl Future<Output = Result<Self::Delivery, SinkError>> + Send;

    /// Reads partition `partition` of the changelog `topic` to its end, committed records
    /// only: the live entries (each key's latest value; deletes applied), in no order.
    fn read_changelog(
        &self,
        topic: &str,
        partition: i32,
    ) -> impl Future<Output = Result<Vec<(Bytes, Bytes)>, SinkError>> + Send {
        let _ = (topic, partition);
        async { Ok(Vec::new()) }
    }

    /// Opens the transactional writer of `scope`: fences every earlier writer with its id
    /// (their open transaction is aborted or completed first) and reads what the scope
    /// committed last.
    fn open_writer(
        &self,
        scope: &WriterScope,
    ) -> impl Future<Output = Result<(Self::Writer, Resume), SinkError>> + Send;
}

/// A sink that can be connected: a connector's config, or a test's in-memory sink. A
/// pipeline connects again after a transient failure.
pub trait ConnectSink: Send + Sync + 'static {
    type Sink: Sink;

    /// Connects and checks that the default and dead-letter topics exist (creating them when
    /// configured to).
    fn connect(&self) -> impl Future<Output = Result<Self::Sink, SinkError>> + Send;
}
