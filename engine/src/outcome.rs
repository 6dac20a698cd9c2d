//! What a transform chain makes of one input record, and who decided it.

use std::fmt;

use sluice_record::OutputRecord;

/// A loaded transform: its configured name and the digest of its component.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransformId {
    /// The name the pipeline config gave the transform.
    pub name: String,
    /// `sha256:<hex>` of the component file.
    pub digest: String,
}

impl fmt::Display for TransformId {
    /// `name@sha256:<first 12 hex digits>`, as in logs and the `sluice.transform` header; the
    /// name alone for a step without a component (`source`, `sink`: the schema codecs).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.digest.is_empty() {
            return f.write_str(&self.name);
        }
        let hex = self.digest.strip_prefix("sha256:").unwrap_or(&self.digest);
        write!(f, "{}@sha256:{}", self.name, hex.get(..12).unwrap_or(hex))
    }
}

/// Why a record was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The transform returned `dead-letter(reason)`.
    DeadLetter,
    /// The call took longer than `batch_timeout_ms`.
    Timeout,
    /// The guest needed more than `memory_mib`.
    OutOfMemory,
    /// The guest exhausted its call stack.
    StackOverflow,
    /// Any other trap: `unreachable` (a Rust panic), out-of-bounds access, a malformed result.
    Trap,
    /// The record's outputs exceeded `max_outputs_per_record` or `max_output_bytes_per_record`.
    OutputLimit,
    /// An output breaks Kafka's rules or a field limit of the transform (a topic name Kafka
    /// refuses, a key, header or timestamp out of bounds).
    InvalidOutput,
    /// Not a transform's failure: the source payload does not fit its schema, or an output
    /// does not fit its subject's schema (docs/schemas.md).
    Schema,
    /// A `set` would have exceeded a state quota of the transform (docs/state.md).
    StateQuota,
}

impl FailureKind {
    /// The value of the `sluice.error.kind` header.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::DeadLetter => "dead-letter",
            FailureKind::Timeout => "timeout",
            FailureKind::OutOfMemory => "out-of-memory",
            FailureKind::StackOverflow => "stack-overflow",
            FailureKind::Trap => "trap",
            FailureKind::StateQuota => "state-quota",
            FailureKind::OutputLimit => "output-limit",
            FailureKind::InvalidOutput => "invalid-output",
            FailureKind::Schema => "schema",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of one input record after the whole chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Records to write; empty when the record was filtered out.
    Outputs(Vec<OutputRecord>),
    /// A transform dropped the record on purpose.
    Skip {
        transform: TransformId,
        reason: String,
    },
    /// The original record goes to the dead-letter topic.
    DeadLetter {
        transform: TransformId,
        kind: FailureKind,
        reason: String,
    },
    /// A transform asked to stop the pipeline (or cannot run any more); the record is not
    /// acknowledged.
    Fatal {
        transform: TransformId,
        reason: String,
    },
}

impl RecordOutcome {
    /// The transform that decided a non-output outcome.
    pub fn transform(&self) -> Option<&TransformId> {
        match self {
            RecordOutcome::Outputs(_) => None,
            RecordOutcome::Skip { transform, .. }
            | RecordOutcome::DeadLetter { transform, .. }
            | RecordOutcome::Fatal { transform, .. } => Some(transform),
        }
    }

    /// For metrics: how the transform failed the record (`skip` and `fatal` included), or
    /// `None` when it produced outputs.
    pub fn failure_kind(&self) -> Option<&'static str> {
        match self {
            RecordOutcome::Outputs(_) => None,
            RecordOutcome::Skip { .. } => Some("skip"),
            RecordOutcome::DeadLetter { kind, .. } => Some(kind.as_str()),
            RecordOutcome::Fatal { .. } => Some("fatal"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transform_id_shows_a_short_digest() {
        let id = TransformId {
            name: "redact".into(),
            digest: format!("sha256:{}", "ab".repeat(32)),
        };
        assert_eq!(id.to_string(), "redact@sha256:abababababab");
        let short = TransformId {
            name: "x".into(),
            digest: "sha256:abc".into(),
        };
        assert_eq!(short.to_string(), "x@sha256:abc");
    }
}
