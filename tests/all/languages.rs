//! Transforms in Python and JavaScript: the `redact` example in three languages gives the same
//! bytes, each runs Pulsar → Kafka, and `sluice new` projects build, check and run.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Output};

use sluice_tests::pulsar::{PulsarRecord, publish_to_pulsar};
use sluice_tests::{REDACT, REDACT_JS, REDACT_PY};

use crate::support::assertions::{distinct_seqs, seq_of};
use crate::support::brokers::brokers_and_topics;
use crate::support::config::{pipeline_toml, transform_entry};
use crate::support::process::{SluiceProcess, sluice, sluice_bin};
use crate::support::read::read_until_seqs;

/// The redact config all three languages run with.
const FIELDS: &str = "email, phone,ssn ,";
const MASK: &str = "<hidden ✂>";

/// A small deterministic generator (64-bit LCG), so the input is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

/// JSON text fragments: numbers in every notation, strings with escapes and unicode.
const SCALARS: &[&str] = &[
    "0",
    "-0",
    "7",
    "-42",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "-9223372036854775809",
    "123456789012345678901234567890",
    "1.5",
    "1.50",
    "-0.0",
    "0.1",
    "2.5e10",
    "1e16",
    "1E-7",
    "123.456e-2",
    "1e300",
    "1.7976931348623157e308",
    "5e-324",
    "4.35",
    "0.30000000000000004",
    "1e22",
    "1e23",
    "9007199254740993",
    "true",
    "false",
    "null",
    r#""plain""#,
    r#""héllo wörld""#,
    r#""emoji 🦀 ok""#,
    r#""\u00e9\n\t\"q\"\\ \/""#,
    r#""\ud83d\ude00""#,
    r#""\u0000\u001f""#,
    r#""line\r\nbreak""#,
    r#""a@b.c""#,
    "\"\u{7f}\"",
];

/// Field names, some of which the config masks.
const NAMES: &[&str] = &[
    "email", "phone", "ssn", "name", "id", "1", "0", "emails", "Email", "nested", "ñame", "",
];

/// Values that are not JSON (or not JSON serde_json accepts), as record values.
const NOT_JSON: &[&str] = &[
    "plain text",
    "",
    "   ",
    "{\"a\":",
    "[1,2,]",
    "{\"a\":1,}",
    "nul",
    "tru",
    "1e400",
    "-",
    "01",
    "1.",
    "1.e5",
    "NaN",
    "Infinity",
    "{\"a\" 1}",
    "{a:1}",
    "[1 2]",
    "\"\\ud800\"",
    "\"\\udc00\"",
    "\"\\ud800\\u0041\"",
    "\"\\x\"",
    "\"\\u12G4\"",
    "\"tab\there\"",
    "{\"a\":1}x",
    "\u{feff}{}",
    "[\n1,\n2\n,]",
    "\"unterminated",
    "1e99999999999",
    "0e99999999999",
    "-1e-99999999999",
];

fn document(rng: &mut Rng, depth: u32) -> String {
    let choice = if depth >= 4 { 0 } else { rng.next() % 4 };
    match choice {
        0 => rng.pick(SCALARS).to_owned(),
        1 => {
            let items: Vec<String> = (0..rng.next() % 4)
                .map(|_| document(rng, depth + 1))
                .collect();
            let space = rng.pick(&["", " ", "\n  "]);
            format!("[{space}{}{space}]", items.join(&format!(",{space}")))
        }
        _ => {
            let fields: Vec<String> = (0..rng.next() % 5)
                .map(|_| {
                    let name = rng.pick(NAMES);
                    format!(
                        "\"{name}\"{}:{}",
                        rng.pick(&["", " "]),
                        document(rng, depth + 1)
                    )
                })
                .collect();
            format!("{{{}}}", fields.join(rng.pick(&[",", ", ", ",\n"])))
        }
    }
}

/// One `sluice exec` input line for record `n`.
fn exec_line(rng: &mut Rng, n: u64) -> String {
    let mut fields = serde_json::Map::new();
    match n % 7 {
        0 => {
            fields.insert("key".into(), format!("key-{n}-ключ").into());
        }
        1 => {
            fields.insert("key_base64".into(), "AP+A".into());
        }
        _ => {}
    }
    if n.is_multiple_of(5) {
        let mut headers = serde_json::Map::new();
        headers.insert("origin".into(), "web ✓".into());
        headers.insert("sluice-redacted".into(), "already".into());
        fields.insert("headers".into(), headers.into());
    }
    if n.is_multiple_of(11) {
        fields.insert("event_time_ms".into(), (1_700_000_000_000 + n).into());
    }
    match n % 10 {
        // Not JSON, as text or as bytes that are not UTF-8 (inside and outside a string).
        3 => {
            fields.insert("value".into(), rng.pick(NOT_JSON).into());
        }
        6 if n % 20 == 6 => {
            fields.insert(
                "value_base64".into(),
                rng.pick(&["IqD/Ig==", "/w==", "eyJhIjoi/yJ9"]).into(),
            );
        }
        // Nesting at and beyond serde_json's limit of 127.
        8 if n % 40 == 8 => {
            let depth = [127, 128, 200][(n / 40 % 3) as usize];
            let text = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
            fields.insert("value".into(), text.into());
        }
        9 if n % 30 == 9 => {} // a tombstone
        _ => {
            let mut text = document(rng, 0);
            if n.is_multiple_of(4) {
                // An object whose masked field repeats, and a masked value that is an object.
                text = format!(
                    "{{\"email\":1,\"user\":{text},\"email\":{{\"email\":\"x\"}},\"phone\":[1,{{\"ssn\":2}}]}}"
                );
            }
            fields.insert("value".into(), text.into());
        }
    }
    serde_json::Value::Object(fields).to_string()
}

