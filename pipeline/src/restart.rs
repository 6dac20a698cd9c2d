//! The one restart policy of a pipeline: which failures a restart may cure, what is restarted,
//! and how long to wait first.
//!
//! - The sink failed (Kafka unreachable, refusing, restarting): the stages stop, every record
//!   not yet acked is kept, a new sink connection is made, and those records go out again
//!   first, in source order. The source stays connected meanwhile, its reading paused by the
//!   in-flight budget: nothing depends on redelivery, and per-key order survives the outage.
//! - The source failed (its broker unreachable or restarting), or could not start: a new
//!   source session starts. Records it had handed out and not acked come again from the
//!   broker; the transforms and the sink connection are kept.
//! - The source's broker refused its credentials, or its certificate was not trusted: a
//!   restart would only knock again with the same credentials, so the pipeline stops for good.
//! - Anything else (config, components, a transform's `fatal`, a missing topic) is the user's
//!   to fix: the pipeline stops for good.
//!
//! Waits double from one second up to thirty, and start over once a run stayed healthy for a
//! minute. Each interruption counts once in `pipeline_restarts`.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use sluice_engine::TransformChain;

use crate::control::{PipelineControl, PipelineState};
use crate::error::{PipelineError, error_chain};

/// First wait before a restart; doubled after each failed attempt up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A run this long counts as healthy: the next failure starts the backoff over.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// What a restart renews.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Renew {
    /// A new sink connection; the records not yet acked go out again.
    Sink,
    /// A new source session; the broker delivers again what was not acked.
    Source,
}

/// What a restart may cure: `None` for a failure in the user's hands.
pub(crate) fn renew_for(error: &PipelineError) -> Option<Renew> {
    match error {
        PipelineError::Sink { source, .. } if source.is_transient() => Some(Renew::Sink),
        PipelineError::Source { source, .. } if source.is_transient() => Some(Renew::Source),
        _ => None,
    }
}

/// Decides on restarts and waits before them, for one pipeline across its whole life.
pub(crate) struct RestartPolicy<'a> {
    control: &'a PipelineControl,
    stop: &'a CancellationToken,
    backoff: Backoff,
    /// Between an interruption and the next time records flow; `None` before the first start.
    recovering: Option<bool>,
}

impl<'a> RestartPolicy<'a> {
    pub(crate) fn new(control: &'a PipelineControl, stop: &'a CancellationToken) -> Self {
        Self {
            control,
            stop,
            backoff: Backoff::new(),
            recovering: None,
        }
    }

    /// Records flow (again) through `chain`'s transforms.
    pub(crate) fn running(&mut self, chain: &TransformChain) {
        self.control.set_state(PipelineState::Running);
        match self.recovering.replace(false) {
            None => {
                let transforms: Vec<String> =
                    chain.transforms().iter().map(ToString::to_string).collect();
                tracing::info!(pipeline = %self.control.name, transforms = %transforms.join(" → "), "pipeline running");
            }
            Some(true) => tracing::info!(pipeline = %self.control.name, "pipeline restarted"),
            Some(false) => {}
        }
    }

    /// After `error` stopped the pipeline or an attempt to bring it back: what to renew, once
    /// the wait is over. `Ok(None)` when `stop` came first; `Err` when a restart cannot cure
    /// it. `unacked` records are held for a replay.
    pub(crate) async fn after(
        &mut self,
        error: PipelineError,
        unacked: usize,
    ) -> Result<Option<Renew>, PipelineError> {
        let renew = match renew_for(&error) {
            Some(renew) if !self.stop.is_cancelled() => renew,
            _ => return Err(error),
        };
        let wait = self.backoff.next_wait();
        if self.recovering == Some(true) {
            tracing::warn!(
                pipeline = %self.control.name,
                error = %error_chain(&error),
                retry_in_s = wait.as_secs(),
                "broker still unreachable"
            );
        } else {
            self.recovering = Some(true);
            self.control.set_state(PipelineState::Reconnecting);
            self.control.stats.restarts.inc();
            tracing::warn!(
                pipeline = %self.control.name,
                error = %error_chain(&error),
                unacked,
                retry_in_s = wait.as_secs(),
                "pipeline interrupted by a broker failure; {}",
                match renew {
                    Renew::Sink => "the records not yet acked are kept (the source stays \
                        connected, reading paused) and go out again, in order, once a new \
                        Kafka producer connects",
                    Renew::Source => "records in flight were not acked and will be delivered \
                        again by the source",
                }
            );
        }
        let waited = tokio::select! {
            _ = self.stop.cancelled() => false,
            _ = tokio::time::sleep(wait) => true,
        };
        Ok(waited.then_some(renew))
    }
}

/// Waits between attempts to reach a failed broker: doubling from [`FIRST_BACKOFF`] up to
/// [`MAX_BACKOFF`], and starting over once the last attempt has run healthily for a while.
struct Backoff {
    next: Duration,
    last_attempt: Option<Instant>,
}

impl Backoff {
    fn new() -> Self {
        Self {
            next: FIRST_BACKOFF,
            last_attempt: None,
        }
    }

    /// How long to wait before the next attempt.
    fn next_wait(&mut self) -> Duration {
        if self
            .last_attempt
            .is_some_and(|at| at.elapsed() >= HEALTHY_RUN)
        {
            self.next = FIRST_BACKOFF;
        }
        let wait = self.next;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        self.last_attempt = Some(Instant::now() + wait);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let mut backoff = Backoff::new();
        let waits: Vec<u64> = (0..7).map(|_| backoff.next_wait().as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);
    }
}
