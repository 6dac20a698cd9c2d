//! Transform lanes (`parallelism`): each lane is a thread with its own instances of the chain.
//! Records are spread over the lanes by a hash of their key, so the records of one key go
//! through one lane in source order, and each lane hands its batches to the sink stage in
//! order: per-key order holds end to end while different keys are transformed in parallel.
//!
//! ```text
//!                         ┌▶ lane 0 (thread, chain) ─┐
//! source ──▶ dispatcher ──┼▶ lane 1 (thread, chain) ─┼──▶ sink stage
//!                         └▶ lane … ─────────────────┘
//! ```
//! With one lane there is no dispatcher (the lane reads the source's channel itself), unless
//! a group-by re-keys the records: the dispatcher does that, before it picks their lane, so
//! the lanes follow the new key.

use std::collections::{HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use sluice_connectors::source::{AckHandle, Placement, SourceMessage};
use sluice_engine::{BatchState, RecordOutcome, RecordStateContext, StateChange, TransformChain};
use sluice_record::InputRecord;

use crate::control::PipelineControl;
use crate::group_by::GroupBy;
use crate::schemas::Schemas;
use crate::state::{ScopeKey, StateStore, engine_scope, scope_key};

/// Records of one transform call, with their outcomes.
pub(crate) struct TransformedBatch {
    pub(crate) records: Vec<InputRecord>,
    pub(crate) acks: Vec<AckHandle>,
    pub(crate) outcomes: Vec<RecordOutcome>,
    /// Per record, the keyed-state changes it made (empty without state): they go to the
    /// changelog with its outputs.
    pub(crate) changes: Vec<Vec<StateChange>>,
}

/// A lane asks the sink stage to open the scope of `record` (fencing its older writers) and
/// restore its state, before it transforms the scope's first record.
pub(crate) struct OpenScope {
    pub(crate) record: InputRecord,
    pub(crate) placement: Placement,
    pub(crate) opened: oneshot::Sender<()>,
}

/// Keyed state, as the lanes use it.
#[derive(Clone)]
pub(crate) struct LaneState {
    pub(crate) store: Arc<StateStore>,
    /// Exactly-once on transactions: where scopes are opened (set by the stages). Without
    /// it, a scope starts empty.
    pub(crate) opens: Option<mpsc::UnboundedSender<OpenScope>>,
}

impl LaneState {
    /// Makes sure the scope of every record of `messages` is restored; `false` when aborted
    /// (or the sink stage ended) first.
    fn prepare(
        &self,
        runtime: &tokio::runtime::Handle,
        messages: &[SourceMessage],
        abort: &CancellationToken,
    ) -> bool {
        let Some(opens) = &self.opens else {
            return true;
        };
        let mut asked: Vec<ScopeKey> = Vec::new();
        for message in messages {
            let placement = *message.ack.placement();
            let key = scope_key(&placement);
            if asked.contains(&key) || self.store.holds(key) {
                continue;
            }
            asked.push(key);
            let (opened, wait) = oneshot::channel();
            let request = OpenScope {
                record: message.record.clone(),
                placement,
                opened,
            };
            if opens.send(request).is_err() {
                return false;
            }
            let opened = runtime.block_on(async {
                tokio::select! {
                    biased;
                    _ = abort.cancelled() => false,
                    opened = wait => opened.is_ok(),
                }
            });
            if !opened {
                return false;
            }
        }
        true
    }

    /// What the engine needs to give `records` their state.
    fn lend(&self, records: &[InputRecord], acks: &[AckHandle]) -> BatchState {
        let contexts = (records.iter().zip(acks))
            .map(|(record, ack)| {
                let placement = ack.placement();
                let context = RecordStateContext {
                    scope: engine_scope(scope_key(placement)),
                    writable: self.store.writable(record, placement),
                };
                (record.source.message_id.clone(), context)
            })
            .collect();
        BatchState {
            backend: self.store.clone(),
            contexts,
        }
    }
}

impl TransformedBatch {
    /// Records given back before they were transformed.
    fn untransformed(records: Vec<InputRecord>, acks: Vec<AckHandle>) -> Self {
        Self {
            records,
            acks,
            outcomes: Vec::new(),
            changes: Vec::new(),
        }
    }

    pub(crate) fn into_messages(self) -> impl Iterator<Item = SourceMessage> {
        self.records
            .into_iter()
            .zip(self.acks)
            .map(|(record, ack)| SourceMessage { record, ack })
    }
}

/// What the lanes start from.
pub(crate) struct LanesInput {
    pub(crate) pipeline: String,
    pub(crate) control: Arc<PipelineControl>,
    /// One chain per lane.
    pub(crate) chains: Vec<TransformChain>,
    pub(crate) records: mpsc::Receiver<SourceMessage>,
    /// Records to run before any from `records`: those in flight at the last failure.
    pub(crate) replay: VecDeque<SourceMessage>,
    pub(crate) batch_size: usize,
    pub(crate) max_in_flight: usize,
    /// Decoding before the chain and encoding after it.
    pub(crate) schemas: Arc<Schemas>,
    /// Re-keying before the lanes are picked (group-by).
    pub(crate) group_by: Option<GroupBy>,
    /// Keyed state, when a transform keeps some.
    pub(crate) state: Option<LaneState>,
}

/// Running lanes, to be joined once the stages after them ended.
pub(crate) struct RunningLanes {
    threads: Vec<std::thread::JoinHandle<(LaneInput, Option<TransformedBatch>)>>,
    dispatcher: Option<tokio::task::JoinHandle<Dispatched>>,
}

/// What the dispatcher gives back: the source's channel, and a record it took but could not
/// hand to its lane.
type Dispatched = (mpsc::Receiver<SourceMessage>, Option<SourceMessage>);

/// What joined lanes give back.
pub(crate) struct JoinedLanes {
    pub(crate) chains: Vec<TransformChain>,
    pub(crate) records: mpsc::Receiver<SourceMessage>,
    /// Records taken from the source but not transformed and sent on, in per-key order.
    pub(crate) held: Vec<SourceMessage>,
}

/// Starts one thread per chain; transformed batches go to `batches`.
pub(crate) fn start(
    input: LanesInput,
    batches: mpsc::Sender<TransformedBatch>,
    abort: &CancellationToken,
) -> RunningLanes {
    let LanesInput {
        pipeline,
        control,
        chains,
        records,
        replay,
        batch_size,
        max_in_flight,
        schemas,
        group_by,
        state,
    } = input;
    let lanes = chains.len();
    let mut replays: Vec<VecDeque<SourceMessage>> = (0..lanes).map(|_| VecDeque::new()).collect();
    // Replayed records were re-keyed when first dispatched (re-keying again gives the same key).
    for message in replay {
        replays[lane_of(&message.record, lanes)].push_back(message);
    }
    let (receivers, dispatcher) = if lanes == 1 && group_by.is_none() {
        (vec![records], None)
    } else {
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..lanes).map(|_| mpsc::channel(max_in_flight)).unzip();
        let dispatcher = tokio::spawn(dispatch(
            records,
            senders,
            group_by,
            control.clone(),
            abort.clone(),
        ));
        (receivers, Some(dispatcher))
    };
    let threads = chains
        .into_iter()
        .zip(receivers)
        .zip(replays)
        .enumerate()
        .map(|(lane, ((chain, records), replay))| {
            let input = LaneInput {
                lane,
                chain,
                records,
                replay,
                control: control.clone(),
                schemas: schemas.clone(),
                state: state.clone(),
            };
            spawn_lane(&pipeline, input, batches.clone(), batch_size, abort.clone())
        })
        .collect();
    RunningLanes {
        threads,
        dispatcher,
    }
}

