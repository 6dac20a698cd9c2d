//! Dead-letter records: the original source record plus headers saying what went wrong,
//! built so that the sink always takes them.

use crate::identity::SOURCE_ID_HEADER;
use crate::text::{bound, bounded_to};
use crate::validation::{SinkLimits, check_timestamp, kafka_size};
use crate::{Bytes, Header, InputRecord, OutputRecord};

/// Header with the reason a record was dead-lettered.
pub const ERROR_HEADER: &str = "sluice.error";
/// Header with the failure class (`dead-letter`, `trap`, `invalid-output`, …).
pub const ERROR_KIND_HEADER: &str = "sluice.error.kind";
/// Header naming the transform that failed (`name@sha256:…`), or `sink`.
pub const TRANSFORM_HEADER: &str = "sluice.transform";
/// Header listing what was left out of a copy so that it fits the sink, e.g.
/// `value=6000000 bytes` or `value=6000000 bytes, headers=3`; absent when nothing was.
pub const DROPPED_HEADER: &str = "sluice.error.dropped";

/// Why a record goes to the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Failure class, e.g. `dead-letter` (guest asked), `trap`, `timeout`, `invalid-output`.
    pub kind: String,
    /// The transform that failed (`name@sha256:…`), or `sink` for failures after transforms.
    pub transform: String,
    /// Human-readable reason.
    pub reason: String,
}

impl DeadLetter {
    /// A dead-letter of `kind`, decided by `transform`, for `reason` (cut to the bound of
    /// guest text: reasons quote what guests return).
    pub fn new(kind: &str, transform: &str, reason: String) -> Self {
        Self {
            kind: kind.to_owned(),
            transform: transform.to_owned(),
            reason: bound(reason),
        }
    }
}

/// Where a dead-letter copy goes and what it must fit in.
#[derive(Debug, Clone, Copy)]
pub struct Destination<'a> {
    pub topic: &'a str,
    /// What the dead-letter topic takes.
    pub limits: SinkLimits,
    /// Bytes of headers added to the copy after it is built (its identity).
    pub reserved_bytes: u64,
    pub now_ms: i64,
}

/// The dead-letter copy of `original`: its key, value and headers as the source delivered
/// them, plus `sluice.error`, `sluice.error.kind`, `sluice.transform` and `sluice.source.id`.
///
/// The copy always fits `to`: a timestamp the topic would refuse is left to the producer
/// (now), and when the record is too large the value is left out, then the original headers,
/// then the key, and last the reason is cut; `sluice.error.dropped` says what was left out.
/// A compacted topic gets the source message id as the key of a record that has none.
pub fn dead_letter_record(
    original: &InputRecord,
    why: &DeadLetter,
    to: &Destination<'_>,
) -> OutputRecord {
    let mut dropped = Vec::new();
    let timestamp = original.default_timestamp_ms().filter(|&t| {
        let fits = check_timestamp(t, &to.limits, to.now_ms).is_ok();
        if !fits {
            dropped.push(format!("timestamp={t}"));
        }
        fits
    });
    let key = match &original.key {
        None if to.limits.key_required => Some(Bytes::copy_from_slice(
            original.source.message_id.as_bytes(),
        )),
        key => key.clone(),
    };
    let reason = bound(why.reason.clone());
    let mut copy = Copy {
        key,
        value: original.value.clone(),
        headers: original.headers.clone(),
        reason,
        dropped,
    };
    let max_bytes = to.limits.max_record_bytes.saturating_sub(to.reserved_bytes);
    let fits =
        |copy: &Copy| kafka_size(&copy.record(original, why, to.topic, timestamp)) <= max_bytes;
    if !fits(&copy)
        && let Some(value) = copy.value.take()
    {
        copy.dropped.push(format!("value={} bytes", value.len()));
    }
    if !fits(&copy) && !copy.headers.is_empty() {
        copy.dropped.push(format!("headers={}", copy.headers.len()));
        copy.headers.clear();
    }
    if !fits(&copy)
        && !to.limits.key_required
        && let Some(key) = copy.key.take()
    {
        copy.dropped.push(format!("key={} bytes", key.len()));
    }
    if !fits(&copy) {
        // Only the error headers are left: cut the reason to what remains.
        let mut bare = copy.record(original, why, to.topic, timestamp);
        bare.headers.retain(|h| &*h.name != ERROR_HEADER);
        let room = max_bytes.saturating_sub(kafka_size(&bare) + 32);
        copy.reason = bounded_to(&copy.reason, room as usize).into_owned();
    }
    copy.record(original, why, to.topic, timestamp)
}

/// The parts of a dead-letter copy that may be left out to make it fit.
struct Copy {
    key: Option<Bytes>,
    value: Option<Bytes>,
    headers: Vec<Header>,
    reason: String,
    dropped: Vec<String>,
}

