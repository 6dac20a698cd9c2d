//! A test guest whose outputs are untrusted input for the host (issue 22): it passes records
//! through unless the value asks for a bad output or a huge text.
//!
//! Written against the raw `wit-bindgen` bindings, as a user with their own toolchain would,
//! not the guest SDK (which would refuse to build some of these outputs). The value (UTF-8) is a
//! marker, or several joined by `;` and applied in order to the one output (`topic:T;key-none`);
//! `N` is a decimal number:
//!
//! | value | what the guest returns |
//! |---|---|
//! | `key:N` / `value:N` | one output whose key / value is N bytes |
//! | `key-none` | one output without a key |
//! | `headers:N` | one output with N headers |
//! | `header-name:N` / `header-value:N` | one output with a header whose name / value is N bytes |
//! | `topic-len:N` | one output routed to a topic of N `t`s |
//! | `topic-nul` | one output routed to `a\0b` |
//! | `topic:NAME` | one output routed to NAME (`topic:` for the empty name) |
//! | `timestamp:N` | one output stamped N (may be negative) |
//! | `timestamp-ahead:N` | one output stamped N ms after the record's publish time |
//! | `dead-letter:N` / `skip:N` / `fatal:N` | that error, with a reason of N bytes |
//! | `panic:N` | a panic whose message is N bytes (a trap, its stderr in the reason) |
//! | `log:N` / `print:N` | a `log` call / a stdout and a stderr line of N bytes, then passes the record through |
//!
//! Config keys (one at most): `init_error_bytes` (init refuses the config with a reason of
//! that many bytes), `init_loop` (init spins until the host's deadline). Any other key is
//! refused.

use sluice::transform::host::log;
use sluice::transform::types::{Header, LogLevel, OutputRecord, TransformError};

wit_bindgen::generate!({
    path: "../../../wit/sluice-transform@0.1.0",
    world: "transformer",
});

struct BadOutputs;

impl Guest for BadOutputs {
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        let Some((key, value)) = config.first() else {
            return Ok(());
        };
        match key.as_str() {
            "init_error_bytes" => {
                let bytes = value.parse().map_err(|_| "init_error_bytes: a number")?;
                Err("i".repeat(bytes))
            }
            "init_loop" => spin_forever(),
            other => Err(format!("unknown config key: {other}")),
        }
    }

    fn transform_batch(records: Vec<InputRecord>) -> Vec<RecordResult> {
        records.iter().map(transform).collect()
    }
}

fn transform(record: &InputRecord) -> RecordResult {
    let markers = record
        .value
        .as_deref()
        .and_then(|v| std::str::from_utf8(v).ok())
        .unwrap_or("");
    let mut output = passthrough(record);
    for marker in markers.split(';') {
        apply(marker, record, &mut output)?;
    }
    Ok(vec![output])
}

/// Applies one marker to `output`, or returns the error it asks for.
fn apply(
    marker: &str,
    record: &InputRecord,
    output: &mut OutputRecord,
) -> Result<(), TransformError> {
    let (name, argument) = marker.split_once(':').unwrap_or((marker, ""));
    let size = || argument.parse::<usize>().unwrap_or(0);
    match name {
        "key" => output.key = Some(vec![b'k'; size()]),
        "key-none" => output.key = None,
        "value" => output.value = Some(vec![b'v'; size()]),
        "headers" => {
            output.headers = (0..size())
                .map(|h| Header {
                    name: format!("h{h}"),
                    value: b"x".to_vec(),
                })
                .collect();
        }
        "header-name" => output.headers.push(Header {
            name: "n".repeat(size()),
            value: b"x".to_vec(),
        }),
        "header-value" => output.headers.push(Header {
            name: "big".into(),
            value: vec![b'x'; size()],
        }),
        "topic-len" => output.topic = Some("t".repeat(size())),
        "topic-nul" => output.topic = Some("a\0b".into()),
        "topic" => output.topic = Some(argument.to_owned()),
        "timestamp" => output.timestamp_ms = argument.parse().ok(),
        "timestamp-ahead" => {
            let ahead: i64 = argument.parse().unwrap_or(0);
            let published = record.publish_time_ms.or(record.event_time_ms).unwrap_or(0);
            output.timestamp_ms = Some(published.saturating_add(ahead));
        }
        "dead-letter" => return Err(TransformError::DeadLetter("d".repeat(size()))),
        "skip" => return Err(TransformError::Skip("s".repeat(size()))),
        "fatal" => return Err(TransformError::Fatal("f".repeat(size()))),
        "panic" => panic!("{}", "p".repeat(size())),
        "log" => log(LogLevel::Warn, &"l".repeat(size())),
        "print" => {
            println!("{}", "o".repeat(size()));
            eprintln!("{}", "e".repeat(size()));
        }
        _ => {}
    }
    Ok(())
}

fn passthrough(record: &InputRecord) -> OutputRecord {
    OutputRecord {
        key: record.key.clone(),
        value: record.value.clone(),
        headers: record.headers.clone(),
        timestamp_ms: None,
        topic: None,
    }
}

fn spin_forever() -> ! {
    let mut counter = 0u64;
    loop {
        counter = std::hint::black_box(counter.wrapping_add(1));
    }
}

export!(BadOutputs);
