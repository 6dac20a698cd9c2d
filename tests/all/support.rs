//! Helpers shared by the broker tests of this binary.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use sluice_pipeline::{PipelineError, PipelineStats};
use sluice_runtime::config::Config;
use sluice_tests::brokers::{KafkaRecord, create_kafka_topics, read_kafka_topic};
use std::sync::{Arc, LazyLock};
use tokio::sync::RwLock;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Tests that stop a broker hold this for writing; every other broker test holds it for
/// reading, so an outage never hits a test that does not expect one.
static OUTAGE_LOCK: LazyLock<Arc<RwLock<()>>> = LazyLock::new(Arc::default);

/// How a test shares the brokers with the tests running beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BrokerUse {
    /// Produces and consumes; brokers stay up.
    Shared,
    /// Stops and restarts brokers: runs alone.
    Exclusive,
}

/// Addresses of the real brokers, or `None` (test skipped) when they are not running outside CI.
pub(crate) struct Brokers {
    pub(crate) kafka: String,
    pub(crate) pulsar: String,
    /// The read or write guard of [`OUTAGE_LOCK`], held for the test's lifetime.
    _outage: Box<dyn std::any::Any + Send + Sync>,
}

impl Brokers {
    pub(crate) async fn from_env(usage: BrokerUse) -> Option<Self> {
        let kafka = sluice_tests::broker_env_or_skip("SLUICE_KAFKA_BROKERS", "127.0.0.1:9092")?;
        let pulsar =
            sluice_tests::broker_env_or_skip("SLUICE_PULSAR_URL", "pulsar://127.0.0.1:6650")?;
        let lock = OUTAGE_LOCK.clone();
        let _outage: Box<dyn std::any::Any + Send + Sync> = match usage {
            BrokerUse::Shared => Box::new(lock.read_owned().await),
            BrokerUse::Exclusive => Box::new(lock.write_owned().await),
        };
        Some(Self {
            kafka,
            pulsar,
            _outage,
        })
    }
}

/// The brokers and fresh topics (output and dead-letter created with `partitions`) for one
/// test, or `None` when the test is skipped.
pub(crate) async fn brokers_and_topics(test: &str, partitions: i32) -> Option<(Brokers, Topics)> {
    brokers_and_topics_for(test, partitions, BrokerUse::Shared).await
}

/// Like [`brokers_and_topics`], saying how the test uses the brokers.
pub(crate) async fn brokers_and_topics_for(
    test: &str,
    partitions: i32,
    usage: BrokerUse,
) -> Option<(Brokers, Topics)> {
    let brokers = Brokers::from_env(usage).await?;
    let topics = fresh_topics(&brokers, test, partitions).await;
    Some((brokers, topics))
}

/// Fresh topics for one more pipeline of a test (output and dead-letter created with
/// `partitions`). A test with several pipelines takes the brokers once and calls this per
/// pipeline: taking them again while holding them could wait on a queued outage test forever.
pub(crate) async fn fresh_topics(brokers: &Brokers, test: &str, partitions: i32) -> Topics {
    let topics = topics_for(test);
    create_kafka_topics(
        &brokers.kafka,
        &[&topics.output, &topics.dead_letter],
        partitions,
    )
    .await
    .unwrap();
    topics
}

/// A `[[pipeline.transform]]` entry; `config` is the inside of its inline table.
pub(crate) fn transform_entry(component: &str, config: &str) -> String {
    format!("[[pipeline.transform]]\ncomponent = {component:?}\nconfig = {{ {config} }}\n")
}

