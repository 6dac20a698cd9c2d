//! Where a scope's keyed state lives in Kafka (docs/state.md, "Changelog"): the changelog
//! topic and partition of a scope, its restore into the state store, and the changelog records
//! of a record's changes. Shared by exactly-once on transactions (the changes go in the
//! scope's transaction) and the other guarantees (the source is acked once they are
//! delivered).

use std::sync::Arc;
use std::time::Instant;

use sluice_connectors::sink::Sink;
use sluice_engine::StateChange;

use super::store::{ScopeKey, StateStore};
use super::{changelog, restore};
use crate::error::PipelineError;
use crate::exactly_once::Done;
use crate::stats::PipelineStats;

/// The changelog of a pipeline's keyed state.
#[derive(Clone)]
pub(crate) struct Changelog {
    /// `exactly_once.changelog_topic`, or `<pipeline>.changelog`: source 0's topic.
    topic: String,
}

/// Keyed state outside transactions (at-least-once, and exactly-once in the read-back mode):
/// a scope's state is restored when it opens, and a record is acked only once the changelog
/// records of its changes are delivered. A record the source delivers again after a crash
/// applies its changes again: the state is at-least-once, as the outputs are.
pub(crate) struct StateLog {
    pub(crate) store: Arc<StateStore>,
    pub(crate) changelog: Changelog,
}

/// A changelog record, owned: its key made from the namespace and the state key.
pub(crate) struct ChangelogEntry {
    pub(crate) key: Vec<u8>,
    pub(crate) value: Option<sluice_record::Bytes>,
}

impl Changelog {
    pub(crate) fn new(topic: String) -> Self {
        Self { topic }
    }

    /// The topic of the scopes of `source`: the pipeline's for source 0, and its name with
    /// `.source-S` for source S of a merge (as the offsets topic).
    pub(crate) fn topic(&self, source: u32) -> String {
        match source {
            0 => self.topic.clone(),
            index => format!("{}.source-{index}", self.topic),
        }
    }

    /// The partition of scope `key`: the source partition's number (0 for a source of one
    /// stream).
    pub(crate) fn partition(key: ScopeKey) -> i32 {
        key.1.unwrap_or(0) as i32
    }

    /// The changelog records of `changes`.
    pub(crate) fn entries(changes: &[StateChange]) -> impl Iterator<Item = ChangelogEntry> + '_ {
        changes.iter().map(|change| ChangelogEntry {
            key: changelog::record_key(&change.namespace, &change.key),
            value: change.value.clone(),
        })
    }

    /// Reads scope `key`'s changelog partition to its end (committed records only) into
    /// `store`, creating the topic first if needed; `covered` is what the scope had committed
    /// (exactly-once: the state holds those records' changes). Logs and counts the restore.
    pub(crate) async fn restore<S: Sink>(
        &self,
        sink: &S,
        store: &StateStore,
        key: ScopeKey,
        covered: Option<Done>,
        pipeline: &str,
        stats: &Arc<PipelineStats>,
    ) -> Result<(), PipelineError> {
        let partition = Self::partition(key);
        let topic = &self.topic(key.0);
        let started = Instant::now();
        let sink_error = |source| PipelineError::sink(pipeline, source);
        (sink.ensure_changelog(topic, partition).await).map_err(sink_error)?;
        let entries = (sink.read_changelog(topic, partition).await).map_err(sink_error)?;
        let (restored, skipped) = restore(entries);
        let (keys, bytes) = restored.size();
        store.insert(key, restored, covered);
        let seconds = started.elapsed().as_secs_f64();
        stats.state_restore_seconds.observe(seconds);
        stats.state_restored_keys.inc_by(keys as u64);
        tracing::info!(
            pipeline = %pipeline,
            changelog = %format!("{topic}/{partition}"),
            keys,
            bytes,
            skipped,
            restore_ms = (seconds * 1000.0) as u64,
            "keyed state restored from the changelog"
        );
        Ok(())
    }
}
