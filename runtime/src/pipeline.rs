//! One pipeline: source → transform chain → Kafka sink, over bounded channels.
//!
//! ```text
//! source task ──records──▶ transform thread ──outcomes──▶ sink task ──settlements──▶ ack task
//!     ▲                                                                                 │
//!     └──────────────────────── ack (after every output is in Kafka) ◀───────────────────┘
//! ```
//! A record is acked only after every output it produced (or its dead-letter copy) is
//! acknowledged by Kafka, and acks go out in source order, so a filtered record is acked only
//! once every earlier record is settled. The source's in-flight budget bounds memory end to end.
//!
//! When Kafka fails, the stages after the source stop and hand back every record not yet
//! acked; a new producer connects with backoff and those records go out again first, in source
//! order. The source stays connected meanwhile, its reading paused by the in-flight budget:
//! nothing depends on redelivery (closing a consumer or a streaming pull that holds unacked
//! messages is where the brokers here strand them), and per-key order survives the outage.

mod control;
mod lanes;
mod produce;
mod stages;
mod stats;
mod written;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{Guarantee, PipelineConfig};
use crate::deploy::{ComponentStore, StoreError};
use crate::metrics::Metrics;
use crate::sink::{KafkaSink, SinkError};
use crate::source::{self, RunningSource, SourceError};
use crate::supervisor::{Backoff, sleep_unless_stopped};
use crate::transform::{self, TransformChain, TransformEngine};

pub use control::{PipelineControl, PipelineState};
use lanes::LanesInput;
use stages::Stages;
pub use stats::PipelineStats;
use written::ExactlyOnce;

/// How often a running pipeline logs its counters.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("pipeline {pipeline:?}: cannot load its transforms")]
    Transform {
        pipeline: String,
        #[source]
        source: transform::Error,
    },
    #[error("pipeline {pipeline:?}: Kafka sink failed")]
    Sink {
        pipeline: String,
        #[source]
        source: SinkError,
    },
    #[error("pipeline {pipeline:?}: source failed")]
    Source {
        pipeline: String,
        #[source]
        source: SourceError,
    },
    #[error(
        "pipeline {pipeline:?}: transform {transform} stopped the pipeline at message {message_id}: {reason}"
    )]
    Fatal {
        pipeline: String,
        transform: String,
        message_id: String,
        reason: String,
    },
    #[error(
        "pipeline {pipeline:?}: message {message_id} must be dead-lettered ({kind}: {reason}) but the sink has no dead_letter_topic"
    )]
    NoDeadLetterTopic {
        pipeline: String,
        message_id: String,
        kind: String,
        reason: String,
    },
    #[error("pipeline {pipeline:?}: cannot read its deployed transform versions")]
    Store {
        pipeline: String,
        #[source]
        source: StoreError,
    },
    #[error("pipeline {pipeline:?}: the transform thread died")]
    TransformThread { pipeline: String },
}

impl PipelineError {
    pub(crate) fn sink(pipeline: &str, source: SinkError) -> Self {
        PipelineError::Sink {
            pipeline: pipeline.to_owned(),
            source,
        }
    }

    /// Whether the failure is in the user's hands (config, components, missing topics).
    pub fn is_user_input_error(&self) -> bool {
        match self {
            PipelineError::Transform { source, .. } => source.is_user_input_error(),
            PipelineError::Sink { source, .. } => source.is_user_input_error(),
            _ => false,
        }
    }

    /// Whether a broker failed (unreachable, refused, restarted) rather than the pipeline's
    /// setup or a transform: running it again may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            PipelineError::Sink { source, .. } => source.is_transient(),
            PipelineError::Source { .. } => true,
            _ => false,
        }
    }
}

/// A pipeline whose transforms are loaded and whose sink is connected, ready to run.
pub struct Pipeline {
    config: PipelineConfig,
    /// One chain per transform lane.
    chains: Vec<TransformChain>,
    sink: Arc<KafkaSink>,
    control: Arc<PipelineControl>,
}

/// What a pipeline keeps across restarts and shares with the admin API.
#[derive(Clone)]
pub struct PipelineContext {
    pub control: Arc<PipelineControl>,
    /// Deployed transform versions; without it the config's components run.
    pub store: Option<Arc<ComponentStore>>,
    pub metrics: Arc<Metrics>,
}

impl PipelineContext {
    /// A context of its own, with no store: what `sluice` runs without `[admin]`, and tests.
    pub fn standalone(name: &str) -> Self {
        let metrics = Metrics::new();
        Self {
            control: PipelineControl::new(name, Arc::new(metrics.pipeline(name))),
            store: None,
            metrics,
        }
    }
}

