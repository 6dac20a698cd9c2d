//! The brokers a test uses: their addresses (skipped outside CI, failing in CI when one is
//! down), the lock that keeps outages away from tests that do not expect them, fresh topics,
//! Pub/Sub topics and subscriptions, and broker outages through `scripts/brokers.sh`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use sluice_tests::addresses::{self, KAFKA, PUBSUB, PULSAR};
use sluice_tests::kafka::create_kafka_topics;
use sluice_tests::pubsub::create_topic_and_subscription;
use tokio::sync::RwLock;

use super::process::SluiceProcess;

/// Tests that stop a broker hold this for writing; every other broker test holds it for
/// reading, so an outage never hits a test that does not expect one.
static OUTAGE_LOCK: LazyLock<Arc<RwLock<()>>> = LazyLock::new(Arc::default);

/// How a test shares the brokers with the tests running beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BrokerUse {
    /// Produces and consumes; brokers stay up.
    Shared,
    /// Stops and restarts brokers, or measures throughput: runs alone (no other broker test
    /// shares the brokers or the cores with it meanwhile).
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
    /// Takes the brokers (waiting while an outage test runs), then checks they are there: a
    /// broker an outage test stopped is back once the lock is ours.
    pub(crate) async fn from_env(usage: BrokerUse) -> Option<Self> {
        let lock = OUTAGE_LOCK.clone();
        let _outage: Box<dyn std::any::Any + Send + Sync> = match usage {
            BrokerUse::Shared => Box::new(lock.read_owned().await),
            BrokerUse::Exclusive => Box::new(lock.write_owned().await),
        };
        let kafka = addresses::or_skip(KAFKA)?;
        let pulsar = addresses::or_skip(PULSAR)?;
        Some(Self {
            kafka,
            pulsar,
            _outage,
        })
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

/// The Pub/Sub project of every test.
pub(crate) const PROJECT: &str = "sluice-tests";

/// For a Pub/Sub test: the brokers, the emulator's address and topics, with a Pub/Sub topic
/// (`source`) and an ordered subscription on it (`subscription`) created.
pub(crate) async fn pubsub_setup(
    test: &str,
    usage: BrokerUse,
) -> Option<(Brokers, String, Topics)> {
    recycle_grown_emulator().await;
    let (brokers, topics) = brokers_and_topics_for(test, 3, usage).await?;
    let emulator = addresses::or_skip(PUBSUB)?;
    let topic = topics.output.replace("-out", "-src");
    create_topic_and_subscription(&emulator, PROJECT, &topic, &topics.subscription)
        .await
        .unwrap();
    Some((
        brokers,
        emulator,
        Topics {
            source: topic,
            ..topics
        },
    ))
}

/// The emulator is restarted (between tests, when no test uses it) once it holds more threads.
///
/// Google's emulator keeps a thread for every ordering key of every subscription (a
/// per-key scheduler its ordered backlogs never shut down, not even when the subscription is
/// deleted) and one for every streaming pull it ever served. Each test adds its keys and
/// streams: a few hundred threads over the suite. This bounds it whatever adds them.
const EMULATOR_THREAD_LIMIT: u64 = 1_000;

async fn recycle_grown_emulator() {
    if emulator_threads().is_none_or(|threads| threads <= EMULATOR_THREAD_LIMIT) {
        return;
    }
    let _alone = OUTAGE_LOCK.clone().write_owned().await;
    if let Some(threads) = emulator_threads().filter(|t| *t > EMULATOR_THREAD_LIMIT) {
        eprintln!(
            "the Pub/Sub emulator holds {threads} threads (limit {EMULATOR_THREAD_LIMIT}): \
             restarting it"
        );
        brokers_script(&["restart", "pubsub"]);
    }
}

/// Threads of the Pub/Sub emulator `scripts/brokers.sh` started, if it did.
pub(crate) fn emulator_threads() -> Option<u64> {
    let pid = std::fs::read_to_string(dev_dir().join("run/pubsub.pid")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
}

/// `scripts/brokers.sh`'s state directory (PID files, logs).
pub(crate) fn dev_dir() -> PathBuf {
    std::env::var_os("SLUICE_DEV_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../.sluice-dev"),
        PathBuf::from,
    )
}

/// The certificates, keys and tokens scripts/brokers/credentials.sh made for the secured
/// listeners (`SLUICE_CREDENTIALS_DIR`, else `<dev dir>/credentials`).
pub(crate) fn credentials_dir() -> PathBuf {
    std::env::var_os("SLUICE_CREDENTIALS_DIR")
        .map_or_else(|| dev_dir().join("credentials"), PathBuf::from)
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

/// A broker stopped for an outage test (SIGTERM: the broker shuts down cleanly, as in a
/// maintenance restart); started again when dropped, also when the test fails, so the tests
/// after it find it running.
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

/// A broker paused (SIGSTOP, `scripts/brokers.sh pause`) for a test of a stuck broker: its
/// connections stay open and nothing is answered, so clients wait instead of failing. Resumed
/// when dropped, also when the test fails.
pub(crate) struct BrokerPause {
    broker: &'static str,
}

impl BrokerPause {
    pub(crate) fn begin(broker: &'static str) -> Self {
        brokers_script(&["pause", broker]);
        Self { broker }
    }

    pub(crate) fn end(self) {}
}

impl Drop for BrokerPause {
    fn drop(&mut self) {
        brokers_script(&["resume", self.broker]);
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
