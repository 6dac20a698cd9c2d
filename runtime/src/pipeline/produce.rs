//! What one transformed record becomes in Kafka: its outputs, or its dead-letter copy, each
//! stamped with its identity (pipeline, source message id, output index). With exactly-once,
//! outputs Kafka already has are not sent again.

use std::sync::Arc;

use crate::config::OversizedPolicy;
use crate::record::{Header, InputRecord, OutputRecord};
use crate::sink::{
    DeadLetter, KafkaSink, OUTPUT_INDEX_HEADER, PIPELINE_HEADER, PendingDelivery, SOURCE_ID_HEADER,
    SinkError, TopicStatus, dead_letter_record,
};
use crate::transform::RecordOutcome;

use super::written::ExactlyOnce;
use super::{PipelineError, PipelineStats};

/// Writes the outcomes of transformed records to Kafka.
pub(super) struct OutcomeWriter {
    pub(super) pipeline: String,
    pub(super) sink: Arc<KafkaSink>,
    pub(super) stats: Arc<PipelineStats>,
    /// Exactly-once only: the outputs Kafka has, or is being sent, and the topics outputs may
    /// go to (only those are read back).
    pub(super) exactly_once: Option<ExactlyOnce>,
}

impl OutcomeWriter {
    /// Produces the outputs of `record` (or its dead-letter copy) and returns the deliveries
    /// its ack waits for.
    pub(super) async fn write(
        &mut self,
        record: &InputRecord,
        outcome: RecordOutcome,
    ) -> Result<Vec<PendingDelivery>, PipelineError> {
        self.stats.received.inc();
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
    ) -> Result<Option<PendingDelivery>, SinkError> {
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
    ) -> Result<Option<PendingDelivery>, SinkError> {
        let source_id = &record.source.message_id;
        if let Some(exactly_once) = &self.exactly_once
            && exactly_once.written.contains(source_id, index)
        {
            self.stats.deduplicated.inc();
            return Ok(None);
        }
        let output = self.with_identity(output, record, index);
        let delivery = self.sink.send(&output).await?;
        if let Some(exactly_once) = &mut self.exactly_once {
            exactly_once.written.insert(source_id, index);
        }
        Ok(Some(delivery))
    }

    /// Produces the dead-letter copy of `record` as its output `index`.
    async fn dead_letter(
        &mut self,
        record: &InputRecord,
        index: u32,
        dead_letter: DeadLetter,
    ) -> Result<Vec<PendingDelivery>, PipelineError> {
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
            if let Some(exactly_once) = &self.exactly_once
                && !exactly_once.declared_topics.contains(topic)
            {
                return Ok(Some(sink_topic(
                    "undeclared-topic",
                    format!(
                        "topic {topic:?} is not in sink.route_topics; exactly-once writes only \
                         to declared topics, since only those are read back after a crash"
                    ),
                )));
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

    /// Every record written carries the source message id (DESIGN §5; a transform may set its
    /// own in at-least-once mode), the pipeline and its output index. The identity is the
    /// host's: a transform's `sluice.pipeline` and `sluice.output.index` are replaced, and
    /// with exactly-once its `sluice.source.id` too.
    fn with_identity(
        &self,
        mut output: OutputRecord,
        record: &InputRecord,
        index: u32,
    ) -> OutputRecord {
        let exactly_once = self.exactly_once.is_some();
        let keep_source_id =
            !exactly_once && output.headers.iter().any(|h| h.name == SOURCE_ID_HEADER);
        output.headers.retain(|h| {
            h.name != PIPELINE_HEADER
                && h.name != OUTPUT_INDEX_HEADER
                && (keep_source_id || h.name != SOURCE_ID_HEADER)
        });
        if !keep_source_id {
            output.headers.push(Header::new(
                SOURCE_ID_HEADER,
                record.source.message_id.as_bytes(),
            ));
        }
        output
            .headers
            .push(Header::new(PIPELINE_HEADER, self.pipeline.as_bytes()));
        output
            .headers
            .push(Header::new(OUTPUT_INDEX_HEADER, index.to_string()));
        output
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
