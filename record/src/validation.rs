//! What a transform returns is untrusted input: every field of an output is checked on the
//! host before it reaches the sink (docs/sandbox.md, "What a guest returns").
//!
//! Two checks, each a pure function of the record and its limits:
//! - [`check_fields`], per transform, on each output it returns: the topic name follows
//!   Kafka's rules, the key, value, headers and header names and values stay within the
//!   transform's [`FieldLimits`], the timestamp is not negative;
//! - [`check_for_sink`], on each record about to be sent: it fits what the sink takes
//!   ([`SinkLimits`]: the record's size as the producer counts it, the timestamp window of its
//!   topic, a key where the topic is compacted).
//!
//! A [`Violation`] names the field and the limit; the pipeline dead-letters the input record
//! with it and goes on.

use std::fmt;

use crate::text::bounded_to;
use crate::{Bytes, OutputRecord};

/// Kafka's longest topic name, in bytes (its names are ASCII).
pub const MAX_TOPIC_NAME_BYTES: usize = 249;

/// Most bytes of a guest-chosen name (topic, header) quoted in a violation's reason.
const NAME_IN_REASON_BYTES: usize = 64;

/// What librdkafka adds to the key, value and headers of one record when it checks the
/// record against `message.max.bytes`: the worst-case varints of the record's length,
/// timestamp and offset deltas, key and value lengths and header count, plus its attributes
/// byte (5 + 1 + 10 + 5 + 5 + 5 + 5).
pub const RECORD_FRAMING_BYTES: u64 = 36;

/// Checks `topic` against Kafka's rule for topic names: 1 to 249 characters of
/// `[A-Za-z0-9._-]`, and not `.` or `..`. The error says what is wrong, quoting the name
/// (cut to a few dozen bytes).
pub fn check_topic_name(topic: &str) -> Result<(), String> {
    let problem = if topic.is_empty() {
        "empty".to_owned()
    } else if topic.len() > MAX_TOPIC_NAME_BYTES {
        format!(
            "{} bytes, more than Kafka's {MAX_TOPIC_NAME_BYTES}",
            topic.len()
        )
    } else if topic == "." || topic == ".." {
        "\".\" and \"..\" are not allowed".to_owned()
    } else if let Some(bad) = topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-".contains(*c)))
    {
        format!("{bad:?} is not allowed")
    } else {
        return Ok(());
    };
    Err(format!(
        "{:?} is not a valid Kafka topic name ({problem}; allowed: 1 to {MAX_TOPIC_NAME_BYTES} \
         of [A-Za-z0-9._-], not \".\" or \"..\")",
        bounded_to(topic, NAME_IN_REASON_BYTES)
    ))
}

/// Limits on the fields of each output of one transform (its `limits` in the pipeline
/// config; the defaults are the engine's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldLimits {
    pub max_key_bytes: u64,
    /// `None`: only the record's size as the sink takes it bounds the value.
    pub max_value_bytes: Option<u64>,
    pub max_headers: u64,
    pub max_header_name_bytes: u64,
    /// `None`: only the record's size as the sink takes it bounds header values.
    pub max_header_value_bytes: Option<u64>,
}

/// What the sink takes of one record written to a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkLimits {
    /// The largest record, as [`kafka_size`] counts it (librdkafka's `message.max.bytes`).
    pub max_record_bytes: u64,
    /// How far ahead of now a timestamp may be (the topic's
    /// `message.timestamp.after.max.ms`); `None`: no bound.
    pub max_timestamp_ahead_ms: Option<i64>,
    /// How far behind now a timestamp may be (`message.timestamp.before.max.ms`); `None`: no
    /// bound.
    pub max_timestamp_behind_ms: Option<i64>,
    /// The topic is compacted: Kafka refuses a record without a key.
    pub key_required: bool,
}

impl SinkLimits {
    /// librdkafka's default `message.max.bytes`.
    pub const LIBRDKAFKA_MESSAGE_MAX_BYTES: u64 = 1_000_000;
    /// Apache Kafka 4.x's default `log.message.timestamp.after.max.ms` (one hour; it was
    /// unbounded before 4.0).
    pub const KAFKA_TIMESTAMP_AFTER_MAX_MS: i64 = 3_600_000;
}

impl Default for SinkLimits {
    /// What a Kafka topic with the broker's and librdkafka's defaults takes.
    fn default() -> Self {
        Self {
            max_record_bytes: Self::LIBRDKAFKA_MESSAGE_MAX_BYTES,
            max_timestamp_ahead_ms: Some(Self::KAFKA_TIMESTAMP_AFTER_MAX_MS),
            max_timestamp_behind_ms: None,
            key_required: false,
        }
    }
}

