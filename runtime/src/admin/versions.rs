//! Deploy, versions and rollback of one transform of a pipeline.
//!
//! A new version is stored content-addressed, validated, compiled, instantiated and
//! initialised with the transform's config before it goes live; a component that fails any of
//! that is answered 422 and never touches the running pipeline. The version history is saved
//! before the swap, so a restart runs what was deployed last; the swap itself happens between
//! two batches on the transform thread, so every record is transformed by exactly one version.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{Extensions, HeaderMap, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::audit::AuditEntry;
use super::{AdminPipeline, AdminState, ApiError};
use crate::component_store::{History, Version};
use crate::shared_deployments::{MAX_ENTRY_BYTES, SharedDeployments};
use sluice_engine::{LoadedTransform, TransformSpec};

/// How long a deploy waits for the swap before answering that it is pending (the pipeline is
/// reconnecting to a broker, say): the version is saved and goes live when the pipeline runs.
pub(super) const SWAP_WAIT: Duration = Duration::from_secs(30);

/// The transform a request names: its pipeline, position in the chain and spec.
pub(super) struct Target<'a> {
    pub(super) pipeline: &'a AdminPipeline,
    pub(super) index: usize,
    pub(super) spec: &'a TransformSpec,
}

impl AdminState {
    pub(super) fn target(&self, pipeline: &str, transform: &str) -> Result<Target<'_>, ApiError> {
        let found = self.pipelines.get(pipeline).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!(
                    "no pipeline {pipeline:?} (pipelines: {})",
                    self.pipelines
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
        let index = found
            .specs
            .iter()
            .position(|spec| spec.name == transform)
            .ok_or_else(|| {
                let names: Vec<&str> = found.specs.iter().map(|s| s.name.as_str()).collect();
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!(
                        "pipeline {pipeline:?} has no transform {transform:?} (transforms: {})",
                        names.join(", ")
                    ),
                )
            })?;
        Ok(Target {
            pipeline: found,
            index,
            spec: &found.specs[index],
        })
    }

    /// The version history of `target`; before the first deploy, the live version alone
    /// (stored now, so a rollback can return to it).
    fn history_of(&self, target: &Target<'_>) -> Result<History, ApiError> {
        let name = &target.pipeline.control.name;
        if let Some(history) = self
            .store
            .history(name, &target.spec.name)
            .map_err(|e| ApiError::internal(&e))?
        {
            return Ok(history);
        }
        let (digest, _) = self
            .store
            .put_file(&target.spec.component)
            .map_err(|e| ApiError::internal(&e))?;
        Ok(History {
            versions: vec![Version {
                digest: digest.clone(),
                deployed_at_ms: sluice_record::now_ms(),
            }],
            current: digest,
        })
    }

    /// Validates and starts the stored component `digest` as `target`'s next version: one
    /// instance per transform lane of the pipeline.
    pub(super) async fn load(
        &self,
        target: &Target<'_>,
        digest: &str,
    ) -> Result<Vec<LoadedTransform>, ApiError> {
        let spec = TransformSpec {
            component: self.store.component_path(digest),
            ..target.spec.clone()
        };
        let engine = self.engine.clone();
        let lanes = target.pipeline.control.lanes();
        tokio::task::spawn_blocking(move || {
            (0..lanes)
                .map(|_| LoadedTransform::load(&engine, &spec))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "loading the component panicked",
            )
        })?
        .map_err(|error| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "component refused: {}",
                    sluice_pipeline::error_chain(&error)
                ),
            )
        })
    }

    /// Saves `digest` as the live version, then swaps it in; answers once it is live (or
    /// pending, see [`SWAP_WAIT`]).
    async fn go_live(
        &self,
        target: &Target<'_>,
        mut history: History,
        loaded: Vec<LoadedTransform>,
    ) -> Result<Json<Value>, ApiError> {
        let pipeline = &target.pipeline.control.name;
        let transform = &target.spec.name;
        let digest = loaded[0].id().digest.clone();
        let previous = history.current.clone();
        history.go_live(&digest);
        self.store
            .save_history(pipeline, transform, &history)
            .map_err(|e| ApiError::internal(&e))?;
        let went_live = target.pipeline.control.post_swap(target.index, loaded);
        let live = matches!(tokio::time::timeout(SWAP_WAIT, went_live).await, Ok(Ok(_)));
        self.metrics
            .version_live(pipeline, transform, &digest, true);
        tracing::info!(pipeline, transform, from = %previous, to = %digest, live, "transform deployed");
        Ok(deployed(target, &digest, &previous, live, false))
    }
}

