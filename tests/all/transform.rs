//! The transform host against real components: containment of hostile guests, outcome
//! mapping, config, chains, validation and the compiled cache. No brokers needed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sluice_engine::{
    self as transform, FailureKind, Limits, RecordOutcome, TransformChain, TransformEngine,
    TransformSpec,
};
use sluice_record::{Bytes, Header, InputRecord, OutputRecord, SourceInfo, SourceKind};
use sluice_tests::{FAULT_ON_MARKER, component, engine};

fn record(index: usize, value: &str) -> InputRecord {
    InputRecord {
        key: Some(format!("key-{index}").into()),
        value: Some(Bytes::copy_from_slice(value.as_bytes())),
        headers: vec![Header::new("index", index.to_string())],
        event_time_ms: Some(1_700_000_000_000 + index as i64),
        publish_time_ms: Some(1_800_000_000_000),
        source: SourceInfo {
            kind: SourceKind::Other,
            topic: "test".into(),
            message_id: index.to_string().into(),
            schema_version: None,
        },
    }
}

/// Twenty ordinary records with `poison` as the value of the middle one.
fn batch_with(poison: &str) -> Vec<InputRecord> {
    (0..20)
        .map(|i| record(i, if i == 10 { poison } else { "ordinary" }))
        .collect()
}

/// A transform spec of the component at `path`, with `config` and `limits`.
pub(crate) fn spec(
    name: &str,
    path: impl AsRef<Path>,
    config: &[(&str, &str)],
    limits: Limits,
) -> TransformSpec {
    TransformSpec {
        name: name.to_owned(),
        component: path.as_ref().to_owned(),
        config: config
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        limits,
        capabilities: Default::default(),
    }
}

fn fault_chain(limits: Limits) -> TransformChain {
    TransformChain::new(engine(), &[spec("fault", FAULT_ON_MARKER, &[], limits)])
        .expect("fault-on-marker loads")
}

/// The outcome a record gets from a passthrough guest.
fn passed_through(record: &InputRecord) -> RecordOutcome {
    RecordOutcome::Outputs(vec![OutputRecord::passthrough(record)])
}

/// Runs a batch with one poison record in the middle and checks that only it is
/// dead-lettered, with `kind`; the others pass, and the chain works afterwards.
fn assert_contained(marker: &str, kind: FailureKind, limits: Limits) -> RecordOutcome {
    let mut chain = fault_chain(limits);
    let records = batch_with(marker);
    let started = Instant::now();
    let outcomes = chain.run_batch(&records);
    let elapsed = started.elapsed();
    eprintln!(
        "{marker}: batch of {} contained in {elapsed:?}",
        records.len()
    );
    assert_eq!(outcomes.len(), records.len());
    for (index, (outcome, record)) in outcomes.iter().zip(&records).enumerate() {
        if index == 10 {
            match outcome {
                RecordOutcome::DeadLetter {
                    transform,
                    kind: actual,
                    reason,
                } => {
                    assert_eq!(*actual, kind, "{marker}: {reason}");
                    assert_eq!(transform.name, "fault");
                    assert!(!reason.is_empty());
                }
                other => panic!("{marker}: expected a dead letter, got {other:?}"),
            }
        } else {
            assert_eq!(outcome, &passed_through(record), "{marker}: record {index}");
        }
    }
    // The instance was replaced: the next batch is served normally.
    let next: Vec<_> = (0..5).map(|i| record(i, "after")).collect();
    let outcomes = chain.run_batch(&next);
    assert_eq!(
        outcomes,
        next.iter().map(passed_through).collect::<Vec<_>>()
    );
    chain.run_batch(&records).swap_remove(10)
}

