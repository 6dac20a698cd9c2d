//! The stages between source and ack, run once per Kafka producer:
//!
//! ```text
//! source records ──▶ transform lanes ──batches──▶ sink stage ──settlements──▶ ack stage
//!                                                     ▲                           │
//!                                                     └──── refused deliveries ───┘
//! ```
//! When a stage fails the others stop at once, and every record not yet acked is handed back
//! with its ack handle, in source order, together with the chain and the source's record
//! channel. The pipeline runs the stages again on a new producer with those records first, so
//! a Kafka failure neither loses nor reorders what was in flight, and nothing depends on the
//! source redelivering it. With exactly-once on transactions, the sink stage also commits the
//! transactions that are due (after each batch, on a timer, and all of them when the input
//! ends), and a record's ack waits for the commit of its transaction. Outside transactions,
//! a record whose delivery the sink refused goes back to the sink stage for its dead-letter
//! copy (with transactions, a refused delivery fails the commit instead:
//! `SinkError::RefusedInTransaction`).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use futures::future::BoxFuture;
use sluice_connectors::sink::{Sink, SinkError};
use sluice_connectors::source::{Placement, SourceMessage};
use sluice_engine::TransformChain;
use sluice_record::{InputRecord, identity};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::error::PipelineError;
use crate::exactly_once::ExactlyOnce;
use crate::lanes::{self, LanesInput, OpenScope, TransformedBatch};
use crate::outcome_writer::{Awaited, OutcomeWriter, Settle, Settled};
use crate::state::StateLog;
use crate::stats::PipelineStats;
use crate::windows::Windows;

/// What the stages need: the lanes' input, and what the sink stage writes with.
pub(crate) struct Stages<S: Sink> {
    pub(crate) lanes: LanesInput,
    pub(crate) sink: Arc<S>,
    pub(crate) stats: Arc<PipelineStats>,
    pub(crate) exactly_once: Option<ExactlyOnce<S>>,
    /// The window stages, if any (kept by the pipeline across restarts).
    pub(crate) windows: Option<Arc<Mutex<Windows>>>,
    /// Keyed state written to its changelog outside transactions.
    pub(crate) state_log: Option<StateLog>,
}

/// What the stages give back when they end.
pub(crate) struct Leftovers<S: Sink> {
    pub(crate) chains: Vec<TransformChain>,
    pub(crate) records: mpsc::Receiver<SourceMessage>,
    /// Every record read but not acked, in source order per key.
    pub(crate) unacked: VecDeque<SourceMessage>,
    pub(crate) exactly_once: Option<ExactlyOnce<S>>,
}

/// A record whose outputs are produced, waiting for Kafka to acknowledge all of them (or,
/// with transactions, for its transaction to commit).
struct Settlement<D> {
    message: SourceMessage,
    delivered: Delivered<D>,
    /// The output index of a dead-letter copy, should the sink refuse a delivery.
    next_index: u32,
    /// The deliveries are of its dead-letter copy (a refusal of it cannot be dead-lettered).
    dead_lettered: bool,
}

/// Resolves once every delivery of a record resolved (or its transaction committed), with
/// how the record ends: else the first failure of the connection, else the first refusal of
/// a record (docs/sandbox.md: that record is dead-lettered). Outside transactions it polls
/// the deliveries in place: no box and no task per record on the hot path.
enum Delivered<D> {
    /// Outside transactions: the deliveries not yet resolved, in order, and the first
    /// refusal among those that did.
    Deliveries {
        deliveries: smallvec::IntoIter<[D; 1]>,
        current: Option<D>,
        refused: Option<SinkError>,
    },
    /// With transactions: the commit of its transaction (a refusal inside it fails the
    /// commit, never one record's settlement), or a settlement already known.
    Settle(Settle),
    /// Its dead-letter copy, asked of the sink stage (rare: boxed).
    Copy(BoxFuture<'static, Result<Settled, Undelivered>>),
}

impl<D> Future for Delivered<D>
where
    D: Future<Output = Result<(), SinkError>> + Unpin,
{
    type Output = Result<Settled, Undelivered>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Delivered::Deliveries {
                deliveries,
                current,
                refused,
            } => loop {
                let Some(delivery) = current.as_mut() else {
                    return Poll::Ready(
                        refused
                            .take()
                            .map_or(Ok(Settled::Done), |error| Err(Undelivered::Sink(error))),
                    );
                };
                match ready!(Pin::new(delivery).poll(cx)) {
                    Ok(()) => {}
                    Err(error) if error.is_record_refusal() => {
                        refused.get_or_insert(error);
                    }
                    Err(error) => return Poll::Ready(Err(Undelivered::Sink(error))),
                }
                *current = deliveries.next();
            },
            Delivered::Settle(settle) => settle.as_mut().poll(cx).map_err(Undelivered::Sink),
            Delivered::Copy(copy) => copy.as_mut().poll(cx),
        }
    }
}

