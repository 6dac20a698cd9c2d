//! The runtime application: every pipeline of a config file, each assembled from its config
//! section (source connector, transforms — the deployed versions when the component store
//! has some — and the Kafka sink), run side by side with the admin API beside them. The
//! `sluice run` command is this plus signal handling; tests run it in-process.

use std::sync::Arc;
use std::time::Duration;

use sluice_connectors::kafka::KafkaSinkConfig;
use sluice_engine::{TransformEngine, TransformSpec};
use sluice_pipeline::{Pipeline, PipelineControl, PipelineError, PipelineParts, PipelineStats};
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminError, AdminPipeline, AdminState};
use crate::component_store::{ComponentStore, StoreError};
use crate::config::{AdminConfig, Config, PipelineConfig};
use crate::metrics::Metrics;

/// A pipeline as the runtime runs them: into Kafka.
pub type KafkaPipeline = Pipeline<KafkaSinkConfig>;

/// Why the runtime stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error("pipeline {pipeline:?}: cannot read its deployed transform versions")]
    DeployedVersions {
        pipeline: String,
        #[source]
        source: StoreError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "[admin] needs a state dir: set `admin.state_dir` (neither XDG_STATE_HOME nor HOME is set)"
    )]
    NoStateDir,
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error("a pipeline task panicked")]
    PipelinePanicked,
}

impl RuntimeError {
    /// Whether the failure is in the user's hands (config, components, missing topics).
    pub fn is_user_input_error(&self) -> bool {
        match self {
            RuntimeError::Pipeline(error) => error.is_user_input_error(),
            _ => false,
        }
    }
}

impl PipelineConfig {
    /// The parts of the pipeline this section describes, running `transforms`.
    pub fn parts(&self, transforms: Vec<TransformSpec>) -> PipelineParts<KafkaSinkConfig> {
        PipelineParts {
            settings: self.settings(),
            source: self.source.connector(),
            transforms,
            sink: self.sink.clone(),
        }
    }
}

/// The pipeline `config` describes, on its own: the config's components, counters registered
/// nowhere. What a test runs in-process.
pub async fn standalone_pipeline(
    config: PipelineConfig,
    engine: &TransformEngine,
) -> Result<KafkaPipeline, PipelineError> {
    let stats = Arc::new(PipelineStats::standalone(&config.name));
    let control = PipelineControl::new(&config.name, stats);
    Pipeline::prepare(config.parts(config.transform_specs()), engine, control).await
}

/// The pipeline `config` describes, in the runtime: the deployed versions of `store` run
/// instead of the config's components, and its live versions show in `metrics`.
async fn runtime_pipeline(
    config: &PipelineConfig,
    engine: &TransformEngine,
    control: Arc<PipelineControl>,
    store: Option<&ComponentStore>,
    metrics: &Metrics,
) -> Result<KafkaPipeline, RuntimeError> {
    let mut specs = config.transform_specs();
    if let Some(store) = store {
        specs = store.live_specs(&config.name, specs).map_err(|source| {
            RuntimeError::DeployedVersions {
                pipeline: config.name.clone(),
                source,
            }
        })?;
    }
    let pipeline = Pipeline::prepare(config.parts(specs), engine, control.clone()).await?;
    for id in control.transforms() {
        metrics.version_live(&config.name, &id.name, &id.digest, false);
    }
    Ok(pipeline)
}

/// Runs every pipeline of `config` until `stop` is cancelled (then they drain) or one fails
/// for good (then the others are stopped and the first failure returned). With `[admin]`,
/// the admin API comes up first: `/healthz` answers and `/readyz` says what is pending while
/// the pipelines connect.
pub async fn run(
    config: Config,
    engine: TransformEngine,
    stop: CancellationToken,
) -> Result<(), RuntimeError> {
    let metrics = Metrics::new();
    let store = match config.admin.as_ref().and_then(AdminConfig::state_dir) {
        Some(state_dir) => Some(Arc::new(ComponentStore::open(&state_dir)?)),
        None => None,
    };
    let controls: Vec<Arc<PipelineControl>> = config
        .pipelines
        .iter()
        .map(|p| PipelineControl::new(&p.name, Arc::new(metrics.pipeline(&p.name))))
        .collect();
    let admin = match (&config.admin, &store) {
        (Some(admin), Some(store)) => {
            let pipelines = config
                .pipelines
                .iter()
                .zip(&controls)
                .map(|(pipeline, control)| AdminPipeline::new(pipeline, control.clone()))
                .collect();
            let state = AdminState::new(
                admin,
                pipelines,
                metrics.clone(),
                store.clone(),
                engine.clone(),
            );
            Some(admin::serve(admin, state, stop.clone()).await?)
        }
        (Some(_), None) => return Err(RuntimeError::NoStateDir),
        _ => None,
    };
    let mut prepared = Vec::new();
    for (pipeline, control) in config.pipelines.iter().zip(&controls) {
        let store = store.as_deref();
        tokio::select! {
            pipeline = runtime_pipeline(pipeline, &engine, control.clone(), store, &metrics) => {
                prepared.push(pipeline?);
            }
            _ = stop.cancelled() => {
                tracing::info!("stopped before the pipelines started");
                return Ok(());
            }
        }
    }
    let mut running = tokio::task::JoinSet::new();
    for pipeline in prepared {
        running.spawn(pipeline.run(stop.clone()));
    }
    let mut first_error: Option<PipelineError> = None;
    while let Some(result) = running.join_next().await {
        if let Err(error) = result.map_err(|_| RuntimeError::PipelinePanicked)? {
            // The process's `error:` line names the first failure; this line is for the
            // pipelines it stops (a lone pipeline's failure is said once).
            if !running.is_empty() {
                tracing::error!(error = %sluice_pipeline::error_chain(&error), "pipeline failed; stopping the others");
            }
            stop.cancel();
            first_error.get_or_insert(error);
        }
    }
    stop.cancel();
    if let Some(mut admin) = admin {
        // Graceful shutdown waits for open (keep-alive) connections; give them a moment.
        if tokio::time::timeout(Duration::from_secs(2), &mut admin)
            .await
            .is_err()
        {
            admin.abort();
        }
    }
    match first_error {
        Some(error) => Err(error.into()),
        None => Ok(()),
    }
}
