//! The admin HTTP API (docs/architecture.md, "Admin API"): health, readiness, status,
//! Prometheus metrics, and deploy / versions / rollback of transform components.
//!
//! Reads are open; when a token is configured every mutating call needs
//! `Authorization: Bearer <token>`, compared in constant time. Errors are JSON
//! `{"error": "…"}` with a fitting status code. Deploys and rollbacks, accepted or refused, go
//! to the audit log (`audit.rs`). With `[admin.tls]` it speaks https only (`tls.rs`).

mod audit;
mod follower;
mod tls;
mod versions;

pub use follower::follow;
pub use tls::AdminTlsConfig;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

use crate::component_store::ComponentStore;
use crate::config::{AdminConfig, PipelineConfig};
use crate::metrics::Metrics;
use crate::shared_deployments::SharedDeployments;
use sluice_engine::{TransformEngine, TransformSpec};
use sluice_pipeline::PipelineControl;

/// Largest component a deploy accepts.
const MAX_COMPONENT_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot listen on {address} for the admin API")]
    Bind {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the admin API's TLS settings ({key}): {message}")]
    Tls { key: String, message: String },
}

/// A pipeline as the admin API sees it: its live handle and its configured transforms.
pub struct AdminPipeline {
    pub control: Arc<PipelineControl>,
    /// The `kind` of each source, in config order (one for a pipeline of one source).
    pub source_kinds: Vec<&'static str>,
    pub specs: Vec<TransformSpec>,
}

impl AdminPipeline {
    pub fn new(config: &PipelineConfig, control: Arc<PipelineControl>) -> Self {
        Self {
            control,
            source_kinds: (config.source_list().into_iter())
                .map(|(_, source)| source.kind())
                .collect(),
            specs: config.transform_specs(),
        }
    }
}

pub struct AdminState {
    pipelines: BTreeMap<String, AdminPipeline>,
    metrics: Arc<Metrics>,
    store: Arc<ComponentStore>,
    engine: TransformEngine,
    token: Option<String>,
    /// One deploy or rollback at a time: each reads and writes a version history.
    deploying: tokio::sync::Mutex<()>,
    /// The deployments topics of the pipelines whose instances share their versions, by
    /// pipeline (`[admin] deployments = "kafka"`).
    shared: BTreeMap<String, Arc<SharedDeployments>>,
    /// Deploys and rollbacks, accepted or refused.
    audit: audit::AuditLog,
}

impl AdminState {
    pub fn new(
        config: &AdminConfig,
        pipelines: Vec<AdminPipeline>,
        metrics: Arc<Metrics>,
        store: Arc<ComponentStore>,
        engine: TransformEngine,
        shared: BTreeMap<String, Arc<SharedDeployments>>,
    ) -> Arc<Self> {
        let audit = audit::AuditLog::new(Some(store.dir().to_owned()));
        Arc::new(Self {
            pipelines: pipelines
                .into_iter()
                .map(|p| (p.control.name.clone(), p))
                .collect(),
            metrics,
            store,
            engine,
            token: config.token.as_ref().map(|t| t.expose().to_owned()),
            deploying: tokio::sync::Mutex::new(()),
            shared,
            audit,
        })
    }

    /// Writes the audit line of a deploy or rollback and its answer.
    fn audit_call(
        &self,
        entry: audit::AuditEntry<'_>,
        headers: &HeaderMap,
        extensions: &axum::http::Extensions,
    ) {
        let presented = self.authorize(headers).is_ok();
        let caller = audit::caller(self.token.as_deref(), presented, extensions);
        self.audit.record(&caller, &entry);
    }

    /// Refuses a mutating call without the configured token.
    fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token (Authorization: Bearer <token>)",
            ))
        }
    }
}

/// An error answer: status and message, sent as `{"error": message}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn internal(error: &(dyn std::error::Error + 'static)) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            sluice_pipeline::error_chain(error),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(json!({ "error": self.message }))).into_response()
    }
}

