//! Everything of the read-back exactly-once mode (docs/delivery-guarantees.md), in one place.
//!
//! Every output carries its identity (`sluice_record::identity`). When the pipeline starts,
//! after a source restart and after each sink failure, it reads back the tails of the
//! topics it may write to ([`Sink::read_back`]) and remembers which outputs of which source
//! records the sink already has; the outcome writer then skips those when the source
//! delivers their records again. One writer per source partition (enforced at config load
//! by the source's own check, e.g. an exclusive Pulsar subscription) makes that enough:
//! nobody else writes this pipeline's outputs while it runs.
//!
//! What else the mode needs is here too: outputs may only go to declared topics (only those
//! are read back), the host's source id is the only one stamped, the dedup window must cover
//! what is in flight, and transforms get clocks and random pinned per record so a replay
//! gives the same outputs.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

use sluice_connectors::config::Invalid;
use sluice_connectors::sink::{Sink, SinkError};
use sluice_engine::TransformChain;
use sluice_record::dead_letter::DeadLetter;
use sluice_record::identity::{SourceIdPolicy, WrittenOutput};

use crate::settings::{Guarantee, PipelineSettings};

/// Refuses settings under which exactly-once could not keep its promise; keys are relative
/// to the pipeline.
pub fn validate(settings: &PipelineSettings) -> Result<(), Invalid> {
    if settings.guarantee == Guarantee::ExactlyOnce
        && settings.dedup_window < settings.max_in_flight
    {
        return Err((
            "dedup_window".into(),
            format!(
                "must be at least max_in_flight ({}): every record in flight at a crash \
                 must be found again when the pipeline restarts",
                settings.max_in_flight
            ),
        ));
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
            "exactly-once: these transforms import clocks or random; they get them pinned \
             to each record and are called one record at a time"
        );
    }
    Ok(())
}

/// What the outcome writer needs for exactly-once.
pub(crate) struct ExactlyOnce {
    written: WrittenOutputs,
    /// Topics outputs may go to; only these are read back.
    declared_topics: HashSet<String>,
    window: usize,
}

impl ExactlyOnce {
    /// Reads back what the pipeline wrote (the last `dedup_window` records of each declared
    /// topic's partitions). Called once the source is subscribed: a writer that held the
    /// subscription before is gone by then.
    pub(crate) async fn read_back(
        settings: &PipelineSettings,
        sink: &impl Sink,
    ) -> Result<Self, SinkError> {
        let mut exactly_once = Self {
            written: WrittenOutputs::new(settings.dedup_window),
            declared_topics: sink.declared_topics().into_iter().collect(),
            window: settings.dedup_window,
        };
        exactly_once.catch_up(&settings.name, sink, &[]).await?;
        Ok(exactly_once)
    }

    /// After a sink failure: the outputs of `unacked` records may or may not have reached
    /// the sink; forget them and read back what did.
    pub(crate) async fn catch_up(
        &mut self,
        pipeline: &str,
        sink: &impl Sink,
        unacked: &[&str],
    ) -> Result<(), SinkError> {
        for source_id in unacked {
            self.written.forget(source_id);
        }
        let started = Instant::now();
        let found = sink.read_back(pipeline, self.window).await?;
        tracing::info!(
            pipeline = %pipeline,
            partitions = found.partitions,
            records_read = found.records_read,
            outputs_found = found.outputs.len(),
            remembered = self.written.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "read back what this pipeline wrote (exactly-once)"
        );
        self.written.extend(found.outputs);
        Ok(())
    }

    /// Whether the sink has (or is being sent) output `index` of `source_id` already.
    pub(crate) fn already_written(&self, source_id: &str, index: u32) -> bool {
        self.written.contains(source_id, index)
    }

    /// Output `index` of `source_id` is on its way to the sink.
    pub(crate) fn remember(&mut self, source_id: &str, index: u32) {
        self.written.insert(source_id, index);
    }

    /// Why an output cannot go to `topic`: it is not declared, so a read-back would not find
    /// it after a crash.
    pub(crate) fn undeclared(&self, topic: &str) -> Option<DeadLetter> {
        (!self.declared_topics.contains(topic)).then(|| DeadLetter {
            kind: "undeclared-topic".into(),
            transform: "sink".into(),
            reason: format!(
                "topic {topic:?} is not in sink.route_topics; exactly-once writes only \
                 to declared topics, since only those are read back after a crash"
            ),
        })
    }
}

/// The source id an output carries: the host's only with exactly-once (the read-back
/// deduplicates on it), else a transform may set its own.
pub(crate) fn source_id_policy(exactly_once: Option<&ExactlyOnce>) -> SourceIdPolicy {
    match exactly_once {
        Some(_) => SourceIdPolicy::HostOnly,
        None => SourceIdPolicy::TransformMayOverride,
    }
}

/// Outputs by source message id, for the most recent `capacity` source ids.
struct WrittenOutputs {
    capacity: usize,
    /// Output indexes per source id, with the generation the id was (re-)added in.
    by_source: HashMap<String, (u64, Vec<u32>)>,
    /// Source ids oldest first; an entry whose generation no longer matches is stale.
    order: VecDeque<(String, u64)>,
    generation: u64,
}

impl WrittenOutputs {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            by_source: HashMap::new(),
            order: VecDeque::new(),
            generation: 0,
        }
    }

    fn contains(&self, source_id: &str, index: u32) -> bool {
        self.by_source
            .get(source_id)
            .is_some_and(|(_, indexes)| indexes.contains(&index))
    }

    fn insert(&mut self, source_id: &str, index: u32) {
        if let Some((_, indexes)) = self.by_source.get_mut(source_id) {
            if !indexes.contains(&index) {
                indexes.push(index);
            }
            return;
        }
        self.generation += 1;
        self.by_source
            .insert(source_id.to_owned(), (self.generation, vec![index]));
        self.order
            .push_back((source_id.to_owned(), self.generation));
        while self.by_source.len() > self.capacity {
            let Some((oldest, generation)) = self.order.pop_front() else {
                break;
            };
            if self
                .by_source
                .get(&oldest)
                .is_some_and(|(g, _)| *g == generation)
            {
                self.by_source.remove(&oldest);
            }
        }
    }

    /// Forgets a source id: what was sent for it may or may not have reached Kafka.
    fn forget(&mut self, source_id: &str) {
        self.by_source.remove(source_id);
    }

    fn extend(&mut self, outputs: impl IntoIterator<Item = WrittenOutput>) {
        for output in outputs {
            self.insert(&output.source_id, output.index);
        }
    }

    fn len(&self) -> usize {
        self.by_source.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_indexes_per_source_id() {
        let mut written = WrittenOutputs::new(10);
        written.insert("a", 0);
        written.insert("a", 2);
        assert!(written.contains("a", 0));
        assert!(!written.contains("a", 1));
        assert!(written.contains("a", 2));
        assert!(!written.contains("b", 0));
        written.forget("a");
        assert!(!written.contains("a", 0));
    }

    #[test]
    fn forgets_the_oldest_source_ids_beyond_capacity() {
        let mut written = WrittenOutputs::new(2);
        written.insert("a", 0);
        written.insert("b", 0);
        written.forget("a");
        written.insert("a", 0);
        written.insert("c", 0);
        // "b" is the oldest live id; the stale first entry of "a" must not evict the new one.
        assert!(!written.contains("b", 0));
        assert!(written.contains("a", 0));
        assert!(written.contains("c", 0));
        assert_eq!(written.len(), 2);
    }
}
