//! One pipeline: source → transform chain → sink, over bounded channels.
//!
//! ```text
//! source task ──records──▶ transform lanes ──outcomes──▶ sink stage ──settlements──▶ ack stage
//!     ▲                                                                                 │
//!     └──────────────────────── ack (after every output is in the sink) ◀──────────────┘
//! ```
//! A record is acked only after every output it produced (or its dead-letter copy) is
//! acknowledged by the sink, and acks go out in source order, so a filtered record is acked
//! only once every earlier record is settled. The source's in-flight budget bounds memory end
//! to end. Broker failures are handled by the restart policy (`restart.rs`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use sluice_connectors::sink::ConnectSink;
use sluice_connectors::source::{
    ConnectSource, RunningSource, SourceError, SourceMessage, SourceStart,
};
use sluice_engine::{TransformChain, TransformEngine, TransformObserver, TransformSpec};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::control::{PipelineControl, PipelineState};
use crate::error::PipelineError;
use crate::exactly_once::{self, ExactlyOnce};
use crate::lanes::LanesInput;
use crate::restart::{Renew, RestartPolicy};
use crate::settings::{Guarantee, PipelineSettings};
use crate::stages::Stages;
use crate::stats::PipelineStats;

/// How often a running pipeline logs its counters.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);

/// What a pipeline is made of: its settings, where records come from, the transforms they go
/// through, and where they go.
pub struct PipelineParts<C: ConnectSink> {
    pub settings: PipelineSettings,
    pub source: Arc<dyn ConnectSource>,
    pub transforms: Vec<TransformSpec>,
    pub sink: C,
}

/// A pipeline whose transforms are loaded and whose sink is connected, ready to run.
pub struct Pipeline<C: ConnectSink> {
    settings: PipelineSettings,
    source: Arc<dyn ConnectSource>,
    connect_sink: C,
    /// One chain per transform lane.
    chains: Vec<TransformChain>,
    sink: Arc<C::Sink>,
    control: Arc<PipelineControl>,
}

impl<C: ConnectSink> Pipeline<C> {
    /// Loads and initialises the transforms and connects the sink, in `control` (which
    /// outlives the pipeline and is shared with the admin API); the source connects in
    /// [`Pipeline::run`]. Fails fast on bad components and missing topics.
    pub async fn prepare(
        parts: PipelineParts<C>,
        engine: &TransformEngine,
        control: Arc<PipelineControl>,
    ) -> Result<Self, PipelineError> {
        let PipelineParts {
            settings,
            source,
            transforms,
            sink,
        } = parts;
        let name = settings.name.clone();
        let observers: Vec<Arc<dyn TransformObserver>> = transforms
            .iter()
            .map(|spec| control.stats.transform(&spec.name) as Arc<dyn TransformObserver>)
            .collect();
        let (engine, lanes) = (engine.clone(), settings.parallelism);
        let exactly_once = settings.guarantee == Guarantee::ExactlyOnce;
        let loading = name.clone();
        let mut chains = tokio::task::spawn_blocking(move || {
            let mut chains = (0..lanes)
                .map(|_| TransformChain::new(&engine, &transforms))
                .collect::<Result<Vec<_>, _>>()?;
            if exactly_once {
                exactly_once::make_deterministic(&loading, &mut chains)?;
            }
            Ok(chains)
        })
        .await
        .map_err(|_| PipelineError::TransformThread {
            pipeline: name.clone(),
        })?
        .map_err(|source| PipelineError::Transform {
            pipeline: name.clone(),
            source,
        })?;
        for chain in &mut chains {
            chain.observe(observers.clone());
        }
        control.set_transforms(chains[0].transforms());
        control.set_lanes(lanes);
        let connected = connect_sink(&sink, &name).await?;
        Ok(Self {
            settings,
            source,
            connect_sink: sink,
            chains,
            sink: connected,
            control,
        })
    }

    pub fn stats(&self) -> Arc<PipelineStats> {
        self.control.stats.clone()
    }

    pub fn control(&self) -> Arc<PipelineControl> {
        self.control.clone()
    }

    pub fn settings(&self) -> &PipelineSettings {
        &self.settings
    }

