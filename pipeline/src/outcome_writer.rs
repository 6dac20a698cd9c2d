//! What one transformed record becomes in the sink: its outputs, or its dead-letter copy, each
//! stamped with its identity (pipeline, source message id, output index). With exactly-once,
//! outputs the sink already has are not sent again.

use std::sync::Arc;

use sluice_connectors::sink::{OversizedPolicy, Sink, SinkError, TopicStatus};
use sluice_engine::RecordOutcome;
use sluice_record::dead_letter::{DeadLetter, dead_letter_record};
use sluice_record::identity;
use sluice_record::{InputRecord, OutputRecord};

use crate::error::PipelineError;
use crate::exactly_once::{self, ExactlyOnce};
use crate::stats::PipelineStats;

/// Writes the outcomes of transformed records to the sink.
pub(crate) struct OutcomeWriter<S: Sink> {
    pub(crate) pipeline: String,
    pub(crate) sink: Arc<S>,
    pub(crate) stats: Arc<PipelineStats>,
    /// Exactly-once only: the outputs the sink has, or is being sent, and the topics outputs
    /// may go to (only those are read back).
    pub(crate) exactly_once: Option<ExactlyOnce>,
}

impl<S: Sink> OutcomeWriter<S> {
    /// Produces the outputs of `record` (or its dead-letter copy) and returns the deliveries
    /// its ack waits for.
    pub(crate) async fn write(
        &mut self,
        record: &InputRecord,
        outcome: RecordOutcome,
    ) -> Result<Vec<S::Delivery>, PipelineError> {
        let dead_letter = match outcome {
            RecordOutcome::Outputs(outputs) if outputs.is_empty() => {
                self.stats.filtered.inc();
                return Ok(Vec::new());
            }
            RecordOutcome::Outputs(outputs) => match self.unwritable_topic(&outputs).await {
                Ok(None) => {
                    let mut deliveries = Vec::with_capacity(outputs.len());
                    let mut too_large = None;
                    for (index, output) in outputs.into_iter().enumerate() {
                        let index = index as u32;
                        match self.send(record, index, output).await {
                            Ok(delivery) => deliveries.extend(delivery),
                            Err(error @ SinkError::TooLarge { .. })
                                if self.sink.oversized() == OversizedPolicy::DeadLetter =>
                            {
                                too_large = Some((index, error));
                                break;
                            }
                            Err(error) => return Err(PipelineError::sink(&self.pipeline, error)),
                        }
                    }
                    let Some((index, error)) = too_large else {
                        return Ok(deliveries);
                    };
                    // Outputs already queued still go out; the record itself goes to the DLQ,
                    // as the output it could not write.
                    let mut with_dead_letter = self
                        .dead_letter(record, index, too_large_dead_letter(&error))
                        .await?;
                    deliveries.append(&mut with_dead_letter);
                    return Ok(deliveries);
                }
                Ok(Some(dead_letter)) => dead_letter,
                Err(error) => return Err(PipelineError::sink(&self.pipeline, error)),
            },
            RecordOutcome::Skip { transform, reason } => {
                self.stats.skipped.inc();
                tracing::debug!(pipeline = %self.pipeline, %transform, reason, "record skipped");
                return Ok(Vec::new());
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
        self.dead_letter(record, 0, dead_letter).await
    }

    /// Sends output `index` of `record`; `None` when exactly-once finds Kafka has it already.
    async fn send(
        &mut self,
        record: &InputRecord,
        index: u32,
        output: OutputRecord,
    ) -> Result<Option<S::Delivery>, SinkError> {
        let delivery = self.emit(record, index, output).await?;
        if delivery.is_some() {
            self.stats.produced.inc();
        }
        Ok(delivery)
    }

    /// Writes `output` as output `index` of `record`, stamped with its identity, unless
    /// exactly-once finds Kafka has it already (then `None`, counted as deduplicated).
    async fn emit(
        &mut self,
        record: &InputRecord,
        index: u32,
        output: OutputRecord,
    ) -> Result<Option<S::Delivery>, SinkError> {
        let source_id = &record.source.message_id;
        if let Some(exactly_once) = &self.exactly_once
            && exactly_once.already_written(source_id, index)
        {
            self.stats.deduplicated.inc();
            return Ok(None);
        }
        let mut output = output;
        let policy = exactly_once::source_id_policy(self.exactly_once.as_ref());
        identity::stamp(&mut output, &self.pipeline, source_id, index, policy);
        let delivery = self.sink.send(&output).await?;
        if let Some(exactly_once) = &mut self.exactly_once {
            exactly_once.remember(source_id, index);
        }
        Ok(Some(delivery))
    }

    /// Produces the dead-letter copy of `record` as its output `index`.
    async fn dead_letter(
        &mut self,
        record: &InputRecord,
        index: u32,
        dead_letter: DeadLetter,
    ) -> Result<Vec<S::Delivery>, PipelineError> {
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
        let delivery = self
            .emit(record, index, copy)
            .await
            .map_err(|source| PipelineError::sink(&self.pipeline, source))?;
        if delivery.is_some() {
            self.stats.count_dead_letter(&dead_letter.kind);
        }
        Ok(delivery.into_iter().collect())
    }

    /// Why the outputs cannot be written: a routed topic that does not exist (and was not
    /// created), or, with exactly-once, one the config does not declare.
    async fn unwritable_topic(
        &self,
        outputs: &[OutputRecord],
    ) -> Result<Option<DeadLetter>, SinkError> {
        let sink_topic = |kind: &str, reason: String| DeadLetter {
            kind: kind.into(),
            transform: "sink".into(),
            reason,
            drop_value: false,
        };
        for topic in outputs.iter().filter_map(|o| o.topic.as_deref()) {
            if topic == self.sink.default_topic() {
                continue;
            }
            if let Some(undeclared) = self.exactly_once.as_ref().and_then(|e| e.undeclared(topic)) {
                return Ok(Some(undeclared));
            }
            if self.sink.ensure_topic(topic).await? == TopicStatus::Missing {
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