/// Why an output cannot be written: the field and the limit it breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// `topic`, `key`, `value`, `headers`, `header 3 name`, `timestamp`, `record`, …
    pub field: String,
    /// What is wrong, with the limit.
    pub problem: String,
    /// The record is larger than the sink takes (`sink.oversized` decides).
    pub too_large: bool,
}

impl Violation {
    /// A violation of `field` (not of the record's size).
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
            too_large: false,
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

impl std::error::Error for Violation {}

/// Checks the fields of one output a transform returned against its `limits`.
pub fn check_fields(output: &OutputRecord, limits: &FieldLimits) -> Result<(), Violation> {
    if let Some(topic) = &output.topic {
        check_topic_name(topic).map_err(|problem| Violation::new("topic", problem))?;
    }
    if let Some(key) = &output.key {
        within(key.len(), "max_key_bytes", Some(limits.max_key_bytes))
            .map_err(|problem| Violation::new("key", problem))?;
    }
    if let Some(value) = &output.value {
        within(value.len(), "max_value_bytes", limits.max_value_bytes)
            .map_err(|problem| Violation::new("value", problem))?;
    }
    if output.headers.len() as u64 > limits.max_headers {
        return Err(Violation::new(
            "headers",
            format!(
                "{} headers, more than max_headers = {}",
                output.headers.len(),
                limits.max_headers
            ),
        ));
    }
    for (h, header) in output.headers.iter().enumerate() {
        let field = |part: &str| {
            let name = bounded_to(&header.name, NAME_IN_REASON_BYTES);
            format!("header {h} {part} ({name:?})")
        };
        let name_limit = Some(limits.max_header_name_bytes);
        within(header.name.len(), "max_header_name_bytes", name_limit)
            .map_err(|problem| Violation::new(field("name"), problem))?;
        within(
            header.value.len(),
            "max_header_value_bytes",
            limits.max_header_value_bytes,
        )
        .map_err(|problem| Violation::new(field("value"), problem))?;
    }
    if let Some(timestamp) = output.timestamp_ms
        && timestamp < 0
    {
        return Err(Violation::new(
            "timestamp",
            format!("{timestamp} is negative; Kafka timestamps are milliseconds since 1970"),
        ));
    }
    Ok(())
}

/// Whether `bytes` stay within the limit `limit_name` (`None`: no limit); else the problem.
fn within(bytes: usize, limit_name: &str, limit: Option<u64>) -> Result<(), String> {
    match limit {
        Some(limit) if bytes as u64 > limit => {
            Err(format!("{bytes} bytes, more than {limit_name} = {limit}"))
        }
        _ => Ok(()),
    }
}

/// Checks that `record`, about to be sent, fits what the sink takes (`limits`) at `now_ms`.
pub fn check_for_sink(
    record: &OutputRecord,
    limits: &SinkLimits,
    now_ms: i64,
) -> Result<(), Violation> {
    if let Some(topic) = &record.topic {
        check_topic_name(topic).map_err(|problem| Violation::new("topic", problem))?;
    }
    if limits.key_required && record.key.is_none() {
        return Err(Violation::new(
            "key",
            "missing; the topic is compacted (cleanup.policy=compact) and refuses records \
             without a key",
        ));
    }
    if let Some(timestamp) = record.timestamp_ms {
        check_timestamp(timestamp, limits, now_ms)?;
    }
    let size = kafka_size(record);
    if size > limits.max_record_bytes {
        let key = record.key.as_ref().map_or(0, Bytes::len) as u64;
        let value = record.value.as_ref().map_or(0, Bytes::len) as u64;
        let headers = size - key - value - RECORD_FRAMING_BYTES;
        return Err(Violation {
            field: "record".into(),
            problem: format!(
                "{size} bytes as the producer counts them (key {key}, value {value}, {} \
                 headers {headers}, framing {RECORD_FRAMING_BYTES}), more than the producer's \
                 message.max.bytes = {}",
                record.headers.len(),
                limits.max_record_bytes
            ),
            too_large: true,
        });
    }
    Ok(())
}

/// Checks a timestamp against the window the sink's topic takes around `now_ms`.
pub fn check_timestamp(timestamp: i64, limits: &SinkLimits, now_ms: i64) -> Result<(), Violation> {
    if timestamp < 0 {
        return Err(Violation::new(
            "timestamp",
            format!("{timestamp} is negative; Kafka timestamps are milliseconds since 1970"),
        ));
    }
    if let Some(ahead) = limits.max_timestamp_ahead_ms
        && timestamp.saturating_sub(now_ms) > ahead
    {
        return Err(Violation::new(
            "timestamp",
            format!(
                "{timestamp} is {} ms ahead of now; the topic takes at most \
                 message.timestamp.after.max.ms = {ahead}",
                timestamp.saturating_sub(now_ms)
            ),
        ));
    }
    if let Some(behind) = limits.max_timestamp_behind_ms
        && now_ms.saturating_sub(timestamp) > behind
    {
        return Err(Violation::new(
            "timestamp",
            format!(
                "{timestamp} is {} ms behind now; the topic takes at most \
                 message.timestamp.before.max.ms = {behind}",
                now_ms.saturating_sub(timestamp)
            ),
        ));
    }
    Ok(())
}

/// The size of `record` as librdkafka counts it against `message.max.bytes`: key, value,
/// each header's name and value with their varint lengths, and [`RECORD_FRAMING_BYTES`].
pub fn kafka_size(record: &OutputRecord) -> u64 {
    let key = record.key.as_ref().map_or(0, Bytes::len) as u64;
    let value = record.value.as_ref().map_or(0, Bytes::len) as u64;
    let headers: u64 = record
        .headers
        .iter()
        .map(|h| header_size(h.name.len(), h.value.len()))
        .sum();
    RECORD_FRAMING_BYTES + key + value + headers
}

/// What one header adds to a record's size: its name and value, each with its length as a
/// zigzag varint.
pub fn header_size(name_bytes: usize, value_bytes: usize) -> u64 {
    let (name, value) = (name_bytes as u64, value_bytes as u64);
    name + zigzag_varint_bytes(name) + value + zigzag_varint_bytes(value)
}

/// Bytes of a non-negative length written as a zigzag varint (7 bits a byte).
fn zigzag_varint_bytes(length: u64) -> u64 {
    let zigzag = length.saturating_mul(2);
    u64::from((64 - zigzag.leading_zeros()).div_ceil(7).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Header;

    const LIMITS: FieldLimits = FieldLimits {
        max_key_bytes: 100,
        max_value_bytes: Some(1000),
        max_headers: 3,
        max_header_name_bytes: 10,
        max_header_value_bytes: Some(20),
    };

    fn output() -> OutputRecord {
        OutputRecord {
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"v")),
            headers: vec![Header::new("h", "x")],
            timestamp_ms: Some(0),
            topic: None,
        }
    }

