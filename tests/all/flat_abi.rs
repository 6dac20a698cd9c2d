//! `sluice:transform@0.2.0` (the flat batch ABI, docs/flat-batch-abi.md) beside 0.1.0 through
//! the real host: both versions run, a result buffer that breaks the layout traps only its
//! batch, and outputs that forward their input are charged against the output limits.

use std::path::Path;
use std::time::Instant;

use sluice_engine::{
    self as transform, FailureKind, Limits, RecordOutcome, TransformChain, WorldVersion,
};
use sluice_record::{Bytes, Header, InputRecord, OutputRecord, SourceInfo, SourceKind};
use sluice_tests::{
    BAD_OUTPUTS, FAULT_ON_MARKER, FLAT_HOSTILE, IDENTITY_V0_1, PASSTHROUGH, REDACT, engine,
};

fn record(index: usize, value: &str) -> InputRecord {
    InputRecord {
        key: Some(format!("key-{index}").into()),
        value: Some(Bytes::copy_from_slice(value.as_bytes())),
        headers: vec![
            Header::new("index", index.to_string()),
            Header::new("empty", ""),
        ],
        event_time_ms: index
            .is_multiple_of(2)
            .then_some(1_700_000_000_000 + index as i64),
        publish_time_ms: Some(1_800_000_000_000),
        source: SourceInfo {
            kind: if index.is_multiple_of(3) {
                SourceKind::Pulsar
            } else {
                SourceKind::GcpPubsub
            },
            topic: format!("topic-{}", index % 3).into(),
            message_id: format!("{index}:0:-1:0").into(),
            schema_version: None,
        },
    }
}

/// Twenty ordinary records with `marker` as the value of the middle one.
fn batch_with(marker: &str) -> Vec<InputRecord> {
    (0..20)
        .map(|i| record(i, if i == 10 { marker } else { "ordinary" }))
        .collect()
}

fn chain(path: &str, limits: Limits) -> TransformChain {
    configured_chain(path, &[], limits)
}

fn configured_chain(path: &str, config: &[(&str, &str)], limits: Limits) -> TransformChain {
    let spec = crate::transform::spec("flat", path, config, limits);
    TransformChain::new(engine(), &[spec]).unwrap_or_else(|e| panic!("{path}: {e:#}"))
}

fn passed_through(record: &InputRecord) -> RecordOutcome {
    RecordOutcome::Outputs(vec![OutputRecord::passthrough(record)])
}

#[test]
fn both_world_versions_run_through_the_real_host_and_check_names_the_version() {
    let cases = [
        (IDENTITY_V0_1, WorldVersion::V0_1),
        (FAULT_ON_MARKER, WorldVersion::V0_1),
        (BAD_OUTPUTS, WorldVersion::V0_1),
        (PASSTHROUGH, WorldVersion::V0_2),
        (FLAT_HOSTILE, WorldVersion::V0_2),
    ];
    // Keys, values, headers (one empty), times (some absent) and several sources.
    let mut records: Vec<_> = (0..50)
        .map(|i| record(i, "{\"small\":\"record\"}"))
        .collect();
    records[7].key = None;
    records[8].value = None;
    records[9].headers.clear();
    for (path, version) in cases {
        let info = transform::inspect(engine(), Path::new(path)).unwrap();
        assert_eq!(info.version, version, "{path}");
        assert_eq!(
            info.world,
            format!("sluice:transform/transformer@{}", version.as_str())
        );
        let mut chain = chain(path, Limits::default());
        chain.run_batch(&records[..5]);
        let started = Instant::now();
        let outcomes = chain.run_batch(&records);
        let elapsed = started.elapsed();
        assert_eq!(
            outcomes,
            records.iter().map(passed_through).collect::<Vec<_>>(),
            "{path}"
        );
        eprintln!(
            "{} ({}): batch of {} in {elapsed:?} ({:.1} µs per record, this build's profile)",
            Path::new(path).file_stem().unwrap().to_string_lossy(),
            version.as_str(),
            records.len(),
            elapsed.as_secs_f64() * 1e6 / records.len() as f64
        );
    }
}

#[test]
fn a_0_2_sdk_guest_that_changes_fields_sends_them_back_whole() {
    // The redact example (SDK, 0.2.0) rewrites the value, keeps the key and the input's
    // headers (sent back as a reference) and adds one header.
    let mut chain = configured_chain(REDACT, &[("fields", "email")], Limits::default());
    let input = record(1, r#"{"email":"a@b.c","n":1}"#);
    let outcomes = chain.run_batch(std::slice::from_ref(&input));
    let RecordOutcome::Outputs(outputs) = &outcomes[0] else {
        panic!("{outcomes:?}");
    };
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0].key, input.key);
    assert_eq!(outputs[0].headers[..2], input.headers[..]);
    assert_eq!(outputs[0].headers.len(), 3);
    let value = String::from_utf8(outputs[0].value.clone().unwrap().to_vec()).unwrap();
    assert!(!value.contains("a@b.c"), "{value}");
}

