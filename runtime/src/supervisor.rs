//! Keeps a pipeline running through broker outages. A Kafka failure is handled inside the
//! pipeline (new producer, source kept); what reaches here is a source failure (the source
//! broker unreachable or restarting) or a sink that cannot connect at a restart: the pipeline
//! is built again and restarted with backoff. Records in flight at the failure were never
//! acked, so the source delivers them again. Failures in the user's hands (config, components,
//! a transform's `fatal`) stop it for good.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::pipeline::{Pipeline, PipelineContext, PipelineError, PipelineState};
use crate::transform::TransformEngine;

/// First wait before a restart; doubled after each failed attempt up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A run this long counts as healthy: the next failure starts the backoff over.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// Runs `pipeline` until `stop` is cancelled or it fails for a reason a restart cannot cure.
pub async fn run_supervised(
    pipeline: Pipeline,
    engine: TransformEngine,
    context: PipelineContext,
    stop: CancellationToken,
) -> Result<(), PipelineError> {
    let config = pipeline.config().clone();
    let mut pipeline = Some(pipeline);
    let mut backoff = Backoff::new();
    loop {
        let result = async {
            let ready = match pipeline.take() {
                Some(ready) => ready,
                None => {
                    let ready = Pipeline::prepare_in(config.clone(), &engine, &context).await?;
                    tracing::info!(pipeline = %config.name, "pipeline restarted");
                    ready
                }
            };
            ready.run(stop.clone()).await
        }
        .await;
        let error = match result {
            Ok(()) => return Ok(()),
            Err(error) if error.is_transient() && !stop.is_cancelled() => error,
            Err(error) => return Err(error),
        };
        let wait = backoff.next_wait();
        context.control.set_state(PipelineState::Reconnecting);
        context.control.stats.restarts.inc();
        tracing::warn!(
            pipeline = %config.name,
            error = %crate::error_chain(&error),
            retry_in_s = wait.as_secs(),
            "pipeline interrupted by a broker failure; records in flight were not acked and \
             will be delivered again; restarting"
        );
        if !sleep_unless_stopped(wait, &stop).await {
            return Ok(());
        }
    }
}

/// Sleeps `wait`; `false` when `stop` came first.
pub(crate) async fn sleep_unless_stopped(wait: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = stop.cancelled() => false,
        _ = tokio::time::sleep(wait) => true,
    }
}

/// Waits between attempts to reach a failed broker: doubling from [`FIRST_BACKOFF`] up to
/// [`MAX_BACKOFF`], and starting over once the last attempt has run healthily for a while.
pub(crate) struct Backoff {
    next: Duration,
    last_attempt: Option<Instant>,
}

impl Backoff {
    pub(crate) fn new() -> Self {
        Self {
            next: FIRST_BACKOFF,
            last_attempt: None,
        }
    }

    /// How long to wait before the next attempt.
    pub(crate) fn next_wait(&mut self) -> Duration {
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