#[test]
fn a_panic_dead_letters_only_its_record_with_the_panic_message() {
    let outcome = assert_contained("panic", FailureKind::Trap, Limits::default());
    let RecordOutcome::DeadLetter { reason, .. } = outcome else {
        unreachable!()
    };
    assert!(reason.contains("unreachable"), "{reason}");
    assert!(reason.contains("fault-on-marker: panic marker"), "{reason}");
    // One line, without wasmtime's backtrace: it goes into a Kafka header.
    assert!(
        !reason.contains('\n') && !reason.contains("backtrace"),
        "{reason}"
    );
}

#[test]
fn an_infinite_loop_times_out() {
    let limits = Limits {
        batch_timeout_ms: 200,
        ..Limits::default()
    };
    // The batch times out, then the record alone times out again (the others pass).
    let outcome = assert_contained("loop", FailureKind::Timeout, limits);
    let RecordOutcome::DeadLetter { reason, .. } = outcome else {
        unreachable!()
    };
    assert!(reason.contains("batch_timeout_ms = 200"), "{reason}");
}

#[test]
fn a_sleep_is_cut_at_the_deadline_and_times_out() {
    // The guest sleeps for an hour: a host call the epoch cannot interrupt, so the host
    // bounds the sleep itself.
    let limits = Limits {
        batch_timeout_ms: 200,
        ..Limits::default()
    };
    let started = Instant::now();
    assert_contained("sleep", FailureKind::Timeout, limits);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn memory_exhaustion_is_out_of_memory() {
    let limits = Limits {
        memory_mib: 16,
        ..Limits::default()
    };
    let outcome = assert_contained("oom", FailureKind::OutOfMemory, limits);
    let RecordOutcome::DeadLetter { reason, .. } = outcome else {
        unreachable!()
    };
    assert!(reason.contains("memory_mib = 16"), "{reason}");
}

#[test]
fn unbounded_recursion_is_a_stack_overflow() {
    assert_contained("recurse", FailureKind::StackOverflow, Limits::default());
}

#[test]
fn too_many_outputs_hit_the_output_limit() {
    // Enough memory for the guest to build a million (empty) outputs, and time for a debug
    // build of the host to lift them (the deadline also covers the guest's post-return).
    let limits = Limits {
        memory_mib: 512,
        batch_timeout_ms: 60_000,
        ..Limits::default()
    };
    assert_contained("many", FailureKind::OutputLimit, limits);
}

#[test]
fn a_million_outputs_under_default_limits_are_contained_either_way() {
    let mut chain = fault_chain(Limits::default());
    let outcome = chain.run_batch(&[record(0, "many")]).remove(0);
    match outcome {
        RecordOutcome::DeadLetter {
            kind: FailureKind::OutOfMemory | FailureKind::OutputLimit,
            ..
        } => {}
        other => panic!("expected out-of-memory or output-limit, got {other:?}"),
    }
}

#[test]
fn output_count_and_size_limits_are_exact() {
    let limits = Limits {
        max_outputs_per_record: 3,
        max_output_bytes_per_record: 100,
        ..Limits::default()
    };
    let mut chain = fault_chain(limits);
    let records = [
        record(0, "count:3"),
        record(1, "count:4"),
        record(2, "bytes:60"),
        record(3, "bytes:101"),
    ];
    let outcomes = chain.run_batch(&records);
    let RecordOutcome::Outputs(three) = &outcomes[0] else {
        panic!("{:?}", outcomes[0])
    };
    assert_eq!(three.len(), 3);
    assert!(
        matches!(&outcomes[1], RecordOutcome::DeadLetter { kind: FailureKind::OutputLimit, reason, .. }
            if reason.contains("4 outputs") && reason.contains("max_outputs_per_record is 3")),
        "{:?}",
        outcomes[1]
    );
    let RecordOutcome::Outputs(sized) = &outcomes[2] else {
        panic!("{:?}", outcomes[2])
    };
    assert_eq!(sized[0].value.as_ref().map(Bytes::len), Some(60));
    assert!(
        matches!(&outcomes[3], RecordOutcome::DeadLetter { kind: FailureKind::OutputLimit, reason, .. }
            if reason.contains("max_output_bytes_per_record is 100")),
        "{:?}",
        outcomes[3]
    );
}

#[test]
fn guest_errors_map_to_outcomes_and_keep_the_instance() {
    let mut chain = fault_chain(Limits::default());
    let records = [
        record(0, "skip"),
        record(1, "dead-letter"),
        record(2, "fatal"),
        record(3, "drop"),
        record(4, "plain"),
    ];
    let outcomes = chain.run_batch(&records);
    let id = chain.transforms().remove(0);
    assert_eq!(
        outcomes,
        vec![
            RecordOutcome::Skip {
                transform: id.clone(),
                reason: "skip marker".into()
            },
            RecordOutcome::DeadLetter {
                transform: id.clone(),
                kind: FailureKind::DeadLetter,
                reason: "dead-letter marker".into()
            },
            RecordOutcome::Fatal {
                transform: id.clone(),
                reason: "fatal marker".into()
            },
            RecordOutcome::Outputs(vec![]),
            passed_through(&records[4]),
        ]
    );
}

#[test]
fn the_sandbox_grants_no_environment_filesystem_or_network_but_captures_output() {
    let mut chain = fault_chain(Limits::default());
    let records = [
        record(0, "env"),
        record(1, "fs"),
        record(2, "net"),
        record(3, "print"),
        record(4, "log"),
    ];
    let values: Vec<String> = chain
        .run_batch(&records)
        .into_iter()
        .map(|outcome| match outcome {
            RecordOutcome::Outputs(outputs) => {
                String::from_utf8(outputs[0].value.clone().unwrap_or_default().to_vec()).unwrap()
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(values, ["0", "fs: denied", "net: denied", "print", "log"]);
}

#[test]
fn init_receives_the_config() {
    let config = [("tag", "blue"), ("topic", "routed"), ("timestamp_ms", "42")];
    let mut chain = TransformChain::new(
        engine(),
        &[spec(
            "configured",
            FAULT_ON_MARKER,
            &config,
            Limits::default(),
        )],
    )
    .unwrap();
    let input = record(0, "hello");
    let outcomes = chain.run_batch(std::slice::from_ref(&input));
    let expected = OutputRecord {
        key: input.key.clone(),
        value: input.value.clone(),
        headers: vec![Header::new("index", "0"), Header::new("tag", "blue")],
        timestamp_ms: Some(42),
        topic: Some("routed".into()),
    };
    assert_eq!(outcomes, vec![RecordOutcome::Outputs(vec![expected])]);
}

#[test]
fn a_refused_config_is_a_user_error_naming_the_transform() {
    for (config, expected) in [
        (("fail_init", "no thanks"), "no thanks"),
        (("colour", "red"), "unknown config key: colour"),
    ] {
        let specs = [spec("picky", FAULT_ON_MARKER, &[config], Limits::default())];
        let error = TransformChain::new(engine(), &specs)
            .err()
            .expect("init must refuse");
        let message = error.to_string();
        assert!(
            matches!(error, transform::Error::InitRefused { .. }),
            "{error:?}"
        );
        assert!(error.is_user_input_error());
        assert!(
            message.contains("\"picky\"") && message.contains(expected),
            "{message}"
        );
    }
}

#[test]
fn a_chain_feeds_outputs_to_the_next_transform() {
    let specs = [
        spec(
            "first",
            FAULT_ON_MARKER,
            &[("tag", "one"), ("topic", "first"), ("timestamp_ms", "7")],
            Limits::default(),
        ),
        spec(
            "second",
            FAULT_ON_MARKER,
            &[("tag", "two")],
            Limits::default(),
        ),
    ];
    let mut chain = TransformChain::new(engine(), &specs).unwrap();
    let ids = chain.transforms();
    assert_eq!(
        ids.iter().map(|id| id.name.as_str()).collect::<Vec<_>>(),
        ["first", "second"]
    );
    assert!(
        ids[0].digest.starts_with("sha256:") && ids[0].digest.len() == 7 + 64,
        "{}",
        ids[0].digest
    );

    let records = [
        record(0, "count:2"),
        record(1, "skip"),
        record(2, "panic"),
        record(3, "drop"),
    ];
    let outcomes = chain.run_batch(&records);
    // Each transform doubles `count:2`: four outputs, tagged by both, topic and time from the
    // first (the second sets neither).
    let RecordOutcome::Outputs(outputs) = &outcomes[0] else {
        panic!("{:?}", outcomes[0])
    };
    assert_eq!(outputs.len(), 4);
    for output in outputs {
        assert_eq!(
            output.headers,
            [
                Header::new("index", "0"),
                Header::new("tag", "one"),
                Header::new("tag", "two")
            ]
        );
        assert_eq!(output.topic.as_deref(), Some("first"));
        assert_eq!(output.timestamp_ms, Some(7));
        assert_eq!(output.value.as_deref(), Some(&b"count:2"[..]));
    }
    assert!(
        matches!(&outcomes[1], RecordOutcome::Skip { transform, .. } if transform.name == "first")
    );
    assert!(
        matches!(&outcomes[2], RecordOutcome::DeadLetter { transform, kind: FailureKind::Trap, .. } if transform.name == "first"),
        "{:?}",
        outcomes[2]
    );
    assert_eq!(outcomes[3], RecordOutcome::Outputs(vec![]));
}

#[test]
fn a_failure_in_a_later_stage_drops_the_intermediate_outputs() {
    let specs = [
        spec("fan-out", FAULT_ON_MARKER, &[], Limits::default()),
        // Allows two outputs per record: the fan-out's `count:3` copies pass it one by one,
        // each copy then asks for three, which this stage's limit refuses.
        spec(
            "strict",
            FAULT_ON_MARKER,
            &[],
            Limits {
                max_outputs_per_record: 2,
                ..Limits::default()
            },
        ),
    ];
    let mut chain = TransformChain::new(engine(), &specs).unwrap();
    let outcomes = chain.run_batch(&[record(0, "count:3"), record(1, "ok")]);
    assert!(
        matches!(&outcomes[0], RecordOutcome::DeadLetter { transform, kind: FailureKind::OutputLimit, .. } if transform.name == "strict"),
        "{:?}",
        outcomes[0]
    );
    assert_eq!(outcomes[1], passed_through(&record(1, "ok")));
}

#[test]
fn invalid_components_are_user_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let random = dir.path().join("random.wasm");
    std::fs::write(&random, b"\x7fELF definitely not wasm").unwrap();
    let core_module = dir.path().join("core.wasm");
    std::fs::write(&core_module, b"\0asm\x01\0\0\0").unwrap();
    let missing = dir.path().join("missing.wasm");
    for (path, expected) in [
        (&random, "is not a WebAssembly component"),
        (
            &core_module,
            "is a core WebAssembly module, not a component",
        ),
        (&missing, "cannot read component"),
        (&dir.path().to_owned(), "cannot read component"),
    ] {
        let error = TransformChain::new(engine(), &[spec("bad", path, &[], Limits::default())])
            .err()
            .expect("must be refused");
        assert!(error.is_user_input_error(), "{error:?}");
        let message = error.to_string();
        assert!(message.contains(expected), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
        let inspected = transform::inspect(engine(), path).expect_err("must be refused");
        assert_eq!(inspected.to_string(), message);
    }
}

#[test]
fn inspect_describes_a_valid_component() {
    let info = transform::inspect(engine(), &component(FAULT_ON_MARKER)).unwrap();
    assert_eq!(info.world, "sluice:transform/transformer@0.1.0");
    assert_eq!(
        info.size_bytes,
        std::fs::metadata(FAULT_ON_MARKER).unwrap().len()
    );
    assert!(
        info.digest.starts_with("sha256:") && info.digest.len() == 71,
        "{}",
        info.digest
    );
    assert_eq!(info.exports, ["init", "transform-batch"]);
    assert!(
        info.imports
            .iter()
            .any(|i| i == "sluice:transform/host@0.1.0"),
        "{:?}",
        info.imports
    );
    assert!(
        info.imports
            .iter()
            .any(|i| i.starts_with("wasi:cli/stdout")),
        "{:?}",
        info.imports
    );
}

fn cached_artifacts(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|entries| entries.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn the_compiled_cache_is_written_once_and_reused() {
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().join("sluice");
    let specs = [spec("cached", FAULT_ON_MARKER, &[], Limits::default())];

    let started = Instant::now();
    let cold_engine = TransformEngine::new(Some(cache_dir.clone())).unwrap();
    let mut chain = TransformChain::new(&cold_engine, &specs).unwrap();
    let cold = started.elapsed();
    let artifacts = cached_artifacts(&cache_dir);
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    let name = artifacts[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let digest = chain.transforms()[0]
        .digest
        .trim_start_matches("sha256:")
        .to_owned();
    assert!(
        name.starts_with(&format!("{digest}-")) && name.ends_with(".cwasm"),
        "{name}"
    );
    let written = std::fs::metadata(&artifacts[0])
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        chain.run_batch(&[record(0, "x")]),
        [passed_through(&record(0, "x"))]
    );

    // A new engine (a restart) loads the artifact instead of compiling.
    std::thread::sleep(Duration::from_millis(20));
    let started = Instant::now();
    let warm_engine = TransformEngine::new(Some(cache_dir.clone())).unwrap();
    let mut chain = TransformChain::new(&warm_engine, &specs).unwrap();
    let warm = started.elapsed();
    eprintln!("compile + init without cache hit: {cold:?}; with cache hit: {warm:?}");
    assert_eq!(cached_artifacts(&cache_dir), artifacts);
    assert_eq!(
        std::fs::metadata(&artifacts[0])
            .unwrap()
            .modified()
            .unwrap(),
        written
    );
    assert_eq!(
        chain.run_batch(&[record(1, "y")]),
        [passed_through(&record(1, "y"))]
    );

    // A damaged artifact only warns: the component is recompiled and the cache repaired.
    // It is damaged in place, under the live chain: the host must not have it mapped.
    std::fs::write(&artifacts[0], b"garbage").unwrap();
    assert_eq!(
        chain.run_batch(&[record(1, "y")]),
        [passed_through(&record(1, "y"))]
    );
    // (A new engine: one that compiled the component before keeps it in memory.)
    let repairing_engine = TransformEngine::new(Some(cache_dir.clone())).unwrap();
    let mut chain = TransformChain::new(&repairing_engine, &specs).unwrap();
    assert_eq!(
        chain.run_batch(&[record(2, "z")]),
        [passed_through(&record(2, "z"))]
    );
    assert!(std::fs::metadata(&artifacts[0]).unwrap().len() > 1000);

    // An unwritable cache only warns too.
    let blocked = cache.path().join("file-not-dir");
    std::fs::write(&blocked, b"").unwrap();
    let engine = TransformEngine::new(Some(blocked.join("sub"))).unwrap();
    let mut chain = TransformChain::new(&engine, &specs).unwrap();
    assert_eq!(
        chain.run_batch(&[record(3, "w")]),
        [passed_through(&record(3, "w"))]
    );
}

#[test]
fn exec_prints_outputs_and_errors_as_json_lines() {
    let mut chain = fault_chain(Limits::default());
    let input = concat!(
        r#"{"key":"a","value":"hello","headers":{"h":"1"},"event_time_ms":5}"#,
        "\n",
        r#"{"value":"panic"}"#,
        "\n",
        r#"{"value":"skip"}"#,
        "\n",
        r#"{"value":"drop"}"#,
        "\n",
    );
    let mut output = Vec::new();
    let summary = sluice_engine::exec::exec(&mut chain, input.as_bytes(), &mut output, 10).unwrap();
    let id = chain.transforms()[0].to_string();
    let lines: Vec<serde_json::Value> = String::from_utf8(output)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(
        lines[0],
        serde_json::json!({"input":1,"key":"a","value":"hello","headers":{"h":"1"},"timestamp_ms":5,"topic":null})
    );
    assert_eq!(lines[1]["input"], 2);
    assert_eq!(lines[1]["error"]["kind"], "trap");
    assert_eq!(lines[1]["error"]["transform"], id.as_str());
    assert_eq!(
        lines[2],
        serde_json::json!({"input":3,"error":{"kind":"skip","transform":id,"reason":"skip marker"}})
    );
    assert_eq!(summary.inputs, 4);
    assert_eq!(
        (
            summary.outputs,
            summary.skipped,
            summary.dead_lettered,
            summary.fatal
        ),
        (1, 1, 1, 0)
    );

    let mut output = Vec::new();
    let error = sluice_engine::exec::exec(
        &mut chain,
        "{\"value\":\"fatal\"}\n{}\n".as_bytes(),
        &mut output,
        10,
    )
    .unwrap_err();
    assert!(
        matches!(error, sluice_engine::exec::ExecError::Fatal { line: 1, .. }),
        "{error:?}"
    );
    assert_eq!(String::from_utf8(output).unwrap().lines().count(), 1);
}

#[test]
fn per_record_cost_of_a_passthrough_guest() {
    let mut chain = fault_chain(Limits::default());
    let records: Vec<_> = (0..1000)
        .map(|i| record(i, "{\"small\":\"record\"}"))
        .collect();
    chain.run_batch(&records[..10]);
    let started = Instant::now();
    let outcomes = chain.run_batch(&records);
    let elapsed = started.elapsed();
    assert_eq!(outcomes.len(), records.len());
    assert!(
        outcomes
            .iter()
            .zip(&records)
            .all(|(o, r)| o == &passed_through(r))
    );
    eprintln!(
        "passthrough: batch of 1000 in {elapsed:?} ({:.1} µs per record, this build's profile)",
        elapsed.as_secs_f64() * 1e6 / 1000.0
    );
}

/// The `random` and `clock` headers a stamping guest wrote for each record, in order.
fn stamps(outcomes: &[RecordOutcome]) -> Vec<(String, String)> {
    outcomes
        .iter()
        .map(|outcome| {
            let RecordOutcome::Outputs(outputs) = outcome else {
                panic!("the stamping guest answers with outputs: {outcome:?}");
            };
            let header = |name: &str| {
                let header = outputs[0]
                    .headers
                    .iter()
                    .find(|h| &*h.name == name)
                    .unwrap();
                String::from_utf8(header.value.to_vec()).unwrap()
            };
            (header("random"), header("clock"))
        })
        .collect()
}

/// Exactly-once replays: with the sandbox made deterministic, a guest that reads clocks and
/// random gives the same outputs for a record whatever batch it comes in and however often
/// it is run (the wall clock is the record's event time); without, random differs per run.
#[test]
fn a_deterministic_chain_gives_the_same_stamps_on_every_run() {
    let stamping = || {
        TransformChain::new(
            engine(),
            &[spec(
                "stamp",
                sluice_tests::FAN_OUT_WORK,
                &[("stamp", "true")],
                Limits::default(),
            )],
        )
        .unwrap()
    };
    let records: Vec<InputRecord> = (0..20).map(|i| record(i, "value")).collect();

    let mut first = stamping();
    assert_eq!(first.make_deterministic().unwrap(), ["stamp"]);
    let once = stamps(&first.run_batch(&records));
    let mut second = stamping();
    second.make_deterministic().unwrap();
    // Another batching and a record run twice: the same stamps per record.
    let mut again = stamps(&second.run_batch(&records[..7]));
    again.extend(stamps(&second.run_batch(&records[7..])));
    assert_eq!(once, again);
    assert_eq!(stamps(&second.run_batch(&records[3..4]))[0], once[3]);
    for (i, (_, clock)) in once.iter().enumerate() {
        assert_eq!(clock, &records[i].event_time_ms.unwrap().to_string());
    }
    let randoms: std::collections::BTreeSet<&String> = once.iter().map(|(r, _)| r).collect();
    assert_eq!(
        randoms.len(),
        records.len(),
        "each record has its own random"
    );

    let free = stamps(&stamping().run_batch(&records));
    let free_again = stamps(&stamping().run_batch(&records));
    assert_ne!(free, free_again, "unpinned random differs between runs");
}

/// Exactly-once without a cost for guests that import clocks and random but do not read them
/// per record: a deterministic chain calls a batch as one while the guest reads neither, and
/// calls each record alone, pinned to it, when the guest read one in the batch; a guest that
/// reads them batch after batch is then called record by record at once.
#[test]
fn a_deterministic_guest_is_called_in_batches_until_it_reads_clocks_or_random() {
    let chain = |deterministic: bool| {
        let mut chain = TransformChain::new(
            engine(),
            &[spec(
                "stamp",
                sluice_tests::FAN_OUT_WORK,
                &[("stamp", "marked"), ("batch", "true")],
                Limits::default(),
            )],
        )
        .unwrap();
        if deterministic {
            assert_eq!(chain.make_deterministic().unwrap(), ["stamp"]);
        }
        chain
    };
    let header = |outcome: &RecordOutcome, name: &str| {
        let RecordOutcome::Outputs(outputs) = outcome else {
            panic!("the guest answers with outputs: {outcome:?}");
        };
        (outputs[0].headers.iter())
            .find(|h| &*h.name == name)
            .map(|h| String::from_utf8(h.value.to_vec()).unwrap())
    };
    let calls = |outcomes: &[RecordOutcome]| -> Vec<String> {
        (outcomes.iter())
            .map(|outcome| header(outcome, "batch").unwrap())
            .collect()
    };
    let plain: Vec<InputRecord> = (0..20).map(|i| record(i, "plain")).collect();
    let mut marked = plain.clone();
    marked[7] = record(7, "stamp me");

    let mut deterministic = chain(true);
    assert_eq!(calls(&deterministic.run_batch(&plain)), vec!["20"; 20]);
    let reading = deterministic.run_batch(&marked);
    assert_eq!(calls(&reading), vec!["1"; 20], "a read: record by record");
    let alone = chain(true).run_batch(&marked[7..8]);
    assert_eq!(
        (header(&reading[7], "random"), header(&reading[7], "clock")),
        (header(&alone[0], "random"), header(&alone[0], "clock")),
        "pinned to the record, whatever the batch"
    );
    assert_eq!(
        calls(&deterministic.run_batch(&plain)),
        vec!["20"; 20],
        "batched again once the guest stops reading"
    );
    deterministic.run_batch(&marked);
    deterministic.run_batch(&marked);
    assert_eq!(
        calls(&deterministic.run_batch(&plain)),
        vec!["1"; 20],
        "two batches in a row that read: record by record from then on"
    );
    assert_eq!(
        calls(&chain(false).run_batch(&marked)),
        vec!["20"; 20],
        "without exactly-once nothing is pinned: one call"
    );
}

/// A guest that imports neither clocks nor random is deterministic already: nothing pinned.
#[test]
fn a_guest_without_clocks_or_random_needs_no_pinning() {
    let mut chain = TransformChain::new(
        engine(),
        &[spec(
            "redact",
            sluice_tests::REDACT,
            &[("fields", "email")],
            Limits::default(),
        )],
    )
    .unwrap();
    assert!(chain.make_deterministic().unwrap().is_empty());
}