impl Pipeline {
    /// Loads and initialises the transforms and connects the sink; the source connects in
    /// [`Pipeline::run`]. Fails fast on bad components and missing topics.
    pub async fn prepare(
        config: PipelineConfig,
        engine: &TransformEngine,
    ) -> Result<Self, PipelineError> {
        let context = PipelineContext::standalone(&config.name);
        Self::prepare_in(config, engine, &context).await
    }

    /// Like [`Pipeline::prepare`], in `context` (kept across restarts): the deployed versions
    /// of its store run instead of the config's components.
    pub async fn prepare_in(
        config: PipelineConfig,
        engine: &TransformEngine,
        context: &PipelineContext,
    ) -> Result<Self, PipelineError> {
        let pipeline = config.name.clone();
        let mut specs = config.transform_specs();
        if let Some(store) = &context.store {
            specs = store
                .live_specs(&pipeline, specs)
                .map_err(|source| PipelineError::Store {
                    pipeline: pipeline.clone(),
                    source,
                })?;
        }
        let metrics: Vec<_> = specs
            .iter()
            .map(|spec| context.metrics.transform(&pipeline, &spec.name))
            .collect();
        let engine = engine.clone();
        let (lanes, deterministic) = (
            config.parallelism,
            config.guarantee == Guarantee::ExactlyOnce,
        );
        let (chains, pinned) =
            tokio::task::spawn_blocking(move || load_chains(&engine, &specs, lanes, deterministic))
                .await
                .map_err(|_| PipelineError::TransformThread {
                    pipeline: pipeline.clone(),
                })?
                .map_err(|source| PipelineError::Transform {
                    pipeline: pipeline.clone(),
                    source,
                })?;
        let mut chains = chains;
        for chain in &mut chains {
            chain.observe(metrics.clone());
        }
        if !pinned.is_empty() {
            tracing::info!(
                pipeline = %pipeline,
                transforms = %pinned.join(", "),
                "exactly-once: these transforms import clocks or random; they get them pinned \
                 to each record and are called one record at a time"
            );
        }
        let transforms = chains[0].transforms();
        for id in &transforms {
            context
                .metrics
                .version_live(&pipeline, &id.name, &id.digest, false);
        }
        context.control.set_transforms(transforms);
        context.control.set_lanes(lanes);
        let sink = connect_sink(&config).await?;
        Ok(Self {
            config,
            chains,
            sink,
            control: context.control.clone(),
        })
    }

    pub fn stats(&self) -> Arc<PipelineStats> {
        self.control.stats.clone()
    }

    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    /// Runs until `stop` is cancelled (then drains in-flight records) or a stage fails for a
    /// reason a new Kafka producer cannot cure.
    pub async fn run(self, stop: CancellationToken) -> Result<(), PipelineError> {
        let Pipeline {
            config,
            mut chains,
            mut sink,
            control,
        } = self;
        let stats = control.stats.clone();
        let name = config.name.clone();
        // Cancelled on stop, and when the pipeline fails for good: the source then drains.
        let source_stop = stop.child_token();
        let RunningSource {
            messages: mut records,
            task: source_task,
        } = source::start(
            &config.source,
            config.max_in_flight,
            stats.in_flight.clone(),
            source_stop.clone(),
        )
        .await
        .map_err(|source| PipelineError::Source {
            pipeline: name.clone(),
            source,
        })?;
        // After subscribing: a writer that held the subscription before is gone by now.
        let mut exactly_once = match config.guarantee {
            Guarantee::ExactlyOnce => match ExactlyOnce::read_back(&config).await {
                Ok(exactly_once) => Some(exactly_once),
                Err(error) => {
                    source_stop.cancel();
                    let _ = source_task.await;
                    return Err(error);
                }
            },
            Guarantee::AtLeastOnce => None,
        };
        control.set_state(PipelineState::Running);
        let transforms: Vec<String> = chains[0]
            .transforms()
            .iter()
            .map(ToString::to_string)
            .collect();
        tracing::info!(pipeline = %name, transforms = %transforms.join(" → "), "pipeline running");
        let progress = tokio::spawn(report_progress(
            name.clone(),
            stats.clone(),
            source_stop.clone(),
        ));
        let mut backoff = Backoff::new();
        let mut replay = VecDeque::new();
        let result = loop {
            let stages = Stages {
                lanes: LanesInput {
                    pipeline: name.clone(),
                    control: control.clone(),
                    chains,
                    records,
                    replay,
                    batch_size: config.batch_size,
                    max_in_flight: config.max_in_flight,
                },
                sink: sink.clone(),
                stats: stats.clone(),
                exactly_once,
            };
            let (leftovers, result) = stages.run().await;
            tracing::debug!(pipeline = %name, ok = result.is_ok(), "stages ended");
            let error = match result {
                Ok(()) => break Ok(()),
                Err(error) if is_sink_failure(&error) && !stop.is_cancelled() => error,
                Err(error) => break Err(error),
            };
            let Some(leftovers) = leftovers else {
                break Err(error);
            };
            tracing::warn!(
                pipeline = %name,
                error = %crate::error_chain(&error),
                unacked = leftovers.unacked.len(),
                "pipeline interrupted by a broker failure; the records not yet acked are kept \
                 (the source stays connected, reading paused) and go out again, in order, once \
                 a new Kafka producer connects"
            );
            (chains, records, replay, exactly_once) = (
                leftovers.chains,
                leftovers.records,
                leftovers.unacked,
                leftovers.exactly_once,
            );
            control.set_state(PipelineState::Reconnecting);
            stats.restarts.inc();
            sink = match reconnect_sink(&config, &mut backoff, &stop).await {
                Ok(Some(sink)) => sink,
                Ok(None) => break Ok(()),
                Err(error) => break Err(error),
            };
            if let Some(exactly_once) = &mut exactly_once {
                let unacked: Vec<&str> = replay
                    .iter()
                    .map(|m| m.record.source.message_id.as_str())
                    .collect();
                if let Err(error) = exactly_once.catch_up(&config, &unacked).await {
                    break Err(error);
                }
            }
            control.set_state(PipelineState::Running);
            tracing::info!(pipeline = %name, "Kafka producer connected; pipeline restarted");
        };
        control.set_state(match result {
            Ok(()) => PipelineState::Stopped,
            Err(_) => PipelineState::Failed,
        });
        // Stop reading (a no-op after a graceful stop) and let the source settle and close.
        source_stop.cancel();
        progress.abort();
        let source_result = source_task.await.expect("source task panicked");
        tracing::info!(pipeline = %name, "pipeline stopped: {}", stats.summary());
        result?;
        source_result.map_err(|source| PipelineError::Source {
            pipeline: name,
            source,
        })
    }
}