impl RunningLanes {
    /// Waits for every lane to stop (the caller aborted them, or their input ended). `None`
    /// when a lane thread died.
    pub(crate) async fn join(self) -> Option<JoinedLanes> {
        let RunningLanes {
            threads,
            dispatcher,
        } = self;
        let joined = tokio::task::spawn_blocking(move || {
            threads
                .into_iter()
                .map(|thread| thread.join())
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .expect("joining the transform threads panicked")
        .ok()?;
        let mut chains = Vec::with_capacity(joined.len());
        let mut unsent = Vec::new();
        let mut replayed = Vec::new();
        let mut queued = Vec::new();
        let mut receivers = Vec::new();
        for (input, batch) in joined {
            unsent.extend(batch.into_iter().flat_map(TransformedBatch::into_messages));
            replayed.extend(input.replay);
            chains.push(input.chain);
            receivers.push(input.records);
        }
        // Per key (one lane): its unsent batch, then its replay queue, then what waits in
        // its channel, then what the dispatcher held.
        let records = match dispatcher {
            None => receivers.pop().expect("one lane"),
            Some(dispatcher) => {
                let (records, stuck) = dispatcher.await.expect("dispatcher panicked");
                for mut receiver in receivers {
                    while let Ok(message) = receiver.try_recv() {
                        queued.push(message);
                    }
                }
                queued.extend(stuck);
                records
            }
        };
        let mut held = unsent;
        held.append(&mut replayed);
        held.append(&mut queued);
        Some(JoinedLanes {
            chains,
            records,
            held,
        })
    }
}

/// The lane of a record: a hash of its key (of its message id when it has none).
fn lane_of(record: &InputRecord, lanes: usize) -> usize {
    if lanes == 1 {
        return 0;
    }
    // Fixed keys: the same key lands on the same lane in every run.
    let mut hasher = DefaultHasher::new();
    match &record.key {
        Some(key) => key.hash(&mut hasher),
        None => record.source.message_id.hash(&mut hasher),
    }
    (hasher.finish() % lanes as u64) as usize
}

/// Hands each source record to its lane (re-keyed first, with a group-by) until the source
/// ends or the lanes are aborted.
async fn dispatch(
    mut records: mpsc::Receiver<SourceMessage>,
    lanes: Vec<mpsc::Sender<SourceMessage>>,
    group_by: Option<GroupBy>,
    control: Arc<PipelineControl>,
    abort: CancellationToken,
) -> Dispatched {
    loop {
        let message = tokio::select! {
            biased;
            _ = abort.cancelled() => return (records, None),
            message = records.recv() => message,
        };
        // The source ended: dropping the senders ends the lanes once they are done.
        let Some(mut message) = message else {
            return (records, None);
        };
        if let Some(group_by) = &group_by
            && !group_by.rekey(&mut message.record)
        {
            control.stats.group_by_missing.inc();
        }
        let lane = &lanes[lane_of(&message.record, lanes.len())];
        match room_unless_aborted(lane, &abort).await {
            Some(room) => room.send(message),
            None => return (records, Some(message)),
        }
    }
}

/// Room for one item on `channel`; `None` when the lanes are aborted first (or the channel
/// closed): the caller then keeps the item and gives it back.
async fn room_unless_aborted<'a, T>(
    channel: &'a mpsc::Sender<T>,
    abort: &CancellationToken,
) -> Option<mpsc::Permit<'a, T>> {
    tokio::select! {
        biased;
        _ = abort.cancelled() => None,
        room = channel.reserve() => room.ok(),
    }
}