/// Binds `config.listen` now (so a taken port fails the start) and serves until `stop`:
/// https when `[admin.tls]` is set, else plain http.
pub async fn serve(
    config: &AdminConfig,
    state: Arc<AdminState>,
    stop: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, AdminError> {
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|source| AdminError::Bind {
            address: config.listen.clone(),
            source,
        })?;
    // Checked at load too; read again here, so files replaced since then are what is served.
    let tls = match &config.tls {
        Some(tls) => Some(
            tls.server_config()
                .map_err(|(key, message)| AdminError::Tls { key, message })?,
        ),
        None => None,
    };
    tracing::info!(
        listen = %config.listen,
        token = state.token.is_some(),
        tls = tls.is_some(),
        "admin API listening"
    );
    // The peer address is what the audit log names besides the token.
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let Some(tls) = tls else {
        return Ok(tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
            {
                tracing::error!(%error, "admin API stopped");
            }
        }));
    };
    let address = config.listen.clone();
    let bind_error = |source| AdminError::Bind {
        address: address.clone(),
        source,
    };
    let listener = listener.into_std().map_err(bind_error)?;
    let server = axum_server::tls_rustls::from_tcp_rustls(
        listener,
        axum_server::tls_rustls::RustlsConfig::from_config(tls),
    )
    .map_err(bind_error)?;
    let handle = axum_server::Handle::new();
    let shutdown = handle.clone();
    tokio::spawn(async move {
        stop.cancelled().await;
        // As axum::serve's graceful shutdown: answers under way are finished.
        shutdown.graceful_shutdown(None);
    });
    Ok(tokio::spawn(async move {
        if let Err(error) = server.handle(handle).serve(app).await {
            tracing::error!(%error, "admin API stopped");
        }
    }))
}

fn router(state: Arc<AdminState>) -> Router {
    let transform = "/v1/pipelines/{pipeline}/transforms/{transform}";
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/status", get(status))
        .route(&format!("{transform}/versions"), get(versions::versions))
        .route(
            &format!("{transform}/deploy"),
            post(versions::deploy).layer(DefaultBodyLimit::max(MAX_COMPONENT_BYTES)),
        )
        .route(&format!("{transform}/rollback"), post(versions::rollback))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no such endpoint; see README, Admin API",
            )
        })
        .with_state(state)
}

async fn readyz(State(state): State<Arc<AdminState>>) -> Response {
    let pipelines: BTreeMap<&str, Value> = state
        .pipelines
        .iter()
        .map(|(name, p)| (name.as_str(), json!(p.control.state())))
        .collect();
    let ready = state.pipelines.values().all(|p| p.control.is_ready());
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(json!({ "ready": ready, "pipelines": pipelines })),
    )
        .into_response()
}

async fn metrics(State(state): State<Arc<AdminState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

async fn status(State(state): State<Arc<AdminState>>) -> axum::Json<Value> {
    let pipelines: Vec<Value> = state
        .pipelines
        .iter()
        .map(|(name, p)| {
            let stats = &p.control.stats;
            let transforms: Vec<Value> = p
                .control
                .transforms()
                .iter()
                .map(|id| json!({ "name": id.name, "digest": id.digest }))
                .collect();
            let instances = state.shared.get(name).map(|shared| shared.instances());
            let received = stats.received_by_source();
            let sources: Vec<Value> = (p.source_kinds.iter().enumerate())
                .map(|(i, kind)| {
                    let received = received.get(i).copied().unwrap_or(0);
                    json!({ "kind": kind, "received": received })
                })
                .collect();
            json!({
                "name": name,
                "instances": instances,
                "state": p.control.state(),
                "ready": p.control.is_ready(),
                "source": p.source_kinds.join("+"),
                // Per source, in config order: records read from it.
                "sources": sources,
                "transforms": transforms,
                "counters": {
                    "received": stats.received.get(),
                    "produced": stats.produced.get(),
                    "filtered": stats.filtered.get(),
                    "skipped": stats.skipped.get(),
                    "dead_lettered": stats.dead_lettered(),
                    "deduplicated": stats.deduplicated.get(),
                    "acked": stats.acked.get(),
                    "in_flight": stats.in_flight.get(),
                    "restarts": stats.restarts.get(),
                },
            })
        })
        .collect();
    axum::Json(json!({ "pipelines": pipelines }))
}
