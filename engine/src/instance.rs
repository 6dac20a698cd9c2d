//! One transform of a chain: a pre-instantiated component and its live instance, the calls
//! into it under limits, and what becomes of traps.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::Store;
use wasmtime::component::Func;

use super::bindings::{self, Transformer};
use super::capabilities::Grants;
use super::component::{GuestPre, LoadedComponent};
use super::determinism::{PinnedInputs, is_nondeterministic};
use super::engine::{EPOCH_TICK, EpochCount, TransformEngine};
use super::error::Error;
use super::flat::{self, DecodedResult, FlatBatch, FlatResults};
use super::host::{CallDeadline, HostState};
use super::limits::Limits;
use super::outcome::{FailureKind, RecordOutcome, TransformId};
use super::spec::TransformSpec;
use super::state::BatchOverlay;
use sluice_record::text::bound;
use sluice_record::validation;
use sluice_record::{Bytes, InputRecord, OutputRecord};

/// What one call into a guest made of one record: outputs, or the record's final outcome.
pub(crate) type StageResult = Result<Vec<OutputRecord>, RecordOutcome>;

/// A guest failure: its kind and a reason for humans (and the dead-letter header).
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) kind: FailureKind,
    pub(crate) reason: String,
}

/// Why a call produced no results.
enum CallError {
    /// The guest trapped (or broke the calling convention); the instance was discarded.
    Trapped(Failure),
    /// No instance could be made (re-instantiation after a trap failed).
    Unavailable(String),
}

/// Why an instance could not be started.
enum StartError {
    Refused(String),
    Failed(Failure),
    /// A granted capability could not be given (a granted directory vanished).
    Grant(String),
}

struct LiveInstance {
    store: Store<HostState>,
    guest: LiveGuest,
}

/// A live instance's exports, by the version of the world.
enum LiveGuest {
    V0_1(Transformer),
    /// `transform-batch` of 0.2.0, called through the flat boundary.
    V0_2 {
        transform_batch: Func,
    },
}

/// What one call returned: one result per input (the guest may break that; it is checked).
enum CallResults {
    V0_1(Vec<bindings::RecordResult>),
    V0_2(Vec<DecodedResult>),
}

impl CallResults {
    fn len(&self) -> usize {
        match self {
            CallResults::V0_1(results) => results.len(),
            CallResults::V0_2(results) => results.len(),
        }
    }
}

/// A transform with at most one live instance, re-created from its `InstancePre` after a trap.
pub(crate) struct TransformInstance {
    id: TransformId,
    path: PathBuf,
    config: Vec<(String, String)>,
    limits: Limits,
    grants: Grants,
    engine: wasmtime::Engine,
    epochs: EpochCount,
    pre: GuestPre,
    live: Option<LiveInstance>,
    /// Instances re-created after a trap, for metrics.
    recycles: u64,
    /// Whether the component imports clocks or random (see `determinism`).
    nondeterministic: bool,
    /// Clocks and random pinned per record (exactly-once): see [`TransformInstance::run`].
    pinned: Option<PinnedInputs>,
    /// Batches in a row in which the guest read clocks or random (pinned only).
    batches_read_inputs: u32,
    /// The state the current batch reads and changes, when the pipeline lends it.
    batch_state: Option<Arc<Mutex<BatchOverlay>>>,
    /// Whether the component imports the `state` interface.
    uses_state: bool,
}

/// After this many batches in a row in which a deterministic guest read clocks or random, it
/// is called one record at a time without trying the batch first.
const BATCHES_READING_INPUTS_BEFORE_PER_RECORD: u32 = 2;

/// What a call's clocks and random are, when the transform is deterministic.
#[derive(Clone, Copy)]
enum Pinning<'a> {
    /// Pinned to this record.
    To(&'a InputRecord),
    /// Watched: whether the guest reads them decides whether the call's outputs stand.
    Watched,
}

