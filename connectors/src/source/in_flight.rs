//! The in-flight budget: how many records a source may have handed out and not yet seen
//! settled. Reading waits for a free slot, so a slow sink slows the source read instead of
//! growing memory.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Budget of messages between source read and source ack.
pub(crate) struct InFlight {
    slots: Arc<Semaphore>,
    capacity: usize,
}

impl InFlight {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(capacity)),
            capacity,
        }
    }

    pub(crate) async fn reserve(&self) -> OwnedSemaphorePermit {
        self.slots
            .clone()
            .acquire_owned()
            .await
            .expect("in-flight semaphore is never closed")
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether every slot is taken: reading waits for an ack.
    pub(crate) fn is_full(&self) -> bool {
        self.slots.available_permits() == 0
    }

    /// Messages handed out and not yet settled.
    pub(crate) fn taken(&self) -> usize {
        self.capacity - self.slots.available_permits()
    }

    /// Whether every message handed out has been acked or dropped.
    pub(crate) fn is_idle(&self) -> bool {
        self.slots.available_permits() == self.capacity
    }
}