/// A `[[pipeline.transform]]` entry with an explicit `name` (the admin API addresses a
/// transform by it); `config` is the inside of its inline table.
pub(crate) fn named_transform_entry(name: &str, component: &str, config: &str) -> String {
    format!("{}name = {name:?}\n", transform_entry(component, config))
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
        let pipeline = sluice_runtime::standalone_pipeline(
            config.pipelines[0].clone(),
            sluice_tests::engine(),
        )
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

    /// Waits for the pipeline to stop on its own with an error; returns the error chain.
    pub(crate) async fn failure(self) -> String {
        let result = tokio::time::timeout(Duration::from_secs(120), self.task)
            .await
            .expect("the pipeline stops on its own")
            .unwrap();
        let error = result.expect_err("the pipeline fails");
        format!("{:#}", anyhow::Error::new(error))
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

/// Runs `scripts/brokers.sh` with `args` (e.g. `stop kafka`), for tests that cause outages.
pub(crate) fn brokers_script(args: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/brokers.sh");
    let status = Command::new("bash")
        .arg(&script)
        .args(args)
        .status()
        .unwrap();
    assert!(status.success(), "scripts/brokers.sh {args:?} failed");
}

/// A broker stopped for an outage test; started again when dropped, also when the test fails,
/// so the tests after it find it running.
pub(crate) struct BrokerOutage {
    broker: &'static str,
}

impl BrokerOutage {
    pub(crate) fn begin(broker: &'static str) -> Self {
        brokers_script(&["stop", broker]);
        Self { broker }
    }

    pub(crate) fn end(self) {}
}

impl Drop for BrokerOutage {
    fn drop(&mut self) {
        brokers_script(&["start", self.broker]);
    }
}

/// Memory of a runtime through a broker outage, in MiB.
pub(crate) struct OutageMemory {
    pub(crate) at_stop: u64,
    pub(crate) max_while_down: u64,
    broker: &'static str,
    seconds: u32,
}

impl OutageMemory {
    /// `kafka down for 20 s after N records: RSS …` for a test's report.
    pub(crate) fn describe(&self, records_before: usize) -> String {
        format!(
            "{} down for {} s after {records_before} records: RSS {} MiB at the stop, at most {} \
             MiB while down",
            self.broker, self.seconds, self.at_stop, self.max_while_down
        )
    }
}

/// Stops `broker` for `seconds` while `runtime` runs, sampling its memory each second; the
/// runtime must stay alive (its `log` is shown if it dies).
pub(crate) async fn outage_of(
    broker: &'static str,
    seconds: u32,
    runtime: &mut SluiceProcess,
    log: &Path,
) -> OutageMemory {
    let outage = BrokerOutage::begin(broker);
    let mut memory: Option<OutageMemory> = None;
    for _ in 0..seconds {
        if let Some(status) = runtime.exit_status() {
            panic!(
                "sluice exited ({status}) while {broker} was down:\n{}",
                std::fs::read_to_string(log).unwrap()
            );
        }
        let (rss, _) = runtime.memory_mib();
        let memory = memory.get_or_insert(OutageMemory {
            at_stop: rss,
            max_while_down: rss,
            broker,
            seconds,
        });
        memory.max_while_down = memory.max_while_down.max(rss);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    outage.end();
    memory.expect("the outage lasts at least a second")
}

/// The log lines a stalled-then-recovered pipeline must have written.
pub(crate) fn assert_stall_and_recovery_logged(log: &str) {
    for line in [
        "in-flight limit reached and nothing acked",
        "pipeline interrupted by a broker failure",
        "pipeline restarted",
    ] {
        assert!(log.contains(line), "{line:?} is not in the log:\n{log}");
    }
}

/// Unique topic names for one test run.
#[derive(Clone)]
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
    pulsar_pipeline_toml(
        name,
        "max_in_flight = 2000",
        "subscription_type = \"failover\"",
        brokers,
        topics,
        &format!("{transforms}\n{}", sink_toml(brokers, topics, extra_sink)),
    )
}

/// A Pulsar pipeline called `name` with `settings` lines in its `[[pipeline]]` table,
/// `source_settings` lines in its source, then `rest` (transforms and sink).
pub(crate) fn pulsar_pipeline_toml(
    name: &str,
    settings: &str,
    source_settings: &str,
    brokers: &Brokers,
    topics: &Topics,
    rest: &str,
) -> String {
    format!(
        r#"
[[pipeline]]
name = "{name}"
{settings}

[pipeline.source]
kind = "pulsar"
url = "{pulsar}"
topic = "{source}"
subscription = "{subscription}"
{source_settings}

{rest}"#,
        pulsar = brokers.pulsar,
        source = topics.source,
        subscription = topics.subscription,
    )
}

/// The `[pipeline.sink]` section every test pipeline uses: Kafka, the test's output and
/// dead-letter topics, then `extra_sink` lines.
pub(crate) fn sink_toml(brokers: &Brokers, topics: &Topics, extra_sink: &str) -> String {
    format!(
        r#"[pipeline.sink]
kind = "kafka"
brokers = "{kafka}"
topic = "{output}"
dead_letter_topic = "{dead_letter}"
{extra_sink}"#,
        kafka = brokers.kafka,
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
    let distinct = distinct_seqs(records);
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

/// The one `error:` line the `sluice` binary printed (fails unless there is exactly one).
pub(crate) fn error_line(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(
        errors.len(),
        1,
        "exactly one error line expected in:\n{stderr}"
    );
    errors[0].to_owned()
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
        // `SLUICE_TEST_LOG=info` shows the child's log when debugging a test.
        let level = std::env::var("SLUICE_TEST_LOG").unwrap_or_else(|_| "error".into());
        Self::spawn(config, &[], &level, Stdio::inherit(), Stdio::inherit())
    }

    /// Like [`run`](Self::run), with its log at `info` written to `log` for the test to read.
    pub(crate) fn run_logging_to(config: &Path, log: &Path) -> Self {
        Self::run_with_args_logging_to(config, &[], log)
    }

    /// Like [`run_logging_to`](Self::run_logging_to), with more `sluice run` arguments (e.g.
    /// `--log-format json`); stdout goes to `log` too, so the log is whole wherever it is written.
    pub(crate) fn run_with_args_logging_to(config: &Path, run_args: &[&str], log: &Path) -> Self {
        let file = std::fs::File::create(log).unwrap();
        let stdout = Stdio::from(file.try_clone().unwrap());
        Self::spawn(config, run_args, "info", stdout, Stdio::from(file))
    }

    fn spawn(
        config: &Path,
        run_args: &[&str],
        log_level: &str,
        stdout: Stdio,
        stderr: Stdio,
    ) -> Self {
        let child = Command::new(sluice_bin())
            .arg("run")
            .args(run_args)
            .arg("--config")
            .arg(config)
            .env("SLUICE_LOG", log_level)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
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

    /// The exit status, if the process has exited.
    pub(crate) fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
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

/// Every distinct `seq` of `records`.
pub(crate) fn distinct_seqs(records: &[KafkaRecord]) -> BTreeSet<u64> {
    records.iter().map(seq_of).collect()
}

/// Reads `topic` until every sequence number of `expected` was seen, failing after `timeout`.
pub(crate) async fn read_until_seqs(
    brokers: &Brokers,
    topic: &str,
    expected: &BTreeSet<u64>,
    timeout: Duration,
) -> Vec<KafkaRecord> {
    let expected = expected.clone();
    read_until(brokers, topic, timeout, move |records| {
        records.len() >= expected.len() && distinct_seqs(records).is_superset(&expected)
    })
    .await
}

/// Reads `topic` until it holds at least `count` records, failing after `timeout`.
pub(crate) async fn read_at_least(
    brokers: &Brokers,
    topic: &str,
    count: usize,
    timeout: Duration,
) -> Vec<KafkaRecord> {
    read_until(brokers, topic, timeout, move |records| {
        records.len() >= count
    })
    .await
}

/// Reads `topic` from the start until `done(records read so far)` holds, failing after
/// `timeout`. `done` is called after every record: keep it incremental on long topics.
pub(crate) async fn read_until(
    brokers: &Brokers,
    topic: &str,
    timeout: Duration,
    done: impl FnMut(&[KafkaRecord]) -> bool + Send + 'static,
) -> Vec<KafkaRecord> {
    let (kafka, topic) = (brokers.kafka.clone(), topic.to_owned());
    tokio::task::spawn_blocking(move || read_kafka_topic(&kafka, &topic, timeout, done))
        .await
        .unwrap()
        .unwrap()
}

/// Per key: one partition, and sequence numbers in increasing order in the partition
/// (repeats from redelivery ignored: the first copy of each counts).
pub(crate) fn assert_per_key_order(records: &[KafkaRecord]) {
    let mut sorted: Vec<&KafkaRecord> = records.iter().collect();
    sorted.sort_by_key(|r| (r.partition, r.offset));
    let mut partition_of: HashMap<&str, i32> = HashMap::new();
    let mut last: HashMap<&str, u64> = HashMap::new();
    let mut seen = BTreeSet::new();
    for record in sorted {
        let key = record.key_str().expect("every record has a key");
        let partition = *partition_of.entry(key).or_insert(record.partition);
        assert_eq!(
            partition, record.partition,
            "key {key} landed on two partitions"
        );
        let seq = seq_of(record);
        if seen.insert(seq)
            && let Some(previous) = last.insert(key, seq)
        {
            assert!(
                previous < seq,
                "order broken for {key}: {previous} before {seq}"
            );
        }
    }
}
