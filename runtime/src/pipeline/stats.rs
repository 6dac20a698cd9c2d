//! Counters of a pipeline, kept across restarts, reported in logs and exported as metrics.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use crate::metrics::Metrics;

/// Counters of one pipeline, shared with whoever reports them. Each is the pipeline's series
/// of a [`Metrics`] family.
#[derive(Debug)]
pub struct PipelineStats {
    pub received: Counter,
    pub produced: Counter,
    pub filtered: Counter,
    pub skipped: Counter,
    /// Outputs not written again because Kafka had them already (exactly-once).
    pub deduplicated: Counter,
    pub acked: Counter,
    pub restarts: Counter,
    pub in_flight: Gauge,
    pub batch_size: Histogram,
    pub batch_seconds: Histogram,
    pub latency: Histogram,
    pub(crate) pipeline: String,
    pub(crate) metrics: Arc<Metrics>,
    /// Dead-lettered records per failure class (`sluice.error.kind`): `dead-letter`, `trap`,
    /// `timeout`, `out-of-memory`, `stack-overflow`, `output-limit`, `unknown-topic`,
    /// `too-large`.
    pub(crate) dead_lettered_by_kind: Mutex<BTreeMap<String, u64>>,
}

impl Default for PipelineStats {
    /// Counters registered nowhere but in a registry of their own.
    fn default() -> Self {
        Metrics::new().pipeline("")
    }
}

impl PipelineStats {
    pub(super) fn count_dead_letter(&self, kind: &str) {
        self.metrics.dead_lettered(&self.pipeline, kind).inc();
        let mut by_kind = self
            .dead_lettered_by_kind
            .lock()
            .expect("counter lock poisoned");
        *by_kind.entry(kind.to_owned()).or_default() += 1;
    }

    /// Dead-lettered records per failure class.
    pub fn dead_lettered_by_kind(&self) -> BTreeMap<String, u64> {
        self.dead_lettered_by_kind
            .lock()
            .expect("counter lock poisoned")
            .clone()
    }

    pub fn dead_lettered(&self) -> u64 {
        self.dead_lettered_by_kind().values().sum()
    }

    /// A one-line summary for logs.
    pub fn summary(&self) -> String {
        let dead_lettered_by_kind = self.dead_lettered_by_kind();
        let by_kind: Vec<String> = dead_lettered_by_kind
            .iter()
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        format!(
            "received={} produced={} filtered={} skipped={} dead_lettered={}{} deduplicated={} acked={}",
            self.received.get(),
            self.produced.get(),
            self.filtered.get(),
            self.skipped.get(),
            dead_lettered_by_kind.values().sum::<u64>(),
            if by_kind.is_empty() {
                String::new()
            } else {
                format!(" ({})", by_kind.join(" "))
            },
            self.deduplicated.get(),
            self.acked.get()
        )
    }
}
