//! The Python and JavaScript SDKs on `sluice:transform@0.2.0` (the flat batch ABI,
//! docs/flat-batch-abi.md) through the real host: their components implement 0.2.0, and the
//! edge-case transform (`tests/guests/languages/edges-*`) gives, in both languages, exactly the
//! bytes written down here for keys, values and headers present or absent, empty or not UTF-8,
//! many headers, fan-out, routing, timestamps and errors on single records of a batch.

use sluice_engine::{FailureKind, Limits, RecordOutcome, TransformChain};
use sluice_record::{Bytes, Header, InputRecord, OutputRecord, SourceInfo, SourceKind};
use sluice_tests::{EDGES_JS, EDGES_PY, REDACT_JS, REDACT_PY, engine};

use crate::support::process::sluice;

const WORLD_0_2: &str = "sluice:transform/transformer@0.2.0";

/// Acceptance: the Python and JavaScript components (the redact examples and the edge-case
/// guests) implement 0.2.0, and `sluice check` says so.
#[test]
fn python_and_javascript_components_implement_0_2_0() {
    // `sluice check` alone: compiling a 12-18 MB component takes a while, so only once each.
    for component in [REDACT_PY, REDACT_JS, EDGES_PY, EDGES_JS] {
        let check = sluice(&["check", component]);
        let stdout = String::from_utf8_lossy(&check.stdout);
        assert!(check.status.success(), "sluice check {component}: {stdout}");
        let imports = stdout
            .lines()
            .find(|line| line.starts_with("imports:"))
            .unwrap_or_default();
        assert!(
            imports.contains("sluice:transform/host@0.2.0") && !imports.contains("@0.1.0"),
            "{component} imports the 0.2.0 host only: {imports}"
        );
        for expected in [
            format!("world:     {WORLD_0_2}"),
            format!("ok: implements {WORLD_0_2}"),
        ] {
            assert!(stdout.contains(&expected), "{expected:?} in:\n{stdout}");
        }
        eprintln!("{component}: {WORLD_0_2}");
    }
}

fn header(name: &str, value: impl Into<Vec<u8>>) -> Header {
    Header::new(name, value)
}

fn source(kind: SourceKind, topic: &str, message_id: &str) -> SourceInfo {
    SourceInfo {
        kind,
        topic: topic.into(),
        message_id: message_id.into(),
        schema_version: None,
    }
}

/// A record from `sluice exec`'s source kind, with the given fields.
fn record(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: Vec<Header>,
    event_time_ms: Option<i64>,
    publish_time_ms: Option<i64>,
) -> InputRecord {
    InputRecord {
        key: key.map(Bytes::copy_from_slice),
        value: value.map(Bytes::copy_from_slice),
        headers,
        event_time_ms,
        publish_time_ms,
        source: source(SourceKind::Other, "edges", "0"),
    }
}

fn op(name: &str) -> Header {
    header("op", name)
}

/// The batch: every edge case once, ordinary forwarded records between the failing ones.
fn edge_records() -> Vec<InputRecord> {
    let non_utf8_key: &[u8] = &[0xff, 0x00, 0xfe];
    let non_utf8_value: &[u8] = &[0x80, 0x81, 0x00, 0xff];
    let every_byte: Vec<u8> = (0..=255u8).cycle().take(64 * 1024).collect();
    let many_headers: Vec<Header> = (0..200u32)
        .map(|i| header(&format!("h{i}"), vec![i as u8, 0xff, b'x']))
        .collect();
    let mut records = vec![
        // Forwarded whole: with key and value; tombstone with 200 headers; empty value.
        record(Some(b"k0"), Some(b"hello"), vec![], None, None),
        record(
            None,
            None,
            many_headers.clone(),
            None,
            Some(1_800_000_000_000),
        ),
        record(Some(b""), Some(b""), vec![header("", "")], Some(5), Some(6)),
        // Tagged: bytes that are not UTF-8, repeated and non-ASCII header names.
        record(
            Some(non_utf8_key),
            Some(non_utf8_value),
            vec![
                op("tag"),
                header("bin", [0xc3, 0x28]),
                header("dup", "1"),
                header("dup", "2"),
                header("名前", "値"),
            ],
            Some(1_700_000_000_003),
            None,
        ),
        record(Some(b"k4"), Some(b""), vec![op("tag")], None, None),
        record(Some(b"k5"), None, vec![op("tag")], None, None),
        record(None, Some(&every_byte), vec![op("tag")], None, None),
        // Rewritten: every field inline.
        record(
            Some(b"k7"),
            Some(non_utf8_value),
            vec![header("a", "1"), op("rewrite"), header("b", [0xfe])],
            Some(1_700_000_000_007),
            Some(1_700_000_000_070),
        ),
        record(None, None, vec![op("rewrite")], None, None),
        // Fan-out, with the source printed.
        {
            let mut record = record(
                Some(b"k9"),
                Some(b"v9"),
                vec![op("fan-out"), header("keep", "me")],
                None,
                Some(9),
            );
            record.source = source(
                SourceKind::Pulsar,
                "persistent://public/default/edges",
                "9:1:-1:0",
            );
            record
        },
        {
            let mut record = record(None, Some(b"v10"), vec![op("fan-out")], None, None);
            record.source = source(SourceKind::GcpPubsub, "edges-sub", "10");
            record
        },
        // Errors on single records, each between forwarded ones.
        record(Some(b"k11"), Some(b"v11"), vec![op("skip")], None, None),
        record(Some(b"k12"), Some(b"v12"), vec![], None, None),
        record(
            Some(b"k13"),
            Some(b"v13"),
            vec![op("dead-letter"), header("why", "bad ✓")],
            None,
            None,
        ),
        record(Some(b"k14"), Some(b"v14"), many_headers, None, None),
        record(Some(b"k15"), Some(b"v15"), vec![op("throw")], None, None),
        record(Some(b"k16"), Some(b"v16"), vec![op("?")], None, None),
    ];
    records.push(record(Some(b"last"), Some(b"{}"), vec![], Some(1), None));
    records
}

