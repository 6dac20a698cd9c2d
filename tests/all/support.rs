//! Helpers shared by the broker tests of this binary.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use sluice::config::Config;
use sluice::pipeline::{Pipeline, PipelineError, PipelineStats};
use sluice_tests::brokers::{KafkaRecord, create_kafka_topics};
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Addresses of the real brokers, or `None` (test skipped) when they are not running outside CI.
pub(crate) struct Brokers {
    pub(crate) kafka: String,
    pub(crate) pulsar: String,
}

impl Brokers {
    pub(crate) fn from_env() -> Option<Self> {
        let kafka = sluice_tests::broker_env_or_skip("SLUICE_KAFKA_BROKERS", "127.0.0.1:9092")?;
        let pulsar =
            sluice_tests::broker_env_or_skip("SLUICE_PULSAR_URL", "pulsar://127.0.0.1:6650")?;
        Some(Self { kafka, pulsar })
    }
}

/// The brokers and fresh topics (output and dead-letter created with `partitions`) for one
/// test, or `None` when the test is skipped.
pub(crate) async fn brokers_and_topics(test: &str, partitions: i32) -> Option<(Brokers, Topics)> {
    let brokers = Brokers::from_env()?;
    let topics = topics_for(test);
    create_kafka_topics(
        &brokers.kafka,
        &[&topics.output, &topics.dead_letter],
        partitions,
    )
    .await
    .unwrap();
    Some((brokers, topics))
}

/// A `[[pipeline.transform]]` entry; `config` is the inside of its inline table.
pub(crate) fn transform_entry(component: &str, config: &str) -> String {
    format!("[[pipeline.transform]]\ncomponent = {component:?}\nconfig = {{ {config} }}\n")
}

/// A pipeline running inside the test process, through the library API.
pub(crate) struct InProcessPipeline {
    stop: CancellationToken,
    task: JoinHandle<Result<(), PipelineError>>,
    pub(crate) stats: Arc<PipelineStats>,
}

impl InProcessPipeline {
    pub(crate) async fn start(toml: &str) -> Self {
        let config = Config::parse(toml, Path::new("test.toml"), Path::new(".")).unwrap();
        let pipeline = Pipeline::prepare(config.pipelines[0].clone(), sluice_tests::engine())
            .await
            .unwrap();
        let stats = pipeline.stats();
        let stop = CancellationToken::new();
        let task = tokio::spawn(pipeline.run(stop.clone()));
        Self { stop, task, stats }
    }

    pub(crate) fn is_running(&self) -> bool {
        !self.task.is_finished()
    }

    /// Stops it like SIGTERM does: it must drain and return `Ok`.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        self.task
            .await
            .unwrap()
            .expect("the pipeline drains and stops cleanly");
        eprintln!("pipeline counters: {}", self.stats.summary());
    }
}

/// Unique topic names for one test run.
pub(crate) struct Topics {
    pub(crate) source: String,
    pub(crate) subscription: String,
    pub(crate) output: String,
    pub(crate) dead_letter: String,
}

pub(crate) fn topics_for(test: &str) -> Topics {
    let base = sluice_tests::unique_name(test);
    Topics {
        source: format!("persistent://public/default/{base}"),
        subscription: format!("sluice-{base}"),
        output: format!("{base}-out"),
        dead_letter: format!("{base}-dlq"),
    }
}

/// A one-pipeline config: Pulsar `topics.source` → `transforms` → Kafka `topics.output`.
pub(crate) fn pipeline_toml(
    brokers: &Brokers,
    topics: &Topics,
    transforms: &str,
    extra_sink: &str,
) -> String {
    named_pipeline_toml("test", brokers, topics, transforms, extra_sink)
}

/// Like [`pipeline_toml`], for a pipeline called `name` (configs may hold several).
pub(crate) fn named_pipeline_toml(
    name: &str,
    brokers: &Brokers,
    topics: &Topics,
    transforms: &str,
    extra_sink: &str,
) -> String {
    format!(
        r#"
[[pipeline]]
name = "{name}"
max_in_flight = 2000

[pipeline.source]
kind = "pulsar"
url = "{pulsar}"
topic = "{source}"
subscription = "{subscription}"
subscription_type = "failover"

{transforms}
[pipeline.sink]
kind = "kafka"
brokers = "{kafka}"
topic = "{output}"
dead_letter_topic = "{dead_letter}"
{extra_sink}"#,
        pulsar = brokers.pulsar,
        kafka = brokers.kafka,
        source = topics.source,
        subscription = topics.subscription,
        output = topics.output,
        dead_letter = topics.dead_letter,
    )
}

/// The `seq` property every test record carries (kept as a header through the pipeline).
pub(crate) fn seq_of(record: &KafkaRecord) -> u64 {
    record
        .header("seq")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("record without a numeric seq header: {record:?}"))
}

/// Prints how many of `records` arrived, distinct, duplicated, and how many of `expected` are
/// missing (duplicates are allowed at-least-once: counted, not asserted). Returns the distinct
/// sequence numbers for the test's own assertion.
pub(crate) fn report_counts(
    context: &str,
    records: &[KafkaRecord],
    expected: &BTreeSet<u64>,
) -> BTreeSet<u64> {
    let distinct: BTreeSet<u64> = records.iter().map(seq_of).collect();
    eprintln!(
        "{context}: {} records in Kafka, {} distinct, {} duplicates, {} lost",
        records.len(),
        distinct.len(),
        records.len() - distinct.len(),
        expected.difference(&distinct).count()
    );
    distinct
}

/// The `sluice` binary built next to this test binary (`scripts/test.sh` builds it first).
pub(crate) fn sluice_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = dir.join("sluice");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p sluice --bin sluice` first (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// Runs the `sluice` binary to completion (components compiled into a temporary cache).
pub(crate) fn sluice(args: &[&str]) -> Output {
    Command::new(sluice_bin())
        .args(args)
        .env("SLUICE_CACHE_DIR", std::env::temp_dir())
        .output()
        .unwrap()
}

/// Writes a one-pipeline config running `component` against brokers that do not exist
/// (port 1): for tests that must fail before anything connects. Returns the config's path.
pub(crate) fn write_offline_config(dir: &Path, component: &str) -> PathBuf {
    let path = dir.join("sluice.toml");
    let toml = format!(
        r#"
[[pipeline]]
name = "p"
[pipeline.source]
kind = "pulsar"
url = "pulsar://127.0.0.1:1"
topic = "t"
subscription = "s"
[[pipeline.transform]]
component = {component:?}
[pipeline.sink]
kind = "kafka"
brokers = "127.0.0.1:1"
topic = "out"
"#
    );
    std::fs::write(&path, toml).unwrap();
    path
}

/// `sluice run` as a child process, killed on drop if still running.
pub(crate) struct SluiceProcess {
    child: Child,
}

impl SluiceProcess {
    pub(crate) fn run(config: &Path) -> Self {
        let child = Command::new(sluice_bin())
            .args(["run", "--config"])
            .arg(config)
            .env("SLUICE_LOG", "error")
            .stdin(Stdio::null())
            .spawn()
            .expect("cannot start sluice");
        Self { child }
    }

    /// Current and peak resident memory of the process, in MiB (from `/proc`).
    pub(crate) fn memory_mib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no {name} in /proc status"))
                / 1024
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// SIGKILL: no drain, no goodbye.
    pub(crate) fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then the process must drain and exit 0 within a minute.
    pub(crate) fn terminate_and_wait_success(&mut self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success());
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "sluice exited with {status} after SIGTERM"
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("sluice did not stop within 60 s of SIGTERM");
    }
}

impl Drop for SluiceProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
