//! Acknowledging one source message, whatever the source: the handle carries the connector's
//! own ack token inside a closure, so the pipeline never sees the token's type, and where the
//! message sits in its source ([`Placement`]).

use tokio::sync::OwnedSemaphorePermit;

use super::placement::Placement;

/// What becomes of a message handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Every output is in the sink.
    Ack,
    /// It could not be handled now; deliver it again.
    Nack,
    /// Dropped without a verdict (the pipeline stopped): redelivery will bring it back.
    Release,
    /// Another instance took the message's partition over: let it go, and stop receiving
    /// what this subscription of the partition still holds.
    Relinquish,
}

/// Acknowledges (or negatively acknowledges) one source message. Holding it also holds one
/// slot of the pipeline's in-flight budget; dropping it without acking frees the slot and
/// leaves the message to be redelivered.
pub struct AckHandle {
    settle: Option<Box<dyn FnOnce(Verdict) + Send + Sync>>,
    placement: Placement,
    _slot: OwnedSemaphorePermit,
}

impl AckHandle {
    /// `settle` hands the verdict (with the token it holds) back to the source's task.
    pub(crate) fn new(
        settle: impl FnOnce(Verdict) + Send + Sync + 'static,
        placement: Placement,
        slot: OwnedSemaphorePermit,
    ) -> Self {
        Self {
            settle: Some(Box::new(settle)),
            placement,
            _slot: slot,
        }
    }

    /// Where the message sits in its source.
    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    /// The record is done: every output is in the sink.
    pub fn ack(mut self) {
        self.send(Verdict::Ack);
    }

    /// The record could not be handled now; ask the source to deliver it again.
    pub fn nack(mut self) {
        self.send(Verdict::Nack);
    }

    /// Another instance took the record's partition over (it fenced this one's writer): the
    /// record is let go unacked, and a source that hands partitions over subscribes to the
    /// partition again, dropping what its old subscription still holds, so that it receives
    /// the partition's messages again only once it owns the partition again. Other sources
    /// nack the record.
    pub fn relinquish(mut self) {
        self.send(Verdict::Relinquish);
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