impl TransformInstance {
    /// Instantiates the loaded component with `grants` and calls `init` with the spec's
    /// config.
    pub(crate) fn start(
        transform_engine: &TransformEngine,
        spec: &TransformSpec,
        loaded: LoadedComponent,
        grants: Grants,
    ) -> Result<Self, Error> {
        let engine = transform_engine.wasmtime();
        let nondeterministic = loaded
            .component
            .component_type()
            .imports(engine)
            .any(|(name, _)| is_nondeterministic(name));
        let uses_state = loaded
            .component
            .component_type()
            .imports(engine)
            .any(|(name, _)| name.starts_with("sluice:transform/state@"));
        let mut instance = Self {
            id: TransformId {
                name: spec.name.clone(),
                digest: loaded.digest,
            },
            path: loaded.path,
            config: spec
                .config
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            limits: spec.limits.clone(),
            grants,
            engine: engine.clone(),
            epochs: transform_engine.epochs().clone(),
            pre: loaded.pre,
            live: None,
            recycles: 0,
            nondeterministic,
            pinned: None,
            batches_read_inputs: 0,
            batch_state: None,
            uses_state,
        };
        instance.go_live()?;
        Ok(instance)
    }

    /// Makes a fresh live instance (replacing any), failing with the transform named.
    fn go_live(&mut self) -> Result<(), Error> {
        let live = self.instantiate().map_err(|error| match error {
            StartError::Refused(reason) => Error::InitRefused {
                transform: self.id.name.clone(),
                path: self.path.clone(),
                reason,
            },
            StartError::Failed(failure) => Error::InitFailed {
                transform: self.id.name.clone(),
                path: self.path.clone(),
                kind: failure.kind,
                reason: failure.reason,
            },
            StartError::Grant(message) => Error::Capability {
                transform: self.id.name.clone(),
                message: format!("read_dirs: {message}"),
            },
        })?;
        self.live = Some(live);
        Ok(())
    }

    pub(crate) fn id(&self) -> &TransformId {
        &self.id
    }

    /// Makes replays of a record give the same outputs: a component that imports clocks or
    /// random gets them pinned to each record whenever it reads them (a fresh instance is made
    /// with the pinned clocks; see [`Self::run`]). Others are deterministic already.
    pub(crate) fn set_deterministic(&mut self) -> Result<(), Error> {
        if !self.nondeterministic || self.pinned.is_some() {
            return Ok(());
        }
        self.pinned = Some(PinnedInputs::new());
        self.go_live()
    }

    /// Whether clocks and random are pinned per record.
    pub(crate) fn is_pinned(&self) -> bool {
        self.pinned.is_some()
    }

    /// Whether the transform keeps keyed state (imports the `state` interface).
    pub(crate) fn uses_state(&self) -> bool {
        self.uses_state
    }

    /// The state the next calls read and change (`None`: no state for them).
    pub(crate) fn lend_state(&mut self, batch: Option<Arc<Mutex<BatchOverlay>>>) {
        if batch.is_none()
            && let Some(live) = &mut self.live
        {
            live.store.data_mut().state.release();
        }
        self.batch_state = batch;
    }

    /// How many times an instance was re-created after a trap.
    pub(crate) fn recycles(&self) -> u64 {
        self.recycles
    }

    /// Runs `inputs` through the transform: exactly one result per input, in order. A trap
    /// does not fail the innocent records of the batch: the batch is re-run one record at a
    /// time on fresh instances, so only the records that trap alone are dead-lettered.
    pub(crate) fn run(&mut self, inputs: &[InputRecord]) -> Vec<StageResult> {
        if inputs.is_empty() {
            return Vec::new();
        }
        if let Some(pinned) = self.pinned.clone() {
            return self.run_deterministic(&pinned, inputs);
        }
        match self.call(inputs, None) {
            Ok(results) if results.len() == inputs.len() => self.judge_all(results, inputs),
            Ok(results) if inputs.len() == 1 => vec![Err(self.wrong_count(results.len()))],
            Ok(results) => {
                tracing::warn!(
                    transform = %self.id,
                    inputs = inputs.len(),
                    results = results.len(),
                    "transform returned the wrong number of results; retrying record by record"
                );
                self.run_one_by_one(inputs)
            }
            Err(CallError::Trapped(failure)) if inputs.len() == 1 => {
                vec![Err(self.dead_letter(failure))]
            }
            Err(CallError::Trapped(failure)) => {
                tracing::debug!(
                    transform = %self.id,
                    kind = failure.kind.as_str(),
                    reason = failure.reason,
                    records = inputs.len(),
                    "batch trapped; retrying record by record to find the culprit"
                );
                self.run_one_by_one(inputs)
            }
            Err(CallError::Unavailable(reason)) => inputs
                .iter()
                .map(|_| Err(self.fatal(reason.clone())))
                .collect(),
        }
    }

