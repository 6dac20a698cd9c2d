//! A pipeline while it runs, step by step: bring up what is missing (a source session, a
//! sink connection, the exactly-once read-back or transactions), let records flow through the
//! stages, and renew what the restart policy says failed. [`Pipeline::run`](crate::Pipeline::run) drives
//! these steps.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_connectors::sink::ConnectSink;
use sluice_connectors::source::{
    ConnectSource, RunningSource, SourceError, SourceMessage, SourceObserver, SourceStart,
};
use sluice_engine::TransformChain;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::control::PipelineControl;
use crate::control::PipelineState;
use crate::error::{PipelineError, error_chain};
use crate::exactly_once::{ExactlyOnce, ReadBack, Tracker, TrackingObserver, Transactions};
use crate::lanes::{LaneState, LanesInput};
use crate::pipeline::{Pipeline, connect_sink};
use crate::restart::{self, Renew, RestartPolicy};
use crate::schemas::Schemas;
use crate::settings::{ExactlyOnceMode, PipelineSettings};
use crate::stages::Stages;
use crate::state::{Changelog, StateLog, StateStore};
use crate::stats::PipelineStats;
use crate::windows::Windows;

/// How often a running pipeline logs its counters.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);

impl<C: ConnectSink> Pipeline<C> {
    /// Runs until `stop` is cancelled (then drains in-flight records) or it fails for a
    /// reason the restart policy cannot cure.
    pub async fn run(self, stop: CancellationToken) -> Result<(), PipelineError> {
        self.run_bounded(stop, CancellationToken::new()).await
    }

    /// Like [`Pipeline::run`], giving up the drain when `give_up` is cancelled (the runtime
    /// does so when the drain takes too long, docs/delivery-guarantees.md): the records not
    /// yet acked are left unacked for the source to deliver again, and it ends with
    /// [`PipelineError::Undrained`]. So does a stop while the sink is down.
    pub async fn run_bounded(
        self,
        stop: CancellationToken,
        give_up: CancellationToken,
    ) -> Result<(), PipelineError> {
        let control = self.control.clone();
        let (name, stats) = (self.settings.name.clone(), control.stats.clone());
        let halt = stop.child_token();
        let progress = tokio::spawn(report_progress(name.clone(), stats.clone(), halt.clone()));
        let mut restarts = RestartPolicy::new(&control, &stop);
        let mut running = Running::new(self, &stop, &give_up);
        let result = loop {
            let brought_up = tokio::select! {
                biased;
                _ = give_up.cancelled() => Err(running.given_up(None)),
                brought_up = running.bring_up() => brought_up,
            };
            let error = match brought_up {
                Ok(sink) => match running.flow(sink, &mut restarts).await {
                    Ok(()) => break Ok(()),
                    Err(error) => error,
                },
                Err(error) => error,
            };
            match restarts.after(error, running.replay.len()).await {
                Ok(Some(renew)) => running.renew(renew).await,
                Ok(None) => break Ok(()),
                Err(error) => break Err(error),
            }
        };
        // Stopped short of draining (the sink failed or was down): say what is left.
        let result = match result {
            Ok(()) if !running.replay.is_empty() => Err(running.given_up(None)),
            Err(error)
                if stop.is_cancelled()
                    && !running.replay.is_empty()
                    && restart::renew_for(&error).is_some() =>
            {
                Err(running.given_up(Some(error)))
            }
            result => result,
        };
        control.set_state(match result {
            Ok(()) => PipelineState::Stopped,
            Err(_) => PipelineState::Failed,
        });
        // Stop reading (a no-op after a graceful stop) and let the source settle and close.
        let source_result = running.end_session().await;
        halt.cancel();
        progress.abort();
        tracing::info!(pipeline = %name, "pipeline stopped: {}", stats.summary());
        result?;
        source_result.map_err(|source| PipelineError::source(&name, source))
    }
}

/// A pipeline while it runs: what is up (a source session, a sink connection), what it
/// holds across a restart (the chains, the records to replay, the exactly-once memory), and
/// what it does at each step of [`Pipeline::run`].
pub(crate) struct Running<'a, C: ConnectSink> {
    settings: PipelineSettings,
    source: Arc<dyn ConnectSource>,
    connector: C,
    control: Arc<PipelineControl>,
    stop: &'a CancellationToken,
    /// One chain per lane; empty while the stages hold them.
    chains: Vec<TransformChain>,
    sink: Option<Arc<C::Sink>>,
    session: Option<SourceSession>,
    /// Records read and not acked when the sink failed: they go out first, in order.
    pub(crate) replay: VecDeque<SourceMessage>,
    exactly_once: Option<ExactlyOnce<C::Sink>>,
    /// Exactly-once on transactions: what the source delivered, for the checkpoints.
    tracker: Arc<Mutex<Tracker>>,
    /// Exactly-once: the sink was renewed, so read back what the replayed records reached, or
    /// open new transactional writers.
    catch_up: bool,
    /// Cancelled when a stop gives up draining: the stages stop at once.
    give_up: &'a CancellationToken,
    schemas: Arc<Schemas>,
    /// Keyed state, when a transform keeps some (docs/state.md).
    state: Option<Arc<StateStore>>,
    /// The window stages and their state, across restarts.
    windows: Option<Arc<Mutex<Windows>>>,
}

