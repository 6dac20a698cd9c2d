//! The records a transform writes.

use crate::Header;
use crate::header_list::HeaderList;
use crate::shared::Field;

/// A record to write to Kafka (or hand to the next transform).
///
/// Build it from the input with [`Message::into_output`](crate::Message::into_output), or from
/// scratch with [`Output::new`], then adjust it with the `with_*` methods.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Output {
    pub(crate) key: Field,
    pub(crate) value: Field,
    pub(crate) headers: HeaderList,
    pub(crate) timestamp_ms: Option<i64>,
    pub(crate) topic: Option<String>,
}

impl Output {
    /// An empty output: no key, no value (a tombstone), no headers, host-chosen timestamp,
    /// sink topic.
    pub fn new() -> Self {
        Self::default()
    }

    /// The same output with this Kafka key (it picks the partition).
    #[must_use]
    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Field::Owned(key.into());
        self
    }

    /// The same output without a key.
    #[must_use]
    pub fn without_key(mut self) -> Self {
        self.key = Field::Absent;
        self
    }

    /// The same output with this value.
    #[must_use]
    pub fn with_value(mut self, value: impl Into<Vec<u8>>) -> Self {
        self.value = Field::Owned(value.into());
        self
    }

    /// The same output with no value: a tombstone.
    #[must_use]
    pub fn without_value(mut self) -> Self {
        self.value = Field::Absent;
        self
    }

    /// The same output with one more header (after the existing ones).
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push(Header::new(name, value));
        self
    }

    /// The same output with this Kafka timestamp (milliseconds since the Unix epoch).
    #[must_use]
    pub fn with_timestamp_ms(mut self, timestamp_ms: i64) -> Self {
        self.timestamp_ms = Some(timestamp_ms);
        self
    }

    /// The same output routed to `topic` instead of the pipeline's sink topic.
    #[must_use]
    pub fn to_topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = Some(topic.into());
        self
    }

    /// The Kafka key.
    pub fn key(&self) -> Option<&[u8]> {
        self.key.get()
    }

    /// The payload; `None` writes a tombstone.
    pub fn value(&self) -> Option<&[u8]> {
        self.value.get()
    }

    /// All headers, in order.
    pub fn headers(&self) -> &[Header] {
        self.headers.all()
    }

    /// The value of the first header with this name.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.get(name)
    }

    /// The Kafka timestamp; `None` lets the host choose (event time, else publish time).
    pub fn timestamp_ms(&self) -> Option<i64> {
        self.timestamp_ms
    }

    /// The target topic; `None` means the pipeline's sink topic.
    pub fn topic(&self) -> Option<&str> {
        self.topic.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_sets_every_field() {
        let output = Output::new()
            .with_key("k")
            .with_value("v")
            .with_header("h", "1")
            .with_timestamp_ms(42)
            .to_topic("orders");
        assert_eq!(output.key(), Some(&b"k"[..]));
        assert_eq!(output.value(), Some(&b"v"[..]));
        assert_eq!(output.header("h"), Some(&b"1"[..]));
        assert_eq!(output.timestamp_ms(), Some(42));
        assert_eq!(output.topic(), Some("orders"));
        let cleared = output.without_key().without_value();
        assert_eq!((cleared.key(), cleared.value()), (None, None));
    }
}
