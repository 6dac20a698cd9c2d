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
use crate::config::{AdminConfig, Config, DeploymentsStore, PipelineConfig};
use crate::metrics::Metrics;
use crate::shared_deployments::{SharedDeployments, SharedDeploymentsError};

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
    #[error("pipeline {pipeline:?}: cannot read its deployments topic")]
    SharedDeployments {
        pipeline: String,
        #[source]
        source: SharedDeploymentsError,
    },
    #[error(
        "[admin] needs a state dir: set `admin.state_dir` (neither XDG_STATE_HOME nor HOME is set)"
    )]
    NoStateDir,
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error("a pipeline task panicked")]
    PipelinePanicked,
    /// Stopped without draining: records were left unacked, for the sources to deliver
    /// again (docs/delivery-guarantees.md, "Stopping").
    #[error(
        "{}{unacked} record(s) were not acked; the source will deliver them again when Sluice \
         runs again",
        match drain_timeout {
            Some(timeout) => format!("the drain did not finish within {} s: ", timeout.as_secs()),
            None => "stopped before the sink took every record in flight: ".to_owned(),
        }
    )]
    Undrained {
        unacked: usize,
        /// The drain bound, when it was reached.
        drain_timeout: Option<Duration>,
    },
}

/// How [`run`] stops once told to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shutdown {
    /// Longest a stop may take (`sluice run --drain-timeout`). Three quarters into it the
    /// pipelines give up on the records they could not finish and release them unacked, so
    /// the sources close cleanly and deliver them again; at its end the runtime returns
    /// whatever still runs.
    pub drain_timeout: Duration,
}

impl Shutdown {
    /// Default drain bound: well within Kubernetes' 30 s grace period before SIGKILL.
    pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
}

impl Default for Shutdown {
    fn default() -> Self {
        Self {
            drain_timeout: Self::DEFAULT_DRAIN_TIMEOUT,
        }
    }
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
            source: self.connector(),
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
    let schemas = config
        .schemas()
        .map_err(|(key, message)| PipelineError::Schemas {
            pipeline: config.name.clone(),
            key,
            message,
        })?;
    Pipeline::prepare(config.parts(config.transform_specs()), engine, control)
        .await
        .map(|pipeline| pipeline.with_schemas(schemas))
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
    let schemas = config
        .schemas()
        .map_err(|(key, message)| PipelineError::Schemas {
            pipeline: config.name.clone(),
            key,
            message,
        })?;
    let pipeline = Pipeline::prepare(config.parts(specs), engine, control.clone())
        .await?
        .with_schemas(schemas);
    for id in control.transforms() {
        metrics.version_live(&config.name, &id.name, &id.digest, false);
    }
    Ok(pipeline)
}

/// Runs every pipeline of `config` until `stop` is cancelled (then they drain) or one fails
/// for good (then the others are stopped and the first failure returned), with the default
/// [`Shutdown`].
pub async fn run(
    config: Config,
    engine: TransformEngine,
    stop: CancellationToken,
) -> Result<(), RuntimeError> {
    run_with(config, engine, stop, Shutdown::default()).await
}

/// Like [`run`], the drain bounded by `shutdown`. With `[admin]`, the admin API comes up
/// first: `/healthz` answers and `/readyz` says what is pending while the pipelines connect.
pub async fn run_with(
    config: Config,
    engine: TransformEngine,
    stop: CancellationToken,
    shutdown: Shutdown,
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
    // With a deployments topic per pipeline, read each to its end into the store first: the
    // pipelines start with the versions deployed last, and then follow the topics.
    let mut shared = std::collections::BTreeMap::new();
    let mut readers = Vec::new();
    if let (Some(admin), Some(store)) = (&config.admin, &store)
        && admin.deployments == DeploymentsStore::Kafka
    {
        for pipeline in &config.pipelines {
            let topic = admin.deployments_topic(&pipeline.name);
            let opened = SharedDeployments::open(
                &pipeline.name,
                &pipeline.sink,
                &topic,
                &admin.listen,
                store,
            );
            let (deployments, reader) = tokio::select! {
                opened = opened => opened.map_err(|source| RuntimeError::SharedDeployments {
                    pipeline: pipeline.name.clone(),
                    source,
                })?,
                _ = stop.cancelled() => return Ok(()),
            };
            let deployments = Arc::new(deployments);
            shared.insert(pipeline.name.clone(), deployments.clone());
            readers.push((deployments, reader));
        }
    }
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
                shared.clone(),
            );
            Some((
                admin::serve(admin, state.clone(), stop.clone()).await?,
                state,
            ))
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
    let mut followers = tokio::task::JoinSet::new();
    if let Some((_, state)) = &admin {
        for (deployments, reader) in readers {
            if let Some(control) = controls.iter().find(|c| c.name == deployments.pipeline()) {
                deployments.publish_instance(control).await;
            }
            followers.spawn(admin::follow(
                state.clone(),
                deployments,
                reader,
                stop.clone(),
            ));
        }
    }
    let drained = run_pipelines(prepared, &controls, &stop, shutdown).await;
    stop.cancel();
    followers.shutdown().await;
    for deployments in shared.values() {
        deployments.withdraw_instance().await;
    }
    if let Some((mut admin, _)) = admin {
        // Graceful shutdown waits for open (keep-alive) connections; give them a moment, if
        // the drain bound has one left.
        let timed_out = matches!(
            drained,
            Err(RuntimeError::Undrained {
                drain_timeout: Some(_),
                ..
            })
        );
        let grace = if timed_out {
            Duration::ZERO
        } else {
            Duration::from_secs(2)
        };
        if tokio::time::timeout(grace, &mut admin).await.is_err() {
            admin.abort();
        }
    }
    drained
}

