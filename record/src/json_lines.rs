//! One line of `sluice exec`'s input (JSON lines) as an [`InputRecord`]: the fields `key`,
//! `key_base64`, `value`, `value_base64`, `headers`, `event_time_ms`, `publish_time_ms`
//! (engine/src/exec.rs documents the format). Here rather than in the engine so it can be
//! fuzzed without building wasmtime (`fuzz/`, target `exec_json_lines`); behind the
//! `json-lines` feature, so the record model itself keeps no dependencies.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;

use crate::{Bytes, Header, InputRecord, SourceInfo, SourceKind};

/// Parses one input line; the error names the problem (the caller adds the line number).
pub fn parse_exec_line(line: &str, line_number: u64) -> Result<InputRecord, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not valid JSON: {e}"))?;
    let Value::Object(fields) = value else {
        return Err("expected a JSON object".to_owned());
    };
    let mut record = InputRecord {
        key: None,
        value: None,
        headers: Vec::new(),
        event_time_ms: None,
        publish_time_ms: None,
        source: SourceInfo {
            kind: SourceKind::Other,
            topic: "exec".into(),
            message_id: line_number.to_string().into(),
            schema_version: None,
        },
    };
    let both = |a: &str, b: &str| format!("`{a}` and `{b}` are mutually exclusive");
    if fields.contains_key("key") && fields.contains_key("key_base64") {
        return Err(both("key", "key_base64"));
    }
    if fields.contains_key("value") && fields.contains_key("value_base64") {
        return Err(both("value", "value_base64"));
    }
    for (name, field) in fields {
        match name.as_str() {
            "key" => record.key = optional_string(&name, field)?.map(Bytes::from),
            "key_base64" => record.key = optional_base64(&name, field)?.map(Bytes::from),
            "value" => {
                record.value = match field {
                    Value::Null => None,
                    Value::String(text) => Some(Bytes::from(text)),
                    json => Some(Bytes::from(json.to_string())),
                }
            }
            "value_base64" => record.value = optional_base64(&name, field)?.map(Bytes::from),
            "headers" => {
                let Value::Object(headers) = field else {
                    return Err("`headers` must be an object of name → string".to_owned());
                };
                for (header, value) in headers {
                    let Value::String(value) = value else {
                        return Err(format!("header `{header}` must be a string"));
                    };
                    record.headers.push(Header::new(header, value));
                }
            }
            "event_time_ms" => record.event_time_ms = optional_integer(&name, field)?,
            "publish_time_ms" => record.publish_time_ms = optional_integer(&name, field)?,
            _ => {
                return Err(format!(
                    "unknown field `{name}` (expected key, key_base64, value, value_base64, headers, event_time_ms, publish_time_ms)"
                ));
            }
        }
    }
    Ok(record)
}

fn optional_string(name: &str, field: Value) -> Result<Option<String>, String> {
    match field {
        Value::Null => Ok(None),
        Value::String(text) => Ok(Some(text)),
        _ => Err(format!("`{name}` must be a string")),
    }
}

fn optional_base64(name: &str, field: Value) -> Result<Option<Vec<u8>>, String> {
    optional_string(name, field)?
        .map(|text| {
            BASE64
                .decode(text)
                .map_err(|e| format!("`{name}` is not valid base64: {e}"))
        })
        .transpose()
}

fn optional_integer(name: &str, field: Value) -> Result<Option<i64>, String> {
    match field {
        Value::Null => Ok(None),
        Value::Number(number) => number
            .as_i64()
            .map(Some)
            .ok_or_else(|| format!("`{name}` must be an integer (milliseconds), got {number}")),
        _ => Err(format!("`{name}` must be an integer (milliseconds)")),
    }
}
