//! A running pipeline's handle for the admin API: its state and readiness, its live
//! transform versions, its counters, and the mailbox through which a new transform version
//! reaches the transform thread. It outlives restarts of the pipeline.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, oneshot};

use super::PipelineStats;
use crate::transform::{LoadedTransform, TransformChain, TransformId};

/// Where a pipeline is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PipelineState {
    Starting,
    Running,
    /// A broker failed; waiting for it to come back.
    Reconnecting,
    Stopped,
    Failed,
}

/// A transform version waiting to go live.
struct PendingSwap {
    index: usize,
    transform: LoadedTransform,
    live: oneshot::Sender<TransformId>,
}

pub struct PipelineControl {
    pub name: String,
    pub stats: Arc<PipelineStats>,
    state: Mutex<PipelineState>,
    ready: AtomicBool,
    transforms: Mutex<Vec<TransformId>>,
    swap: Mutex<Option<PendingSwap>>,
    /// Wakes a transform thread that waits for records, so a swap never waits for traffic.
    swap_posted: Notify,
}

impl PipelineControl {
    pub fn new(name: &str, stats: Arc<PipelineStats>) -> Arc<Self> {
        Arc::new(Self {
            name: name.to_owned(),
            stats,
            state: Mutex::new(PipelineState::Starting),
            ready: AtomicBool::new(false),
            transforms: Mutex::default(),
            swap: Mutex::default(),
            swap_posted: Notify::new(),
        })
    }

    pub fn state(&self) -> PipelineState {
        *self.state.lock().expect("state lock poisoned")
    }

    /// Ready: the source and the sink are connected and records flow.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub(crate) fn set_state(&self, state: PipelineState) {
        *self.state.lock().expect("state lock poisoned") = state;
        self.ready
            .store(state == PipelineState::Running, Ordering::Relaxed);
    }

    /// The live version of each transform, in chain order.
    pub fn transforms(&self) -> Vec<TransformId> {
        self.transforms
            .lock()
            .expect("transforms lock poisoned")
            .clone()
    }

    pub(crate) fn set_transforms(&self, transforms: Vec<TransformId>) {
        *self.transforms.lock().expect("transforms lock poisoned") = transforms;
    }

    /// Hands `transform` to the transform thread to replace stage `index` between two
    /// batches. The receiver yields the replaced version once the new one is live. A swap
    /// posted before the previous one went live replaces it (the last deploy wins).
    pub fn post_swap(
        &self,
        index: usize,
        transform: LoadedTransform,
    ) -> oneshot::Receiver<TransformId> {
        let (live, went_live) = oneshot::channel();
        *self.swap.lock().expect("swap lock poisoned") = Some(PendingSwap {
            index,
            transform,
            live,
        });
        self.swap_posted.notify_one();
        went_live
    }

    /// Applies a posted swap to `chain`; called by the transform thread between batches.
    pub(crate) fn apply_swap(&self, chain: &mut TransformChain) {
        let Some(PendingSwap {
            index,
            transform,
            live,
        }) = self.swap.lock().expect("swap lock poisoned").take()
        else {
            return;
        };
        let new = transform.id().clone();
        let previous = chain.replace(index, transform);
        tracing::info!(pipeline = %self.name, from = %previous, to = %new, "transform version swapped");
        self.set_transforms(chain.transforms());
        let _ = live.send(previous);
    }

    /// Resolves when a swap is posted.
    pub(crate) async fn swap_posted(&self) {
        self.swap_posted.notified().await;
    }
}
