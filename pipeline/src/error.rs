//! Why a pipeline stopped or could not start.

use sluice_connectors::sink::SinkError;
use sluice_connectors::source::SourceError;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("pipeline {pipeline:?}: cannot load its transforms")]
    Transform {
        pipeline: String,
        #[source]
        source: sluice_engine::Error,
    },
    #[error("pipeline {pipeline:?}: Kafka sink failed")]
    Sink {
        pipeline: String,
        #[source]
        source: SinkError,
    },
    #[error("pipeline {pipeline:?}: source failed")]
    Source {
        pipeline: String,
        #[source]
        source: SourceError,
    },
    #[error(
        "pipeline {pipeline:?}: transform {transform} stopped the pipeline at message {message_id}: {reason}"
    )]
    Fatal {
        pipeline: String,
        transform: String,
        message_id: String,
        reason: String,
    },
    #[error(
        "pipeline {pipeline:?}: message {message_id} must be dead-lettered ({kind}: {reason}) but the sink has no dead_letter_topic"
    )]
    NoDeadLetterTopic {
        pipeline: String,
        message_id: String,
        kind: String,
        reason: String,
    },
    /// `[pipeline.decode]` or `[pipeline.encode]` cannot be set up (the config check refuses
    /// it first: this is for pipelines assembled without it).
    #[error("pipeline {pipeline:?}: `{key}`: {message}")]
    Schemas {
        pipeline: String,
        key: String,
        message: String,
    },
    #[error("pipeline {pipeline:?}: the transform thread died")]
    TransformThread { pipeline: String },
    #[error(
        "pipeline {pipeline:?} was fenced by a newer instance (transactional.id \
         {transactional_id:?}): another instance with the same config took over; this one \
         stopped without writing or acking anything more"
    )]
    Fenced {
        pipeline: String,
        transactional_id: String,
    },
    /// Told to stop, it gave up on records it could not finish (the sink was down or stuck
    /// past the drain bound): they were not acked, and the source delivers them again.
    #[error(
        "pipeline {pipeline:?}: stopped with {unacked} record(s) not acked; the source will \
         deliver them again"
    )]
    Undrained {
        pipeline: String,
        unacked: usize,
        /// What kept them from being acked, if it was an error.
        #[source]
        cause: Option<Box<PipelineError>>,
    },
}

impl PipelineError {
    pub(crate) fn sink(pipeline: &str, source: SinkError) -> Self {
        PipelineError::Sink {
            pipeline: pipeline.to_owned(),
            source,
        }
    }

    pub(crate) fn source(pipeline: &str, source: SourceError) -> Self {
        PipelineError::Source {
            pipeline: pipeline.to_owned(),
            source,
        }
    }

    /// Records not acked when the pipeline stopped short of draining, if it did.
    pub fn undrained(&self) -> Option<usize> {
        match self {
            PipelineError::Undrained { unacked, .. } => Some(*unacked),
            _ => None,
        }
    }

    /// Whether the failure is in the user's hands (config, components, missing topics).
    pub fn is_user_input_error(&self) -> bool {
        match self {
            PipelineError::Transform { source, .. } => source.is_user_input_error(),
            PipelineError::Sink { source, .. } => source.is_user_input_error(),
            PipelineError::Schemas { .. } => true,
            _ => false,
        }
    }
}

/// `error: cause: cause`, one line for logs and API answers.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    text
}
