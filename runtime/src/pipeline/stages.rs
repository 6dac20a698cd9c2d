//! The stages between source and ack, run once per Kafka producer:
//!
//! ```text
//! source records ──▶ transform thread ──batches──▶ sink stage ──settlements──▶ ack stage
//! ```
//! When a stage fails the others stop at once, and every record not yet acked is handed back
//! with its ack handle, in source order, together with the chain and the source's record
//! channel. The pipeline runs the stages again on a new producer with those records first, so
//! a Kafka failure neither loses nor reorders what was in flight, and nothing depends on the
//! source redelivering it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::produce::produce_outcome;
use super::{PipelineControl, PipelineError, PipelineStats};
use crate::record::InputRecord;
use crate::sink::{KafkaSink, SinkError};
use crate::source::{AckHandle, SourceMessage};
use crate::transform::{RecordOutcome, TransformChain};

/// What the stages need.
pub(super) struct Stages {
    pub(super) pipeline: String,
    pub(super) control: Arc<PipelineControl>,
    pub(super) chain: TransformChain,
    pub(super) records: mpsc::Receiver<SourceMessage>,
    /// Records to run before any from `records`: those in flight at the last failure.
    pub(super) replay: VecDeque<SourceMessage>,
    pub(super) sink: Arc<KafkaSink>,
    pub(super) stats: Arc<PipelineStats>,
    pub(super) batch_size: usize,
    pub(super) max_in_flight: usize,
}

/// What the stages give back when they end.
pub(super) struct Leftovers {
    pub(super) chain: TransformChain,
    pub(super) records: mpsc::Receiver<SourceMessage>,
    /// Every record read but not acked, oldest first.
    pub(super) unacked: VecDeque<SourceMessage>,
}

/// Records of one transform call, with their outcomes.
struct TransformedBatch {
    records: Vec<InputRecord>,
    acks: Vec<AckHandle>,
    outcomes: Vec<RecordOutcome>,
}

impl TransformedBatch {
    fn into_messages(self) -> impl Iterator<Item = SourceMessage> {
        self.records
            .into_iter()
            .zip(self.acks)
            .map(|(record, ack)| SourceMessage { record, ack })
    }
}

/// A record whose outputs are produced, waiting for Kafka to acknowledge all of them.
struct Settlement {
    message: SourceMessage,
    delivered: BoxFuture<'static, Result<(), SinkError>>,
}

impl Stages {
    /// Runs until the record channel closes and everything is acked, or a stage fails. The
    /// leftovers are `None` only when the transform thread died.
    pub(super) async fn run(self) -> (Option<Leftovers>, Result<(), PipelineError>) {
        let Stages {
            pipeline,
            control,
            chain,
            records,
            replay,
            sink,
            stats,
            batch_size,
            max_in_flight,
        } = self;
        let abort = CancellationToken::new();
        let (batches_tx, batches_rx) = mpsc::channel(max_in_flight / batch_size + 1);
        let (settle_tx, settle_rx) = mpsc::channel(max_in_flight);
        let transform_thread = spawn_transform_thread(
            &pipeline,
            TransformInput {
                chain,
                records,
                replay,
                control,
            },
            batches_tx,
            batch_size,
            abort.clone(),
        );
        let sink_stage = tokio::spawn(sink_stage(
            pipeline.clone(),
            sink,
            batches_rx,
            settle_tx,
            stats.clone(),
            abort.clone(),
        ));
        let ack_stage = tokio::spawn(ack_stage(pipeline.clone(), settle_rx, stats, abort.clone()));
        let (sink_result, unproduced, batches_back) =
            sink_stage.await.expect("sink stage panicked");
        let (ack_result, mut unacked) = ack_stage.await.expect("ack stage panicked");
        // Wakes the transform thread if it still waits for records or for room to send.
        abort.cancel();
        let thread = tokio::task::spawn_blocking(move || transform_thread.join())
            .await
            .expect("joining the transform thread panicked");
        let result = sink_result.and(ack_result);
        let Ok((input, unsent)) = thread else {
            return (
                None,
                result.and(Err(PipelineError::TransformThread { pipeline })),
            );
        };
        // Source order: settled-but-unacked, then the batch being produced, then queued
        // batches, then the batch the transform thread could not send.
        unacked.extend(unproduced);
        let mut batches_back = batches_back;
        while let Ok(batch) = batches_back.try_recv() {
            unacked.extend(batch.into_messages());
        }
        unacked.extend(unsent.into_iter().flat_map(TransformedBatch::into_messages));
        let TransformInput {
            chain,
            records,
            replay,
            ..
        } = input;
        unacked.extend(replay);
        (
            Some(Leftovers {
                chain,
                records,
                unacked,
            }),
            result,
        )
    }
}

/// Where the transform thread takes records from (the replay queue first), and the chain
/// it runs them through, whose versions the admin API may swap between batches.
struct TransformInput {
    chain: TransformChain,
    records: mpsc::Receiver<SourceMessage>,
    replay: VecDeque<SourceMessage>,
    control: Arc<PipelineControl>,
}

impl TransformInput {
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
            let first = runtime.block_on(async {
                tokio::select! {
                    biased;
                    _ = abort.cancelled() => Err(()),
                    _ = control.swap_posted() => Ok(None),
                    message = records.recv() => message.map(Some).ok_or(()),
                }
            });
            match first {
                Ok(Some(first)) => batch.push(first),
                Ok(None) => self.control.apply_swap(&mut self.chain),
                Err(()) => return None,
            }
        }
        self.control.apply_swap(&mut self.chain);
        while batch.len() < batch_size {
            match self.records.try_recv() {
                Ok(message) => batch.push(message),
                Err(_) => break,
            }
        }
        Some(batch)
    }
}