    fn field_violation(change: impl FnOnce(&mut OutputRecord)) -> Option<String> {
        let mut out = output();
        change(&mut out);
        check_fields(&out, &LIMITS).err().map(|v| v.to_string())
    }

    #[test]
    fn topic_names_follow_kafkas_rule_at_and_past_each_edge() {
        assert!(check_topic_name(&"t".repeat(249)).is_ok());
        assert!(check_topic_name("a.b_c-D9").is_ok());
        assert!(check_topic_name("...").is_ok());
        for bad in ["", ".", "..", "a b", "a\0b", "a/b", "é"] {
            assert!(check_topic_name(bad).is_err(), "{bad:?}");
        }
        let long = check_topic_name(&"t".repeat(250)).unwrap_err();
        assert!(long.contains("250 bytes, more than Kafka's 249"), "{long}");
        let huge = check_topic_name(&"t".repeat(20_000_000)).unwrap_err();
        assert!(
            huge.len() < 400,
            "the reason quotes a cut name: {}",
            huge.len()
        );
        let nul = check_topic_name("a\0b").unwrap_err();
        assert!(nul.contains("'\\0' is not allowed"), "{nul}");
    }

    #[test]
    fn each_field_limit_holds_at_its_bound_and_breaks_one_past_it() {
        type Set = Box<dyn Fn(&mut OutputRecord, usize)>;
        let cases: Vec<(&str, Set, usize)> = vec![
            (
                "key",
                Box::new(|o, n| o.key = Some(vec![b'k'; n].into())),
                100,
            ),
            (
                "value",
                Box::new(|o, n| o.value = Some(vec![b'v'; n].into())),
                1000,
            ),
            (
                "headers",
                Box::new(|o, n| o.headers = vec![Header::new("h", "x"); n]),
                3,
            ),
            (
                "header 0 name",
                Box::new(|o, n| o.headers = vec![Header::new("n".repeat(n), "x")]),
                10,
            ),
            (
                "header 0 value",
                Box::new(|o, n| o.headers = vec![Header::new("h", vec![b'x'; n])]),
                20,
            ),
        ];
        for (field, set, bound) in cases {
            assert_eq!(
                field_violation(|o| set(o, bound)),
                None,
                "{field} at {bound}"
            );
            let violation = field_violation(|o| set(o, bound + 1))
                .unwrap_or_else(|| panic!("{field} at {} must break", bound + 1));
            assert!(violation.starts_with(field), "{violation}");
            assert!(violation.contains(&format!("= {bound}")), "{violation}");
        }
    }

    #[test]
    fn unset_value_limits_leave_values_to_the_sink() {
        let limits = FieldLimits {
            max_value_bytes: None,
            max_header_value_bytes: None,
            ..LIMITS
        };
        let mut out = output();
        out.value = Some(vec![0; 10_000].into());
        out.headers = vec![Header::new("h", vec![0; 10_000])];
        assert_eq!(check_fields(&out, &limits), Ok(()));
    }