/// What became of a record, without the transform's identity (which differs by component).
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Outputs(Vec<OutputRecord>),
    Skip(String),
    DeadLetter(String),
}

fn outcome(actual: RecordOutcome) -> Outcome {
    match actual {
        RecordOutcome::Outputs(outputs) => Outcome::Outputs(outputs),
        RecordOutcome::Skip { reason, .. } => Outcome::Skip(reason),
        RecordOutcome::DeadLetter {
            kind: FailureKind::DeadLetter,
            reason,
            ..
        } => Outcome::DeadLetter(reason),
        other => panic!("not a transform's own decision: {other:?}"),
    }
}

fn text(time: Option<i64>) -> String {
    time.map_or_else(|| "none".to_owned(), |time| time.to_string())
}

fn header_value<'a>(record: &'a InputRecord, name: &str) -> Option<&'a [u8]> {
    record
        .headers
        .iter()
        .find(|header| &*header.name == name)
        .map(|header| &header.value[..])
}

/// What the edge-case transform must make of `input`, written out in Rust.
fn expected(input: &InputRecord) -> Outcome {
    let forwarded = OutputRecord::passthrough(input);
    let Some(op) = header_value(input, "op") else {
        return Outcome::Outputs(vec![forwarded]);
    };
    match op {
        b"tag" => {
            let length = input
                .value
                .as_ref()
                .map_or_else(|| "none".to_owned(), |value| value.len().to_string());
            let mut tagged = forwarded;
            tagged.headers.push(header("value-len", length));
            Outcome::Outputs(vec![tagged])
        }
        b"rewrite" => {
            let mut headers: Vec<Header> = input.headers.iter().rev().cloned().collect();
            headers.push(header(
                "times",
                format!(
                    "{}|{}",
                    text(input.event_time_ms),
                    text(input.publish_time_ms)
                ),
            ));
            let mut key = input.key.as_deref().unwrap_or_default().to_vec();
            key.push(0xff);
            Outcome::Outputs(vec![OutputRecord {
                key: Some(key.into()),
                value: input
                    .value
                    .as_ref()
                    .map(|value| value.iter().rev().copied().collect()),
                headers,
                timestamp_ms: Some(input.event_time_ms.unwrap_or(0) + 1),
                topic: Some("rewritten".into()),
            }])
        }
        b"fan-out" => {
            let empty = OutputRecord {
                value: Some(Bytes::new()),
                ..forwarded.clone()
            };
            let tombstone = OutputRecord {
                key: None,
                value: None,
                ..forwarded
            };
            let kind = match input.source.kind {
                SourceKind::Pulsar => "pulsar",
                SourceKind::GcpPubsub => "gcp-pubsub",
                SourceKind::Other => "other",
            };
            let source = format!("{kind}|{}|{}", input.source.topic, input.source.message_id);
            let key_as_value = OutputRecord {
                key: None,
                value: input.key.clone(),
                headers: vec![header("source", source)],
                timestamp_ms: input.default_timestamp_ms(),
                topic: None,
            };
            Outcome::Outputs(vec![empty, tombstone, key_as_value])
        }
        b"skip" => Outcome::Skip("asked to skip".into()),
        b"dead-letter" => Outcome::DeadLetter(format!(
            "asked: {}",
            String::from_utf8_lossy(header_value(input, "why").unwrap_or_default())
        )),
        b"throw" => Outcome::DeadLetter("thrown on purpose".into()),
        _ => Outcome::DeadLetter("unknown op".into()),
    }
}

/// Acceptance: the Python and JavaScript SDKs on 0.2.0 give, through the real host, exactly
/// the expected outputs (keys, values and headers byte for byte, timestamps, topics) and
/// errors for every edge case, in one batch and one record at a time; an error on one record
/// of the batch changes nothing for the others.
#[test]
fn python_and_javascript_sdks_give_the_expected_bytes_on_the_flat_abi() {
    let records = edge_records();
    let wanted: Vec<Outcome> = records.iter().map(expected).collect();
    let outputs: usize = wanted
        .iter()
        .map(|outcome| match outcome {
            Outcome::Outputs(outputs) => outputs.len(),
            _ => 0,
        })
        .sum();
    for (language, component) in [("Python", EDGES_PY), ("JavaScript", EDGES_JS)] {
        let spec = crate::transform::spec("edges", component, &[], Limits::default());
        let mut chain = TransformChain::new(engine(), &[spec]).unwrap();
        let in_one_batch: Vec<Outcome> =
            chain.run_batch(&records).into_iter().map(outcome).collect();
        for (index, (got, want)) in in_one_batch.iter().zip(&wanted).enumerate() {
            assert_eq!(got, want, "{language}, record {index} in one batch");
        }
        assert_eq!(in_one_batch.len(), wanted.len(), "{language}");
        for (index, record) in records.iter().enumerate() {
            let alone = outcome(chain.run_batch(std::slice::from_ref(record)).remove(0));
            assert_eq!(alone, wanted[index], "{language}, record {index} alone");
        }
        eprintln!(
            "{language}: {} records, {outputs} outputs and {} errors as expected, in one batch \
             and one by one",
            records.len(),
            wanted
                .iter()
                .filter(|outcome| !matches!(outcome, Outcome::Outputs(_)))
                .count()
        );
    }
}
