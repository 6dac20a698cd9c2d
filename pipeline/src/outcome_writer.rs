//! What one transformed record becomes in the sink: its outputs, or its dead-letter copy, each
//! stamped with its identity (pipeline, source message id, output index). With exactly-once,
//! outputs the sink already has are not sent again.
//!
//! Outputs are untrusted: before any is sent, each is checked against what the sink takes
//! ([`OutcomeWriter::unwritable`]; docs/sandbox.md, "What a guest returns"). A record the sink
//! refuses — at that check, when handed to the client, or in its delivery report — is
//! dead-lettered, and the other records go on.

use std::sync::Arc;

use sluice_connectors::sink::{OversizedPolicy, Sink, SinkError, TopicStatus};
use sluice_engine::RecordOutcome;
use sluice_record::dead_letter::{DeadLetter, Destination, dead_letter_record};
use sluice_record::identity;
use sluice_record::validation::{self, Violation};
use sluice_record::{InputRecord, OutputRecord};

use crate::error::{PipelineError, error_chain};
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

/// What was sent for one record.
pub(crate) struct Written<D> {
    /// What its ack waits for.
    pub(crate) deliveries: Vec<D>,
    /// The output index a dead-letter copy takes if the sink refuses a delivery: one past
    /// every output (stable across replays, so exactly-once finds it).
    pub(crate) next_index: u32,
    /// The deliveries are of its dead-letter copy: a refusal of it cannot be dead-lettered.
    pub(crate) dead_lettered: bool,
}

