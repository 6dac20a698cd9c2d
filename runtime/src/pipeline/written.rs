//! Exactly-once bookkeeping: which outputs of which source records Kafka already has (or is
//! being sent), so a record the source delivers again is not written twice.
//!
//! It is filled from Kafka itself (the read-back) when the pipeline starts and after each
//! Kafka failure, and kept up to date by the sink stage in between. One writer per source
//! partition (enforced at config load) makes that enough: nobody else writes this pipeline's
//! outputs while it runs.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

use crate::config::PipelineConfig;
use crate::sink::{WrittenOutput, read_back};

use super::PipelineError;

/// What the sink stage needs for exactly-once.
pub(crate) struct ExactlyOnce {
    pub(crate) written: WrittenOutputs,
    /// Topics outputs may go to; only these are read back.
    pub(crate) declared_topics: HashSet<String>,
}

impl ExactlyOnce {
    /// Reads back what the pipeline wrote (the last `dedup_window` records of each declared
    /// topic's partitions).
    pub(crate) async fn read_back(config: &PipelineConfig) -> Result<Self, PipelineError> {
        let mut exactly_once = Self {
            written: WrittenOutputs::new(config.dedup_window),
            declared_topics: config.sink.declared_topics().into_iter().collect(),
        };
        exactly_once.catch_up(config, &[]).await?;
        Ok(exactly_once)
    }

    /// After a Kafka failure: the outputs of `unacked` records may or may not have reached
    /// Kafka; forget them and read back what did.
    pub(crate) async fn catch_up(
        &mut self,
        config: &PipelineConfig,
        unacked: &[&str],
    ) -> Result<(), PipelineError> {
        for source_id in unacked {
            self.written.forget(source_id);
        }
        let started = Instant::now();
        let found = read_back(
            &config.sink,
            &config.name,
            self.declared_topics.iter().cloned().collect(),
            config.dedup_window,
        )
        .await
        .map_err(|source| PipelineError::sink(&config.name, source))?;
        tracing::info!(
            pipeline = %config.name,
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
}

/// Outputs by source message id, for the most recent `capacity` source ids.
pub(crate) struct WrittenOutputs {
    capacity: usize,
    /// Output indexes per source id, with the generation the id was (re-)added in.
    by_source: HashMap<String, (u64, Vec<u32>)>,
    /// Source ids oldest first; an entry whose generation no longer matches is stale.
    order: VecDeque<(String, u64)>,
    generation: u64,
}

impl WrittenOutputs {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            by_source: HashMap::new(),
            order: VecDeque::new(),
            generation: 0,
        }
    }

    pub(crate) fn contains(&self, source_id: &str, index: u32) -> bool {
        self.by_source
            .get(source_id)
            .is_some_and(|(_, indexes)| indexes.contains(&index))
    }

    pub(crate) fn insert(&mut self, source_id: &str, index: u32) {
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
    pub(crate) fn forget(&mut self, source_id: &str) {
        self.by_source.remove(source_id);
    }

    pub(crate) fn extend(&mut self, outputs: impl IntoIterator<Item = WrittenOutput>) {
        for output in outputs {
            self.insert(&output.source_id, output.index);
        }
    }

    pub(crate) fn len(&self) -> usize {
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