/// The answer to a deploy of `digest` over `previous` (`shared`: through the deployments
/// topic, to every instance).
fn deployed(
    target: &Target<'_>,
    digest: &str,
    previous: &str,
    live: bool,
    shared: bool,
) -> Json<Value> {
    let mut answer = json!({
        "pipeline": target.pipeline.control.name,
        "transform": target.spec.name,
        "digest": digest,
        "previous": previous,
        "live": live,
    });
    if shared {
        answer["shared"] = Value::Bool(true);
    }
    Json(answer)
}

impl AdminState {
    /// With a deployments topic: publishes `digest` as `target`'s live version (its bytes,
    /// then its history) for every instance to swap in, this one included, and answers once
    /// this instance runs it (or pending, see [`SWAP_WAIT`]). The version was validated by
    /// loading it here; the swap is the follower's (`follower.rs`), as on every instance.
    async fn go_live_shared(
        &self,
        target: &Target<'_>,
        shared: &SharedDeployments,
        mut history: History,
        digest: String,
    ) -> Result<Json<Value>, ApiError> {
        let pipeline = &target.pipeline.control.name;
        let transform = &target.spec.name;
        let previous = history.current.clone();
        history.go_live(&digest);
        shared
            .publish_version(&self.store, transform, &history)
            .await
            .map_err(|e| ApiError::internal(&e))?;
        let control = &target.pipeline.control;
        let deadline = tokio::time::Instant::now() + SWAP_WAIT;
        let live = loop {
            let running = control
                .transforms()
                .get(target.index)
                .map(|id| id.digest.clone());
            if running.as_deref() == Some(digest.as_str()) {
                break true;
            }
            if tokio::time::Instant::now() >= deadline {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        tracing::info!(pipeline, transform, from = %previous, to = %digest, live, "transform deployed to every instance (deployments topic)");
        Ok(deployed(target, &digest, &previous, live, true))
    }

    /// Refuses a component the deployments topic cannot hold, before anything is stored.
    fn check_shareable(&self, pipeline: &str, bytes: usize) -> Result<(), ApiError> {
        if self.shared.contains_key(pipeline) && bytes > MAX_ENTRY_BYTES {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the component is {bytes} bytes; pipeline {pipeline:?} shares its versions \
                     through its deployments topic, whose entries hold at most \
                     {MAX_ENTRY_BYTES} bytes ([admin] deployments = \"kafka\"; deploy with \
                     deployments = \"local\" to each instance, or ship the component with \
                     the config)"
                ),
            ));
        }
        Ok(())
    }
}

pub(super) async fn deploy(
    State(state): State<Arc<AdminState>>,
    Path((pipeline, transform)): Path<(String, String)>,
    extensions: Extensions,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let digest = body
        .as_ref()
        .ok()
        .filter(|bytes| !bytes.is_empty())
        .map(|bytes| format!("sha256:{}", hex::encode(Sha256::digest(bytes))));
    let answer = deploy_version(&state, &pipeline, &transform, &headers, body).await;
    state.audit_call(
        AuditEntry {
            action: "deploy",
            pipeline: &pipeline,
            transform: &transform,
            digest: digest.as_deref(),
            status: status_of(&answer),
        },
        &headers,
        &extensions,
    );
    answer
}