/// Why a record's deliveries did not all succeed.
enum Undelivered {
    /// The sink failed, or refused this record ([`SinkError::is_record_refusal`]).
    Sink(SinkError),
    /// Its dead-letter copy could not be made (no dead-letter topic, `sink.oversized =
    /// "fail"`).
    Copy(PipelineError),
    /// The sink stage ended (the stages are stopping) before it made the copy.
    Gone,
}

fn delivered<D>(awaited: Awaited<D>) -> Delivered<D> {
    match awaited {
        Awaited::Settle(settle) => Delivered::Settle(settle),
        Awaited::Deliveries(deliveries) => {
            let mut deliveries = deliveries.into_iter();
            Delivered::Deliveries {
                current: deliveries.next(),
                deliveries,
                refused: None,
            }
        }
    }
}

/// The sink refused the delivery of an output of `record` (outside transactions): the ack
/// stage asks the sink stage (which owns the writer) for its dead-letter copy, as output
/// `index`.
struct RefusedDelivery<D> {
    record: InputRecord,
    placement: Placement,
    index: u32,
    error: SinkError,
    reply: oneshot::Sender<Result<Delivered<D>, PipelineError>>,
}

impl<S: Sink> Stages<S> {
    /// Runs until the record channel closes and everything is acked, a stage fails, or
    /// `give_up` is cancelled (then every stage stops at once). The leftovers are `None` only
    /// when a transform thread died.
    pub(crate) async fn run(
        self,
        give_up: &CancellationToken,
    ) -> (Option<Leftovers<S>>, Result<(), PipelineError>) {
        let Stages {
            mut lanes,
            sink,
            stats,
            exactly_once,
            windows,
            state_log,
        } = self;
        // Keyed state: the lanes ask the sink stage to open a scope (and restore its state)
        // before they transform its first record.
        let (opens_tx, opens_rx) = mpsc::unbounded_channel();
        let durable =
            matches!(exactly_once, Some(ExactlyOnce::Transactions(_))) || state_log.is_some();
        if let (Some(state), true) = (&mut lanes.state, durable) {
            state.opens = Some(opens_tx);
        }
        let pipeline = lanes.pipeline.clone();
        let max_in_flight = lanes.max_in_flight;
        let abort = give_up.child_token();
        let (batches_tx, batches_rx) = mpsc::channel(max_in_flight / lanes.batch_size + 1);
        let (settle_tx, settle_rx) = mpsc::channel(max_in_flight);
        // Unbounded, yet one at most: the ack stage waits for each copy before the next.
        let (refused_tx, refused_rx) = mpsc::unbounded_channel();
        let lanes = lanes::start(lanes, batches_tx, &abort);
        let writer = OutcomeWriter {
            stamper: identity::Stamper::new(&pipeline),
            pipeline: pipeline.clone(),
            sink,
            stats: stats.clone(),
            exactly_once,
            deliveries: Default::default(),
            windows,
            window_changes: Vec::new(),
            state_log,
        };
        let sink_stage = tokio::spawn(sink_stage(
            writer,
            batches_rx,
            SinkStageChannels {
                settlements: settle_tx,
                refused: refused_rx,
                opens: opens_rx,
            },
            abort.clone(),
        ));
        let ack_stage = tokio::spawn(ack_stage(
            pipeline.clone(),
            AckStageChannels {
                settlements: settle_rx,
                refused: refused_tx,
            },
            stats,
            abort.clone(),
        ));
        let (sink_result, unproduced, batches_back, writer) =
            sink_stage.await.expect("sink stage panicked");
        let (ack_result, mut unacked) = ack_stage.await.expect("ack stage panicked");
        // Wakes the lanes if they still wait for records or for room to send.
        abort.cancel();
        let result = sink_result.and(ack_result);
        let Some(joined) = lanes.join().await else {
            return (
                None,
                result.and(Err(PipelineError::TransformThread { pipeline })),
            );
        };
        // Source order per key: settled-but-unacked, then the batch being produced, then
        // queued batches, then what the lanes still held.
        unacked.extend(unproduced);
        let mut batches_back = batches_back;
        while let Ok(batch) = batches_back.try_recv() {
            unacked.extend(batch.into_messages());
        }
        unacked.extend(joined.held);
        (
            Some(Leftovers {
                chains: joined.chains,
                records: joined.records,
                unacked,
                exactly_once: writer.exactly_once,
            }),
            result,
        )
    }
}

/// What the sink stage gives back: its result, the records of the batch it did not finish,
/// the batch channel, and its writer.
type SinkStageEnd<S> = (
    Result<(), PipelineError>,
    Vec<SourceMessage>,
    mpsc::Receiver<TransformedBatch>,
    OutcomeWriter<S>,
);

