//! A running pipeline's handle for the admin API: its state and readiness, its live
//! transform versions, its counters, and the mailbox through which a new transform version
//! reaches the transform thread. It outlives restarts of the pipeline.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, oneshot};

use sluice_engine::{LoadedTransform, TransformChain, TransformId};

use crate::settings::MAX_PARALLELISM;
use crate::stats::PipelineStats;

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

/// A transform version waiting to go live: one instance per transform lane, each taken by
/// its lane between two batches.
struct PendingSwap {
    index: usize,
    per_lane: Vec<Option<LoadedTransform>>,
    previous: Option<TransformId>,
    live: Option<oneshot::Sender<TransformId>>,
}

pub struct PipelineControl {
    pub name: String,
    pub stats: Arc<PipelineStats>,
    state: Mutex<PipelineState>,
    ready: AtomicBool,
    transforms: Mutex<Vec<TransformId>>,
    swap: Mutex<Option<PendingSwap>>,
    /// Per lane: wakes a transform thread that waits for records, so a swap never waits for
    /// traffic.
    swap_posted: Vec<Notify>,
    /// Transform lanes of the running pipeline (`parallelism`).
    lanes: AtomicUsize,
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
            swap_posted: (0..MAX_PARALLELISM).map(|_| Notify::new()).collect(),
            lanes: AtomicUsize::new(1),
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

    /// How many instances of a transform a swap needs: one per transform lane.
    pub fn lanes(&self) -> usize {
        self.lanes.load(Ordering::Relaxed)
    }

    pub(crate) fn set_lanes(&self, lanes: usize) {
        self.lanes.store(lanes, Ordering::Relaxed);
    }

    /// Hands `per_lane` (one instance per lane, see [`PipelineControl::lanes`]) to the
    /// transform lanes to replace stage `index` between two batches. The receiver yields the
    /// replaced version once every lane runs the new one. A swap posted before the previous
    /// one went live everywhere replaces it (the last deploy wins).
    pub fn post_swap(
        &self,
        index: usize,
        per_lane: Vec<LoadedTransform>,
    ) -> oneshot::Receiver<TransformId> {
        let (live, went_live) = oneshot::channel();
        let lanes = per_lane.len();
        *self.swap.lock().expect("swap lock poisoned") = Some(PendingSwap {
            index,
            per_lane: per_lane.into_iter().map(Some).collect(),
            previous: None,
            live: Some(live),
        });
        for notify in &self.swap_posted[..lanes] {
            notify.notify_one();
        }
        went_live
    }

    /// Applies a posted swap to lane `lane`'s `chain`; called by its transform thread between
    /// batches.
    pub(crate) fn apply_swap(&self, lane: usize, chain: &mut TransformChain) {
        let mut swap = self.swap.lock().expect("swap lock poisoned");
        let Some(pending) = swap.as_mut() else {
            return;
        };
        let Some(transform) = pending.per_lane.get_mut(lane).and_then(Option::take) else {
            return;
        };
        let new = transform.id().clone();
        let previous = chain.replace(pending.index, transform);
        pending.previous.get_or_insert(previous.clone());
        if pending.per_lane.iter().all(Option::is_none) {
            let pending = swap.take().expect("still there");
            tracing::info!(pipeline = %self.name, from = %previous, to = %new, "transform version swapped");
            self.set_transforms(chain.transforms());
            if let (Some(live), Some(previous)) = (pending.live, pending.previous) {
                let _ = live.send(previous);
            }
        }
    }

    /// Resolves when a swap is posted for lane `lane`.
    pub(crate) async fn swap_posted(&self, lane: usize) {
        self.swap_posted[lane].notified().await;
    }
}