async fn deploy_version(
    state: &AdminState,
    pipeline: &str,
    transform: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    state.authorize(headers)?;
    let body =
        body.map_err(|rejection| ApiError::new(rejection.status(), rejection.body_text()))?;
    if body.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the request body must be the component (.wasm) bytes",
        ));
    }
    let target = state.target(pipeline, transform)?;
    state.check_shareable(pipeline, body.len())?;
    let _one_at_a_time = state.deploying.lock().await;
    let history = state.history_of(&target)?;
    let (digest, path) = state.store.put(&body).map_err(|e| ApiError::internal(&e))?;
    let loaded = match state.load(&target, &digest).await {
        Ok(loaded) => loaded,
        Err(error) => {
            // Refused components stay out of the store (unless a known version is identical).
            if !history.versions.iter().any(|v| v.digest == digest) {
                let _ = std::fs::remove_file(path);
            }
            return Err(error);
        }
    };
    match state.shared.get(pipeline) {
        Some(shared) => {
            drop(loaded);
            state.go_live_shared(&target, shared, history, digest).await
        }
        None => state.go_live(&target, history, loaded).await,
    }
}

pub(super) async fn rollback(
    State(state): State<Arc<AdminState>>,
    Path((pipeline, transform)): Path<(String, String)>,
    extensions: Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let answer = rollback_version(&state, &pipeline, &transform, &headers, &body).await;
    let digest = match &answer {
        Ok(Json(value)) => value
            .get("digest")
            .and_then(Value::as_str)
            .map(str::to_owned),
        Err(_) => serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("digest").and_then(Value::as_str).map(str::to_owned)),
    };
    state.audit_call(
        AuditEntry {
            action: "rollback",
            pipeline: &pipeline,
            transform: &transform,
            digest: digest.as_deref(),
            status: status_of(&answer),
        },
        &headers,
        &extensions,
    );
    answer
}

/// The status code an answer is sent with.
fn status_of(answer: &Result<Json<Value>, ApiError>) -> u16 {
    match answer {
        Ok(_) => StatusCode::OK.as_u16(),
        Err(error) => error.status.as_u16(),
    }
}

async fn rollback_version(
    state: &AdminState,
    pipeline: &str,
    transform: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Json<Value>, ApiError> {
    state.authorize(headers)?;
    let requested = if body.is_empty() {
        None
    } else {
        let request: Value = serde_json::from_slice(body).map_err(|error| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("the body must be JSON {{\"digest\": \"sha256:…\"}} or empty: {error}"),
            )
        })?;
        let digest = request
            .get("digest")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ApiError::new(StatusCode::BAD_REQUEST, "missing string field \"digest\"")
            })?;
        Some(digest.to_owned())
    };
    let target = state.target(pipeline, transform)?;
    let _one_at_a_time = state.deploying.lock().await;
    let history = state.history_of(&target)?;
    let digest = match requested {
        Some(digest) if history.versions.iter().any(|v| v.digest == digest) => digest,
        Some(digest) => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("{digest} is not a version of {pipeline}/{transform}"),
            ));
        }
        None => history
            .before_current()
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::CONFLICT,
                    format!(
                        "{pipeline}/{transform} has no version before {}; name one with {{\"digest\": …}}",
                        history.current
                    ),
                )
            })?
            .to_owned(),
    };
    let loaded = state.load(&target, &digest).await?;
    match state.shared.get(pipeline) {
        Some(shared) => {
            drop(loaded);
            state.go_live_shared(&target, shared, history, digest).await
        }
        None => state.go_live(&target, history, loaded).await,
    }
}

pub(super) async fn versions(
    State(state): State<Arc<AdminState>>,
    Path((pipeline, transform)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let target = state.target(&pipeline, &transform)?;
    let history = match state
        .store
        .history(&pipeline, &transform)
        .map_err(|e| ApiError::internal(&e))?
    {
        Some(history) => history,
        None => {
            let live = target
                .pipeline
                .control
                .transforms()
                .get(target.index)
                .map(|id| id.digest.clone())
                .unwrap_or_default();
            History {
                versions: vec![Version {
                    digest: live.clone(),
                    deployed_at_ms: 0,
                }],
                current: live,
            }
        }
    };
    let versions: Vec<Value> = history
        .versions
        .iter()
        .map(|v| {
            json!({
                "digest": v.digest,
                "deployed_at_ms": v.deployed_at_ms,
                "current": v.digest == history.current,
            })
        })
        .collect();
    Ok(Json(
        json!({ "current": history.current, "versions": versions }),
    ))
}