/// Where a lane takes records from (its replay queue first), and the chain it runs them
/// through, whose versions the admin API may swap between batches.
struct LaneInput {
    lane: usize,
    chain: TransformChain,
    records: mpsc::Receiver<SourceMessage>,
    replay: VecDeque<SourceMessage>,
    control: Arc<PipelineControl>,
    schemas: Arc<Schemas>,
    state: Option<LaneState>,
}

impl LaneInput {
    /// Up to `batch_size` records, waiting for the first; `None` on abort or end of input.
    /// A transform version posted meanwhile goes live before the batch is returned.
    fn next_batch(
        &mut self,
        runtime: &tokio::runtime::Handle,
        batch_size: usize,
        abort: &CancellationToken,
    ) -> Option<Vec<SourceMessage>> {
        let mut batch: Vec<SourceMessage> = Vec::with_capacity(batch_size);
        while batch.len() < batch_size {
            let Some(message) = self.replay.pop_front() else {
                break;
            };
            batch.push(message);
        }
        while batch.is_empty() {
            let records = &mut self.records;
            let control = &self.control;
            let lane = self.lane;
            let first = runtime.block_on(async {
                tokio::select! {
                    biased;
                    _ = abort.cancelled() => Err(()),
                    _ = control.swap_posted(lane) => Ok(None),
                    message = records.recv() => message.map(Some).ok_or(()),
                }
            });
            match first {
                Ok(Some(first)) => batch.push(first),
                Ok(None) => self.control.apply_swap(self.lane, &mut self.chain),
                Err(()) => return None,
            }
        }
        self.control.apply_swap(self.lane, &mut self.chain);
        while batch.len() < batch_size {
            match self.records.try_recv() {
                Ok(message) => batch.push(message),
                Err(_) => break,
            }
        }
        Some(batch)
    }
}

