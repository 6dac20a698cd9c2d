//! Exactly-once (docs/delivery-guarantees.md): a `read_committed` consumer of the outputs sees
//! every output of every source record once, across crashes, broker restarts and paused
//! instances that wake up after a successor took over. Two modes, chosen with
//! `exactly_once = { mode = … }`:
//!
//! - `transactions.rs` (the default): Kafka transactions, in KIP-618's shape. Each writer
//!   scope (a source partition) has its own transactional producer, whose stable
//!   `transactional.id` fences the instance it replaced; each transaction holds outputs and
//!   the scope's source checkpoint, and the source is acked after the commit.
//! - `read_back.rs`: for brokers without transactions, the written tails are read back and
//!   what they hold is not written again.
//!
//! What both need is here: transforms get clocks and random pinned per record, so a record
//! transformed again gives the same outputs, and the host's source id is the only one stamped.

mod read_back;
mod transactions;

use std::time::Duration;

use sluice_connectors::config::Invalid;
use sluice_connectors::sink::Sink;
use sluice_engine::TransformChain;
use sluice_record::identity::SourceIdPolicy;

use crate::settings::{ExactlyOnceMode, PipelineSettings};

pub(crate) use read_back::ReadBack;
pub(crate) use transactions::{Admission, Done, Tracker, TrackingObserver, Transactions};
pub use transactions::{PAUSE_HOOK, PAUSE_HOOK_MARKER};

/// The longest `commit_interval_ms`: half of librdkafka's default `transaction.timeout.ms`,
/// so a transaction always commits before the broker would abort it.
const MAX_COMMIT_INTERVAL: Duration = Duration::from_secs(30);

/// Refuses settings under which exactly-once could not keep its promise; keys are relative
/// to the pipeline.
pub fn validate(settings: &PipelineSettings) -> Result<(), Invalid> {
    let Some(mode) = settings.exactly_once_mode() else {
        return Ok(());
    };
    if settings.dedup_window < settings.max_in_flight {
        return Err((
            "dedup_window".into(),
            format!(
                "must be at least max_in_flight ({}): every record in flight at a crash \
                 must be recognised when it comes again",
                settings.max_in_flight
            ),
        ));
    }
    if mode == ExactlyOnceMode::Transactions {
        let transactions = &settings.exactly_once;
        if transactions.commit_interval.is_zero()
            || transactions.commit_interval > MAX_COMMIT_INTERVAL
        {
            return Err((
                "exactly_once.commit_interval_ms".into(),
                format!(
                    "must be between 1 and {} (half of Kafka's default transaction timeout)",
                    MAX_COMMIT_INTERVAL.as_millis()
                ),
            ));
        }
        if transactions.max_records_per_transaction == 0 {
            return Err((
                "exactly_once.max_records_per_transaction".into(),
                "must be at least 1".into(),
            ));
        }
    }
    Ok(())
}

/// Makes every chain give the same outputs when a record is transformed again: transforms
/// that import clocks or random get them pinned per record (and are called one record at a
/// time). Logs which transforms that concerns.
pub(crate) fn make_deterministic(
    pipeline: &str,
    chains: &mut [TransformChain],
) -> Result<(), sluice_engine::Error> {
    let mut pinned = Vec::new();
    for chain in chains {
        pinned = chain.make_deterministic()?;
    }
    if !pinned.is_empty() {
        tracing::info!(
            pipeline = %pipeline,
            transforms = %pinned.join(", "),
            "exactly-once: these transforms import clocks or random; a batch in which they \
             read them is called again one record at a time, each pinned to its record"
        );
    }
    Ok(())
}

/// What the outcome writer needs for exactly-once, in the pipeline's mode.
pub(crate) enum ExactlyOnce<S: Sink> {
    ReadBack(ReadBack),
    Transactions(Transactions<S>),
}

/// The source id an output carries: the host's only with exactly-once (the read-back
/// deduplicates on it, and consumers of either mode may count on it), else a transform may
/// set its own.
pub(crate) fn source_id_policy<S: Sink>(exactly_once: Option<&ExactlyOnce<S>>) -> SourceIdPolicy {
    match exactly_once {
        Some(_) => SourceIdPolicy::HostOnly,
        None => SourceIdPolicy::TransformMayOverride,
    }
}
