//! Dead-letter records: the original record plus headers saying what went wrong.

use crate::identity::SOURCE_ID_HEADER;
use crate::{Header, InputRecord, OutputRecord};

/// Why a record goes to the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Failure class, e.g. `dead-letter` (guest asked), `trap`, `timeout`, `unknown-topic`.
    pub kind: String,
    /// The transform that failed (`name@sha256:…`), or `sink` for failures after transforms.
    pub transform: String,
    /// Human-readable reason.
    pub reason: String,
    /// Leave the value out of the copy (it is what made the record undeliverable).
    pub drop_value: bool,
}

/// The dead-letter copy of `original`: key, value and headers kept as the source delivered them,
/// plus `sluice.error`, `sluice.error.kind`, `sluice.transform` and `sluice.source.id`.
pub fn dead_letter_record(original: &InputRecord, why: &DeadLetter, topic: &str) -> OutputRecord {
    let mut headers = original.headers.clone();
    headers.push(Header::new("sluice.error", why.reason.as_bytes()));
    headers.push(Header::new("sluice.error.kind", why.kind.as_bytes()));
    headers.push(Header::new("sluice.transform", why.transform.as_bytes()));
    headers.push(Header::new(
        SOURCE_ID_HEADER,
        original.source.message_id.as_bytes(),
    ));
    OutputRecord {
        key: original.key.clone(),
        value: if why.drop_value {
            None
        } else {
            original.value.clone()
        },
        headers,
        timestamp_ms: original.default_timestamp_ms(),
        topic: Some(topic.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SourceInfo, SourceKind};

    #[test]
    fn keeps_the_original_and_adds_error_headers() {
        let original = InputRecord {
            key: Some(b"k".to_vec()),
            value: Some(b"not json".to_vec()),
            headers: vec![Header::new("origin", "web")],
            event_time_ms: None,
            publish_time_ms: Some(42),
            source: SourceInfo {
                kind: SourceKind::Pulsar,
                topic: "t".into(),
                message_id: "1:2:-1:-1".into(),
            },
        };
        let why = DeadLetter {
            kind: "trap".into(),
            transform: "redact@sha256:abc".into(),
            reason: "wasm trap: unreachable".into(),
            drop_value: false,
        };
        let dlq = dead_letter_record(&original, &why, "orders-dlq");
        assert_eq!(dlq.key, original.key);
        assert_eq!(dlq.value, original.value);
        assert_eq!(dlq.timestamp_ms, Some(42));
        assert_eq!(dlq.topic.as_deref(), Some("orders-dlq"));
        let names: Vec<_> = dlq.headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "origin",
                "sluice.error",
                "sluice.error.kind",
                "sluice.transform",
                "sluice.source.id"
            ]
        );
        assert_eq!(dlq.headers[2].value, b"trap");
        assert_eq!(dlq.headers[4].value, b"1:2:-1:-1");

        let too_large = DeadLetter {
            drop_value: true,
            ..why
        };
        let dlq = dead_letter_record(&original, &too_large, "orders-dlq");
        assert_eq!(dlq.value, None);
        assert_eq!(dlq.key, original.key);
    }
}