impl<'a, C: ConnectSink> Running<'a, C> {
    pub(crate) fn new(
        pipeline: Pipeline<C>,
        stop: &'a CancellationToken,
        give_up: &'a CancellationToken,
    ) -> Self {
        let state = keyed_state(&pipeline.settings, &pipeline.chains);
        let windows = (state.clone())
            .and_then(|store| Windows::new(&pipeline.settings.windows, store))
            .map(|windows| Arc::new(Mutex::new(windows)));
        Self {
            settings: pipeline.settings,
            source: pipeline.source,
            connector: pipeline.connect_sink,
            control: pipeline.control,
            stop,
            give_up,
            chains: pipeline.chains,
            sink: Some(pipeline.sink),
            session: None,
            replay: VecDeque::new(),
            exactly_once: None,
            tracker: Arc::default(),
            catch_up: false,
            state,
            windows,
            schemas: pipeline.schemas,
        }
    }

    /// Brings up what is missing: a source session, a sink connection, the exactly-once
    /// read-back or transactions.
    pub(crate) async fn bring_up(&mut self) -> Result<Arc<C::Sink>, PipelineError> {
        let name = &self.settings.name;
        let mode = self.settings.exactly_once_mode();
        if self.session.is_none() {
            let stats = self.control.stats.clone();
            let observer: Arc<dyn SourceObserver> = match mode {
                Some(ExactlyOnceMode::Transactions) => {
                    // A new session delivers everything not acked again, under new claims.
                    self.tracker.lock().expect("tracker lock poisoned").reset();
                    Arc::new(TrackingObserver {
                        stats,
                        tracker: self.tracker.clone(),
                    })
                }
                _ => stats,
            };
            let session = SourceSession::start(&*self.source, &self.settings, observer, self.stop);
            self.session = Some(session.await?);
            if mode == Some(ExactlyOnceMode::ReadBack) {
                // Read back once subscribed: a writer that held the subscription before is
                // gone by now.
                self.exactly_once = None;
            }
        }
        let sink = match &self.sink {
            Some(sink) => sink.clone(),
            None => self
                .sink
                .insert(connect_sink(&self.connector, name).await?)
                .clone(),
        };
        let sink_error = |source| PipelineError::sink(name, source);
        match (mode, &mut self.exactly_once) {
            (None, _) => {}
            (Some(ExactlyOnceMode::ReadBack), None) => {
                let read = ReadBack::read_back(&self.settings, &*sink).await;
                self.exactly_once = Some(ExactlyOnce::ReadBack(read.map_err(sink_error)?));
            }
            (Some(ExactlyOnceMode::ReadBack), Some(ExactlyOnce::ReadBack(written)))
                if self.catch_up =>
            {
                let unacked: Vec<&str> = (self.replay.iter())
                    .map(|m| &*m.record.source.message_id)
                    .collect();
                let caught_up = written.catch_up(name, &*sink, &unacked).await;
                caught_up.map_err(sink_error)?;
            }
            (Some(ExactlyOnceMode::Transactions), None) => {
                let mut transactions = Transactions::new(
                    &self.settings,
                    self.source.clone(),
                    self.tracker.clone(),
                    self.control.stats.clone(),
                );
                if let Some(store) = &self.state {
                    transactions.keep_state(store.clone());
                }
                self.exactly_once = Some(ExactlyOnce::Transactions(transactions));
            }
            (Some(ExactlyOnceMode::Transactions), Some(ExactlyOnce::Transactions(writers)))
                if self.catch_up =>
            {
                // The old producers went with the sink; new ones open (fencing them) as the
                // replayed records come, and skip what the old ones committed.
                writers.sink_renewed();
            }
            (Some(_), Some(_)) => {}
        }
        self.catch_up = false;
        Ok(sink)
    }

