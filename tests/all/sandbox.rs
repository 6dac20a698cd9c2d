//! The sandbox's edges against the real host: components that do not fit the world are
//! refused at load (library and `sluice check`/`sluice run`, exit 2, naming the problem),
//! the component size limit, and capabilities: denied by default (the guest traps with the
//! denial in the reason), granted per transform (env, read-only dirs), network never.

use std::path::{Path, PathBuf};
use std::process::Output;

use sluice_engine::{
    self as transform, Capabilities, FailureKind, Limits, RecordOutcome, TransformChain,
    TransformSpec, WorldProblem,
};
use sluice_record::{Bytes, InputRecord, OutputRecord, SourceInfo, SourceKind};
use sluice_tests::{
    FAULT_ON_MARKER, FOREIGN_IMPORT, FUTURE_VERSION, MISSING_EXPORT, OTHER_WORLD, WRONG_SIGNATURE,
    engine,
};

use crate::support::config::write_offline_config;
use crate::support::process::sluice;

fn spec(path: impl AsRef<Path>, limits: Limits, capabilities: Capabilities) -> TransformSpec {
    TransformSpec {
        name: "guest".to_owned(),
        component: path.as_ref().to_owned(),
        config: Default::default(),
        limits,
        capabilities,
    }
}

fn record(value: &str) -> InputRecord {
    InputRecord {
        key: None,
        value: Some(Bytes::copy_from_slice(value.as_bytes())),
        headers: Vec::new(),
        event_time_ms: Some(1_700_000_000_000),
        publish_time_ms: None,
        source: SourceInfo {
            kind: SourceKind::Other,
            topic: "test".into(),
            message_id: "1".into(),
            schema_version: None,
        },
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The invalid components and the text their refusal must contain.
fn invalid_components() -> Vec<(&'static str, String)> {
    vec![
        (
            OTHER_WORLD,
            "missing exports \"init\", \"transform-batch\"; it exports \"transform\" instead".into(),
        ),
        (
            WRONG_SIGNATURE,
            "export \"transform-batch\" has type `func(records: list<string>) -> list<string>` but the world declares `func(batch: list<u8>) -> list<u8>`".into(),
        ),
        (MISSING_EXPORT, "missing export \"transform-batch\"".into()),
        (
            FUTURE_VERSION,
            "unsupported version sluice:transform@0.3.0 (this host serves 0.1.0, 0.2.0)".into(),
        ),
        (
            FOREIGN_IMPORT,
            "imports acme:secrets/vault which the host does not provide".into(),
        ),
    ]
}

#[test]
fn components_that_do_not_fit_the_world_are_refused_at_load_naming_the_problem() {
    for (path, expected) in invalid_components() {
        let error = TransformChain::new(
            engine(),
            &[spec(path, Limits::default(), Capabilities::default())],
        )
        .err()
        .unwrap_or_else(|| panic!("{path} must be refused"));
        assert!(error.is_user_input_error(), "{error:?}");
        let message = error.to_string();
        assert!(message.contains(&expected), "{path}: {message}");
        assert!(message.contains(path), "{message}");
        assert!(
            message.contains("does not implement the world sluice:transform/transformer: "),
            "{message}"
        );
        // Told apart by type, not by text.
        let transform::Error::WorldMismatch { problem, .. } = &error else {
            panic!("{error:?}")
        };
        let matches_kind = match Path::new(path).file_stem().unwrap().to_str().unwrap() {
            "other_world" | "missing_export" => {
                matches!(problem, WorldProblem::MissingExports { .. })
            }
            "wrong_signature" => matches!(problem, WorldProblem::ExportType { .. }),
            "future_version" => matches!(problem, WorldProblem::UnsupportedVersion { .. }),
            "foreign_import" => matches!(problem, WorldProblem::UnknownImport { .. }),
            other => panic!("unexpected guest {other}"),
        };
        assert!(matches_kind, "{path}: {problem:?}");
        let inspected = transform::inspect(engine(), Path::new(path)).expect_err("refused");
        assert_eq!(inspected.to_string(), message);
    }
}

#[test]
fn sluice_check_exits_2_naming_the_problem_of_each_invalid_component() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_component = dir.path().join("core-module.wasm");
    std::fs::write(&not_a_component, b"\0asm\x01\0\0\0").unwrap();
    let mut cases = invalid_components();
    cases.push((
        not_a_component.to_str().unwrap(),
        "is a core WebAssembly module, not a component".into(),
    ));
    for (path, expected) in cases {
        let output = sluice(&["check", path]);
        let stderr = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{path}: {stderr}");
        let error_line = stderr
            .lines()
            .find(|line| line.starts_with("error:"))
            .unwrap_or_else(|| panic!("no error line: {stderr}"));
        assert!(
            error_line.contains(&expected) && error_line.contains(path),
            "{error_line}"
        );
        assert!(output.stdout.is_empty(), "{path}: prints nothing on stdout");
    }
}

#[test]
fn sluice_run_refuses_an_invalid_component_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_offline_config(dir.path(), FOREIGN_IMPORT);
    let output = sluice(&["run", "--config", config.to_str().unwrap()]);
    let stderr = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("imports acme:secrets/vault which the host does not provide"),
        "{stderr}"
    );
}

