//! How a source message becomes an [`InputRecord`] (docs/delivery-guarantees.md, "Source
//! metadata"): pure functions over the message's parts, so each system maps the same way
//! whichever client received the message, and so the mapping can be fuzzed without a client
//! (`fuzz/`, target `source_metadata`). Brokers and their clients hand over whatever a producer
//! set: every number is taken as untrusted (no overflow, no negative time).

use std::collections::HashMap;
use std::sync::Arc;

use sluice_record::{Bytes, Header, InputRecord, SourceInfo, SourceKind};

/// The parts of a Pulsar message that make a record.
#[derive(Debug)]
pub struct PulsarMessageParts<'a> {
    /// The key, already decoded (Pulsar may carry it base64-encoded).
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    /// The producer sent a null value (a tombstone), not an empty one.
    pub null_value: bool,
    pub properties: Vec<(&'a str, &'a str)>,
    /// Milliseconds since the epoch; 0 means unset.
    pub event_time: Option<u64>,
    /// Milliseconds since the epoch.
    pub publish_time: u64,
    /// Shared by the records of one partition (no copy per record).
    pub topic: Arc<str>,
    /// The Java client's `MessageId.toString()` shape.
    pub message_id: String,
    pub schema_version: Option<Vec<u8>>,
}

/// Key → key, properties → headers (in order), event time and publish time kept (a time
/// beyond `i64` milliseconds is dropped, not wrapped into the past). The key, payload and
/// schema version move into the record (no copy).
pub fn pulsar_record(message: PulsarMessageParts<'_>) -> InputRecord {
    InputRecord {
        key: message.key.map(Bytes::from),
        value: (!message.null_value).then(|| Bytes::from(message.payload)),
        headers: message
            .properties
            .iter()
            .map(|(name, value)| Header::new(*name, value.as_bytes()))
            .collect(),
        event_time_ms: message
            .event_time
            .filter(|&t| t > 0)
            .and_then(|t| i64::try_from(t).ok()),
        publish_time_ms: i64::try_from(message.publish_time).ok(),
        source: SourceInfo {
            kind: SourceKind::Pulsar,
            topic: message.topic,
            message_id: message.message_id.into(),
            schema_version: message.schema_version.map(Bytes::from),
        },
    }
}

/// The parts of a Pub/Sub message that make a record, whichever client (streaming or unary)
/// received it.
#[derive(Debug)]
pub struct PubSubMessageParts<'a> {
    /// Moved into the record: the streaming client's buffer is shared, the unary client's
    /// vector taken over.
    pub data: Bytes,
    pub attributes: &'a HashMap<String, String>,
    pub ordering_key: &'a str,
    pub message_id: &'a str,
    /// (seconds, nanos) since the epoch.
    pub publish_time: Option<(i64, i32)>,
}

/// Ordering key (or the attribute `key_attribute`) → key, attributes → headers (sorted by
/// name: Pub/Sub keeps no order), publish time kept when it is a valid time; the topic is the
/// subscription's path (shared by its records). The data moves into the record (no copy).
pub fn pubsub_record(
    message: PubSubMessageParts<'_>,
    subscription: &Arc<str>,
    key_attribute: Option<&str>,
) -> InputRecord {
    let key = match key_attribute {
        Some(attribute) => message
            .attributes
            .get(attribute)
            .map(|v| Bytes::copy_from_slice(v.as_bytes())),
        None => (!message.ordering_key.is_empty())
            .then(|| Bytes::copy_from_slice(message.ordering_key.as_bytes())),
    };
    let mut headers: Vec<Header> = message
        .attributes
        .iter()
        .map(|(k, v)| Header::new(k.as_str(), v.as_bytes()))
        .collect();
    headers.sort_by(|a, b| a.name.cmp(&b.name));
    InputRecord {
        key,
        value: Some(message.data),
        headers,
        event_time_ms: None,
        publish_time_ms: message.publish_time.and_then(timestamp_ms),
        source: SourceInfo {
            kind: SourceKind::GcpPubsub,
            topic: subscription.clone(),
            message_id: message.message_id.into(),
            schema_version: None,
        },
    }
}

/// A protobuf `Timestamp` as milliseconds since the epoch; `None` when it is not a valid
/// timestamp (nanos outside 0..1e9, or milliseconds beyond `i64`).
fn timestamp_ms((seconds, nanos): (i64, i32)) -> Option<i64> {
    if !(0..1_000_000_000).contains(&nanos) {
        return None;
    }
    seconds
        .checked_mul(1000)?
        .checked_add(i64::from(nanos) / 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_out_of_range_are_dropped_not_wrapped() {
        assert_eq!(
            timestamp_ms((1_700_000_000, 5_000_000)),
            Some(1_700_000_000_005)
        );
        assert_eq!(timestamp_ms((i64::MAX, 0)), None);
        assert_eq!(timestamp_ms((1, -1)), None);
        let record = pulsar_record(PulsarMessageParts {
            key: None,
            payload: vec![],
            null_value: false,
            properties: vec![],
            event_time: Some(u64::MAX),
            publish_time: u64::MAX,
            topic: "t".into(),
            message_id: "1:2:-1:-1".into(),
            schema_version: None,
        });
        assert_eq!(record.event_time_ms, None);
        assert_eq!(record.publish_time_ms, None);
    }
}
