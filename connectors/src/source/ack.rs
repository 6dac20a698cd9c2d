//! Acknowledging one source message, whatever the source: the handle carries the connector's
//! own ack token inside a closure, so the pipeline never sees the token's type.

use tokio::sync::OwnedSemaphorePermit;

/// What becomes of a message handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Every output is in the sink.
    Ack,
    /// It could not be handled now; deliver it again.
    Nack,
    /// Dropped without a verdict (the pipeline stopped): redelivery will bring it back.
    Release,
}

/// Acknowledges (or negatively acknowledges) one source message. Holding it also holds one
/// slot of the pipeline's in-flight budget; dropping it without acking frees the slot and
/// leaves the message to be redelivered.
pub struct AckHandle {
    settle: Option<Box<dyn FnOnce(Verdict) + Send + Sync>>,
    _slot: OwnedSemaphorePermit,
}

impl AckHandle {
    /// `settle` hands the verdict (with the token it holds) back to the source's task.
    pub(crate) fn new(
        settle: impl FnOnce(Verdict) + Send + Sync + 'static,
        slot: OwnedSemaphorePermit,
    ) -> Self {
        Self {
            settle: Some(Box::new(settle)),
            _slot: slot,
        }
    }

    /// The record is done: every output is in the sink.
    pub fn ack(mut self) {
        self.send(Verdict::Ack);
    }

    /// The record could not be handled now; ask the source to deliver it again.
    pub fn nack(mut self) {
        self.send(Verdict::Nack);
    }

    fn send(&mut self, verdict: Verdict) {
        if let Some(settle) = self.settle.take() {
            settle(verdict);
        }
    }
}

impl Drop for AckHandle {
    fn drop(&mut self) {
        self.send(Verdict::Release);
    }
}