#[test]
fn a_component_over_max_component_mib_is_refused_naming_size_and_limit() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.wasm");
    // A real component followed by padding: refused on size alone, before it is read.
    let mut bytes = std::fs::read(FAULT_ON_MARKER).unwrap();
    bytes.resize(3 * 1024 * 1024 / 2, 0);
    std::fs::write(&big, &bytes).unwrap();
    let limits = Limits {
        max_component_mib: 1,
        ..Limits::default()
    };
    let error = TransformChain::new(
        engine(),
        &[spec(&big, limits.clone(), Capabilities::default())],
    )
    .err()
    .expect("too large");
    assert!(error.is_user_input_error());
    assert!(
        matches!(error, transform::Error::TooLarge { .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "{} is 1572864 bytes, more than max_component_mib = 1 allows",
            big.display()
        )
    );
    // The real component is well under the same limit.
    TransformChain::new(
        engine(),
        &[spec(FAULT_ON_MARKER, limits, Capabilities::default())],
    )
    .expect("fits");
}

#[test]
fn sluice_check_lists_wasi_imports_and_what_is_denied() {
    let output = sluice(&["check", FAULT_ON_MARKER]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    for expected in [
        "wasi:      wasi:",
        "capabilities: none granted (grant per transform with `capabilities = {",
        "denied unless granted:",
        "wasi:filesystem/preopens",
        "filesystem: no directories unless granted with `read_dirs` (read-only)",
        "wasi:cli/environment",
        "environment: no variables unless granted with `env`",
        "ok: implements sluice:transform/transformer@0.1.0",
    ] {
        assert!(stdout.contains(expected), "{expected:?} in:\n{stdout}");
    }
    let info = transform::inspect(engine(), Path::new(FAULT_ON_MARKER)).unwrap();
    assert!(
        info.sensitive_imports
            .iter()
            .any(|i| i.interface.starts_with("wasi:sockets/")),
        "the guest opens sockets: {:?}",
        info.sensitive_imports
    );
    assert!(stdout.contains("network: always denied"), "{stdout}");
}

fn fault_chain(capabilities: Capabilities) -> TransformChain {
    TransformChain::new(
        engine(),
        &[spec(FAULT_ON_MARKER, Limits::default(), capabilities)],
    )
    .expect("fault-on-marker loads")
}

/// The trap reason of a record that must be dead-lettered as a trap.
fn trap_reason(outcome: &RecordOutcome) -> &str {
    match outcome {
        RecordOutcome::DeadLetter {
            kind: FailureKind::Trap,
            reason,
            ..
        } => reason,
        other => panic!("expected a trap, got {other:?}"),
    }
}

fn passed_through(record: &InputRecord) -> RecordOutcome {
    RecordOutcome::Outputs(vec![OutputRecord::passthrough(record)])
}

#[test]
fn denied_capabilities_trap_with_the_denial_in_the_reason() {
    let mut chain = fault_chain(Capabilities::default());
    assert_eq!(chain.grants()[0].1, "none");
    let records = [
        record("before"),
        record("open-file"),
        record("open-socket"),
        record("read-env"),
        record("after"),
    ];
    let outcomes = chain.run_batch(&records);
    assert_eq!(outcomes[0], passed_through(&records[0]));
    assert_eq!(outcomes[4], passed_through(&records[4]));
    for (outcome, expected) in outcomes[1..4].iter().zip([
        "No such file or directory",
        "Permission denied",
        "NotPresent",
    ]) {
        let reason = trap_reason(outcome);
        eprintln!("{reason}");
        assert!(reason.contains("panicked"), "{reason}");
        assert!(reason.contains("unwrap()"), "{reason}");
        assert!(reason.contains(expected), "{expected:?} in {reason}");
    }
}

#[test]
fn granted_capabilities_let_the_same_records_through_and_the_network_stays_denied() {
    let home = std::env::var("HOME").expect("the tests need HOME set");
    assert!(!home.is_empty());
    let capabilities = Capabilities {
        env: vec!["HOME".into()],
        read_dirs: vec![PathBuf::from("/etc")],
    };
    let mut chain = fault_chain(capabilities);
    let (id, grants) = chain.grants().remove(0);
    assert_eq!(id.name, "guest");
    assert_eq!(grants, "env HOME; read-only dirs /etc");
    let records = [
        record("open-file"),
        record("read-env"),
        record("env"),
        record("open-socket"),
    ];
    let outcomes = chain.run_batch(&records);
    assert_eq!(outcomes[0], passed_through(&records[0]));
    assert_eq!(outcomes[1], passed_through(&records[1]));
    // Only the granted variable is visible.
    let RecordOutcome::Outputs(env) = &outcomes[2] else {
        panic!("{:?}", outcomes[2])
    };
    assert_eq!(env[0].value.as_deref(), Some(&b"1"[..]));
    let reason = trap_reason(&outcomes[3]);
    assert!(reason.contains("Permission denied"), "{reason}");
}

#[test]
fn granted_directories_are_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("written.txt");
    let capabilities = Capabilities {
        env: Vec::new(),
        read_dirs: vec![dir.path().to_owned()],
    };
    let mut chain = fault_chain(capabilities);
    let marker = format!("write-file:{}", target.display());
    let outcome = chain.run_batch(&[record(&marker)]).remove(0);
    let reason = trap_reason(&outcome);
    assert!(reason.contains("panicked"), "{reason}");
    assert!(!target.exists(), "the guest wrote into a read-only grant");
}

#[test]
fn impossible_grants_are_user_errors_naming_the_transform() {
    for (capabilities, expected) in [
        (
            Capabilities {
                env: Vec::new(),
                read_dirs: vec![PathBuf::from("etc")],
            },
            "capabilities.read_dirs: etc is not an absolute path",
        ),
        (
            Capabilities {
                env: Vec::new(),
                read_dirs: vec![PathBuf::from("/nonexistent/sluice-grant")],
            },
            "/nonexistent/sluice-grant is not a directory on this host",
        ),
        (
            Capabilities {
                env: vec!["A=B".into()],
                read_dirs: Vec::new(),
            },
            "\"A=B\" is not an environment variable name",
        ),
    ] {
        let error = TransformChain::new(
            engine(),
            &[spec(FAULT_ON_MARKER, Limits::default(), capabilities)],
        )
        .err()
        .expect("refused");
        assert!(error.is_user_input_error(), "{error:?}");
        let message = error.to_string();
        assert!(
            message.contains(expected) && message.contains("\"guest\""),
            "{message}"
        );
    }
}
