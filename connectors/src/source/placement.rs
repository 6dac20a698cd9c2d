//! Where a message sits in its source: what exactly-once with Kafka transactions commits
//! together with the outputs (docs/delivery-guarantees.md).
//!
//! A source is split into partitions, each delivered in order to one consumer at a time (a
//! Pulsar partition; a non-partitioned topic or a Pub/Sub subscription is one partition).
//! Where the source keeps an order (Pulsar), a message has a [`Position`] in its partition and
//! a transaction commits "done up to here"; where it does not (Pub/Sub), the message id
//! identifies it and a transaction commits the ids it covered.

use serde::{Deserialize, Serialize};

/// Where one message was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Placement {
    /// Which of the pipeline's sources delivered the message: its index in
    /// `[[pipeline.sources]]` (0 for a pipeline of one source). Sources are kept apart by it
    /// wherever a partition number alone would be ambiguous (exactly-once writer scopes).
    pub source: u32,
    /// The partition of a partitioned topic; `None` when the source is one stream (a
    /// non-partitioned topic, a Pub/Sub subscription).
    pub partition: Option<u32>,
    /// Which subscription of the partition delivered the message. A source that hands
    /// partitions over between instances (a Pulsar failover subscription) subscribes to a
    /// partition again after giving it up, with a higher claim: what the old subscription had
    /// already delivered is then told apart from what the new one delivers. 0 for sources that
    /// never hand partitions over.
    pub claim: u64,
    /// The message's place in its partition, when the source keeps an order; `None` for a
    /// source without one (Pub/Sub).
    pub position: Option<Position>,
}

/// A place in an ordered partition: Pulsar's ledger, entry and batch index (-1 when the entry
/// is not a batch). Ledger ids grow as a topic rolls over to new ledgers, so the triple orders
/// the messages of a partition as they were published.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Position {
    pub ledger: u64,
    pub entry: u64,
    pub batch: i32,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.ledger, self.entry, self.batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_by_ledger_then_entry_then_batch_index() {
        let at = |ledger, entry, batch| Position {
            ledger,
            entry,
            batch,
        };
        assert!(at(1, 9, 5) < at(2, 0, -1));
        assert!(at(2, 0, -1) < at(2, 0, 0));
        assert!(at(2, 0, 3) < at(2, 1, -1));
    }
}
