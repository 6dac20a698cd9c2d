//! The crate's errors. Per-record errors ([`DecodeError`], [`EncodeError`]) name the input (topic,
//! part, schema identity, field path) and say whether they are the record's fault (dead-letter
//! it with kind [`DEAD_LETTER_KIND`]) or a passing failure of a schema service (retry;
//! [`DecodeError::is_transient`], [`EncodeError::is_transient`]). [`SchemaError`] is for a schema
//! or configuration that cannot be used at all (found at load, or when a fetched definition does
//! not parse).

use std::fmt;

use crate::SchemaId;

/// The `sluice.error.kind` of a record dead-lettered for a schema problem.
pub const DEAD_LETTER_KIND: &str = "schema";

/// A location inside a decoded or encoded value, e.g. `$.order.items[2].sku`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPath(String);

impl FieldPath {
    /// The root (`$`).
    pub fn root() -> Self {
        Self(String::new())
    }

    pub(crate) fn from_segments(segments: &[Segment]) -> Self {
        let mut path = String::new();
        // Segments were pushed innermost first, while unwinding.
        for segment in segments.iter().rev() {
            match segment {
                Segment::Field(name) => {
                    path.push('.');
                    path.push_str(name);
                }
                Segment::Index(i) => {
                    path.push('[');
                    path.push_str(&i.to_string());
                    path.push(']');
                }
                Segment::Key(key) => {
                    path.push_str("[\"");
                    path.push_str(key);
                    path.push_str("\"]");
                }
            }
        }
        Self(path)
    }

    /// The path as text, `$` for the root.
    pub fn as_str(&self) -> &str {
        if self.0.is_empty() { "$" } else { &self.0 }
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("$")
        } else {
            write!(f, "${}", self.0)
        }
    }
}

/// One step of a [`FieldPath`].
#[derive(Debug, Clone)]
pub(crate) enum Segment {
    Field(String),
    Index(usize),
    Key(String),
}

/// A problem at a place in a value: what codec functions return before the caller adds the
/// topic and schema.
#[derive(Debug, Clone)]
pub struct ValueError {
    pub(crate) segments: Vec<Segment>,
    pub(crate) reason: String,
}

impl ValueError {
    pub(crate) fn new(reason: impl Into<String>) -> Self {
        Self {
            segments: Vec::new(),
            reason: reason.into(),
        }
    }

    pub(crate) fn at(mut self, segment: Segment) -> Self {
        self.segments.push(segment);
        self
    }

    /// Where in the value.
    pub fn path(&self) -> FieldPath {
        FieldPath::from_segments(&self.segments)
    }

    /// What is wrong there.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at {}: {}", self.path(), self.reason)
    }
}

impl std::error::Error for ValueError {}

/// Which part of a Kafka record an encoder works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    /// The record key.
    Key,
    /// The record value.
    Value,
}

impl Part {
    /// `key` or `value`, as in Confluent subject names.
    pub fn as_str(self) -> &'static str {
        match self {
            Part::Key => "key",
            Part::Value => "value",
        }
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A source record that cannot be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not valid for the schema the record names.
    #[error("{topic}: the payload does not match schema {schema} at {path}: {reason}")]
    Malformed {
        /// Source topic (Pulsar topic or Pub/Sub subscription).
        topic: String,
        /// The schema the record named.
        schema: SchemaId,
        /// Where decoding failed.
        path: FieldPath,
        /// Why.
        reason: String,
    },
    /// The record names a schema that does not exist (unknown version, id or revision).
    #[error("{topic}: unknown schema {schema}: {reason}")]
    UnknownSchema {
        /// Source topic.
        topic: String,
        /// The schema the record named.
        schema: String,
        /// The schema service's answer.
        reason: String,
    },
    /// The record carries no schema reference where the decoder needs one.
    #[error("{topic}: {reason}")]
    MissingSchema {
        /// Source topic.
        topic: String,
        /// What is missing.
        reason: String,
    },
    /// The schema exists but cannot be used (unsupported type, definition that does not parse).
    #[error("{topic}: schema {schema} cannot be used: {reason}")]
    UnusableSchema {
        /// Source topic.
        topic: String,
        /// The schema the record named.
        schema: String,
        /// Why.
        reason: String,
    },
    /// The schema service could not be asked (network, 5xx, timeout). Not the record's fault:
    /// retry later; do not dead-letter.
    #[error("{topic}: cannot fetch schema {schema}: {reason}")]
    Unavailable {
        /// Source topic.
        topic: String,
        /// The schema being fetched.
        schema: String,
        /// The transport or server error.
        reason: String,
    },
}

impl DecodeError {
    /// True for a passing failure of a schema service (retry); false for a problem of the record
    /// (dead-letter it with kind [`DEAD_LETTER_KIND`]).
    pub fn is_transient(&self) -> bool {
        matches!(self, DecodeError::Unavailable { .. })
    }
}

/// An output that cannot be encoded for its topic. Nothing of it was written.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The output does not fit its schema (or is not the JSON the format needs).
    #[error("{topic} {part}: the output does not match {schema} at {path}: {reason}")]
    Mismatch {
        /// Target topic.
        topic: String,
        /// Key or value.
        part: Part,
        /// The subject (or the schema's identity when there is no registry).
        schema: String,
        /// Where the output departs from the schema.
        path: FieldPath,
        /// Why.
        reason: String,
    },
    /// The registry refused to register the schema (incompatible with the subject, invalid).
    #[error("{topic} {part}: the schema registry refused subject {subject}: {reason}")]
    Refused {
        /// Target topic.
        topic: String,
        /// Key or value.
        part: Part,
        /// The subject.
        subject: String,
        /// The registry's reason, verbatim.
        reason: String,
    },
    /// No schema to encode with: the subject has none (`auto_register = false`), or the schema
    /// should come from the source record and it has none that fits the format.
    #[error("{topic} {part}: no schema for {what}: {reason}")]
    NoSchema {
        /// Target topic.
        topic: String,
        /// Key or value.
        part: Part,
        /// The subject or source schema concerned.
        what: String,
        /// Why.
        reason: String,
    },
    /// The registry could not be asked (network, 5xx, timeout). Not the record's fault: retry.
    #[error("{topic} {part}: schema registry unavailable for subject {subject}: {reason}")]
    Unavailable {
        /// Target topic.
        topic: String,
        /// Key or value.
        part: Part,
        /// The subject.
        subject: String,
        /// The transport or server error.
        reason: String,
    },
}

impl EncodeError {
    /// True for a passing failure of the registry (retry); false for a problem of the record
    /// (dead-letter it with kind [`DEAD_LETTER_KIND`]).
    pub fn is_transient(&self) -> bool {
        matches!(self, EncodeError::Unavailable { .. })
    }
}

/// A schema or codec configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// A schema definition does not parse or is not usable for the purpose.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// Which schema (file name, subject, identity).
        what: String,
        /// Why.
        reason: String,
    },
    /// A schema file cannot be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An HTTP client cannot be built, or a URL is unusable.
    #[error("{0}")]
    Config(String),
}

impl SchemaError {
    pub(crate) fn invalid(what: impl Into<String>, reason: impl fmt::Display) -> Self {
        SchemaError::Invalid {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_render_outermost_first() {
        let e = ValueError::new("bad")
            .at(Segment::Field("sku".into()))
            .at(Segment::Index(2))
            .at(Segment::Field("items".into()))
            .at(Segment::Key("k".into()));
        assert_eq!(e.path().to_string(), "$[\"k\"].items[2].sku");
        assert_eq!(ValueError::new("x").path().to_string(), "$");
    }
}
