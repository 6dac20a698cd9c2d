//! The contract of exactly-once on sink transactions, in KIP-618's shape
//! (docs/delivery-guarantees.md): outputs and the source progress they stand for commit in one
//! transaction, and a writer's stable id fences any older writer of the same scope.
//!
//! A pipeline writes through one [`TransactionalWriter`] per [`WriterScope`] (a source
//! partition). Opening a writer fences every earlier writer with the same id (its open
//! transaction is aborted, or completed, before the open returns) and reads what the scope
//! committed last ([`Resume`]), so the pipeline skips what is done. Each commit carries a
//! [`Checkpoint`] of the source next to the outputs.
//!
//! `kafka/transactional.rs` and `kafka/offsets.rs` speak it with Kafka transactions and a
//! compacted offsets topic; `memory/` stands in for them in tests.

use std::collections::BTreeSet;
use std::future::Future;

use sluice_record::OutputRecord;

use crate::sink::SinkError;
use crate::source::Position;

/// One writer of a pipeline's outputs: the pipeline and one source partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterScope {
    /// Kafka's `transactional.id`: stable for the pipeline and the partition, so that the
    /// instance that takes the partition over fences the one that had it.
    pub transactional_id: String,
    /// The pipeline's compacted topic of checkpoints.
    pub offsets_topic: String,
    /// The scope's own partition of the offsets topic: a transaction left open by another
    /// scope then never holds back the read of this one's checkpoint (a `read_committed`
    /// reader stops at the first open transaction of a partition).
    pub offsets_partition: i32,
    /// The source partition this scope writes for (Pulsar: the partition's topic; Pub/Sub: the
    /// subscription), named in every checkpoint.
    pub source: String,
    /// Unordered sources: how many of the latest committed message ids to read back.
    pub ids_window: usize,
}

/// What a scope had committed when its writer opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resume {
    /// The source named by the latest checkpoint; `None` when nothing was committed yet.
    pub source: Option<String>,
    /// Ordered sources: every message at or before this position is done…
    pub through: Option<Position>,
    /// …and these after it (written out of order by parallel transform lanes).
    pub also: BTreeSet<Position>,
    /// Unordered sources: the latest committed message ids, oldest first, at most the scope's
    /// `ids_window` of them (or a few more: whole transactions are read).
    pub ids: Vec<String>,
}

/// What one transaction commits about the source, next to its outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checkpoint {
    /// A source with an order (Pulsar): done through `through`, and the positions in `also`.
    Ordered {
        source: String,
        through: Option<Position>,
        also: Vec<Position>,
    },
    /// A source without one (Pub/Sub): the ids of the messages this transaction covers.
    Unordered { source: String, ids: Vec<String> },
}

impl Checkpoint {
    pub fn source(&self) -> &str {
        match self {
            Checkpoint::Ordered { source, .. } | Checkpoint::Unordered { source, .. } => source,
        }
    }
}

/// A change of one scope's keyed state, for the pipeline's changelog topic
/// (docs/state.md): compacted, one partition per scope, `value` `None` for a delete (a
/// tombstone).
#[derive(Debug, Clone, Copy)]
pub struct ChangelogRecord<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub key: &'a [u8],
    pub value: Option<&'a [u8]>,
}

/// Writes the outputs of one scope in transactions.
pub trait TransactionalWriter: Send + Sync + 'static {
    /// The id that fences older writers of the scope.
    fn transactional_id(&self) -> &str;

    /// Writes `record` in the open transaction, beginning one if none is open; waits while the
    /// client's queue is full. Fails with [`SinkError::Fenced`] once a newer writer opened.
    fn send(&mut self, record: &OutputRecord)
    -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Writes a state change in the open transaction, beginning one if none is open. A sink
    /// without durable state (the in-memory one) drops it.
    fn send_changelog(
        &mut self,
        record: ChangelogRecord<'_>,
    ) -> impl Future<Output = Result<(), SinkError>> + Send {
        let _ = record;
        async { Ok(()) }
    }

    /// Waits until what was sent reached the broker (still uncommitted). Only the commit test
    /// hook needs it.
    fn flush(&mut self) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Writes `checkpoint` in the open transaction (beginning one if none is open) and commits
    /// it. Fails with [`SinkError::Fenced`] once a newer writer opened: nothing of the
    /// transaction is then visible.
    fn commit(
        &mut self,
        checkpoint: &Checkpoint,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;
}