/// The sink stage's ends of the channels to the ack stage.
struct SinkStageChannels<D> {
    settlements: mpsc::Sender<Settlement<D>>,
    refused: mpsc::UnboundedReceiver<RefusedDelivery<D>>,
    opens: mpsc::UnboundedReceiver<OpenScope>,
}

/// Produces the outputs (or dead-letter copies) of each record and passes them on with the
/// record to the ack stage; commits the transactions that are due; produces the dead-letter
/// copy of a record whose delivery the sink refused. Serves those until the ack stage is
/// done, also after the last batch (once every open transaction committed).
async fn sink_stage<S: Sink>(
    mut writer: OutcomeWriter<S>,
    mut batches: mpsc::Receiver<TransformedBatch>,
    channels: SinkStageChannels<S::Delivery>,
    abort: CancellationToken,
) -> SinkStageEnd<S> {
    let SinkStageChannels {
        settlements,
        mut refused,
        mut opens,
    } = channels;
    // Dropped after the last batch: the ack stage then knows no more records come.
    let mut settlements = Some(settlements);
    loop {
        let commit_at = writer.next_commit();
        let batch = tokio::select! {
            biased;
            _ = abort.cancelled() => return (Ok(()), Vec::new(), batches, writer),
            request = refused.recv() => match request {
                Some(request) => {
                    let copy = writer
                        .refused_delivery(&request.record, &request.placement, request.index, request.error)
                        .await;
                    let _ = request
                        .reply
                        .send(copy.map(|deliveries| delivered(Awaited::Deliveries(deliveries))));
                    continue;
                }
                // The ack stage is done.
                None => return (Ok(()), Vec::new(), batches, writer),
            },
            Some(open) = opens.recv() => {
                let opened = tokio::select! {
                    biased;
                    _ = abort.cancelled() => return (Ok(()), Vec::new(), batches, writer),
                    opened = writer.open_state(&open.record, &open.placement) => opened,
                };
                if let Err(error) = opened {
                    abort.cancel();
                    return (Err(error), Vec::new(), batches, writer);
                }
                let _ = open.opened.send(());
                continue;
            }
            _ = sleep_until(commit_at) => {
                if let Err(error) = commit(&mut writer, false, &abort).await {
                    abort.cancel();
                    return (Err(error), Vec::new(), batches, writer);
                }
                continue;
            }
            batch = batches.recv(), if settlements.is_some() => batch,
        };
        let (Some(mut batch), Some(settle)) = (batch, &settlements) else {
            // The input ended: what is open commits, and the ack stage acks it.
            if let Err(error) = commit(&mut writer, true, &abort).await {
                abort.cancel();
                return (Err(error), Vec::new(), batches, writer);
            }
            settlements = None;
            continue;
        };
        let outcomes = std::mem::take(&mut batch.outcomes);
        let mut changes = std::mem::take(&mut batch.changes).into_iter();
        let mut messages = batch.into_messages();
        for outcome in outcomes {
            let message = messages.next().expect("one record per outcome");
            let changes = changes.next().unwrap_or_default();
            let placement = *message.ack.placement();
            // A write may wait for the client's queue (a stuck Kafka): an abort must not.
            let written = tokio::select! {
                biased;
                _ = abort.cancelled() => None,
                written = writer.write(&message.record, &placement, outcome, &changes) => Some(written),
            };
            match written {
                None => return (Ok(()), rest(message, messages), batches, writer),
                Some(Ok(written)) => {
                    let settlement = Settlement {
                        message,
                        delivered: delivered(written.awaited),
                        next_index: written.next_index,
                        dead_lettered: written.dead_lettered,
                    };
                    if let Err(unsent) = settle.send(settlement).await {
                        return (Ok(()), rest(unsent.0.message, messages), batches, writer);
                    }
                }
                Some(Err(error)) => {
                    abort.cancel();
                    return (Err(error), rest(message, messages), batches, writer);
                }
            }
        }
        if let Err(error) = commit(&mut writer, false, &abort).await {
            abort.cancel();
            return (Err(error), Vec::new(), batches, writer);
        }
    }
}

