//! What one transformed record becomes in the sink: its outputs, or its dead-letter copy, each
//! stamped with its identity (pipeline, source message id, output index). With exactly-once
//! read back, outputs the sink already has are not sent again; with transactions, outputs go
//! into their scope's transaction, and a record a commit already covers is not written again.

use std::sync::Arc;

use futures::future::BoxFuture;
use sluice_connectors::sink::{OversizedPolicy, Sink, SinkError, TopicStatus};
use sluice_connectors::source::Placement;
use sluice_engine::RecordOutcome;
use sluice_record::dead_letter::{DeadLetter, dead_letter_record};
use sluice_record::identity;
use sluice_record::{InputRecord, OutputRecord};

use crate::error::PipelineError;
use crate::exactly_once::{self, Admission, ExactlyOnce, ReadBack};
use crate::stats::PipelineStats;

/// How a record ends once its outputs are in the sink for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    /// Ack it.
    Done,
    /// Its partition moved to another instance: let it go unacked.
    Relinquish,
}

/// Resolves once a record can be settled (or its outputs failed).
pub(crate) type Settle = BoxFuture<'static, Result<Settled, SinkError>>;

/// A settlement that is already known.
pub(crate) fn settled(settled: Settled) -> Settle {
    Box::pin(std::future::ready(Ok(settled)))
}

/// Writes the outcomes of transformed records to the sink.
pub(crate) struct OutcomeWriter<S: Sink> {
    pub(crate) pipeline: String,
    pub(crate) sink: Arc<S>,
    pub(crate) stats: Arc<PipelineStats>,
    /// Exactly-once only: in the read-back mode the outputs the sink has, or is being sent,
    /// and the topics outputs may go to (only those are read back); with transactions, the
    /// writer scopes.
    pub(crate) exactly_once: Option<ExactlyOnce<S>>,
    /// The deliveries of the record being written (outside transactions).
    pub(crate) deliveries: Vec<S::Delivery>,
}

impl<S: Sink> OutcomeWriter<S> {
    /// Produces the outputs of `record` (or its dead-letter copy) and returns what its ack
    /// waits for.
    pub(crate) async fn write(
        &mut self,
        record: &InputRecord,
        placement: &Placement,
        outcome: RecordOutcome,
    ) -> Result<Settle, PipelineError> {
        if let Some(ExactlyOnce::Transactions(transactions)) = &mut self.exactly_once {
            match transactions.admit(&self.sink, record, placement).await? {
                Admission::Write => {}
                Admission::Relinquish => return Ok(settled(Settled::Relinquish)),
                Admission::Done if !matches!(outcome, RecordOutcome::Fatal { .. }) => {
                    let outputs = match &outcome {
                        RecordOutcome::Outputs(outputs) => outputs.len(),
                        RecordOutcome::DeadLetter { .. } => 1,
                        _ => 0,
                    };
                    self.stats.deduplicated.inc_by(outputs as u64);
                    return Ok(settled(Settled::Done));
                }
                Admission::Done => {}
            }
        }
        self.deliveries.clear();
        let written = self.write_outcome(record, placement, outcome).await;
        match &mut self.exactly_once {
            Some(ExactlyOnce::Transactions(transactions)) => match written {
                Ok(sent) => Ok(transactions.finish(record, placement, sent)),
                Err(PipelineError::Sink {
                    source: SinkError::Fenced { .. },
                    ..
                }) => {
                    transactions.fenced_while_writing(placement)?;
                    Ok(settled(Settled::Relinquish))
                }
                Err(error) => Err(error),
            },
            _ => {
                written?;
                let deliveries = std::mem::take(&mut self.deliveries);
                Ok(Box::pin(async move {
                    for delivery in deliveries {
                        delivery.await?;
                    }
                    Ok(Settled::Done)
                }))
            }
        }
    }

    /// When the next transaction is due at the latest (transactions only).
    pub(crate) fn next_commit(&self) -> Option<std::time::Instant> {
        match &self.exactly_once {
            Some(ExactlyOnce::Transactions(transactions)) => transactions.next_commit(),
            _ => None,
        }
    }

    /// Commits the transactions that are due, or all open ones with `all` (transactions only).
    pub(crate) async fn commit_due(&mut self, all: bool) -> Result<(), PipelineError> {
        match &mut self.exactly_once {
            Some(ExactlyOnce::Transactions(transactions)) => transactions.commit_due(all).await,
            _ => Ok(()),
        }
    }

