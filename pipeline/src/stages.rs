//! The stages between source and ack, run once per Kafka producer:
//!
//! ```text
//! source records ──▶ transform lanes ──batches──▶ sink stage ──settlements──▶ ack stage
//! ```
//! When a stage fails the others stop at once, and every record not yet acked is handed back
//! with its ack handle, in source order, together with the chain and the source's record
//! channel. The pipeline runs the stages again on a new producer with those records first, so
//! a Kafka failure neither loses nor reorders what was in flight, and nothing depends on the
//! source redelivering it.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::future::BoxFuture;
use sluice_connectors::sink::{Sink, SinkError};
use sluice_connectors::source::SourceMessage;
use sluice_engine::TransformChain;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::PipelineError;
use crate::exactly_once::ExactlyOnce;
use crate::lanes::{self, LanesInput, TransformedBatch};
use crate::outcome_writer::OutcomeWriter;
use crate::stats::PipelineStats;

/// What the stages need: the lanes' input, and what the sink stage writes with.
pub(crate) struct Stages<S: Sink> {
    pub(crate) lanes: LanesInput,
    pub(crate) sink: Arc<S>,
    pub(crate) stats: Arc<PipelineStats>,
    pub(crate) exactly_once: Option<ExactlyOnce>,
}

/// What the stages give back when they end.
pub(crate) struct Leftovers {
    pub(crate) chains: Vec<TransformChain>,
    pub(crate) records: mpsc::Receiver<SourceMessage>,
    /// Every record read but not acked, in source order per key.
    pub(crate) unacked: VecDeque<SourceMessage>,
    pub(crate) exactly_once: Option<ExactlyOnce>,
}

/// A record whose outputs are produced, waiting for Kafka to acknowledge all of them.
struct Settlement {
    message: SourceMessage,
    delivered: BoxFuture<'static, Result<(), SinkError>>,
}

impl<S: Sink> Stages<S> {
    /// Runs until the record channel closes and everything is acked, or a stage fails. The
    /// leftovers are `None` only when a transform thread died.
    pub(crate) async fn run(self) -> (Option<Leftovers>, Result<(), PipelineError>) {
        let Stages {
            lanes,
            sink,
            stats,
            exactly_once,
        } = self;
        let pipeline = lanes.pipeline.clone();
        let max_in_flight = lanes.max_in_flight;
        let abort = CancellationToken::new();
        let (batches_tx, batches_rx) = mpsc::channel(max_in_flight / lanes.batch_size + 1);
        let (settle_tx, settle_rx) = mpsc::channel(max_in_flight);
        let lanes = lanes::start(lanes, batches_tx, &abort);
        let writer = OutcomeWriter {
            pipeline: pipeline.clone(),
            sink,
            stats: stats.clone(),
            exactly_once,
        };
        let sink_stage = tokio::spawn(sink_stage(writer, batches_rx, settle_tx, abort.clone()));
        let ack_stage = tokio::spawn(ack_stage(pipeline.clone(), settle_rx, stats, abort.clone()));
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

/// Produces the outputs (or dead-letter copies) of each record and passes them on with the
/// record to the ack stage.
async fn sink_stage<S: Sink>(
    mut writer: OutcomeWriter<S>,
    mut batches: mpsc::Receiver<TransformedBatch>,
    settlements: mpsc::Sender<Settlement>,
    abort: CancellationToken,
) -> SinkStageEnd<S> {
    loop {
        let batch = tokio::select! {
            biased;
            _ = abort.cancelled() => None,
            batch = batches.recv() => batch,
        };
        let Some(mut batch) = batch else {
            return (Ok(()), Vec::new(), batches, writer);
        };
        let outcomes = std::mem::take(&mut batch.outcomes);
        let mut messages = batch.into_messages();
        for outcome in outcomes {
            let message = messages.next().expect("one record per outcome");
            if abort.is_cancelled() {
                return (Ok(()), rest(message, messages), batches, writer);
            }
            match writer.write(&message.record, outcome).await {
                Ok(deliveries) => {
                    let delivered = Box::pin(async move {
                        for delivery in deliveries {
                            delivery.await?;
                        }
                        Ok(())
                    });
                    let settlement = Settlement { message, delivered };
                    if let Err(unsent) = settlements.send(settlement).await {
                        return (Ok(()), rest(unsent.0.message, messages), batches, writer);
                    }
                }
                Err(error) => {
                    abort.cancel();
                    return (Err(error), rest(message, messages), batches, writer);
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
                        let latency_ms = sluice_record::now_ms().saturating_sub(published_ms).max(0);
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
