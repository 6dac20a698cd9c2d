//! The read-back mode of exactly-once (`exactly_once = { mode = "read-back" }`), for brokers
//! without transactions (docs/delivery-guarantees.md).
//!
//! Every output carries its identity (`sluice_record::identity`). When the pipeline starts,
//! after a source restart and after each sink failure, it reads back the tails of the
//! topics it may write to ([`Sink::read_back`]) and remembers which outputs of which source
//! records the sink already has; the outcome writer then skips those when the source
//! delivers their records again. One writer per source partition (enforced at config load
//! by the source's own check, e.g. an exclusive Pulsar subscription) makes that enough:
//! nobody else writes this pipeline's outputs while it runs. Outputs may only go to declared
//! topics (only those are read back), and the dedup window must cover what is in flight.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

use sluice_connectors::sink::{Sink, SinkError};
use sluice_record::dead_letter::DeadLetter;
use sluice_record::identity::WrittenOutput;

use crate::settings::PipelineSettings;

/// What the outcome writer needs for the read-back mode.
pub(crate) struct ReadBack {
    written: WrittenOutputs,
    /// Topics outputs may go to; only these are read back.
    declared_topics: HashSet<String>,
    window: usize,
}

impl ReadBack {
    /// Reads back what the pipeline wrote (the last `dedup_window` records of each declared
    /// topic's partitions). Called once the source is subscribed: a writer that held the
    /// subscription before is gone by then.
    pub(crate) async fn read_back(
        settings: &PipelineSettings,
        sink: &impl Sink,
    ) -> Result<Self, SinkError> {
        let mut read_back = Self {
            written: WrittenOutputs::new(settings.dedup_window),
            declared_topics: sink.declared_topics().into_iter().collect(),
            window: settings.dedup_window,
        };
        read_back.catch_up(&settings.name, sink, &[]).await?;
        Ok(read_back)
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