/// What `sluice exec` printed, with the `transform` of error lines (`name@sha256:…`, which
/// necessarily differs between components) replaced.
fn exec_output(component: &str, input: &Path) -> String {
    let output = sluice(&[
        "exec",
        component,
        "-c",
        &format!("fields={FIELDS}"),
        "-c",
        &format!("mask={MASK}"),
        "--input",
        input.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "sluice exec {component} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let mut normalized = String::new();
    for line in stdout.lines() {
        let mut parsed: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(error) = parsed.get_mut("error") {
            error["transform"] = "redact".into();
        }
        writeln!(normalized, "{parsed}").unwrap();
    }
    normalized
}

/// Acceptance: the Rust, Python and JavaScript `redact` give byte-identical outputs on the same
/// 1,000 varied records (nested JSON, every number notation, unicode and escapes, repeated and
/// integer-like field names, keys and headers, values that are not JSON or not UTF-8,
/// tombstones, nesting beyond the parser's limit).
#[test]
fn redact_gives_identical_outputs_in_rust_python_and_javascript() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("records.jsonl");
    let mut rng = Rng(20_261_121);
    let lines: Vec<String> = (0..1000).map(|n| exec_line(&mut rng, n)).collect();
    std::fs::write(&input, lines.join("\n")).unwrap();

    let rust = exec_output(REDACT, &input);
    let lines: Vec<&str> = rust.lines().collect();
    let errors = lines.iter().filter(|l| l.contains(r#""error":"#)).count();
    let masked = lines.iter().filter(|l| l.contains("hidden")).count();
    eprintln!(
        "rust redact: {} lines, {errors} errors, {masked} with masked fields",
        lines.len()
    );
    assert_eq!(
        lines.len(),
        1000,
        "one line per record (no record is filtered)"
    );
    assert!(
        errors >= 100 && masked >= 300,
        "the input exercises both paths"
    );

    for (language, component) in [("Python", REDACT_PY), ("JavaScript", REDACT_JS)] {
        let other = exec_output(component, &input);
        if other != rust {
            let (n, (want, got)) = rust
                .lines()
                .zip(other.lines())
                .enumerate()
                .find(|(_, (a, b))| a != b)
                .unwrap_or((0, ("(same prefix)", "(different length)")));
            panic!(
                "{language} redact differs from Rust at output line {}:\nrust: {want}\n{language}: {got}",
                n + 1
            );
        }
    }
}

/// The same 1,000 orders as the Rust end-to-end test in miniature: every 100th is not JSON.
fn orders(count: u64) -> Vec<PulsarRecord> {
    (0..count)
        .map(|seq| {
            let key = format!("customer-{}", seq % 10);
            let value = if seq % 100 == 99 {
                format!("not json {seq}")
            } else {
                format!(r#"{{"seq":{seq},"customer":"{key}","email":"user{seq}@example.com","total":{}.5}}"#, seq * 3)
            };
            PulsarRecord {
                key: Some(key),
                value: value.into_bytes(),
                properties: vec![("seq".into(), seq.to_string())],
                event_time_ms: Some(1_700_000_000_000 + seq),
            }
        })
        .collect()
}

/// Runs `component` (a redact) in `sluice run` from Pulsar to Kafka and checks every record.
async fn redact_end_to_end(test: &str, component: &str) {
    let Some((brokers, topics)) = brokers_and_topics(test, 2).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    let transforms = transform_entry(component, r#"fields = "email""#);
    std::fs::write(&config, pipeline_toml(&brokers, &topics, &transforms, "")).unwrap();
    let mut sluice = SluiceProcess::run(&config);

    publish_to_pulsar(&brokers.pulsar, &topics.source, &orders(1000))
        .await
        .unwrap();
    let good: BTreeSet<u64> = (0..1000).filter(|s| s % 100 != 99).collect();
    let poison: BTreeSet<u64> = (0..1000).filter(|s| s % 100 == 99).collect();
    let output = read_until_seqs(&brokers, &topics.output, &good).await;
    let dead = read_until_seqs(&brokers, &topics.dead_letter, &poison).await;
    sluice.terminate_and_wait_success();

    assert_eq!(distinct_seqs(&output), good, "every good record arrives");
    for record in &output {
        let seq = seq_of(record);
        assert_eq!(
            record.key_str(),
            Some(format!("customer-{}", seq % 10).as_str())
        );
        assert_eq!(record.header("sluice-redacted"), Some("1"));
        assert_eq!(record.timestamp_ms, Some(1_700_000_000_000 + seq as i64));
        let expected = format!(
            r#"{{"seq":{seq},"customer":"customer-{}","email":"***","total":{}.5}}"#,
            seq % 10,
            seq * 3
        );
        assert_eq!(record.value_str(), Some(expected.as_str()));
    }
    assert_eq!(
        distinct_seqs(&dead),
        poison,
        "every non-JSON record is dead-lettered"
    );
    for record in &dead {
        assert_eq!(
            record.header("sluice.error"),
            Some("value is not JSON: expected ident at line 1 column 2")
        );
        assert_eq!(record.header("sluice.error.kind"), Some("dead-letter"));
    }
}

/// Acceptance: the Python redact runs end to end, Pulsar → Kafka, with the real brokers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_redact_runs_from_pulsar_to_kafka() {
    redact_end_to_end("redact-py", REDACT_PY).await;
}

/// Acceptance: the JavaScript redact runs end to end, Pulsar → Kafka, with the real brokers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_redact_runs_from_pulsar_to_kafka() {
    redact_end_to_end("redact-js", REDACT_JS).await;
}

fn run_in(dir: &Path, program: &Path, args: &[&str]) -> Output {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        // A Rust project's build shares one target dir across runs (it is outside the clone).
        .env("CARGO_TARGET_DIR", new_projects_target_dir())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{} {args:?} in {} failed:\n{}\n{}",
        program.display(),
        dir.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn new_projects_target_dir() -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("sluice-new-projects"));
    target.join("new-projects")
}

/// `sluice new NAME --lang LANG` in a clean directory, then the project's own test, its
/// build, `sluice check` (which must name `@0.2.0`) and `sluice exec` on its sample records.
fn new_project_builds_checks_and_runs(lang: &str) {
    let dir = tempfile::tempdir().unwrap();
    let name = format!("my-{lang}-transform");
    let sluice_bin = sluice_bin();
    run_in(dir.path(), &sluice_bin, &["new", &name, "--lang", lang]);
    let project = dir.path().join(&name);
    for file in ["README.md", "build.sh", "test.sh", "sample.jsonl"] {
        assert!(project.join(file).is_file(), "{lang} project has {file}");
    }
    run_in(&project, &project.join("test.sh"), &[]);
    run_in(&project, &project.join("build.sh"), &[]);
    let component = project.join(format!("{name}.wasm"));
    let check = sluice(&["check", component.to_str().unwrap()]);
    assert!(
        check.status.success(),
        "sluice check: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    // Every template targets the flat batch ABI.
    let checked = String::from_utf8_lossy(&check.stdout);
    assert!(
        checked.contains("ok: implements sluice:transform/transformer@0.2.0"),
        "{lang} project is on 0.2.0:\n{checked}"
    );
    let exec = sluice(&[
        "exec",
        component.to_str().unwrap(),
        "--input",
        project.join("sample.jsonl").to_str().unwrap(),
    ]);
    assert!(
        exec.status.success(),
        "sluice exec: {}",
        String::from_utf8_lossy(&exec.stderr)
    );
    let stdout = String::from_utf8(exec.stdout).unwrap();
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert_eq!(
        lines[0]["headers"]["processed-by"],
        name.as_str(),
        "{stdout}"
    );
    assert_eq!(lines[0]["headers"]["origin"], "sample", "{stdout}");
    assert_eq!(lines[1]["value"], "plain text", "{stdout}");
    assert_eq!(lines[2]["error"]["kind"], "skip", "{stdout}");
    assert_eq!(lines[2]["error"]["reason"], "tombstone", "{stdout}");
}

/// Acceptance: `sluice new --lang rust`, build, check, exec: all succeed from a clean directory.
#[test]
fn new_rust_project_builds_checks_and_runs() {
    new_project_builds_checks_and_runs("rust");
}

/// Acceptance: `sluice new --lang python`, build, check, exec: all succeed from a clean directory.
#[test]
fn new_python_project_builds_checks_and_runs() {
    new_project_builds_checks_and_runs("python");
}

/// Acceptance: `sluice new --lang js`, build, check, exec: all succeed from a clean directory.
#[test]
fn new_js_project_builds_checks_and_runs() {
    new_project_builds_checks_and_runs("js");
}

/// `sluice new` refuses names no toolchain accepts and directories that exist (exit 2).
#[test]
fn new_refuses_bad_names_and_existing_directories() {
    let dir = tempfile::tempdir().unwrap();
    let bad = Command::new(sluice_bin())
        .args(["new", "9 lives"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a usable transform name"));
    std::fs::create_dir(dir.path().join("taken")).unwrap();
    let taken = Command::new(sluice_bin())
        .args(["new", "taken", "--lang", "python"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(taken.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&taken.stderr).contains("already exists"));
}
