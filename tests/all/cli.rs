//! The `sluice` binary's contract: exit codes and one clear `error:` line naming the input.

use crate::support::config::write_offline_config;
use crate::support::process::{error_line, sluice, sluice_exec};

#[test]
fn bad_config_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[[pipeline]]\nname = \"p\"\nbatchsize = 3\n").unwrap();
    let output = sluice(&["run", "--config", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let line = error_line(&output);
    assert!(
        line.contains("bad.toml") && line.contains("batchsize"),
        "{line}"
    );
}

#[test]
fn missing_config_file_exits_2_with_a_hint() {
    let output = sluice(&["run", "--config", "/nonexistent/sluice.toml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(error_line(&output).contains("/nonexistent/sluice.toml"));
    assert!(String::from_utf8_lossy(&output.stderr).contains("hint:"));
}

#[test]
fn missing_component_exits_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_offline_config(dir.path(), "missing-guest.wasm");
    let output = sluice(&["run", "--config", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(error_line(&output).contains("missing-guest.wasm"));
    let output = sluice(&["check", "/nonexistent/missing-guest.wasm"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(error_line(&output).contains("missing-guest.wasm"));
}

#[test]
fn a_file_that_is_not_a_component_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.wasm");
    std::fs::write(&text, "hello, I am text").unwrap();
    let module = dir.path().join("core-module.wasm");
    std::fs::write(&module, b"\0asm\x01\0\0\0").unwrap();
    for path in [&text, &module] {
        let output = sluice(&["check", path.to_str().unwrap()]);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(error_line(&output).contains(path.file_name().unwrap().to_str().unwrap()));
    }
}

#[test]
fn check_prints_metadata_of_a_real_component() {
    let output = sluice(&["check", sluice_tests::PASSTHROUGH]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("digest:    sha256:"), "{stdout}");
    assert!(stdout.contains("transform-batch"), "{stdout}");
}

#[test]
fn exec_runs_json_lines_through_a_guest() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        "{\"key\":\"a\",\"value\":{\"email\":\"x@y.z\",\"n\":1}}\n{\"value\":\"oops\"}\n",
    )
    .unwrap();
    let lines = sluice_exec(&[
        sluice_tests::REDACT,
        "--config",
        "fields=email",
        "--input",
        input.to_str().unwrap(),
    ]);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["value"], r#"{"email":"***","n":1}"#);
    assert_eq!(lines[1]["error"]["kind"], "dead-letter");
}

/// A config whose exactly-once cannot hold is refused at load, exit 2, naming what is wrong:
/// a Pulsar subscription that spreads one partition over several consumers, the read-back
/// mode with a failover standby (only transactions fence the old owner), and transaction
/// settings on an at-least-once pipeline.
#[test]
fn exactly_once_that_cannot_hold_exits_2() {
    let cases = [
        (
            "guarantee = \"exactly-once\"",
            "subscription_type = \"shared\"",
            "subscription_type",
        ),
        (
            "guarantee = \"exactly-once\"\nexactly_once = { mode = \"read-back\" }",
            "subscription_type = \"failover\"",
            "failover",
        ),
        (
            "exactly_once = { commit_interval_ms = 50 }",
            "",
            "exactly_once",
        ),
    ];
    for (settings, source_settings, named) in cases {
        let dir = tempfile::tempdir().unwrap();
        let toml = format!(
            r#"
[[pipeline]]
name = "p"
{settings}
[pipeline.source]
kind = "pulsar"
url = "pulsar://127.0.0.1:1"
topic = "t"
subscription = "s"
{source_settings}
[pipeline.sink]
kind = "kafka"
brokers = "127.0.0.1:1"
topic = "out"
"#
        );
        let path = dir.path().join("sluice.toml");
        std::fs::write(&path, toml).unwrap();
        let output = sluice(&["run", "--config", path.to_str().unwrap()]);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{settings} / {source_settings}"
        );
        let line = error_line(&output);
        assert!(
            line.contains(named),
            "{settings} / {source_settings}: {line}"
        );
    }
}