/// WASM calls are synchronous and CPU-bound: each lane runs on a thread of its own, batching
/// whatever is queued, so a busy guest never stalls the async reactor. The thread gives back
/// its input and the batch it could not send.
fn spawn_lane(
    pipeline: &str,
    mut input: LaneInput,
    batches: mpsc::Sender<TransformedBatch>,
    batch_size: usize,
    abort: CancellationToken,
) -> std::thread::JoinHandle<(LaneInput, Option<TransformedBatch>)> {
    let runtime = tokio::runtime::Handle::current();
    std::thread::Builder::new()
        .name(format!("transform-{pipeline}-{}", input.lane))
        .spawn(move || {
            while let Some(messages) = input.next_batch(&runtime, batch_size, &abort) {
                let prepared = (input.state.as_ref())
                    .is_none_or(|state| state.prepare(&runtime, &messages, &abort));
                let (records, acks): (Vec<_>, Vec<_>) =
                    messages.into_iter().map(|m| (m.record, m.ack)).unzip();
                if !prepared {
                    // Aborted while a scope opened: the records go back.
                    let batch = TransformedBatch::untransformed(records, acks);
                    return (input, Some(batch));
                }
                let stats = &input.control.stats;
                let span =
                    tracing::debug_span!("batch", lane = input.lane, records = records.len());
                let started = Instant::now();
                let lent = (input.state.as_ref()).map(|state| state.lend(&records, &acks));
                let mut changed: HashMap<Arc<str>, Vec<StateChange>> = HashMap::new();
                let chain = &mut input.chain;
                let run = |views: &[InputRecord]| {
                    span.in_scope(|| match lent {
                        None => chain.run_batch(views),
                        Some(lent) => {
                            let (outcomes, changes) = chain.run_batch_with_state(views, lent);
                            for (view, changes) in views.iter().zip(changes) {
                                if !changes.is_empty() {
                                    changed.insert(view.source.message_id.clone(), changes);
                                }
                            }
                            outcomes
                        }
                    })
                };
                let outcomes = if input.schemas.is_passthrough() {
                    run(&records)
                } else {
                    match run_with_schemas(&runtime, &input.schemas, run, &records, &abort) {
                        Some(outcomes) => outcomes,
                        // Aborted while a schema service did not answer: the records go back.
                        None => {
                            let batch = TransformedBatch::untransformed(records, acks);
                            return (input, Some(batch));
                        }
                    }
                };
                let changes = match &input.state {
                    None => Vec::new(),
                    Some(state) => (records.iter().zip(&acks))
                        .map(|(record, ack)| {
                            let changes = changed
                                .remove(&record.source.message_id)
                                .unwrap_or_default();
                            state.store.apply(scope_key(ack.placement()), &changes);
                            changes
                        })
                        .collect(),
                };
                stats.batch_seconds.observe(started.elapsed().as_secs_f64());
                stats.batch_size.observe(records.len() as f64);
                debug_assert_eq!(outcomes.len(), records.len());
                let batch = TransformedBatch {
                    records,
                    acks,
                    outcomes,
                    changes,
                };
                match runtime.block_on(room_unless_aborted(&batches, &abort)) {
                    Some(room) => room.send(batch),
                    None => return (input, Some(batch)),
                }
            }
            (input, None)
        })
        .expect("cannot spawn a transform thread")
}

/// Runs `records` through `run` (the chain) with the pipeline's codecs around it: each record
/// decoded into what the guest sees (or dead-lettered when it does not fit its schema), each
/// record's outputs encoded (or the record dead-lettered). Outcomes in `records`' order;
/// `None` when aborted while a schema service did not answer.
fn run_with_schemas(
    runtime: &tokio::runtime::Handle,
    schemas: &Schemas,
    run: impl FnOnce(&[InputRecord]) -> Vec<RecordOutcome>,
    records: &[InputRecord],
    abort: &CancellationToken,
) -> Option<Vec<RecordOutcome>> {
    let mut views = Vec::with_capacity(records.len());
    let mut source_schemas = Vec::with_capacity(records.len());
    // Per record: the outcome decided before the chain, if any.
    let mut decided = Vec::with_capacity(records.len());
    for record in records {
        match runtime.block_on(schemas.decode(record, abort))? {
            Ok(prepared) => {
                views.push(prepared.view);
                source_schemas.push(prepared.schema);
                decided.push(None);
            }
            Err(outcome) => decided.push(Some(outcome)),
        }
    }
    let transformed = if views.is_empty() {
        Vec::new()
    } else {
        run(&views)
    };
    debug_assert_eq!(transformed.len(), views.len());
    let mut transformed = transformed.into_iter().zip(source_schemas);
    let mut outcomes = Vec::with_capacity(records.len());
    for outcome in decided {
        let outcome = match outcome {
            Some(outcome) => outcome,
            None => {
                let (outcome, schema) = transformed.next().expect("one outcome per view");
                runtime.block_on(schemas.encode(outcome, schema.as_ref(), abort))?
            }
        };
        outcomes.push(outcome);
    }
    Some(outcomes)
}
