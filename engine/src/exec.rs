//! `sluice exec`: runs JSON-lines records through a transform chain, no brokers involved.
//!
//! # Input: one JSON object per line (blank lines are ignored)
//! | field | meaning |
//! |---|---|
//! | `key` | string; the key's UTF-8 bytes |
//! | `key_base64` | string; the key as base64 (for binary keys), instead of `key` |
//! | `value` | a string is taken as its UTF-8 bytes, any other JSON value as its compact JSON text (object fields keep their order); `null` or absent = no value (tombstone) |
//! | `value_base64` | string; the value as base64, instead of `value` |
//! | `headers` | object of header name → string |
//! | `event_time_ms`, `publish_time_ms` | integers, milliseconds since the Unix epoch |
//!
//! Any other field is an error naming the line and the field. The record's source is kind
//! `other`, topic `exec`, message id = the line number (1-based, blank lines counted).
//!
//! # Output: one JSON object per line, fields always in this order
//! - per output record: `{"input":N,"key":…,"value":…,"headers":{…},"timestamp_ms":…,"topic":…}`.
//!   `key`/`value` are strings when valid UTF-8; otherwise the field is replaced by
//!   `key_base64`/`value_base64`. An absent key, value, timestamp or topic is `null`
//!   (every line has the same fields). `headers` is an object in record order (a repeated name
//!   appears twice); a header value that is not UTF-8 is written as `{"base64":"…"}`.
//! - per failed input record: `{"input":N,"error":{"kind":…,"transform":"name@sha256:…","reason":…}}`
//!   with kind `skip`, `fatal`, or a dead-letter kind (`dead-letter`, `timeout`,
//!   `out-of-memory`, `stack-overflow`, `trap`, `output-limit`).
//! - a filtered record (no outputs) prints nothing.
//!
//! Records are processed in batches of `batch_size`. A `fatal` outcome is printed, then
//! processing stops and [`ExecError::Fatal`] is returned (records after it are not printed),
//! as the pipeline would stop there. A malformed line stops processing too: the records read
//! before it are processed and printed first.

use std::io::{BufRead, Write};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Serialize;
use serde::ser::SerializeMap;

use crate::chain::TransformChain;
use crate::outcome::RecordOutcome;
use crate::state::MemoryState;
use sluice_record::json_lines::parse_exec_line;
use sluice_record::{Header, InputRecord, OutputRecord};

/// Counts of one `exec` run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecSummary {
    /// Input records processed.
    pub inputs: u64,
    /// Output records printed.
    pub outputs: u64,
    /// Input records a transform skipped.
    pub skipped: u64,
    /// Input records dead-lettered (guest request, trap or limit).
    pub dead_lettered: u64,
    /// Input records with a fatal outcome (at most one: processing stops there).
    pub fatal: u64,
}