impl Copy {
    fn record(
        &self,
        original: &InputRecord,
        why: &DeadLetter,
        topic: &str,
        timestamp_ms: Option<i64>,
    ) -> OutputRecord {
        let mut headers = self.headers.clone();
        headers.push(Header::new(ERROR_HEADER, self.reason.as_bytes()));
        headers.push(Header::new(ERROR_KIND_HEADER, why.kind.as_bytes()));
        headers.push(Header::new(TRANSFORM_HEADER, why.transform.as_bytes()));
        headers.push(Header::new(
            SOURCE_ID_HEADER,
            original.source.message_id.as_bytes(),
        ));
        if !self.dropped.is_empty() {
            headers.push(Header::new(DROPPED_HEADER, self.dropped.join(", ")));
        }
        OutputRecord {
            key: self.key.clone(),
            value: self.value.clone(),
            headers,
            timestamp_ms,
            topic: Some(topic.to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::MAX_GUEST_TEXT_BYTES;
    use crate::{SourceInfo, SourceKind};

    fn original(value_bytes: usize) -> InputRecord {
        InputRecord {
            key: Some(Bytes::from_static(b"k")),
            value: Some(vec![b'v'; value_bytes].into()),
            headers: vec![Header::new("origin", "web")],
            event_time_ms: None,
            publish_time_ms: Some(42),
            source: SourceInfo {
                kind: SourceKind::Pulsar,
                topic: "t".into(),
                message_id: "1:2:-1:-1".into(),
                schema_version: None,
            },
        }
    }

    fn why(reason: String) -> DeadLetter {
        DeadLetter::new("trap", "redact@sha256:abc", reason)
    }

    fn to(max_record_bytes: u64) -> Destination<'static> {
        Destination {
            topic: "orders-dlq",
            limits: SinkLimits {
                max_record_bytes,
                ..SinkLimits::default()
            },
            reserved_bytes: 100,
            now_ms: 1_000,
        }
    }

    fn header<'a>(record: &'a OutputRecord, name: &str) -> Option<&'a [u8]> {
        record
            .headers
            .iter()
            .find(|h| &*h.name == name)
            .map(|h| &h.value[..])
    }

    #[test]
    fn keeps_the_original_and_adds_error_headers() {
        let original = original(8);
        let dlq = dead_letter_record(
            &original,
            &why("wasm trap: unreachable".into()),
            &to(1_000_000),
        );
        assert_eq!(dlq.key, original.key);
        assert_eq!(dlq.value, original.value);
        assert_eq!(dlq.timestamp_ms, Some(42));
        assert_eq!(dlq.topic.as_deref(), Some("orders-dlq"));
        let names: Vec<_> = dlq.headers.iter().map(|h| &*h.name).collect();
        assert_eq!(
            names,
            [
                "origin",
                ERROR_HEADER,
                ERROR_KIND_HEADER,
                TRANSFORM_HEADER,
                SOURCE_ID_HEADER
            ]
        );
        assert_eq!(header(&dlq, ERROR_KIND_HEADER), Some(&b"trap"[..]));
        assert_eq!(header(&dlq, SOURCE_ID_HEADER), Some(&b"1:2:-1:-1"[..]));
    }

    #[test]
    fn a_huge_reason_is_cut_to_the_bound() {
        let dlq = dead_letter_record(&original(8), &why("r".repeat(20 << 20)), &to(1_000_000));
        let reason = header(&dlq, ERROR_HEADER).unwrap();
        assert!(reason.len() <= MAX_GUEST_TEXT_BYTES);
        assert!(std::str::from_utf8(reason).unwrap().ends_with("bytes cut]"));
    }

    #[test]
    fn a_copy_that_does_not_fit_leaves_the_value_out_and_says_so() {
        let original = original(2_000_000);
        let to = to(1_000_000);
        let dlq = dead_letter_record(&original, &why("too big".into()), &to);
        assert_eq!(dlq.value, None);
        assert_eq!(dlq.key, original.key);
        assert_eq!(header(&dlq, "origin"), Some(&b"web"[..]));
        assert_eq!(
            header(&dlq, DROPPED_HEADER),
            Some(&b"value=2000000 bytes"[..])
        );
        assert!(kafka_size(&dlq) + to.reserved_bytes <= 1_000_000);
    }

    #[test]
    fn a_copy_exactly_at_the_limit_stays_whole_and_one_byte_more_is_reduced() {
        let original = original(500);
        let whole = dead_letter_record(&original, &why("r".into()), &to(1_000_000));
        let exact = kafka_size(&whole) + 100;
        let at = dead_letter_record(&original, &why("r".into()), &to(exact));
        assert_eq!(at, whole);
        let under = dead_letter_record(&original, &why("r".into()), &to(exact - 1));
        assert_eq!(under.value, None);
    }

    #[test]
    fn it_fits_even_a_tiny_limit_by_leaving_everything_out_and_cutting_the_reason() {
        let mut original = original(5000);
        original.key = Some(vec![b'k'; 5000].into());
        original.headers = vec![Header::new("h", vec![0; 5000]); 3];
        let to = to(1000);
        let dlq = dead_letter_record(&original, &why("x".repeat(3000)), &to);
        assert!(
            kafka_size(&dlq) + to.reserved_bytes <= 1000,
            "{}",
            kafka_size(&dlq)
        );
        assert_eq!((dlq.key.as_ref(), dlq.value.as_ref()), (None, None));
        assert_eq!(
            header(&dlq, DROPPED_HEADER),
            Some(&b"value=5000 bytes, headers=3, key=5000 bytes"[..])
        );
        assert!(header(&dlq, ERROR_HEADER).unwrap().ends_with(b"bytes cut]"));
    }

    #[test]
    fn a_timestamp_the_topic_refuses_is_left_to_the_producer() {
        let mut original = original(8);
        original.event_time_ms = Some(i64::MIN);
        let dlq = dead_letter_record(&original, &why("bad".into()), &to(1_000_000));
        assert_eq!(dlq.timestamp_ms, None);
        let dropped = header(&dlq, DROPPED_HEADER).unwrap();
        assert_eq!(dropped, format!("timestamp={}", i64::MIN).as_bytes());
    }

    #[test]
    fn a_compacted_dead_letter_topic_gets_a_key() {
        let mut original = original(8);
        original.key = None;
        let mut to = to(1_000_000);
        to.limits.key_required = true;
        let dlq = dead_letter_record(&original, &why("bad".into()), &to);
        assert_eq!(dlq.key.as_deref(), Some(&b"1:2:-1:-1"[..]));
    }
}