    /// Deterministic: the batch is called as one with clocks and random watched. If the
    /// guest read none of them its outputs stand (they cannot depend on them); otherwise they
    /// are dropped and each record is called alone with the inputs pinned to it, so a replay
    /// reads the same. A guest that reads them batch after batch is called record by record
    /// straight away. A trap or a wrong count goes record by record too, as without pinning.
    fn run_deterministic(
        &mut self,
        pinned: &PinnedInputs,
        inputs: &[InputRecord],
    ) -> Vec<StageResult> {
        if inputs.len() == 1 || self.batches_read_inputs >= BATCHES_READING_INPUTS_BEFORE_PER_RECORD
        {
            return self.run_one_by_one(inputs);
        }
        let called = self.call(inputs, Some(Pinning::Watched));
        let read_inputs = pinned.stop_watching();
        match called {
            Ok(results) if !read_inputs && results.len() == inputs.len() => {
                self.batches_read_inputs = 0;
                self.judge_all(results, inputs)
            }
            _ => {
                if read_inputs {
                    self.batches_read_inputs += 1;
                    if self.batches_read_inputs == BATCHES_READING_INPUTS_BEFORE_PER_RECORD {
                        tracing::debug!(
                            transform = %self.id,
                            "the guest reads clocks or random in every batch: calling it one \
                             record at a time, each pinned to its record (exactly-once)"
                        );
                    }
                }
                self.run_one_by_one(inputs)
            }
        }
    }

    /// One call per record, each with clocks and random pinned to it when deterministic.
    fn run_one_by_one(&mut self, inputs: &[InputRecord]) -> Vec<StageResult> {
        inputs.iter().map(|input| self.call_one(input)).collect()
    }

    fn call_one(&mut self, input: &InputRecord) -> StageResult {
        let inputs = std::slice::from_ref(input);
        match self.call(inputs, Some(Pinning::To(input))) {
            Ok(results) if results.len() == 1 => {
                let mut judged = self.judge_all(results, inputs);
                judged.pop().unwrap_or_else(|| Err(self.wrong_count(0)))
            }
            Ok(results) => Err(self.wrong_count(results.len())),
            Err(CallError::Trapped(failure)) => Err(self.dead_letter(failure)),
            Err(CallError::Unavailable(reason)) => Err(self.fatal(reason)),
        }
    }