/// One chain per lane; with `deterministic`, replays of a record give the same outputs.
/// Returns the names of the transforms that get clocks and random pinned per record.
fn load_chains(
    engine: &TransformEngine,
    specs: &[transform::TransformSpec],
    lanes: usize,
    deterministic: bool,
) -> Result<(Vec<TransformChain>, Vec<String>), transform::Error> {
    let mut pinned = Vec::new();
    let chains = (0..lanes)
        .map(|_| {
            let mut chain = TransformChain::new(engine, specs)?;
            if deterministic {
                pinned = chain.make_deterministic()?;
            }
            Ok(chain)
        })
        .collect::<Result<Vec<_>, transform::Error>>()?;
    Ok((chains, pinned))
}

/// Whether a failure is Kafka's (unreachable, refusing, restarting): a new producer may cure it.
fn is_sink_failure(error: &PipelineError) -> bool {
    matches!(error, PipelineError::Sink { source, .. } if source.is_transient())
}

async fn connect_sink(config: &PipelineConfig) -> Result<Arc<KafkaSink>, PipelineError> {
    KafkaSink::connect(&config.sink)
        .await
        .map(Arc::new)
        .map_err(|source| PipelineError::sink(&config.name, source))
}

/// Connects a new producer, with backoff while Kafka stays down; `None` when `stop` came first.
async fn reconnect_sink(
    config: &PipelineConfig,
    backoff: &mut Backoff,
    stop: &CancellationToken,
) -> Result<Option<Arc<KafkaSink>>, PipelineError> {
    loop {
        if !sleep_unless_stopped(backoff.next_wait(), stop).await {
            return Ok(None);
        }
        match connect_sink(config).await {
            Ok(sink) => return Ok(Some(sink)),
            Err(error) if is_sink_failure(&error) => tracing::warn!(
                pipeline = %config.name,
                error = %crate::error_chain(&error),
                "Kafka still unreachable"
            ),
            Err(error) => return Err(error),
        }
    }
}

async fn report_progress(pipeline: String, stats: Arc<PipelineStats>, halt: CancellationToken) {
    let mut interval = tokio::time::interval(PROGRESS_INTERVAL);
    interval.tick().await;
    let mut last = String::new();
    loop {
        tokio::select! {
            _ = halt.cancelled() => return,
            _ = interval.tick() => {
                // Only when something moved: an idle pipeline stays quiet.
                let summary = stats.summary();
                if summary != last {
                    tracing::info!(pipeline = %pipeline, "progress: {summary}");
                    last = summary;
                }
            }
        }
    }
}
