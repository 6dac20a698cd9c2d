//! The input record a transform receives.

use crate::Output;
use crate::header_list::HeaderList;
use crate::input_source::InputSource;
use crate::shared::Field;

/// One record header: a name and raw bytes (Pulsar property, Pub/Sub attribute, Kafka header).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Header {
    /// Header name.
    pub name: String,
    /// Header value as raw bytes; text values are UTF-8.
    pub value: Vec<u8>,
}

impl Header {
    /// A header from a name and a value.
    pub fn new(name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// The kind of system an input record was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SourceKind {
    /// Apache Pulsar.
    Pulsar,
    /// Google Cloud Pub/Sub.
    GcpPubsub,
    /// Anything else: `sluice exec`, tests.
    #[default]
    Other,
}

/// Where an input record came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct SourceInfo {
    /// The kind of source.
    pub kind: SourceKind,
    /// The Pulsar topic or the Pub/Sub subscription the record was read from.
    pub topic: String,
    /// The message id as the source prints it (Pulsar `ledger:entry:partition:batch`, Pub/Sub
    /// message id).
    pub message_id: String,
}

/// A record as the source delivered it.
///
/// The host builds these; tests build them with [`Message::new`] or [`Message::from_value`] and
/// the `with_*` methods.
///
/// In a component a message borrows its bytes from the batch the host sent (nothing is copied
/// until asked for), and an output made from it with [`Message::into_output`] sends back only
/// a reference to whatever it leaves unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    pub(crate) key: Field,
    pub(crate) value: Field,
    pub(crate) headers: HeaderList,
    pub(crate) event_time_ms: Option<i64>,
    pub(crate) publish_time_ms: Option<i64>,
    pub(crate) source: InputSource,
    /// Its index in the batch the host sent (none for a message made by the transform or a
    /// test): what its keyed state calls name.
    pub(crate) index: Option<u32>,
}

impl Message {
    /// An empty message: no key, no value (a tombstone), no headers, no times, source `Other`.
    pub fn new() -> Self {
        Self::default()
    }

    /// The keyed state of this record's key (docs/state.md).
    pub fn state(&self) -> crate::State<'_> {
        crate::State::new(self)
    }

    /// A message with this value and nothing else.
    pub fn from_value(value: impl Into<Vec<u8>>) -> Self {
        Self::new().with_value(value)
    }

    /// The same message with this key.
    #[must_use]
    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Field::Owned(key.into());
        self
    }

    /// The same message with this value.
    #[must_use]
    pub fn with_value(mut self, value: impl Into<Vec<u8>>) -> Self {
        self.value = Field::Owned(value.into());
        self
    }

    /// The same message with one more header (after the existing ones).
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push(Header::new(name, value));
        self
    }

    /// The same message with this event time (milliseconds since the Unix epoch).
    #[must_use]
    pub fn with_event_time_ms(mut self, event_time_ms: i64) -> Self {
        self.event_time_ms = Some(event_time_ms);
        self
    }

    /// The same message with this publish time (milliseconds since the Unix epoch).
    #[must_use]
    pub fn with_publish_time_ms(mut self, publish_time_ms: i64) -> Self {
        self.publish_time_ms = Some(publish_time_ms);
        self
    }

    /// The same message coming from this source.
    #[must_use]
    pub fn with_source(mut self, source: SourceInfo) -> Self {
        self.source = InputSource::Given(source);
        self
    }

    /// Pulsar key or Pub/Sub ordering key; `None` when absent.
    pub fn key(&self) -> Option<&[u8]> {
        self.key.get()
    }

    /// The payload; `None` for a tombstone.
    pub fn value(&self) -> Option<&[u8]> {
        self.value.get()
    }

    /// All headers, in source order.
    pub fn headers(&self) -> &[Header] {
        self.headers.all()
    }

    /// The value of the first header with this name.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.get(name)
    }

    /// Event time set by the producer, in milliseconds since the Unix epoch.
    pub fn event_time_ms(&self) -> Option<i64> {
        self.event_time_ms
    }

    /// Time the broker accepted the record, in milliseconds since the Unix epoch.
    pub fn publish_time_ms(&self) -> Option<i64> {
        self.publish_time_ms
    }

    /// Where the record came from.
    pub fn source(&self) -> &SourceInfo {
        self.source.get()
    }

    /// An output with this message's key, value and headers; no timestamp (the host picks one)
    /// and no topic (the pipeline's sink topic). Moves the bytes, copies nothing.
    pub fn into_output(self) -> Output {
        Output {
            key: self.key,
            value: self.value,
            headers: self.headers,
            timestamp_ms: None,
            topic: None,
        }
    }
}

impl From<Message> for Output {
    fn from(message: Message) -> Self {
        message.into_output()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_fill_the_accessors() {
        let message = Message::from_value("v")
            .with_key("k")
            .with_header("a", "1")
            .with_header("a", "2")
            .with_event_time_ms(5)
            .with_publish_time_ms(6);
        assert_eq!(message.key(), Some(&b"k"[..]));
        assert_eq!(message.value(), Some(&b"v"[..]));
        assert_eq!(message.header("a"), Some(&b"1"[..]), "first header wins");
        assert_eq!(message.header("b"), None);
        assert_eq!(message.headers().len(), 2);
        assert_eq!(message.event_time_ms(), Some(5));
        assert_eq!(message.publish_time_ms(), Some(6));
        assert_eq!(message.source().kind, SourceKind::Other);
    }

    #[test]
    fn new_message_is_a_tombstone() {
        let message = Message::new();
        assert_eq!(message.value(), None);
        assert_eq!(message.key(), None);
    }

    #[test]
    fn into_output_keeps_key_value_headers_and_drops_times() {
        let output = Message::from_value("v")
            .with_key("k")
            .with_header("h", "x")
            .with_event_time_ms(9)
            .into_output();
        assert_eq!(output.key(), Some(&b"k"[..]));
        assert_eq!(output.value(), Some(&b"v"[..]));
        assert_eq!(output.headers(), &[Header::new("h", "x")]);
        assert_eq!(output.timestamp_ms(), None);
        assert_eq!(output.topic(), None);
    }
}
