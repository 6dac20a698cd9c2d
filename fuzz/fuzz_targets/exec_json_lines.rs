//! `sluice exec`'s input: any line a user (or a script) feeds it. Parsing must never panic,
//! and a record it accepts must hold what the line said.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use sluice_record::json_lines::parse_exec_line;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(record) = parse_exec_line(line, 1) else {
        return;
    };
    let value: Value = serde_json::from_str(line).expect("accepted a line that is not JSON");
    let headers = value.get("headers").and_then(Value::as_object);
    assert_eq!(record.headers.len(), headers.map_or(0, |h| h.len()));
    if let Some(text) = value.get("key").and_then(Value::as_str) {
        assert_eq!(record.key.as_deref(), Some(text.as_bytes()));
    }
    if let Some(text) = value.get("value").and_then(Value::as_str) {
        assert_eq!(record.value.as_deref(), Some(text.as_bytes()));
    }
    assert_eq!(&*record.source.message_id, "1");
});