    #[test]
    fn timestamps_must_not_be_negative() {
        assert_eq!(field_violation(|o| o.timestamp_ms = Some(0)), None);
        assert_eq!(field_violation(|o| o.timestamp_ms = None), None);
        let violation = field_violation(|o| o.timestamp_ms = Some(-1)).unwrap();
        assert!(
            violation.starts_with("timestamp: -1 is negative"),
            "{violation}"
        );
        assert!(field_violation(|o| o.timestamp_ms = Some(i64::MIN)).is_some());
    }

    #[test]
    fn a_bad_topic_or_a_huge_header_name_is_named_without_being_repeated_whole() {
        let topic = field_violation(|o| o.topic = Some("a\0b".into())).unwrap();
        assert!(
            topic.starts_with("topic: \"a\\0b\" is not a valid"),
            "{topic}"
        );
        let name = field_violation(|o| o.headers = vec![Header::new("n".repeat(8 << 20), "")]);
        let name = name.unwrap();
        assert!(name.starts_with("header 0 name (\"nnn"), "{name}");
        assert!(name.len() < 300, "{}", name.len());
    }

    #[test]
    fn the_size_is_counted_as_librdkafka_counts_it() {
        let record = OutputRecord {
            key: Some(vec![0; 3].into()),
            value: Some(vec![0; 10].into()),
            // name 1 + varint 1, value 63 + varint 1 (126 fits 7 bits) ; 64 needs 2 (128).
            headers: vec![Header::new("a", vec![0; 63]), Header::new("b", vec![0; 64])],
            timestamp_ms: None,
            topic: None,
        };
        assert_eq!(
            kafka_size(&record),
            36 + 3 + 10 + (1 + 1 + 63 + 1) + (1 + 1 + 64 + 2)
        );
        assert_eq!(zigzag_varint_bytes(0), 1);
        assert_eq!(zigzag_varint_bytes(63), 1);
        assert_eq!(zigzag_varint_bytes(64), 2);
        assert_eq!(zigzag_varint_bytes(8191), 2);
        assert_eq!(zigzag_varint_bytes(8192), 3);
    }

    #[test]
    fn the_record_size_holds_at_message_max_bytes_and_breaks_one_past_it() {
        let mut record = output();
        record.headers.clear();
        record.key = None;
        let at = SinkLimits::LIBRDKAFKA_MESSAGE_MAX_BYTES - RECORD_FRAMING_BYTES;
        record.value = Some(vec![0; at as usize].into());
        let limits = SinkLimits::default();
        assert_eq!(check_for_sink(&record, &limits, 0), Ok(()));
        record.value = Some(vec![0; at as usize + 1].into());
        let violation = check_for_sink(&record, &limits, 0).unwrap_err();
        assert!(violation.too_large);
        let text = violation.to_string();
        assert!(text.starts_with("record: 1000001 bytes"), "{text}");
        assert!(text.contains("value 999965"), "{text}");
        assert!(text.contains("message.max.bytes = 1000000"), "{text}");
    }

    #[test]
    fn the_timestamp_window_holds_at_its_edges_and_breaks_one_past_them() {
        let now = 1_700_000_000_000;
        let limits = SinkLimits {
            max_timestamp_behind_ms: Some(1000),
            ..SinkLimits::default()
        };
        let ahead = SinkLimits::KAFKA_TIMESTAMP_AFTER_MAX_MS;
        let check = |t: i64| check_timestamp(t, &limits, now).map_err(|v| v.to_string());
        assert_eq!(check(now + ahead), Ok(()));
        let late = check(now + ahead + 1).unwrap_err();
        assert!(
            late.contains("message.timestamp.after.max.ms = 3600000"),
            "{late}"
        );
        assert_eq!(check(now - 1000), Ok(()));
        let early = check(now - 1001).unwrap_err();
        assert!(
            early.contains("message.timestamp.before.max.ms = 1000"),
            "{early}"
        );
        assert!(check(i64::MAX).is_err());
        assert!(check(i64::MIN).unwrap_err().contains("negative"));
        let unbounded = SinkLimits {
            max_timestamp_ahead_ms: None,
            ..SinkLimits::default()
        };
        assert!(check_timestamp(i64::MAX, &unbounded, now).is_ok());
    }

    #[test]
    fn a_compacted_topic_needs_a_key() {
        let limits = SinkLimits {
            key_required: true,
            ..SinkLimits::default()
        };
        let mut record = output();
        assert_eq!(check_for_sink(&record, &limits, 0), Ok(()));
        record.key = None;
        let violation = check_for_sink(&record, &limits, 0).unwrap_err();
        assert_eq!(violation.field, "key");
    }
}
