//! Follows a pipeline's deployments topic (`crate::shared_deployments`): every version a
//! deploy or rollback on any instance made current is stored here and swapped in, the same
//! way a local deploy swaps it (between two batches, one instance per lane), and this
//! instance then publishes what it runs.

use std::sync::Arc;
use std::time::Duration;

use sluice_connectors::kafka::DeploymentReader;
use tokio_util::sync::CancellationToken;

use super::AdminState;
use super::versions::SWAP_WAIT;
use crate::shared_deployments::{Applied, SharedDeployments};

/// How often an instance publishes what it runs even when nothing changed, so `sluice
/// status` can tell a live instance (seen moments ago) from a killed one.
const HEARTBEAT: Duration = Duration::from_secs(15);

/// Reads `reader` until `stop`, making each history's current version live.
pub async fn follow(
    state: Arc<AdminState>,
    shared: Arc<SharedDeployments>,
    mut reader: DeploymentReader,
    stop: CancellationToken,
) {
    let pipeline = shared.pipeline().to_owned();
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let entry = tokio::select! {
            entry = reader.next() => entry,
            _ = heartbeat.tick() => {
                if let Some(running) = state.pipelines.get(&pipeline) {
                    shared.publish_instance(&running.control).await;
                }
                continue;
            }
            _ = stop.cancelled() => return,
        };
        let entry = match entry {
            Ok(entry) => entry,
            Err(error) => {
                tracing::error!(pipeline, error = %sluice_pipeline::error_chain(&error), "stopped following the deployments topic: deploys through other instances no longer reach this one");
                return;
            }
        };
        let applied = match shared.apply(&state.store, entry) {
            Ok(applied) => applied,
            Err(error) => {
                tracing::error!(pipeline, error = %sluice_pipeline::error_chain(&error), "cannot store an entry of the deployments topic");
                continue;
            }
        };
        if let Applied::History { transform, history } = applied {
            make_live(&state, &shared, &transform, &history.current).await;
        }
    }
}

/// Swaps `digest` in as `transform`'s live version unless it is live already.
async fn make_live(state: &AdminState, shared: &SharedDeployments, transform: &str, digest: &str) {
    let pipeline = shared.pipeline();
    let Ok(target) = state.target(pipeline, transform) else {
        tracing::warn!(
            pipeline,
            transform,
            "the deployments topic names a transform this config does not have"
        );
        return;
    };
    let control = &target.pipeline.control;
    let live = control
        .transforms()
        .get(target.index)
        .map(|id| id.digest.clone());
    if live.as_deref() == Some(digest) {
        return;
    }
    let loaded = match state.load(&target, digest).await {
        Ok(loaded) => loaded,
        Err(error) => {
            tracing::error!(pipeline, transform, version = digest, error = %error.message, "cannot load a version from the deployments topic; the running version stays");
            return;
        }
    };
    let went_live = control.post_swap(target.index, loaded);
    let live = matches!(tokio::time::timeout(SWAP_WAIT, went_live).await, Ok(Ok(_)));
    state
        .metrics
        .version_live(pipeline, transform, digest, true);
    tracing::info!(
        pipeline,
        transform,
        to = digest,
        live,
        "version from the deployments topic swapped in"
    );
    shared.publish_instance(control).await;
}
