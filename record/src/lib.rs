//! Host-side records: what sources produce, transforms consume and the sink writes, and the
//! identity every written record carries.
//!
//! These mirror the WIT types of `sluice:transform@0.1.0` but stay independent of the
//! wasmtime bindings, so sources and sinks do not depend on the transform engine.
//!
//! Bytes are shared, not owned: key, value and header values are [`Bytes`] and names and
//! source strings `Arc<str>`, so a source hands its buffers over without copying, and the
//! transform chain, an output forwarding its input, a pipeline without transforms and the
//! dead-letter copy all share the source's bytes (a clone is a reference count).
//!
//! - [`identity`]: the `sluice.pipeline` / `sluice.source.id` / `sluice.output.index` headers,
//!   defined, stamped and parsed here only.
//! - [`dead_letter`]: the dead-letter copy of a record and its `sluice.error*` headers, built
//!   to fit the sink;
//! - [`validation`]: the checks every output passes before the sink (what a guest returns is
//!   untrusted input);
//! - [`text`]: bounding guest-controlled text before the host repeats it;
//! - `json_lines` (feature `json-lines`): `sluice exec`'s input lines as records.

pub mod dead_letter;
pub mod identity;
#[cfg(feature = "json-lines")]
pub mod json_lines;
pub mod text;
pub mod validation;

use std::sync::Arc;

/// Shared, immutable bytes: the type of every key, value and header value.
pub use bytes::Bytes;

/// One header: Pulsar property, Pub/Sub attribute or Kafka header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: Arc<str>,
    pub value: Bytes,
}

impl Header {
    /// A header owning `value` (a `Vec<u8>` or `String` is taken over, not copied).
    pub fn new(name: impl Into<Arc<str>>, value: impl Into<Vec<u8>>) -> Self {
        Self {
            name: name.into(),
            value: Bytes::from(value.into()),
        }
    }

    /// A header sharing `value`.
    pub fn shared(name: impl Into<Arc<str>>, value: Bytes) -> Self {
        Self {
            name: name.into(),
            value,
        }
    }
}

/// The kind of system a record was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Pulsar,
    GcpPubsub,
    Other,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Pulsar => "pulsar",
            SourceKind::GcpPubsub => "gcp_pubsub",
            SourceKind::Other => "other",
        }
    }
}

/// Where an input record came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceInfo {
    pub kind: SourceKind,
    /// Pulsar topic or Pub/Sub subscription (shared by the records of one source).
    pub topic: Arc<str>,
    /// Message id as the source prints it.
    pub message_id: Arc<str>,
    /// Pulsar: the message's schema version (its metadata's `schema_version`), which names
    /// the topic's schema it was written with; `None` elsewhere.
    pub schema_version: Option<Bytes>,
}

/// A record as the source delivered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRecord {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
    pub event_time_ms: Option<i64>,
    pub publish_time_ms: Option<i64>,
    pub source: SourceInfo,
}

impl InputRecord {
    /// The timestamp an output inherits when the transform sets none: event time, else
    /// publish time (docs/delivery-guarantees.md, "Source metadata").
    pub fn default_timestamp_ms(&self) -> Option<i64> {
        self.event_time_ms.or(self.publish_time_ms)
    }
}

/// A record to write to Kafka (or to hand to the next transform of a chain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRecord {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
    pub timestamp_ms: Option<i64>,
    /// Target topic; `None` means the sink's default topic.
    pub topic: Option<String>,
}

impl OutputRecord {
    /// The identity transform: what a pipeline without transforms writes. It shares the
    /// input's bytes, and its headers have room for the identity the pipeline stamps.
    pub fn passthrough(input: &InputRecord) -> Self {
        let mut headers = Vec::with_capacity(input.headers.len() + identity::IDENTITY_HEADERS);
        headers.extend_from_slice(&input.headers);
        Self {
            key: input.key.clone(),
            value: input.value.clone(),
            headers,
            timestamp_ms: input.default_timestamp_ms(),
            topic: None,
        }
    }
}

/// Milliseconds since the Unix epoch, the unit of every record timestamp (0 if the clock is
/// before the epoch).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