    /// Runs the stages over `sink` until the source's channel closes (`Ok`: a stop, drained,
    /// and the source closed) or something fails.
    pub(crate) async fn flow(
        &mut self,
        sink: Arc<C::Sink>,
        restarts: &mut RestartPolicy<'_>,
    ) -> Result<(), PipelineError> {
        let name = self.settings.name.clone();
        let records = (self.session.as_mut())
            .and_then(|session| session.records.take())
            .expect("a running source session has its records");
        restarts.running(&self.chains[0]);
        let stages = Stages {
            lanes: LanesInput {
                pipeline: name.clone(),
                control: self.control.clone(),
                chains: std::mem::take(&mut self.chains),
                records,
                replay: std::mem::take(&mut self.replay),
                batch_size: self.settings.batch_size,
                max_in_flight: self.settings.max_in_flight,
                schemas: self.schemas.clone(),
                group_by: self.settings.group_by.clone(),
                state: self
                    .state
                    .clone()
                    .map(|store| LaneState { store, opens: None }),
            },
            sink,
            stats: self.control.stats.clone(),
            exactly_once: self.exactly_once.take(),
            windows: self.windows.clone(),
            state_log: self.state_log(),
        };
        let (leftovers, result) = stages.run(self.give_up).await;
        tracing::debug!(pipeline = %name, ok = result.is_ok(), "stages ended");
        let Some(leftovers) = leftovers else {
            // The chains died with their thread: nothing to restart with.
            if let Err(error) = result {
                tracing::warn!(pipeline = %name, error = %error_chain(&error), "stages failed as a transform thread died");
            }
            return Err(PipelineError::TransformThread { pipeline: name });
        };
        self.chains = leftovers.chains;
        self.replay = leftovers.unacked;
        self.exactly_once = leftovers.exactly_once;
        if let Some(session) = &mut self.session {
            session.records = Some(leftovers.records);
        }
        if self.give_up.is_cancelled() {
            return Err(self.given_up(result.err()));
        }
        result?;
        // The source's channel closed: a stop (drained), or the source ended.
        self.end_session()
            .await
            .map_err(|source| PipelineError::source(&name, source))
    }

    /// The pipeline stops without draining: the records it holds are not acked (`cause`
    /// kept them from it, if an error did).
    pub(crate) fn given_up(&self, cause: Option<PipelineError>) -> PipelineError {
        PipelineError::Undrained {
            pipeline: self.settings.name.clone(),
            unacked: self.replay.len(),
            cause: cause.map(Box::new),
        }
    }

    /// Drops what the restart policy renews; [`Running::bring_up`] makes it again.
    pub(crate) async fn renew(&mut self, renew: Renew) {
        match renew {
            Renew::Sink => {
                self.sink = None;
                self.catch_up = true;
            }
            Renew::Source => {
                // Its failure is what brought us here.
                let _ = self.end_session().await;
            }
        }
    }

    /// Ends the source session (if any): stops reading, gives the records held for a replay
    /// back to the source (they come again), and waits for the source to settle and close.
    pub(crate) async fn end_session(&mut self) -> Result<(), SourceError> {
        self.replay.clear();
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        session.stop.cancel();
        drop(session.records);
        session.task.await.expect("source task panicked")
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
        observer: Arc<dyn SourceObserver>,
        stop: &CancellationToken,
    ) -> Result<Self, PipelineError> {
        // Cancelled on stop, and when the session ends for good: the source then drains.
        let stop = stop.child_token();
        let start = SourceStart {
            max_in_flight: settings.max_in_flight,
            observer,
            stop: stop.clone(),
            source: 0,
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

impl<C: ConnectSink> Running<'_, C> {
    /// Keyed state outside transactions: its changelog written beside the outputs.
    fn state_log(&self) -> Option<StateLog> {
        let transactions = self.settings.exactly_once_mode() == Some(ExactlyOnceMode::Transactions);
        (self.state.clone())
            .filter(|_| !transactions)
            .map(|store| StateLog {
                store,
                changelog: Changelog::new(self.settings.changelog_topic()),
            })
    }
}

/// The state store, when a transform of the chain or a window stage keeps keyed state. It is
/// durable in every mode (restored from and written to the changelog); exactly-once only on
/// transactions, at-least-once otherwise, which is said once here.
fn keyed_state(settings: &PipelineSettings, chains: &[TransformChain]) -> Option<Arc<StateStore>> {
    let keeper = if chains.first().is_some_and(TransformChain::uses_state) {
        "a transform keeps keyed state"
    } else if !settings.windows.is_empty() {
        "the windows keep state"
    } else {
        return None;
    };
    if settings.exactly_once_mode() != Some(ExactlyOnceMode::Transactions) {
        tracing::info!(
            pipeline = %settings.name,
            "{keeper}: its changelog is written beside the outputs and each record acked once \
             its changes are delivered; the state is at-least-once (a record delivered again \
             applies its changes again), exactly-once only on transactions (docs/state.md)"
        );
    }
    Some(Arc::default())
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
