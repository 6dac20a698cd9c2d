//! Counters of a pipeline, kept across restarts and reported in logs.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one pipeline, shared with whoever reports them.
#[derive(Debug, Default)]
pub struct PipelineStats {
    pub received: AtomicU64,
    pub produced: AtomicU64,
    pub filtered: AtomicU64,
    pub skipped: AtomicU64,
    pub acked: AtomicU64,
    /// Dead-lettered records per failure class (`sluice.error.kind`): `dead-letter`, `trap`,
    /// `timeout`, `out-of-memory`, `stack-overflow`, `output-limit`, `unknown-topic`.
    dead_lettered_by_kind: Mutex<BTreeMap<String, u64>>,
}

impl PipelineStats {
    pub(super) fn bump(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }

    pub(super) fn count_dead_letter(&self, kind: &str) {
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

    /// A one-line summary for logs.
    pub fn summary(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let dead_lettered_by_kind = self.dead_lettered_by_kind();
        let by_kind: Vec<String> = dead_lettered_by_kind
            .iter()
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        format!(
            "received={} produced={} filtered={} skipped={} dead_lettered={}{} acked={}",
            get(&self.received),
            get(&self.produced),
            get(&self.filtered),
            get(&self.skipped),
            dead_lettered_by_kind.values().sum::<u64>(),
            if by_kind.is_empty() {
                String::new()
            } else {
                format!(" ({})", by_kind.join(" "))
            },
            get(&self.acked)
        )
    }
}