    /// Runs until `stop` is cancelled (then drains in-flight records) or it fails for a
    /// reason the restart policy cannot cure.
    pub async fn run(self, stop: CancellationToken) -> Result<(), PipelineError> {
        let Pipeline {
            settings,
            source,
            connect_sink: connector,
            mut chains,
            sink,
            control,
        } = self;
        let name = settings.name.clone();
        let stats = control.stats.clone();
        let halt = stop.child_token();
        let progress = tokio::spawn(report_progress(name.clone(), stats.clone(), halt.clone()));
        let mut restarts = RestartPolicy::new(&control, &stop);
        let mut sink = Some(sink);
        let mut session: Option<SourceSession> = None;
        // Records read and not acked when the sink failed: they go out first, in order.
        let mut replay: VecDeque<SourceMessage> = VecDeque::new();
        let mut exactly_once: Option<ExactlyOnce> = None;
        let mut catch_up = false;
        let result = loop {
            // Bring up what is missing: a source session, a sink connection, the read-back.
            let ready: Result<Arc<C::Sink>, PipelineError> = async {
                if session.is_none() {
                    session = Some(SourceSession::start(&*source, &settings, &stats, &stop).await?);
                    // Read back once subscribed: a writer that held the subscription before is
                    // gone by now.
                    exactly_once = None;
                }
                let connected = match &sink {
                    Some(connected) => connected.clone(),
                    None => sink.insert(connect_sink(&connector, &name).await?).clone(),
                };
                if settings.guarantee == Guarantee::ExactlyOnce {
                    let sink_error = |source| PipelineError::sink(&name, source);
                    match &mut exactly_once {
                        None => {
                            let read = ExactlyOnce::read_back(&settings, &*connected).await;
                            exactly_once = Some(read.map_err(sink_error)?);
                        }
                        Some(written) if catch_up => {
                            let unacked: Vec<&str> = replay
                                .iter()
                                .map(|m| m.record.source.message_id.as_str())
                                .collect();
                            written
                                .catch_up(&name, &*connected, &unacked)
                                .await
                                .map_err(sink_error)?;
                        }
                        Some(_) => {}
                    }
                }
                catch_up = false;
                Ok(connected)
            }
            .await;
            let error = match ready {
                Ok(connected) => {
                    let records = session
                        .as_mut()
                        .and_then(|s| s.records.take())
                        .expect("a running source session has its records");
                    restarts.running(&chains[0]);
                    let stages = Stages {
                        lanes: LanesInput {
                            pipeline: name.clone(),
                            control: control.clone(),
                            chains,
                            records,
                            replay: std::mem::take(&mut replay),
                            batch_size: settings.batch_size,
                            max_in_flight: settings.max_in_flight,
                        },
                        sink: connected,
                        stats: stats.clone(),
                        exactly_once: exactly_once.take(),
                    };
                    let (leftovers, result) = stages.run().await;
                    tracing::debug!(pipeline = %name, ok = result.is_ok(), "stages ended");
                    let Some(leftovers) = leftovers else {
                        break result.and(Err(PipelineError::TransformThread {
                            pipeline: name.clone(),
                        }));
                    };
                    chains = leftovers.chains;
                    replay = leftovers.unacked;
                    exactly_once = leftovers.exactly_once;
                    if let Some(session) = &mut session {
                        session.records = Some(leftovers.records);
                    }
                    match result {
                        // The source's channel closed: a stop (drained), or the source ended.
                        Ok(()) => match end(&mut session, &mut replay).await {
                            Ok(()) => break Ok(()),
                            Err(source) => PipelineError::source(&name, source),
                        },
                        Err(error) => error,
                    }
                }
                Err(error) => error,
            };
            match restarts.after(error, replay.len()).await {
                Ok(Some(Renew::Sink)) => {
                    sink = None;
                    catch_up = true;
                }
                Ok(Some(Renew::Source)) => {
                    let _ = end(&mut session, &mut replay).await;
                }
                Ok(None) => break Ok(()),
                Err(error) => break Err(error),
            }
        };
        control.set_state(match result {
            Ok(()) => PipelineState::Stopped,
            Err(_) => PipelineState::Failed,
        });
        // Stop reading (a no-op after a graceful stop) and let the source settle and close.
        let source_result = end(&mut session, &mut replay).await;
        halt.cancel();
        progress.abort();
        tracing::info!(pipeline = %name, "pipeline stopped: {}", stats.summary());
        result?;
        source_result.map_err(|source| PipelineError::source(&name, source))
    }
}

/// One run of the source: the records it hands out (`None` while the stages hold them), its
/// task, and what stops it.
struct SourceSession {
    records: Option<mpsc::Receiver<SourceMessage>>,
    task: JoinHandle<Result<(), SourceError>>,
    stop: CancellationToken,
}

impl SourceSession {
    async fn start(
        source: &dyn ConnectSource,
        settings: &PipelineSettings,
        stats: &Arc<PipelineStats>,
        stop: &CancellationToken,
    ) -> Result<Self, PipelineError> {
        // Cancelled on stop, and when the session ends for good: the source then drains.
        let stop = stop.child_token();
        let start = SourceStart {
            max_in_flight: settings.max_in_flight,
            observer: stats.clone(),
            stop: stop.clone(),
        };
        let RunningSource { messages, task } = source
            .start(start)
            .await
            .map_err(|error| PipelineError::source(&settings.name, error))?;
        Ok(Self {
            records: Some(messages),
            task,
            stop,
        })
    }
}

/// Ends the source session (if any): stops reading, gives the records held for a replay back
/// to the source (they come again), and waits for the source to settle and close.
async fn end(
    session: &mut Option<SourceSession>,
    replay: &mut VecDeque<SourceMessage>,
) -> Result<(), SourceError> {
    replay.clear();
    let Some(session) = session.take() else {
        return Ok(());
    };
    session.stop.cancel();
    drop(session.records);
    session.task.await.expect("source task panicked")
}

async fn connect_sink<C: ConnectSink>(
    connector: &C,
    pipeline: &str,
) -> Result<Arc<C::Sink>, PipelineError> {
    connector
        .connect()
        .await
        .map(Arc::new)
        .map_err(|source| PipelineError::sink(pipeline, source))
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
