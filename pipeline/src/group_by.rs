//! Group-by (`group_by = { header = "…" }` or `{ json = "/pointer" }` on a pipeline,
//! docs/group-by-and-merge.md): each source record is given a new key, taken from one of its
//! headers or from a field of its JSON value, before it is spread over the transform lanes.
//! The lanes then follow the new key, so the records of one new key are transformed and
//! produced in the order the source delivered them, and Kafka partitions them by it (the
//! transforms see the new key and, writing the key they were given, keep it).
//!
//! The new key is a function of the record alone, so a record delivered again after a crash
//! gets the same key, lane and outputs (exactly-once stays deterministic).

use bytes::Bytes;
use serde::Deserialize;
use sluice_record::InputRecord;

/// Where a record's new key comes from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum GroupBy {
    /// The value of this header (its first occurrence), bytes unchanged.
    Header(String),
    /// The field at this JSON pointer (RFC 6901, e.g. `/customer/id`) of the record's value
    /// read as JSON: a string's text, or any other JSON value's compact text.
    Json(String),
}

impl GroupBy {
    /// Checks the setting; the message says what is wrong with it.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            GroupBy::Header(name) if name.is_empty() => Err("the header name is empty".into()),
            GroupBy::Json(pointer) if !pointer.starts_with('/') => Err(format!(
                "{pointer:?} is not a JSON pointer: it starts with '/' (e.g. \"/customer/id\")"
            )),
            _ => Ok(()),
        }
    }

    /// The new key of `record`; `None` when the record has no such header or field (it then
    /// keeps its key).
    pub(crate) fn key_of(&self, record: &InputRecord) -> Option<Bytes> {
        match self {
            GroupBy::Header(name) => (record.headers.iter())
                .find(|header| *header.name == **name)
                .map(|header| header.value.clone()),
            GroupBy::Json(pointer) => {
                let value = record.value.as_ref()?;
                let json: serde_json::Value = serde_json::from_slice(value).ok()?;
                match json.pointer(pointer)? {
                    serde_json::Value::Null => None,
                    serde_json::Value::String(text) => Some(Bytes::from(text.clone())),
                    other => Some(Bytes::from(other.to_string())),
                }
            }
        }
    }

    /// Re-keys `record`; `false` when it had no such header or field and keeps its key.
    pub(crate) fn rekey(&self, record: &mut InputRecord) -> bool {
        match self.key_of(record) {
            Some(key) => {
                record.key = Some(key);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_record::Header;

    fn record(value: &str, headers: Vec<Header>) -> InputRecord {
        InputRecord {
            key: Some(Bytes::from_static(b"old")),
            value: Some(Bytes::from(value.to_owned())),
            headers,
            event_time_ms: None,
            publish_time_ms: None,
            source: sluice_record::SourceInfo {
                kind: sluice_record::SourceKind::Other,
                topic: "t".into(),
                message_id: "1".into(),
                schema_version: None,
            },
        }
    }

    #[test]
    fn a_header_or_a_json_field_becomes_the_key() {
        let mut by_header = record("{}", vec![Header::new("customer", "c-7")]);
        assert!(GroupBy::Header("customer".into()).rekey(&mut by_header));
        assert_eq!(by_header.key.as_deref(), Some(&b"c-7"[..]));

        let mut by_json = record(r#"{"customer":{"id":"c-9","n":42}}"#, vec![]);
        assert!(GroupBy::Json("/customer/id".into()).rekey(&mut by_json));
        assert_eq!(by_json.key.as_deref(), Some(&b"c-9"[..]));
        assert!(GroupBy::Json("/customer/n".into()).rekey(&mut by_json));
        assert_eq!(by_json.key.as_deref(), Some(&b"42"[..]));
    }

    #[test]
    fn a_record_without_the_field_keeps_its_key() {
        let mut not_json = record("not json", vec![]);
        assert!(!GroupBy::Json("/customer".into()).rekey(&mut not_json));
        assert_eq!(not_json.key.as_deref(), Some(&b"old"[..]));
        let mut no_header = record("{}", vec![]);
        assert!(!GroupBy::Header("customer".into()).rekey(&mut no_header));
    }

    #[test]
    fn a_pointer_without_a_leading_slash_is_refused() {
        assert!(GroupBy::Json("customer".into()).validate().is_err());
        assert!(GroupBy::Header(String::new()).validate().is_err());
    }
}