/// Commits the transactions that are due (all open ones with `all`), unless the stages are
/// aborted first: a stop that gave up on draining does not wait for a stuck Kafka, and the
/// transactions' records stay unacked (a commit cut short that did land is found in the
/// checkpoint when they come again).
async fn commit<S: Sink>(
    writer: &mut OutcomeWriter<S>,
    all: bool,
    abort: &CancellationToken,
) -> Result<(), PipelineError> {
    tokio::select! {
        biased;
        _ = abort.cancelled() => Ok(()),
        committed = writer.commit_due(all) => committed,
    }
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

fn rest(first: SourceMessage, others: impl Iterator<Item = SourceMessage>) -> Vec<SourceMessage> {
    std::iter::once(first).chain(others).collect()
}

/// The ack stage's ends of the channels from the sink stage.
struct AckStageChannels<D> {
    settlements: mpsc::Receiver<Settlement<D>>,
    refused: mpsc::UnboundedSender<RefusedDelivery<D>>,
}

/// Waits for each record's deliveries (or its transaction's commit), in source order, and
/// acks it at the source (or lets it go, when its partition moved to another instance). When
/// the sink refused a delivery, waits for the record's dead-letter copy instead. When a
/// delivery fails, or another stage does, gives back every record not acked, oldest first.
async fn ack_stage<D>(
    pipeline: String,
    channels: AckStageChannels<D>,
    stats: Arc<PipelineStats>,
    abort: CancellationToken,
) -> (Result<(), PipelineError>, VecDeque<SourceMessage>)
where
    D: Future<Output = Result<(), SinkError>> + Unpin + Send + 'static,
{
    let AckStageChannels {
        mut settlements,
        refused,
    } = channels;
    let mut pending: VecDeque<Settlement<D>> = VecDeque::new();
    let mut open = true;
    let result = loop {
        if !open && pending.is_empty() {
            break Ok(());
        }
        tokio::select! {
            biased;
            _ = abort.cancelled() => break Ok(()),
            delivered = next_delivered(&mut pending), if !pending.is_empty() => match delivered {
                Ok((message, Settled::Done)) => {
                    if let Some(published_ms) = message.record.publish_time_ms {
                        let latency_ms = sluice_record::now_ms().saturating_sub(published_ms).max(0);
                        stats.latency.observe(latency_ms as f64 / 1000.0);
                    }
                    message.ack.ack();
                    stats.acked.inc();
                }
                Ok((message, Settled::Relinquish)) => message.ack.relinquish(),
                Err(Undelivered::Sink(error)) => {
                    let oldest = pending.front_mut().expect("the one that failed");
                    if error.is_record_refusal() && !oldest.dead_lettered {
                        if !dead_letter_instead(oldest, error, &refused) {
                            break Ok(());
                        }
                        continue;
                    }
                    abort.cancel();
                    break Err(PipelineError::sink(&pipeline, error));
                }
                Err(Undelivered::Copy(error)) => {
                    abort.cancel();
                    break Err(error);
                }
                Err(Undelivered::Gone) => break Ok(()),
            },
            settlement = settlements.recv(), if open => match settlement {
                Some(settlement) => pending.push_back(settlement),
                None => open = false,
            },
        }
    };
    // The sink stage serves refused deliveries until this is gone.
    drop(refused);
    let mut unacked: VecDeque<SourceMessage> = pending.into_iter().map(|s| s.message).collect();
    // The sink stage stops at its next record once aborted; take what it still sends.
    while let Some(settlement) = settlements.recv().await {
        unacked.push_back(settlement.message);
    }
    (result, unacked)
}

/// The sink refused a delivery of `settlement`'s record (`error`): it waits for the record's
/// dead-letter copy from now on. `false` when the sink stage is gone (the stages stop).
fn dead_letter_instead<D>(
    settlement: &mut Settlement<D>,
    error: SinkError,
    refused: &mpsc::UnboundedSender<RefusedDelivery<D>>,
) -> bool
where
    D: Future<Output = Result<(), SinkError>> + Unpin + Send + 'static,
{
    let (reply, copy) = oneshot::channel();
    let request = RefusedDelivery {
        record: settlement.message.record.clone(),
        placement: *settlement.message.ack.placement(),
        index: settlement.next_index,
        error,
        reply,
    };
    if refused.send(request).is_err() {
        return false;
    }
    settlement.dead_lettered = true;
    settlement.delivered = Delivered::Copy(Box::pin(async move {
        match copy.await {
            Ok(Ok(delivered)) => delivered.await,
            Ok(Err(error)) => Err(Undelivered::Copy(error)),
            Err(_) => Err(Undelivered::Gone),
        }
    }));
    true
}

/// The oldest pending record once all its outputs are delivered (or its transaction
/// committed), and how it ends. Cancel-safe: the settlement keeps its progress, and the
/// record leaves the queue only once delivered.
async fn next_delivered<D>(
    pending: &mut VecDeque<Settlement<D>>,
) -> Result<(SourceMessage, Settled), Undelivered>
where
    D: Future<Output = Result<(), SinkError>> + Unpin,
{
    let oldest = pending
        .front_mut()
        .expect("only polled with pending records");
    let settled = (&mut oldest.delivered).await?;
    Ok((pending.pop_front().expect("still there").message, settled))
}