/// Runs the pipelines side by side until they end; a failure of one stops the others.
/// Once stopped, they drain within `shutdown.drain_timeout`: past three quarters of it
/// they give up on what is in flight, and past all of it those still running are dropped.
async fn run_pipelines(
    prepared: Vec<KafkaPipeline>,
    controls: &[Arc<PipelineControl>],
    stop: &CancellationToken,
    shutdown: Shutdown,
) -> Result<(), RuntimeError> {
    use tokio::time::{Instant, sleep_until};
    let give_up = CancellationToken::new();
    let mut running = tokio::task::JoinSet::new();
    let mut ended = vec![false; prepared.len()];
    for (index, pipeline) in prepared.into_iter().enumerate() {
        let run = pipeline.run_bounded(stop.clone(), give_up.clone());
        running.spawn(async move { (index, run.await) });
    }
    let mut first_error: Option<PipelineError> = None;
    let mut unacked = 0;
    // Set once stopped: when to give up on what is in flight, and when to stop waiting.
    let mut deadlines: Option<(Instant, Instant)> = None;
    let far = || Instant::now() + Duration::from_secs(365 * 24 * 3600);
    loop {
        let (give_up_at, deadline) = deadlines.unwrap_or_else(|| (far(), far()));
        tokio::select! {
            joined = running.join_next() => {
                let Some(joined) = joined else { break };
                let (index, result) = joined.map_err(|_| RuntimeError::PipelinePanicked)?;
                ended[index] = true;
                let Err(error) = result else { continue };
                match error.undrained() {
                    Some(count) => {
                        tracing::warn!(error = %sluice_pipeline::error_chain(&error), "pipeline stopped without draining");
                        unacked += count;
                    }
                    None => {
                        // The process's `error:` line names the first failure; this line is for
                        // the pipelines it stops (a lone pipeline's failure is said once).
                        if !running.is_empty() {
                            tracing::error!(error = %sluice_pipeline::error_chain(&error), "pipeline failed; stopping the others");
                        }
                        stop.cancel();
                        first_error.get_or_insert(error);
                    }
                }
            }
            _ = stop.cancelled(), if deadlines.is_none() => {
                let now = Instant::now();
                let bound = shutdown.drain_timeout;
                deadlines = Some((now + bound - bound / 4, now + bound));
            }
            _ = sleep_until(give_up_at), if deadlines.is_some() && !give_up.is_cancelled() => {
                tracing::warn!(
                    drain_timeout_s = shutdown.drain_timeout.as_secs(),
                    "the drain is taking too long: giving up on the records in flight; they \
                     stay unacked and the source delivers them again"
                );
                give_up.cancel();
            }
            _ = sleep_until(deadline), if deadlines.is_some() => {
                running.abort_all();
                for (control, _) in controls.iter().zip(&ended).filter(|(_, ended)| !**ended) {
                    tracing::warn!(pipeline = %control.name, "pipeline did not stop within the drain bound");
                    unacked += usize::try_from(control.stats.in_flight.get()).unwrap_or(0);
                }
                break;
            }
        }
    }
    if let Some(error) = first_error {
        return Err(error.into());
    }
    let timed_out = give_up.is_cancelled();
    if unacked > 0 || timed_out {
        return Err(RuntimeError::Undrained {
            unacked,
            drain_timeout: timed_out.then_some(shutdown.drain_timeout),
        });
    }
    Ok(())
}
