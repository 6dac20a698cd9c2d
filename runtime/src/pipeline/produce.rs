//! What one transformed record becomes in Kafka: its outputs, or its dead-letter copy.

use crate::config::OversizedPolicy;
use crate::record::{Header, InputRecord, OutputRecord};
use crate::sink::{
    DeadLetter, KafkaSink, PendingDelivery, SOURCE_ID_HEADER, SinkError, TopicStatus,
    dead_letter_record,
};
use crate::transform::RecordOutcome;

use super::{PipelineError, PipelineStats};

/// Produces the outputs of `record` (or its dead-letter copy) and returns the deliveries its
/// ack waits for.
pub(super) async fn produce_outcome(
    pipeline: &str,
    sink: &KafkaSink,
    record: &InputRecord,
    outcome: RecordOutcome,
    stats: &PipelineStats,
) -> Result<Vec<PendingDelivery>, PipelineError> {
    let sink_error = |source| PipelineError::sink(pipeline, source);
    stats.received.inc();
    let dead_letter = match outcome {
        RecordOutcome::Outputs(outputs) if outputs.is_empty() => {
            stats.filtered.inc();
            return Ok(Vec::new());
        }
        RecordOutcome::Outputs(outputs) => match unknown_topic(sink, &outputs).await {
            Ok(None) => {
                let mut deliveries = Vec::with_capacity(outputs.len());
                let mut too_large = None;
                for output in outputs {
                    let output = with_source_id(output, record);
                    match sink.send(&output).await {
                        Ok(delivery) => deliveries.push(delivery),
                        Err(error @ SinkError::TooLarge { .. })
                            if sink.oversized() == OversizedPolicy::DeadLetter =>
                        {
                            too_large = Some(error);
                            break;
                        }
                        Err(error) => return Err(sink_error(error)),
                    }
                }
                stats.produced.inc_by(deliveries.len() as u64);
                let Some(error) = too_large else {
                    return Ok(deliveries);
                };
                // Outputs already queued still go out; the record itself goes to the DLQ.
                let mut with_dead_letter = produce_dead_letter(
                    pipeline,
                    sink,
                    record,
                    too_large_dead_letter(&error),
                    stats,
                )
                .await?;
                deliveries.append(&mut with_dead_letter);
                return Ok(deliveries);
            }
            Ok(Some(topic)) => DeadLetter {
                kind: "unknown-topic".into(),
                transform: "sink".into(),
                reason: format!(
                    "topic {topic:?} does not exist (set sink.create_topics = true to create it)"
                ),
                drop_value: false,
            },
            Err(error) => return Err(sink_error(error)),
        },
        RecordOutcome::Skip { transform, reason } => {
            stats.skipped.inc();
            tracing::debug!(pipeline, %transform, reason, "record skipped");
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
                pipeline: pipeline.to_owned(),
                transform: transform.to_string(),
                message_id: record.source.message_id.clone(),
                reason,
            });
        }
    };
    produce_dead_letter(pipeline, sink, record, dead_letter, stats).await
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

/// Produces the dead-letter copy of `record`.
async fn produce_dead_letter(
    pipeline: &str,
    sink: &KafkaSink,
    record: &InputRecord,
    dead_letter: DeadLetter,
    stats: &PipelineStats,
) -> Result<Vec<PendingDelivery>, PipelineError> {
    let sink_error = |source| PipelineError::sink(pipeline, source);
    let Some(topic) = sink.dead_letter_topic() else {
        return Err(PipelineError::NoDeadLetterTopic {
            pipeline: pipeline.to_owned(),
            message_id: record.source.message_id.clone(),
            kind: dead_letter.kind,
            reason: dead_letter.reason,
        });
    };
    tracing::debug!(pipeline, kind = %dead_letter.kind, reason = %dead_letter.reason, "record dead-lettered");
    let copy = dead_letter_record(record, &dead_letter, topic);
    let delivery = sink.send(&copy).await.map_err(sink_error)?;
    stats.count_dead_letter(&dead_letter.kind);
    Ok(vec![delivery])
}

/// The first routed topic of `outputs` that does not exist (and was not created).
async fn unknown_topic(
    sink: &KafkaSink,
    outputs: &[OutputRecord],
) -> Result<Option<String>, SinkError> {
    for topic in outputs.iter().filter_map(|o| o.topic.as_deref()) {
        if topic != sink.default_topic() && sink.ensure_topic(topic).await? == TopicStatus::Missing
        {
            return Ok(Some(topic.to_owned()));
        }
    }
    Ok(None)
}

/// Every record written carries the source message id (DESIGN §5), unless a transform set it.
fn with_source_id(mut output: OutputRecord, record: &InputRecord) -> OutputRecord {
    if !output.headers.iter().any(|h| h.name == SOURCE_ID_HEADER) {
        output.headers.push(Header::new(
            SOURCE_ID_HEADER,
            record.source.message_id.as_bytes(),
        ));
    }
    output
}