#[test]
fn forwarded_fields_share_the_inputs_bytes_instead_of_copying_them() {
    // The 0.2.0 identity forwards key, value and headers by reference: the host's outputs
    // are the input's buffers (the same memory), in a one-stage chain as in the empty chain.
    let shares = |output: &OutputRecord, input: &InputRecord| {
        let same = |a: &Option<Bytes>, b: &Option<Bytes>| match (a, b) {
            (Some(a), Some(b)) => a.as_ptr() == b.as_ptr() && a.len() == b.len(),
            _ => false,
        };
        same(&output.key, &input.key)
            && same(&output.value, &input.value)
            && output.headers.len() == input.headers.len()
            && (output.headers.iter().zip(&input.headers)).all(|(o, i)| {
                o.value.as_ptr() == i.value.as_ptr() && std::sync::Arc::ptr_eq(&o.name, &i.name)
            })
    };
    let records: Vec<_> = (0..20).map(|i| record(i, "{\"n\":1}")).collect();
    let mut identity = chain(PASSTHROUGH, Limits::default());
    let mut empty = TransformChain::new(engine(), &[]).unwrap();
    for (name, outcomes) in [
        ("identity 0.2.0", identity.run_batch(&records)),
        ("empty chain", empty.run_batch(&records)),
    ] {
        for (outcome, input) in outcomes.iter().zip(&records) {
            let RecordOutcome::Outputs(outputs) = outcome else {
                panic!("{name}: {outcome:?}");
            };
            assert_eq!(outputs.len(), 1, "{name}");
            assert!(shares(&outputs[0], input), "{name}: {outputs:?}");
        }
    }
}

/// Runs a batch with `marker` in the middle: only that record is dead-lettered, with `kind`
/// and a reason containing `reason`; the others pass, and the chain serves the next batch.
fn assert_contained(marker: &str, kind: FailureKind, reason_part: &str, limits: Limits) {
    let mut chain = chain(FLAT_HOSTILE, limits);
    let records = batch_with(marker);
    let outcomes = chain.run_batch(&records);
    assert_eq!(outcomes.len(), records.len());
    for (index, (outcome, record)) in outcomes.iter().zip(&records).enumerate() {
        if index != 10 {
            assert_eq!(outcome, &passed_through(record), "{marker}: record {index}");
            continue;
        }
        match outcome {
            RecordOutcome::DeadLetter {
                kind: actual,
                reason,
                ..
            } => {
                assert_eq!(*actual, kind, "{marker}: {reason}");
                assert!(reason.contains(reason_part), "{marker}: {reason}");
                eprintln!("{marker}: dead-lettered: {reason}");
            }
            other => panic!("{marker}: expected a dead letter, got {other:?}"),
        }
    }
    let next: Vec<_> = (0..5).map(|i| record(i, "after")).collect();
    assert_eq!(
        chain.run_batch(&next),
        next.iter().map(passed_through).collect::<Vec<_>>()
    );
}

#[test]
fn a_result_buffer_that_breaks_the_layout_traps_only_its_batch() {
    assert_contained(
        "malformed",
        FailureKind::Trap,
        "flat batch truncated",
        Limits::default(),
    );
    assert_contained(
        "bad-tag",
        FailureKind::Trap,
        "is not a valid result tag",
        Limits::default(),
    );
    assert_contained(
        "extra-result",
        FailureKind::Trap,
        "returned 2 results for 1 record",
        Limits::default(),
    );
}

#[test]
fn forwarding_an_input_is_charged_against_the_output_limits() {
    // `forward:N` is N outputs of a few bytes each in the buffer, each the whole input.
    assert_contained(
        "forward:20000",
        FailureKind::OutputLimit,
        "20000 outputs for one record; max_outputs_per_record is 10000",
        Limits::default(),
    );
    // Each forwarded output is key-10 (6) + value (10) + headers index/10 (7) and empty (5).
    assert_contained(
        "forward:40",
        FailureKind::OutputLimit,
        "1120 output bytes for one record; max_output_bytes_per_record is 1000",
        Limits {
            max_output_bytes_per_record: 1000,
            ..Limits::default()
        },
    );
}