/// Why `exec` stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The input could not be read.
    #[error("cannot read the input")]
    Read(#[source] std::io::Error),
    /// The output could not be written.
    #[error("cannot write the output")]
    Write(#[source] std::io::Error),
    /// An input line is not a valid record.
    #[error("input line {line}: {message}")]
    Parse { line: u64, message: String },
    /// A transform returned `fatal` for the record of this line.
    #[error("input line {line}: transform {transform} stopped processing: {reason}")]
    Fatal {
        line: u64,
        transform: String,
        reason: String,
    },
}

impl ExecError {
    /// Whether the error is the user's input (a malformed line): exit code 2.
    pub fn is_user_input_error(&self) -> bool {
        matches!(self, ExecError::Parse { .. })
    }
}

/// Reads records from `input`, runs them through `chain` in batches of `batch_size` and
/// writes the outcomes to `output` (see the module docs for both formats).
pub fn exec(
    chain: &mut TransformChain,
    input: impl BufRead,
    mut output: impl Write,
    batch_size: usize,
) -> Result<ExecSummary, ExecError> {
    let batch_size = batch_size.max(1);
    let mut summary = ExecSummary::default();
    // A stateful guest gets state in memory, for the whole run (docs/state.md).
    let state = chain.uses_state().then(|| Arc::new(MemoryState::default()));
    let state = state.as_ref();
    let mut batch: Vec<(u64, InputRecord)> = Vec::with_capacity(batch_size);
    for (index, line) in input.lines().enumerate() {
        let line_number = index as u64 + 1;
        let line = line.map_err(ExecError::Read)?;
        if line.trim().is_empty() {
            continue;
        }
        match parse_exec_line(&line, line_number) {
            Ok(record) => batch.push((line_number, record)),
            Err(message) => {
                run_batch(chain, state, &mut batch, &mut output, &mut summary)?;
                return Err(ExecError::Parse {
                    line: line_number,
                    message,
                });
            }
        }
        if batch.len() >= batch_size {
            run_batch(chain, state, &mut batch, &mut output, &mut summary)?;
        }
    }
    run_batch(chain, state, &mut batch, &mut output, &mut summary)?;
    Ok(summary)
}

fn run_batch(
    chain: &mut TransformChain,
    state: Option<&Arc<MemoryState>>,
    batch: &mut Vec<(u64, InputRecord)>,
    output: &mut impl Write,
    summary: &mut ExecSummary,
) -> Result<(), ExecError> {
    if batch.is_empty() {
        return Ok(());
    }
    let (lines, records): (Vec<u64>, Vec<InputRecord>) = std::mem::take(batch).into_iter().unzip();
    let outcomes = match state {
        None => chain.run_batch(&records),
        Some(state) => {
            let (outcomes, changes) = chain.run_batch_with_state(&records, state.lend(&records));
            for changes in &changes {
                state.apply(changes);
            }
            outcomes
        }
    };
    for (line, outcome) in lines.into_iter().zip(outcomes) {
        summary.inputs += 1;
        write_outcome(output, line, &outcome).map_err(ExecError::Write)?;
        match outcome {
            RecordOutcome::Outputs(outputs) => summary.outputs += outputs.len() as u64,
            RecordOutcome::Skip { .. } => summary.skipped += 1,
            RecordOutcome::DeadLetter { .. } => summary.dead_lettered += 1,
            RecordOutcome::Fatal { transform, reason } => {
                summary.fatal += 1;
                output.flush().map_err(ExecError::Write)?;
                return Err(ExecError::Fatal {
                    line,
                    transform: transform.to_string(),
                    reason,
                });
            }
        }
    }
    output.flush().map_err(ExecError::Write)
}

fn write_outcome(
    output: &mut impl Write,
    line: u64,
    outcome: &RecordOutcome,
) -> std::io::Result<()> {
    let mut write_line = |value: &dyn erased::Line| -> std::io::Result<()> {
        value.write_to(output)?;
        output.write_all(b"\n")
    };
    match outcome {
        RecordOutcome::Outputs(records) => {
            for record in records {
                write_line(&OutputLine {
                    input: line,
                    record,
                })?;
            }
            Ok(())
        }
        RecordOutcome::Skip { transform, reason } => write_line(&ErrorLine {
            input: line,
            error: ErrorBody {
                kind: "skip",
                transform: transform.to_string(),
                reason,
            },
        }),
        RecordOutcome::DeadLetter {
            transform,
            kind,
            reason,
        } => write_line(&ErrorLine {
            input: line,
            error: ErrorBody {
                kind: kind.as_str(),
                transform: transform.to_string(),
                reason,
            },
        }),
        RecordOutcome::Fatal { transform, reason } => write_line(&ErrorLine {
            input: line,
            error: ErrorBody {
                kind: "fatal",
                transform: transform.to_string(),
                reason,
            },
        }),
    }
}

/// Serialising either line type to a writer, without boxing serde's generic API.
mod erased {
    pub(super) trait Line {
        fn write_to(&self, output: &mut dyn std::io::Write) -> std::io::Result<()>;
    }

    impl<T: serde::Serialize> Line for T {
        fn write_to(&self, output: &mut dyn std::io::Write) -> std::io::Result<()> {
            serde_json::to_writer(output, self).map_err(std::io::Error::from)
        }
    }
}

#[derive(Serialize)]
struct ErrorLine<'a> {
    input: u64,
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    kind: &'a str,
    transform: String,
    reason: &'a str,
}

/// One output record, serialised by hand so the field order is fixed and repeated header
/// names survive.
struct OutputLine<'a> {
    input: u64,
    record: &'a OutputRecord,
}