    /// One guest call on the live instance (made first if a trap discarded it). When
    /// deterministic, clocks and random are pinned or watched (`pinning`) after the instance
    /// is made, so its `init` neither moves the record's random stream nor counts as a read.
    fn call(
        &mut self,
        inputs: &[InputRecord],
        pinning: Option<Pinning<'_>>,
    ) -> Result<CallResults, CallError> {
        let mut live = match self.live.take() {
            Some(live) => live,
            None => match self.instantiate() {
                Ok(live) => {
                    self.recycles += 1;
                    live
                }
                Err(StartError::Refused(reason)) => {
                    return Err(CallError::Unavailable(format!(
                        "cannot restart after a trap: init refused the configuration: {reason}"
                    )));
                }
                Err(StartError::Failed(failure)) => {
                    return Err(CallError::Unavailable(format!(
                        "cannot restart after a trap: {}: {}",
                        failure.kind, failure.reason
                    )));
                }
                Err(StartError::Grant(message)) => {
                    return Err(CallError::Unavailable(format!(
                        "cannot restart after a trap: {message}"
                    )));
                }
            },
        };
        match (&self.pinned, pinning) {
            (Some(pinned), Some(Pinning::To(record))) => pinned.pin(record),
            (Some(pinned), Some(Pinning::Watched)) => pinned.watch(),
            _ => {}
        }
        self.arm(&mut live.store);
        (live.store.data_mut().state).begin(self.batch_state.clone(), inputs);
        let result = match &live.guest {
            LiveGuest::V0_1(bindings) => {
                let records: Vec<bindings::InputRecord> = inputs.iter().map(lower).collect();
                bindings
                    .call_transform_batch(&mut live.store, &records)
                    .map(CallResults::V0_1)
            }
            LiveGuest::V0_2 { transform_batch } => transform_batch
                .typed::<(FlatBatch<'_>,), (FlatResults,)>(&live.store)
                .and_then(|typed| typed.call(&mut live.store, (FlatBatch::new(inputs),)))
                .map(|(FlatResults(results),)| CallResults::V0_2(results)),
        };
        live.store.data().log.end_call();
        match result {
            Ok(results) => {
                self.live = Some(live);
                Ok(results)
            }
            // The instance is unusable after a trap: `live` is dropped here.
            Err(error) => Err(CallError::Trapped(self.classify(&error, &live.store))),
        }
    }

    /// A fresh store and instance, initialised with the config.
    fn instantiate(&self) -> Result<LiveInstance, StartError> {
        let state = HostState::new(
            &self.id.to_string(),
            &self.limits,
            &self.grants,
            self.pinned.as_ref(),
        )
        .map_err(|error| StartError::Grant(error.to_string()))?;
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        self.arm(&mut store);
        let failed = |error: wasmtime::Error, store: &Store<HostState>| {
            StartError::Failed(self.classify(&error, store))
        };
        let (guest, result) = match &self.pre {
            GuestPre::V0_1(pre) => {
                let bindings = pre
                    .instantiate(&mut store)
                    .map_err(|error| failed(error, &store))?;
                let result = bindings.call_init(&mut store, &self.config);
                (LiveGuest::V0_1(bindings), result)
            }
            GuestPre::V0_2(pre) => {
                let instance = pre
                    .instantiate(&mut store)
                    .map_err(|error| failed(error, &store))?;
                // The world check found both exports with these types.
                let export = |store: &mut Store<HostState>, name: &str| {
                    instance.get_func(&mut *store, name).ok_or_else(|| {
                        wasmtime::Error::msg(format!("the component has no export {name:?}"))
                    })
                };
                let transform_batch =
                    export(&mut store, "transform-batch").map_err(|e| failed(e, &store))?;
                let init = export(&mut store, "init").map_err(|e| failed(e, &store))?;
                let result = init
                    .typed::<(&[(String, String)],), (Result<(), String>,)>(&store)
                    .and_then(|init| init.call(&mut store, (&self.config,)))
                    .map(|(result,)| result);
                (LiveGuest::V0_2 { transform_batch }, result)
            }
        };
        store.data().log.end_call();
        match result {
            Ok(Ok(())) => Ok(LiveInstance { store, guest }),
            Ok(Err(reason)) => Err(StartError::Refused(bound(reason))),
            Err(error) => Err(StartError::Failed(self.classify(&error, &store))),
        }
    }

    /// Prepares a store for one call: a fresh deadline and cleared per-call observations.
    fn arm(&self, store: &mut Store<HostState>) {
        // One tick more than the timeout: the first tick may come at once.
        let ticks = self
            .limits
            .batch_timeout_ms
            .div_ceil(EPOCH_TICK.as_millis() as u64)
            + 1;
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
        let state = store.data_mut();
        // Guest sleeps end at the timeout at the latest, and then wait for the epoch to pass
        // the store's deadline (see `HostState::bounded_sleep`), so that on waking the guest
        // traps however late the ticker runs.
        state.call_deadline = Instant::now()
            .checked_add(Duration::from_millis(self.limits.batch_timeout_ms))
            .map(|at| CallDeadline {
                at,
                // The epoch is at most one ahead of the count: +1 covers that, +1 more
                // covers a trap that needs the epoch strictly past the deadline.
                epoch: self.epochs.now() + ticks + 2,
                epochs: self.epochs.clone(),
            });
        state.limiter.reset_refusal();
        state.log.begin_call();
    }

    /// Tells apart the failures by the trap's type (not its text). The reason may quote the
    /// guest's stderr: it is bounded.
    fn classify(&self, error: &wasmtime::Error, store: &Store<HostState>) -> Failure {
        let state = store.data();
        let refused_memory = state.limiter.refused_memory_growth();
        let with_stderr = |reason: String| match state.log.recent_stderr() {
            Some(stderr) => bound(format!("{reason}; guest stderr: {stderr}")),
            None => bound(reason),
        };
        if let Some(reason) = &state.state.trapped {
            return Failure {
                kind: FailureKind::StateQuota,
                reason: reason.clone(),
            };
        }
        match error.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) => Failure {
                kind: FailureKind::Timeout,
                reason: format!(
                    "timed out: the call took longer than batch_timeout_ms = {}",
                    self.limits.batch_timeout_ms
                ),
            },
            Some(wasmtime::Trap::StackOverflow) => Failure {
                kind: FailureKind::StackOverflow,
                reason: "stack overflow: the guest exhausted its call stack".to_owned(),
            },
            _ if refused_memory => Failure {
                kind: FailureKind::OutOfMemory,
                reason: with_stderr(format!(
                    "out of memory: the guest needed more than memory_mib = {} ({})",
                    self.limits.memory_mib,
                    error_chain(error)
                )),
            },
            _ => Failure {
                kind: FailureKind::Trap,
                reason: with_stderr(error_chain(error)),
            },
        }
    }

    /// Judges one call's results, one per input (the count was checked).
    fn judge_all(&mut self, results: CallResults, inputs: &[InputRecord]) -> Vec<StageResult> {
        let mut judged = self.judge_results(results, inputs);
        // The state changes of the records that succeeded count; a quota refusal
        // dead-letters its record.
        let ok: Vec<bool> = judged.iter().map(Result::is_ok).collect();
        let refused = match &mut self.live {
            Some(live) => live.store.data_mut().state.settle(&ok),
            None => Vec::new(),
        };
        for (result, refusal) in judged.iter_mut().zip(refused) {
            // Whatever the guest made of the refusal (an `Err` passed on, or ignored).
            if let Some(reason) = refusal {
                *result = Err(self.dead_letter(Failure {
                    kind: FailureKind::StateQuota,
                    reason,
                }));
            }
        }
        judged
    }

    fn judge_results(&self, results: CallResults, inputs: &[InputRecord]) -> Vec<StageResult> {
        match results {
            CallResults::V0_1(results) => results
                .into_iter()
                .map(|result| self.judge(result))
                .collect(),
            CallResults::V0_2(results) => results
                .into_iter()
                .zip(inputs)
                .map(|(result, input)| self.judge_flat(result, input))
                .collect(),
        }
    }

    /// Applies the output limits to a guest result and maps guest errors to outcomes.
    fn judge(&self, result: bindings::RecordResult) -> StageResult {
        match result {
            Ok(outputs) => {
                let bytes: u64 = outputs.iter().map(output_bytes).sum();
                if let Some(outcome) = self.over_limits(outputs.len(), bytes) {
                    return Err(outcome);
                }
                self.accept(outputs.into_iter().map(lift).collect())
            }
            Err(error) => Err(self.guest_error(error)),
        }
    }

    /// [`Self::judge`] for a 0.2.0 result: the limits are applied before the outputs that
    /// forward their input are made whole, so forwarding cannot multiply bytes unchecked.
    fn judge_flat(&self, result: DecodedResult, input: &InputRecord) -> StageResult {
        match result {
            Ok(outputs) => {
                let bytes: u64 = outputs
                    .iter()
                    .map(|output| flat::output_bytes(output, input))
                    .sum();
                if let Some(outcome) = self.over_limits(outputs.len(), bytes) {
                    return Err(outcome);
                }
                self.accept(
                    outputs
                        .into_iter()
                        .map(|output| flat::resolve(output, input))
                        .collect(),
                )
            }
            Err(error) => Err(self.guest_error(error)),
        }
    }

    /// The outcome when one record's outputs exceed the output limits.
    fn over_limits(&self, outputs: usize, bytes: u64) -> Option<RecordOutcome> {
        let limits = &self.limits;
        if outputs as u64 > u64::from(limits.max_outputs_per_record) {
            return Some(self.dead_letter(Failure {
                kind: FailureKind::OutputLimit,
                reason: format!(
                    "{outputs} outputs for one record; max_outputs_per_record is {}",
                    limits.max_outputs_per_record
                ),
            }));
        }
        if bytes > limits.max_output_bytes_per_record {
            return Some(self.dead_letter(Failure {
                kind: FailureKind::OutputLimit,
                reason: format!(
                    "{bytes} output bytes for one record; max_output_bytes_per_record is {}",
                    limits.max_output_bytes_per_record
                ),
            }));
        }
        None
    }

    /// Outputs within the limits, each checked against Kafka's rules.
    fn accept(&self, outputs: Vec<OutputRecord>) -> StageResult {
        let fields = self.limits.output_fields();
        for (index, output) in outputs.iter().enumerate() {
            if let Err(violation) = validation::check_fields(output, &fields) {
                return Err(self.dead_letter(Failure {
                    kind: FailureKind::InvalidOutput,
                    reason: format!("output {index}: {violation}"),
                }));
            }
        }
        Ok(outputs)
    }

    /// A guest's own error as an outcome. Guest text enters the host here: bounded before
    /// anything repeats it.
    fn guest_error(&self, error: bindings::TransformError) -> RecordOutcome {
        match error {
            bindings::TransformError::Skip(reason) => RecordOutcome::Skip {
                transform: self.id.clone(),
                reason: bound(reason),
            },
            bindings::TransformError::DeadLetter(reason) => self.dead_letter(Failure {
                kind: FailureKind::DeadLetter,
                reason,
            }),
            bindings::TransformError::Fatal(reason) => self.fatal(reason),
        }
    }

    fn wrong_count(&self, results: usize) -> RecordOutcome {
        self.dead_letter(Failure {
            kind: FailureKind::Trap,
            reason: format!("the transform returned {results} results for 1 record"),
        })
    }

    fn dead_letter(&self, failure: Failure) -> RecordOutcome {
        RecordOutcome::DeadLetter {
            transform: self.id.clone(),
            kind: failure.kind,
            reason: bound(failure.reason),
        }
    }

    fn fatal(&self, reason: String) -> RecordOutcome {
        RecordOutcome::Fatal {
            transform: self.id.clone(),
            reason: bound(reason),
        }
    }
}

