//! What a chain reports about each transform as it runs, for whoever counts it (the
//! pipeline's stats). The engine only reports: metric names and labels are not its business.

use std::sync::Arc;

/// Receives the counts of one transform of a chain; called once per batch, not per record.
pub trait TransformObserver: Send + Sync {
    /// Records handed to the transform.
    fn records_in(&self, count: u64);
    /// Outputs the transform returned.
    fn records_out(&self, count: u64);
    /// Instances re-created after a trap.
    fn recycled(&self, count: u64);
    /// A record the transform failed, by kind (`skip`, `trap`, `timeout`, …).
    fn failed(&self, kind: &str);
}

/// Counts nothing: what a chain reports to until [`TransformChain::observe`] is called
/// (`sluice exec`, tests).
///
/// [`TransformChain::observe`]: crate::TransformChain::observe
#[derive(Debug, Default, Clone, Copy)]
pub struct Unobserved;

impl TransformObserver for Unobserved {
    fn records_in(&self, _: u64) {}
    fn records_out(&self, _: u64) {}
    fn recycled(&self, _: u64) {}
    fn failed(&self, _: &str) {}
}

/// The observer of every stage of a chain that nobody observes.
pub(crate) fn unobserved(stages: usize) -> Vec<Arc<dyn TransformObserver>> {
    (0..stages)
        .map(|_| Arc::new(Unobserved) as Arc<dyn TransformObserver>)
        .collect()
}