impl Serialize for OutputLine<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let record = self.record;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("input", &self.input)?;
        bytes_entry(&mut map, "key", record.key.as_deref())?;
        bytes_entry(&mut map, "value", record.value.as_deref())?;
        map.serialize_entry("headers", &HeadersJson(&record.headers))?;
        map.serialize_entry("timestamp_ms", &record.timestamp_ms)?;
        map.serialize_entry("topic", &record.topic)?;
        map.end()
    }
}

/// `name: "text"` for UTF-8 bytes, `name_base64: "…"` otherwise, `name: null` when absent.
fn bytes_entry<M: SerializeMap>(
    map: &mut M,
    name: &str,
    bytes: Option<&[u8]>,
) -> Result<(), M::Error> {
    match bytes.map(std::str::from_utf8) {
        None => map.serialize_entry(name, &None::<&str>),
        Some(Ok(text)) => map.serialize_entry(name, text),
        Some(Err(_)) => map.serialize_entry(
            &format!("{name}_base64"),
            &BASE64.encode(bytes.unwrap_or_default()),
        ),
    }
}

struct HeadersJson<'a>(&'a [Header]);

impl Serialize for HeadersJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Base64Value {
            base64: String,
        }
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for header in self.0 {
            match std::str::from_utf8(&header.value) {
                Ok(text) => map.serialize_entry(&*header.name, text)?,
                Err(_) => map.serialize_entry(
                    &*header.name,
                    &Base64Value {
                        base64: BASE64.encode(&header.value),
                    },
                )?,
            }
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FailureKind, TransformEngine, TransformId};
    use sluice_record::{Bytes, SourceKind};

    fn parse(line: &str) -> Result<InputRecord, String> {
        parse_exec_line(line, 7)
    }

    #[test]
    fn parses_every_field() {
        let record = parse(
            r#"{"key":"k","value":"v","headers":{"b":"2","a":"1"},"event_time_ms":5,"publish_time_ms":6}"#,
        )
        .unwrap();
        assert_eq!(record.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(record.value.as_deref(), Some(&b"v"[..]));
        assert_eq!(
            record.headers,
            [Header::new("b", "2"), Header::new("a", "1")]
        );
        assert_eq!(
            (record.event_time_ms, record.publish_time_ms),
            (Some(5), Some(6))
        );
        assert_eq!(record.source.kind, SourceKind::Other);
        assert_eq!(&*record.source.topic, "exec");
        assert_eq!(&*record.source.message_id, "7");
    }

    #[test]
    fn json_values_become_their_compact_text_in_field_order() {
        let record = parse(r#"{"value": {"z": 1, "a": [true, null, "x"]}}"#).unwrap();
        assert_eq!(
            record.value.as_deref(),
            Some(&br#"{"z":1,"a":[true,null,"x"]}"#[..])
        );
        assert_eq!(
            parse(r#"{"value": 42}"#).unwrap().value.as_deref(),
            Some(&b"42"[..])
        );
        assert_eq!(parse(r#"{"value": null}"#).unwrap().value, None);
        assert_eq!(parse(r#"{}"#).unwrap().value, None);
    }

    #[test]
    fn base64_fields_carry_binary() {
        let record = parse(r#"{"key_base64":"AP8=","value_base64":"3q2+7w=="}"#).unwrap();
        assert_eq!(record.key.as_deref(), Some(&[0, 255][..]));
        assert_eq!(record.value.as_deref(), Some(&[0xde, 0xad, 0xbe, 0xef][..]));
    }

    #[test]
    fn malformed_lines_name_the_problem() {
        let cases = [
            (r#"{"vlaue":"x"}"#, "unknown field `vlaue`"),
            (r#"[1]"#, "expected a JSON object"),
            (r#"{"key":1}"#, "`key` must be a string"),
            (r#"{"key":"a","key_base64":"AA=="}"#, "mutually exclusive"),
            (
                r#"{"value_base64":"***"}"#,
                "`value_base64` is not valid base64",
            ),
            (r#"{"headers":{"a":1}}"#, "header `a` must be a string"),
            (r#"{"headers":[]}"#, "`headers` must be an object"),
            (
                r#"{"event_time_ms":1.5}"#,
                "`event_time_ms` must be an integer",
            ),
            (
                r#"{"publish_time_ms":"1"}"#,
                "`publish_time_ms` must be an integer",
            ),
            ("{", "not valid JSON"),
        ];
        for (line, expected) in cases {
            let error = parse(line).unwrap_err();
            assert!(error.contains(expected), "{line}: {error}");
        }
    }

    fn rendered(outcome: &RecordOutcome) -> String {
        let mut out = Vec::new();
        write_outcome(&mut out, 3, outcome).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn outputs_are_written_with_a_fixed_field_order() {
        let record = OutputRecord {
            key: Some(Bytes::from_static(&[0xff])),
            value: Some(Bytes::from_static(b"v")),
            headers: vec![
                Header::new("b", "1"),
                Header::new("a", vec![0x80]),
                Header::new("b", "2"),
            ],
            timestamp_ms: Some(9),
            topic: None,
        };
        let tombstone = OutputRecord {
            key: None,
            value: None,
            headers: vec![],
            timestamp_ms: None,
            topic: Some("t".into()),
        };
        assert_eq!(
            rendered(&RecordOutcome::Outputs(vec![record, tombstone])),
            concat!(
                r#"{"input":3,"key_base64":"/w==","value":"v","headers":{"b":"1","a":{"base64":"gA=="},"b":"2"},"timestamp_ms":9,"topic":null}"#,
                "\n",
                r#"{"input":3,"key":null,"value":null,"headers":{},"timestamp_ms":null,"topic":"t"}"#,
                "\n"
            )
        );
        assert_eq!(rendered(&RecordOutcome::Outputs(vec![])), "");
    }

    #[test]
    fn errors_are_written_with_their_kind() {
        let transform = TransformId {
            name: "f".into(),
            digest: format!("sha256:{}", "0".repeat(64)),
        };
        let cases = [
            (
                RecordOutcome::Skip {
                    transform: transform.clone(),
                    reason: "s".into(),
                },
                "skip",
                "s",
            ),
            (
                RecordOutcome::DeadLetter {
                    transform: transform.clone(),
                    kind: FailureKind::Timeout,
                    reason: "slow".into(),
                },
                "timeout",
                "slow",
            ),
            (
                RecordOutcome::Fatal {
                    transform: transform.clone(),
                    reason: "no \"way\"".into(),
                },
                "fatal",
                r#"no \"way\""#,
            ),
        ];
        for (outcome, kind, reason) in cases {
            assert_eq!(
                rendered(&outcome),
                format!(
                    "{{\"input\":3,\"error\":{{\"kind\":\"{kind}\",\"transform\":\"f@sha256:000000000000\",\"reason\":\"{reason}\"}}}}\n"
                )
            );
        }
    }

    #[test]
    fn an_empty_chain_echoes_records_and_stops_at_a_bad_line() {
        let engine = TransformEngine::new(None).unwrap();
        let mut chain = TransformChain::new(&engine, &[]).unwrap();
        let input = "{\"key\":\"a\",\"value\":\"1\",\"event_time_ms\":5}\n\n{\"value\":{\"x\":1}}\n{\"nope\":1}\n{\"value\":\"never\"}\n";
        let mut out = Vec::new();
        let error = exec(&mut chain, input.as_bytes(), &mut out, 1).unwrap_err();
        assert!(
            matches!(error, ExecError::Parse { line: 4, .. }),
            "{error:?}"
        );
        assert!(error.is_user_input_error());
        assert!(
            error.to_string().contains("unknown field `nope`"),
            "{error}"
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            concat!(
                r#"{"input":1,"key":"a","value":"1","headers":{},"timestamp_ms":5,"topic":null}"#,
                "\n",
                r#"{"input":3,"key":null,"value":"{\"x\":1}","headers":{},"timestamp_ms":null,"topic":null}"#,
                "\n"
            )
        );
        let mut out = Vec::new();
        let summary = exec(&mut chain, "{}\n{}\n{}\n".as_bytes(), &mut out, 2).unwrap();
        assert_eq!(
            summary,
            ExecSummary {
                inputs: 3,
                outputs: 3,
                ..ExecSummary::default()
            }
        );
    }
}