/// What went wrong, on one line: the trap itself when there is one (not the wasm backtrace
/// wasmtime attaches as context), else the error and its causes.
fn error_chain(error: &wasmtime::Error) -> String {
    if let Some(trap) = error.downcast_ref::<wasmtime::Trap>() {
        return trap.to_string();
    }
    error
        .chain()
        .map(|cause| cause.to_string())
        .filter(|cause| !cause.starts_with("error while executing at wasm backtrace"))
        .map(|cause| cause.lines().next().unwrap_or_default().to_owned())
        .collect::<Vec<_>>()
        .join(": ")
}

fn output_bytes(output: &bindings::OutputRecord) -> u64 {
    let len = |bytes: Option<&[u8]>| bytes.map_or(0, <[u8]>::len) as u64;
    len(output.key.as_deref())
        + len(output.value.as_deref())
        + len(output.topic.as_deref().map(str::as_bytes))
        + output
            .headers
            .iter()
            .map(|h| (h.name.len() + h.value.len()) as u64)
            .sum::<u64>()
}

fn lower(record: &InputRecord) -> bindings::InputRecord {
    use sluice_record::SourceKind;
    // The bindings own their lists: 0.1.0 copies every field (0.2.0 does not).
    let bytes = |bytes: &Option<Bytes>| bytes.as_deref().map(<[u8]>::to_vec);
    bindings::InputRecord {
        key: bytes(&record.key),
        value: bytes(&record.value),
        headers: record
            .headers
            .iter()
            .map(|h| bindings::Header {
                name: h.name.to_string(),
                value: h.value.to_vec(),
            })
            .collect(),
        event_time_ms: record.event_time_ms,
        publish_time_ms: record.publish_time_ms,
        source: bindings::SourceInfo {
            kind: match record.source.kind {
                SourceKind::Pulsar => bindings::SourceKind::Pulsar,
                SourceKind::GcpPubsub => bindings::SourceKind::GcpPubsub,
                SourceKind::Other => bindings::SourceKind::Other,
            },
            topic: record.source.topic.to_string(),
            message_id: record.source.message_id.to_string(),
        },
    }
}

/// A guest output as a host record (its timestamp and topic are resolved by the chain).
fn lift(output: bindings::OutputRecord) -> OutputRecord {
    OutputRecord {
        key: output.key.map(Bytes::from),
        value: output.value.map(Bytes::from),
        headers: output
            .headers
            .into_iter()
            .map(|h| sluice_record::Header::new(h.name, h.value))
            .collect(),
        timestamp_ms: output.timestamp_ms,
        topic: output.topic,
    }
}