impl<S: Sink> OutcomeWriter<S> {
    /// Produces the outputs of `record` (or its dead-letter copy) and returns the deliveries
    /// its ack waits for.
    pub(crate) async fn write(
        &mut self,
        record: &InputRecord,
        outcome: RecordOutcome,
    ) -> Result<Written<S::Delivery>, PipelineError> {
        let dead_letter = match outcome {
            RecordOutcome::Outputs(outputs) if outputs.is_empty() => {
                self.stats.filtered.inc();
                return Ok(Written {
                    deliveries: Vec::new(),
                    next_index: 0,
                    dead_lettered: false,
                });
            }
            RecordOutcome::Outputs(outputs) => {
                let next_index = outputs.len() as u32;
                let outputs: Vec<OutputRecord> = (0..next_index)
                    .zip(outputs)
                    .map(|(index, output)| self.stamped(record, index, output))
                    .collect();
                match self.unwritable(record, &outputs).await? {
                    None => return self.send_all(record, outputs).await,
                    Some(dead_letter) => dead_letter,
                }
            }
            RecordOutcome::Skip { transform, reason } => {
                self.stats.skipped.inc();
                tracing::debug!(pipeline = %self.pipeline, %transform, reason, "record skipped");
                return Ok(Written {
                    deliveries: Vec::new(),
                    next_index: 0,
                    dead_lettered: false,
                });
            }
            RecordOutcome::DeadLetter {
                transform,
                kind,
                reason,
            } => DeadLetter::new(kind.as_str(), &transform.to_string(), reason),
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

    /// Sends `outputs` (stamped) in order. When the client refuses one, the outputs already
    /// queued still go out and the record goes to the dead-letter topic as the output it
    /// could not write.
    async fn send_all(
        &mut self,
        record: &InputRecord,
        outputs: Vec<OutputRecord>,
    ) -> Result<Written<S::Delivery>, PipelineError> {
        let next_index = outputs.len() as u32;
        let mut deliveries = Vec::with_capacity(outputs.len());
        for (index, output) in (0..next_index).zip(outputs) {
            match self.emit(record, index, output).await {
                Ok(delivery) => {
                    if delivery.is_some() {
                        self.stats.produced.inc();
                    }
                    deliveries.extend(delivery);
                }
                Err(error) if error.is_record_refusal() => {
                    let mut written = self.refused(record, index, error).await?;
                    deliveries.append(&mut written.deliveries);
                    written.deliveries = deliveries;
                    return Ok(written);
                }
                Err(error) => return Err(PipelineError::sink(&self.pipeline, error)),
            }
        }
        Ok(Written {
            deliveries,
            next_index,
            dead_lettered: false,
        })
    }

    /// The sink refused output `index` of `record` (`error`): its dead-letter copy, as that
    /// output, unless `sink.oversized` says a record too large stops the pipeline.
    pub(crate) async fn refused(
        &mut self,
        record: &InputRecord,
        index: u32,
        error: SinkError,
    ) -> Result<Written<S::Delivery>, PipelineError> {
        let too_large = matches!(
            error,
            SinkError::Refused {
                too_large: true,
                ..
            }
        );
        if too_large && self.sink.oversized() == OversizedPolicy::Fail {
            return Err(PipelineError::sink(&self.pipeline, error));
        }
        let kind = if too_large { "too-large" } else { "refused" };
        let reason = error_chain(&error);
        self.dead_letter(record, index, DeadLetter::new(kind, "sink", reason))
            .await
    }

    /// `output` stamped as output `index` of `record`.
    fn stamped(&self, record: &InputRecord, index: u32, mut output: OutputRecord) -> OutputRecord {
        let policy = exactly_once::source_id_policy(self.exactly_once.as_ref());
        let source_id = &record.source.message_id;
        identity::stamp(&mut output, &self.pipeline, source_id, index, policy);
        output
    }

    /// Writes `output` (stamped) as output `index` of `record`, unless exactly-once finds
    /// Kafka has it already (then `None`, counted as deduplicated).
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
        let delivery = self.sink.send(&output).await?;
        if let Some(exactly_once) = &mut self.exactly_once {
            exactly_once.remember(source_id, index);
        }
        Ok(Some(delivery))
    }

    /// Produces the dead-letter copy of `record` as its output `index`, built to fit the
    /// dead-letter topic.
    async fn dead_letter(
        &mut self,
        record: &InputRecord,
        index: u32,
        dead_letter: DeadLetter,
    ) -> Result<Written<S::Delivery>, PipelineError> {
        let Some(topic) = self.sink.dead_letter_topic() else {
            return Err(PipelineError::NoDeadLetterTopic {
                pipeline: self.pipeline.clone(),
                message_id: record.source.message_id.clone(),
                kind: dead_letter.kind,
                reason: dead_letter.reason,
            });
        };
        tracing::debug!(pipeline = %self.pipeline, kind = %dead_letter.kind, reason = %dead_letter.reason, "record dead-lettered");
        let to = Destination {
            topic,
            limits: self.sink.record_limits(topic),
            reserved_bytes: identity::stamp_bytes(&self.pipeline, &record.source.message_id),
            now_ms: sluice_record::now_ms(),
        };
        let copy = dead_letter_record(record, &dead_letter, &to);
        let copy = self.stamped(record, index, copy);
        let delivery = self
            .emit(record, index, copy)
            .await
            .map_err(|source| PipelineError::sink(&self.pipeline, source))?;
        if delivery.is_some() {
            self.stats.count_dead_letter(&dead_letter.kind);
        }
        Ok(Written {
            deliveries: delivery.into_iter().collect(),
            next_index: index + 1,
            dead_lettered: true,
        })
    }

    /// Why the outputs (stamped) cannot be written, checked before any is sent: an invalid
    /// topic name; a routed topic that does not exist (and was not created) or, with
    /// exactly-once, one the config does not declare; a record the topic would refuse (too
    /// large as the producer counts it, a timestamp outside its window, no key for a
    /// compacted topic).
    async fn unwritable(
        &self,
        record: &InputRecord,
        outputs: &[OutputRecord],
    ) -> Result<Option<DeadLetter>, PipelineError> {
        let invalid = |index: usize, violation: Violation| {
            let kind = if violation.too_large {
                "too-large"
            } else {
                "invalid-output"
            };
            DeadLetter::new(kind, "sink", format!("output {index}: {violation}"))
        };
        let now_ms = sluice_record::now_ms();
        for (index, output) in outputs.iter().enumerate() {
            let topic = match output.topic.as_deref() {
                None => self.sink.default_topic(),
                Some(topic) => {
                    // Checked first: a name Kafka refuses must not reach its client.
                    if let Err(problem) = validation::check_topic_name(topic) {
                        return Ok(Some(invalid(index, Violation::new("topic", problem))));
                    }
                    if let Some(undeclared) = self.undeclared_or_missing(topic).await? {
                        return Ok(Some(undeclared));
                    }
                    topic
                }
            };
            let limits = self.sink.record_limits(topic);
            if let Err(violation) = validation::check_for_sink(output, &limits, now_ms) {
                if violation.too_large && self.sink.oversized() == OversizedPolicy::Fail {
                    return Err(PipelineError::sink(
                        &self.pipeline,
                        SinkError::Refused {
                            topic: topic.to_owned(),
                            too_large: true,
                            source: format!(
                                "message {}: output {index}: {violation}",
                                record.source.message_id
                            )
                            .into(),
                        },
                    ));
                }
                return Ok(Some(invalid(index, violation)));
            }
        }
        Ok(None)
    }

    /// Why an output cannot go to `topic` (not the default one): with exactly-once, it is not
    /// declared; or it does not exist (and is not created).
    async fn undeclared_or_missing(
        &self,
        topic: &str,
    ) -> Result<Option<DeadLetter>, PipelineError> {
        if topic == self.sink.default_topic() {
            return Ok(None);
        }
        if let Some(undeclared) = self.exactly_once.as_ref().and_then(|e| e.undeclared(topic)) {
            return Ok(Some(undeclared));
        }
        let status = self.sink.ensure_topic(topic).await;
        match status {
            Ok(TopicStatus::Exists) => Ok(None),
            Ok(TopicStatus::Missing) => Ok(Some(DeadLetter::new(
                "unknown-topic",
                "sink",
                format!(
                    "topic {topic:?} does not exist (set sink.create_topics = true to create it)"
                ),
            ))),
            Err(error) if error.is_record_refusal() => Ok(Some(DeadLetter::new(
                "invalid-output",
                "sink",
                error_chain(&error),
            ))),
            Err(error) => Err(PipelineError::sink(&self.pipeline, error)),
        }
    }
}