    /// Writes the outputs of `record`, or its dead-letter copy; whether anything was sent.
    async fn write_outcome(
        &mut self,
        record: &InputRecord,
        placement: &Placement,
        outcome: RecordOutcome,
    ) -> Result<bool, PipelineError> {
        let dead_letter = match outcome {
            RecordOutcome::Outputs(outputs) if outputs.is_empty() => {
                self.stats.filtered.inc();
                return Ok(false);
            }
            RecordOutcome::Outputs(outputs) => {
                match unwritable_topic(&*self.sink, self.read_back(), &outputs).await {
                    Ok(None) => {
                        let mut sent = false;
                        let mut too_large = None;
                        for (index, output) in outputs.into_iter().enumerate() {
                            let index = index as u32;
                            match self.send(record, placement, index, output).await {
                                Ok(delivered) => sent |= delivered,
                                Err(error @ SinkError::TooLarge { .. })
                                    if self.sink.oversized() == OversizedPolicy::DeadLetter =>
                                {
                                    too_large = Some((index, error));
                                    break;
                                }
                                Err(error) => {
                                    return Err(PipelineError::sink(&self.pipeline, error));
                                }
                            }
                        }
                        let Some((index, error)) = too_large else {
                            return Ok(sent);
                        };
                        // Outputs already queued still go out; the record itself goes to the DLQ,
                        // as the output it could not write.
                        let dead_letter = too_large_dead_letter(&error);
                        let copied = self
                            .dead_letter(record, placement, index, dead_letter)
                            .await?;
                        return Ok(sent || copied);
                    }
                    Ok(Some(dead_letter)) => dead_letter,
                    Err(error) => return Err(PipelineError::sink(&self.pipeline, error)),
                }
            }
            RecordOutcome::Skip { transform, reason } => {
                self.stats.skipped.inc();
                tracing::debug!(pipeline = %self.pipeline, %transform, reason, "record skipped");
                return Ok(false);
            }
            RecordOutcome::DeadLetter {
                transform,
                kind,
                reason,
            } => DeadLetter {
                kind: kind.as_str().to_owned(),
                transform: transform.to_string(),
                reason,
                drop_value: false,
            },
            RecordOutcome::Fatal { transform, reason } => {
                return Err(PipelineError::Fatal {
                    pipeline: self.pipeline.clone(),
                    transform: transform.to_string(),
                    message_id: record.source.message_id.clone(),
                    reason,
                });
            }
        };
        self.dead_letter(record, placement, 0, dead_letter).await
    }

    /// Sends output `index` of `record`; `false` when exactly-once finds Kafka has it already.
    async fn send(
        &mut self,
        record: &InputRecord,
        placement: &Placement,
        index: u32,
        output: OutputRecord,
    ) -> Result<bool, SinkError> {
        let sent = self.emit(record, placement, index, output).await?;
        if sent {
            self.stats.produced.inc();
        }
        Ok(sent)
    }

    /// Writes `output` as output `index` of `record`, stamped with its identity, unless the
    /// read-back finds Kafka has it already (then `false`, counted as deduplicated). Outside
    /// transactions its delivery joins the record's.
    async fn emit(
        &mut self,
        record: &InputRecord,
        placement: &Placement,
        index: u32,
        output: OutputRecord,
    ) -> Result<bool, SinkError> {
        let source_id = &record.source.message_id;
        if let Some(ExactlyOnce::ReadBack(read_back)) = &self.exactly_once
            && read_back.already_written(source_id, index)
        {
            self.stats.deduplicated.inc();
            return Ok(false);
        }
        let mut output = output;
        let policy = exactly_once::source_id_policy(self.exactly_once.as_ref());
        identity::stamp(&mut output, &self.pipeline, source_id, index, policy);
        match &mut self.exactly_once {
            Some(ExactlyOnce::Transactions(transactions)) => {
                transactions.send(placement, &output).await?;
            }
            Some(ExactlyOnce::ReadBack(read_back)) => {
                self.deliveries.push(self.sink.send(&output).await?);
                read_back.remember(source_id, index);
            }
            None => self.deliveries.push(self.sink.send(&output).await?),
        }
        Ok(true)
    }

    /// Produces the dead-letter copy of `record` as its output `index`; whether it was sent.
    async fn dead_letter(
        &mut self,
        record: &InputRecord,
        placement: &Placement,
        index: u32,
        dead_letter: DeadLetter,
    ) -> Result<bool, PipelineError> {
        let Some(topic) = self.sink.dead_letter_topic() else {
            return Err(PipelineError::NoDeadLetterTopic {
                pipeline: self.pipeline.clone(),
                message_id: record.source.message_id.clone(),
                kind: dead_letter.kind,
                reason: dead_letter.reason,
            });
        };
        tracing::debug!(pipeline = %self.pipeline, kind = %dead_letter.kind, reason = %dead_letter.reason, "record dead-lettered");
        let copy = dead_letter_record(record, &dead_letter, topic);
        let sent = self
            .emit(record, placement, index, copy)
            .await
            .map_err(|source| PipelineError::sink(&self.pipeline, source))?;
        if sent {
            self.stats.count_dead_letter(&dead_letter.kind);
        }
        Ok(sent)
    }

    fn read_back(&self) -> Option<&ReadBack> {
        match &self.exactly_once {
            Some(ExactlyOnce::ReadBack(read_back)) => Some(read_back),
            _ => None,
        }
    }
}

/// Why the outputs cannot be written: a routed topic that does not exist (and was not
/// created), or, read back, one the config does not declare.
async fn unwritable_topic(
    sink: &impl Sink,
    read_back: Option<&ReadBack>,
    outputs: &[OutputRecord],
) -> Result<Option<DeadLetter>, SinkError> {
    let sink_topic = |kind: &str, reason: String| DeadLetter {
        kind: kind.into(),
        transform: "sink".into(),
        reason,
        drop_value: false,
    };
    for topic in outputs.iter().filter_map(|o| o.topic.as_deref()) {
        if topic == sink.default_topic() {
            continue;
        }
        if let Some(undeclared) = read_back.and_then(|r| r.undeclared(topic)) {
            return Ok(Some(undeclared));
        }
        if sink.ensure_topic(topic).await? == TopicStatus::Missing {
            return Ok(Some(sink_topic(
                "unknown-topic",
                format!(
                    "topic {topic:?} does not exist (set sink.create_topics = true to create it)"
                ),
            )));
        }
    }
    Ok(None)
}

/// Why a record whose output Kafka cannot take goes to the dead-letter topic.
fn too_large_dead_letter(error: &SinkError) -> DeadLetter {
    DeadLetter {
        kind: "too-large".into(),
        transform: "sink".into(),
        reason: format!("{error}; the value is left out of this dead-letter copy"),
        drop_value: true,
    }
}