/// WASM calls are synchronous and CPU-bound: they run on a thread of their own, batching
/// whatever is queued, so a busy guest never stalls the async reactor. The thread gives back
/// its input and the batch it could not send.
fn spawn_transform_thread(
    pipeline: &str,
    mut input: TransformInput,
    batches: mpsc::Sender<TransformedBatch>,
    batch_size: usize,
    abort: CancellationToken,
) -> std::thread::JoinHandle<(TransformInput, Option<TransformedBatch>)> {
    let runtime = tokio::runtime::Handle::current();
    std::thread::Builder::new()
        .name(format!("transform-{pipeline}"))
        .spawn(move || {
            while let Some(messages) = input.next_batch(&runtime, batch_size, &abort) {
                let (records, acks): (Vec<_>, Vec<_>) =
                    messages.into_iter().map(|m| (m.record, m.ack)).unzip();
                let stats = &input.control.stats;
                let span = tracing::debug_span!("batch", records = records.len());
                let started = Instant::now();
                let outcomes = span.in_scope(|| input.chain.run_batch(&records));
                stats.batch_seconds.observe(started.elapsed().as_secs_f64());
                stats.batch_size.observe(records.len() as f64);
                debug_assert_eq!(outcomes.len(), records.len());
                let batch = TransformedBatch {
                    records,
                    acks,
                    outcomes,
                };
                let room = runtime.block_on(async {
                    tokio::select! {
                        biased;
                        _ = abort.cancelled() => None,
                        room = batches.reserve() => room.ok(),
                    }
                });
                match room {
                    Some(room) => room.send(batch),
                    None => return (input, Some(batch)),
                }
            }
            (input, None)
        })
        .expect("cannot spawn the transform thread")
}

/// Produces the outputs (or dead-letter copies) of each record and passes them on with the
/// record to the ack stage. Gives back the records of the batch it did not finish, and the
/// batch channel.
async fn sink_stage(
    pipeline: String,
    sink: Arc<KafkaSink>,
    mut batches: mpsc::Receiver<TransformedBatch>,
    settlements: mpsc::Sender<Settlement>,
    stats: Arc<PipelineStats>,
    abort: CancellationToken,
) -> (
    Result<(), PipelineError>,
    Vec<SourceMessage>,
    mpsc::Receiver<TransformedBatch>,
) {
    loop {
        let batch = tokio::select! {
            biased;
            _ = abort.cancelled() => None,
            batch = batches.recv() => batch,
        };
        let Some(mut batch) = batch else {
            return (Ok(()), Vec::new(), batches);
        };
        let outcomes = std::mem::take(&mut batch.outcomes);
        let mut messages = batch.into_messages();
        for outcome in outcomes {
            let message = messages.next().expect("one record per outcome");
            if abort.is_cancelled() {
                return (Ok(()), rest(message, messages), batches);
            }
            match produce_outcome(&pipeline, &sink, &message.record, outcome, &stats).await {
                Ok(deliveries) => {
                    let delivered = Box::pin(async move {
                        for delivery in deliveries {
                            delivery.wait().await?;
                        }
                        Ok(())
                    });
                    let settlement = Settlement { message, delivered };
                    if let Err(unsent) = settlements.send(settlement).await {
                        return (Ok(()), rest(unsent.0.message, messages), batches);
                    }
                }
                Err(error) => {
                    abort.cancel();
                    return (Err(error), rest(message, messages), batches);
                }
            }
        }
    }
}

fn rest(first: SourceMessage, others: impl Iterator<Item = SourceMessage>) -> Vec<SourceMessage> {
    std::iter::once(first).chain(others).collect()
}

/// Waits for each record's deliveries, in source order, and acks it at the source. When a
/// delivery fails, or another stage does, gives back every record not acked, oldest first.
async fn ack_stage(
    pipeline: String,
    mut settlements: mpsc::Receiver<Settlement>,
    stats: Arc<PipelineStats>,
    abort: CancellationToken,
) -> (Result<(), PipelineError>, VecDeque<SourceMessage>) {
    let mut pending: VecDeque<Settlement> = VecDeque::new();
    let mut open = true;
    let result = loop {
        if !open && pending.is_empty() {
            break Ok(());
        }
        tokio::select! {
            biased;
            _ = abort.cancelled() => break Ok(()),
            delivered = next_delivered(&mut pending), if !pending.is_empty() => match delivered {
                Ok(message) => {
                    if let Some(published_ms) = message.record.publish_time_ms {
                        let latency_ms = crate::unix_time_ms().saturating_sub(published_ms).max(0);
                        stats.latency.observe(latency_ms as f64 / 1000.0);
                    }
                    message.ack.ack();
                    stats.acked.inc();
                }
                Err(source) => {
                    abort.cancel();
                    break Err(PipelineError::sink(&pipeline, source));
                }
            },
            settlement = settlements.recv(), if open => match settlement {
                Some(settlement) => pending.push_back(settlement),
                None => open = false,
            },
        }
    };
    let mut unacked: VecDeque<SourceMessage> = pending.into_iter().map(|s| s.message).collect();
    // The sink stage stops at its next record once aborted; take what it still sends.
    while let Some(settlement) = settlements.recv().await {
        unacked.push_back(settlement.message);
    }
    (result, unacked)
}

/// The oldest pending record once all its outputs are delivered. Cancel-safe: the boxed
/// future keeps its progress, and the record leaves the queue only once delivered.
async fn next_delivered(pending: &mut VecDeque<Settlement>) -> Result<SourceMessage, SinkError> {
    let oldest = pending
        .front_mut()
        .expect("only polled with pending records");
    oldest.delivered.as_mut().await?;
    Ok(pending.pop_front().expect("still there").message)
}
