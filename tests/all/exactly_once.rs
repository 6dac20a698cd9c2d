//! Exactly-once (docs/delivery-guarantees.md) and transform lanes against the real brokers: the runtime is
//! SIGKILLed at random moments, brokers are killed and restarted, and every output of every
//! source record must be in Kafka exactly once, by source identity and output index.
//!
//! `SLUICE_SOAK=1` runs the crash loops ten times longer (records and kills).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sluice_tests::kafka::KafkaRecord;
use sluice_tests::pubsub::{PubSubRecord, publish_to_pubsub};
use sluice_tests::pulsar::{PulsarRecord, publish_to_pulsar};
use sluice_tests::timeouts;

use crate::support::assertions::header_u64;
use crate::support::brokers::{
    BrokerUse, Brokers, PROJECT, Topics, brokers_and_topics, brokers_and_topics_for,
    brokers_script, pubsub_setup,
};
use crate::support::config::{
    Pull, pubsub_pipeline_toml, pulsar_pipeline_toml, sink_toml, transform_entry, write_config,
};
use crate::support::process::{InProcessPipeline, SluiceProcess};
use crate::support::read::{read_all, read_at_least, topic_size};

/// Longer crash loops with `SLUICE_SOAK=1`.
fn soak_factor() -> u64 {
    if std::env::var("SLUICE_SOAK").is_ok_and(|v| v == "1") {
        10
    } else {
        1
    }
}

/// Outputs per record of the `fan-out-work` guest with `copies = "seq"`.
pub(crate) fn copies_of(seq: u64) -> u64 {
    1 + seq % 3
}

fn event_time_of(seq: u64) -> u64 {
    1_700_000_000_000 + seq
}

/// JSON records over 40 keys, each with its `seq` in a property and its event time.
pub(crate) fn pulsar_records(count: u64) -> Vec<PulsarRecord> {
    (0..count)
        .map(|seq| PulsarRecord {
            key: Some(format!("k{}", seq % 40)),
            value: format!(r#"{{"seq":{seq}}}"#).into_bytes(),
            properties: vec![("seq".into(), seq.to_string())],
            event_time_ms: Some(event_time_of(seq)),
        })
        .collect()
}

/// A small xorshift: random kill moments without a dependency; the seed is printed.
pub(crate) struct KillClock(u64);

impl KillClock {
    pub(crate) fn new() -> Self {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1;
        eprintln!("kill moments seeded with {seed}");
        Self(seed)
    }

    /// Somewhere between `min` and `max`.
    pub(crate) fn next(&mut self, min: Duration, max: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let span = (max - min).as_millis() as u64;
        min + Duration::from_millis(self.0 % span.max(1))
    }
}

/// What happens between two runtime kills.
#[derive(Clone, Copy)]
pub(crate) enum Chaos {
    None,
    /// `scripts/brokers.sh restart <broker> --kill` while the runtime is down.
    KillBroker(&'static str),
}

/// Runs the runtime and SIGKILLs it `kills` times, each time once it has written a share of
/// the outputs since its start and then a random moment more (so every kill is mid-stream and
/// every run makes progress), doing `chaos(kill)` after each kill; then lets the last run
/// finish until `expected_outputs` records are in the output topic and stops it with SIGTERM.
/// Fails when the outputs stop growing for two minutes.
pub(crate) async fn crash_loop(
    config: &Path,
    brokers: &Brokers,
    topics: &Topics,
    kills: u64,
    chaos: impl Fn(u64) -> Chaos,
    expected_outputs: usize,
) {
    let logs = config.parent().unwrap();
    let log_of = |run: u64| logs.join(format!("run-{run}.log"));
    // Kills spread over the first half of the outputs: replays after each restart make up
    // the rest, and every kill lands while records still flow.
    let step = (expected_outputs as i64 / (2 * kills as i64)).max(1);
    let mut clock = KillClock::new();
    let mut runtime = SluiceProcess::run_logging_to(config, &log_of(0));
    let started = Instant::now();
    let mut written = 0;
    for kill in 1..=kills {
        let target = (written + step).min(expected_outputs as i64 - 1);
        wait_for_outputs(brokers, topics, target, &log_of(kill - 1)).await;
        tokio::time::sleep(clock.next(Duration::ZERO, Duration::from_millis(1_500))).await;
        runtime.kill();
        let chaos = chaos(kill);
        if let Chaos::KillBroker(broker) = chaos {
            brokers_script(&["restart", broker, "--kill"]);
        }
        // Right after a broker restart the size may not be readable yet (0): keep the last.
        written = output_size(brokers, topics).await.max(written);
        eprintln!(
            "kill {kill} at {:.1} s: {written} records in Kafka{}",
            started.elapsed().as_secs_f64(),
            match chaos {
                Chaos::KillBroker(broker) => format!(", then {broker} killed and restarted"),
                Chaos::None => String::new(),
            }
        );
        runtime = SluiceProcess::run_logging_to(config, &log_of(kill));
    }
    wait_for_every_output(brokers, topics, expected_outputs, &log_of(kills)).await;
    runtime.terminate_and_wait_success();
    eprintln!(
        "{kills} kills; {expected_outputs} outputs in after {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Waits until the output topic holds `target` records; fails with the run's log when it
/// stops growing for two minutes.
pub(crate) async fn wait_for_outputs(
    brokers: &Brokers,
    topics: &Topics,
    target: i64,
    log: &Path,
) -> i64 {
    let mut last = (output_size(brokers, topics).await, Instant::now());
    while last.0 < target {
        if last.1.elapsed() > timeouts::STALL {
            panic!(
                "outputs stuck at {} (waiting for {target}); the run's log:\n{}",
                last.0,
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let size = output_size(brokers, topics).await;
        if size > last.0 {
            last = (size, Instant::now());
        }
    }
    last.0
}

/// Waits until all `expected` distinct outputs (by seq and output index) are in the output
/// topic: with duplicates (at-least-once) the topic's size says too early.
pub(crate) async fn wait_for_every_output(
    brokers: &Brokers,
    topics: &Topics,
    expected: usize,
    log: &Path,
) {
    let mut last = (0, Instant::now());
    loop {
        wait_for_outputs(brokers, topics, expected as i64, log).await;
        let distinct = read_all(brokers, &[&topics.output])
            .await
            .iter()
            .map(|r| (header_u64(r, "seq"), header_u64(r, "sluice.output.index")))
            .collect::<BTreeSet<_>>()
            .len();
        if distinct >= expected {
            return;
        }
        if distinct > last.0 {
            last = (distinct, Instant::now());
        } else if last.1.elapsed() > timeouts::STALL {
            panic!(
                "{distinct} of {expected} distinct outputs, no progress for {:?}; the run's \
                 log:\n{}",
                timeouts::STALL,
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

pub(crate) async fn output_size(brokers: &Brokers, topics: &Topics) -> i64 {
    topic_size(brokers, &topics.output).await
}

/// How the outputs in Kafka compare with what `count` records should have produced.
pub(crate) struct OutputCheck {
    pub(crate) records: usize,
    pub(crate) distinct: usize,
    pub(crate) duplicates: usize,
    pub(crate) missing: usize,
}

/// Counts outputs by identity (`sluice.source.id`, `sluice.output.index`) against the
/// `copies(seq)` outputs each of `count` records should have, checks each record's identity
/// is consistent (one source id per seq; index = the guest's copy number) and per-key order.
pub(crate) fn check_outputs(
    records: &[KafkaRecord],
    count: u64,
    copies: impl Fn(u64) -> u64,
) -> OutputCheck {
    assert_per_key_output_order(records);
    count_outputs(records, count, copies)
}

/// [`check_outputs`] without the per-key order: counts and identities only.
pub(crate) fn count_outputs(
    records: &[KafkaRecord],
    count: u64,
    copies: impl Fn(u64) -> u64,
) -> OutputCheck {
    let mut by_identity: HashMap<(String, u64), usize> = HashMap::new();
    let mut source_of_seq: HashMap<u64, String> = HashMap::new();
    for record in records {
        let seq = header_u64(record, "seq");
        let index = header_u64(record, "sluice.output.index");
        assert_eq!(
            index,
            header_u64(record, "copy"),
            "output index is the copy number"
        );
        assert_eq!(record.header("sluice.pipeline"), Some("eo"));
        let source_id = record.header("sluice.source.id").unwrap().to_owned();
        let known = source_of_seq
            .entry(seq)
            .or_insert_with(|| source_id.clone());
        assert_eq!(*known, source_id, "seq {seq} came from two source messages");
        *by_identity.entry((source_id, index)).or_default() += 1;
    }
    let present: BTreeSet<(u64, u64)> = records
        .iter()
        .map(|r| (header_u64(r, "seq"), header_u64(r, "sluice.output.index")))
        .collect();
    let missing = (0..count)
        .flat_map(|seq| (0..copies(seq)).map(move |i| (seq, i)))
        .filter(|id| !present.contains(id))
        .count();
    OutputCheck {
        records: records.len(),
        distinct: by_identity.len(),
        duplicates: by_identity.values().map(|n| n - 1).sum(),
        missing,
    }
}

/// Per key: one partition, and (seq, output index) increasing along it (later copies of an
/// identity already seen are ignored: at-least-once may write them again).
fn assert_per_key_output_order(records: &[KafkaRecord]) {
    let mut sorted: Vec<&KafkaRecord> = records.iter().collect();
    sorted.sort_by_key(|r| (r.partition, r.offset));
    let mut partition_of: HashMap<&str, i32> = HashMap::new();
    let mut last: HashMap<&str, (u64, u64)> = HashMap::new();
    let mut seen = BTreeSet::new();
    for record in sorted {
        let key = record.key_str().expect("every record has a key");
        let partition = *partition_of.entry(key).or_insert(record.partition);
        assert_eq!(partition, record.partition, "key {key} on two partitions");
        let id = (
            header_u64(record, "seq"),
            header_u64(record, "sluice.output.index"),
        );
        if seen.insert(id)
            && let Some(previous) = last.insert(key, id)
        {
            assert!(
                previous < id,
                "key {key}: output {id:?} after {previous:?} at offset {}",
                record.offset
            );
        }
    }
}

/// The guest pins clocks to the record: `clock` is the event time, and `random` is the same
/// for every output of a record (one call) and differs between records.
fn assert_pinned_stamps(records: &[KafkaRecord]) {
    let mut random_of: BTreeMap<u64, String> = BTreeMap::new();
    for record in records {
        let seq = header_u64(record, "seq");
        assert_eq!(
            header_u64(record, "clock"),
            event_time_of(seq),
            "clock pinned"
        );
        let random = record.header("random").unwrap().to_owned();
        let known = random_of.entry(seq).or_insert_with(|| random.clone());
        assert_eq!(
            *known, random,
            "seq {seq}: random differs between its outputs"
        );
    }
    let distinct: BTreeSet<&String> = random_of.values().collect();
    assert_eq!(distinct.len(), random_of.len(), "random differs per record");
}

/// The `exactly_once` line of a test's transactions pipeline: its own `transactional.id`s and
/// offsets topic (by default both come from the pipeline name, which the tests share, and
/// tests running side by side would fence each other).
pub(crate) fn own_transactions(topics: &Topics) -> String {
    format!(
        "exactly_once = {{ transactional_id_prefix = \"{0}.\", offsets_topic = \"{0}-offsets\", \
         changelog_topic = \"{0}-changelog\" }}",
        topics.output
    )
}

/// The `[[pipeline]]` lines of a test pipeline with `guarantee`: `at-least-once`,
/// `exactly-once` (on transactions, with their own ids: [`own_transactions`]) or `read-back`
/// (exactly-once in the read-back mode).
pub(crate) fn guarantee_settings(guarantee: &str, topics: &Topics) -> String {
    match guarantee {
        "exactly-once" => format!("guarantee = \"{guarantee}\"\n{}", own_transactions(topics)),
        "read-back" => {
            "guarantee = \"exactly-once\"\nexactly_once = { mode = \"read-back\" }".to_owned()
        }
        _ => format!("guarantee = \"{guarantee}\""),
    }
}

pub(crate) fn fan_out_transform() -> String {
    transform_entry(
        sluice_tests::FAN_OUT_WORK,
        r#"copies = "seq", stamp = "true""#,
    )
}

/// A two-or-more-lane Pulsar → fan-out guest → Kafka pipeline with `guarantee` (as
/// [`guarantee_settings`] takes it) and `source_settings` added to its source.
pub(crate) fn pulsar_config(
    brokers: &Brokers,
    topics: &Topics,
    guarantee: &str,
    parallelism: usize,
    source_settings: &str,
) -> String {
    pulsar_config_transforming(
        brokers,
        topics,
        guarantee,
        parallelism,
        source_settings,
        &fan_out_transform(),
    )
}

/// Like [`pulsar_config`], with `transform` (a `[[pipeline.transform]]` entry) instead of the
/// fan-out guest's default one.
pub(crate) fn pulsar_config_transforming(
    brokers: &Brokers,
    topics: &Topics,
    guarantee: &str,
    parallelism: usize,
    source_settings: &str,
    transform: &str,
) -> String {
    pulsar_pipeline_toml(
        "eo",
        &format!(
            "{}\nparallelism = {parallelism}\nmax_in_flight = 2000",
            guarantee_settings(guarantee, topics)
        ),
        source_settings,
        brokers,
        topics,
        &format!("{transform}\n{}", sink_toml(brokers, topics, "")),
    )
}

/// A two-lane Pub/Sub (unary pull) → fan-out guest → Kafka pipeline, exactly-once.
pub(crate) fn pubsub_exactly_once_config(
    brokers: &Brokers,
    emulator: &str,
    topics: &Topics,
) -> String {
    pubsub_pipeline_toml(
        "eo",
        &format!(
            "{}\nparallelism = 2",
            guarantee_settings("exactly-once", topics)
        ),
        brokers,
        emulator,
        topics,
        &fan_out_transform(),
        Pull::Unary,
    )
}

/// How many outputs the fan-out guest writes for records `0..count`.
pub(crate) fn fan_out_output_count(count: u64) -> usize {
    (0..count).map(|seq| copies_of(seq) as usize).sum()
}

pub(crate) fn print_check(context: &str, check: &OutputCheck) {
    eprintln!(
        "{context}: {} records in Kafka, {} distinct outputs, {} duplicates, {} missing",
        check.records, check.distinct, check.duplicates, check.missing
    );
}

/// Publishes `count` records (`SLUICE_SOAK` scales it) for `test`, runs the crash loop on a
/// two-lane pipeline with `guarantee` (as [`guarantee_settings`] takes it) and `chaos`, and
/// returns the outputs and their check.
async fn pulsar_crash_loop(
    test: &str,
    guarantee: &str,
    chaos: impl Fn(u64) -> Chaos,
) -> Option<(Brokers, Topics, Vec<KafkaRecord>, OutputCheck)> {
    let (brokers, topics) = brokers_and_topics_for(test, 3, BrokerUse::Exclusive).await?;
    let count = 50_000 * soak_factor();
    let kills = 10 * soak_factor();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "sluice.toml",
        &pulsar_config(&brokers, &topics, guarantee, 2, ""),
    );
    publish_to_pulsar(&brokers.pulsar, &topics.source, &pulsar_records(count))
        .await
        .unwrap();
    let expected = fan_out_output_count(count);

    crash_loop(&config, &brokers, &topics, kills, chaos, expected).await;

    let output = read_all(&brokers, &[&topics.output]).await;
    let check = check_outputs(&output, count, copies_of);
    print_check(&format!("{guarantee}, Pulsar"), &check);
    assert_eq!(check.missing, 0, "no output missing");
    Some((brokers, topics, output, check))
}

/// Acceptance: 50,000 Pulsar records, two lanes, exactly-once, the runtime SIGKILLed at
/// least 10 times at random moments, Kafka killed and restarted once and Pulsar once: every
/// output once, none missing, per-key order kept, clocks and random pinned per record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulsar_exactly_once_through_kills_of_runtime_and_brokers() {
    let chaos = |kill| match kill {
        4 => Chaos::KillBroker("kafka"),
        7 => Chaos::KillBroker("pulsar"),
        _ => Chaos::None,
    };
    let Some((brokers, topics, output, check)) =
        pulsar_crash_loop("eo-pulsar", "exactly-once", chaos).await
    else {
        return;
    };
    assert_eq!(check.duplicates, 0, "no output twice");
    assert_eq!(check.records, check.distinct);
    assert_pinned_stamps(&output);
    assert!(read_all(&brokers, &[&topics.dead_letter]).await.is_empty());
}

/// The same crash loop in the read-back mode, chosen explicitly (for brokers without
/// transactions): every output once, none missing, per-key order kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulsar_read_back_through_kills_of_runtime_and_brokers() {
    let chaos = |kill| match kill {
        4 => Chaos::KillBroker("kafka"),
        7 => Chaos::KillBroker("pulsar"),
        _ => Chaos::None,
    };
    let Some((_, _, output, check)) = pulsar_crash_loop("rb-pulsar", "read-back", chaos).await
    else {
        return;
    };
    assert_eq!(check.duplicates, 0, "no output twice");
    assert_eq!(check.records, check.distinct);
    assert_pinned_stamps(&output);
}

/// Acceptance: the same crash loop at-least-once: nothing missing (checked in
/// `pulsar_crash_loop`); duplicates counted and printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulsar_at_least_once_through_kills_loses_nothing() {
    pulsar_crash_loop("alo-pulsar", "at-least-once", |_| Chaos::None).await;
}

/// A config's `parallelism` with the busy guest: records per second for `count` records;
/// `None` when the test is skipped.
async fn busy_run(parallelism: usize, count: u64) -> Option<f64> {
    let (brokers, topics) = brokers_and_topics("lanes", 3).await?;
    let transforms = transform_entry(sluice_tests::FAN_OUT_WORK, r#"busy = "value""#);
    let toml = pulsar_pipeline_toml(
        "eo",
        &format!(
            "parallelism = {parallelism}
batch_size = 16"
        ),
        "",
        &brokers,
        &topics,
        &format!(
            "{transforms}
{}",
            sink_toml(&brokers, &topics, "")
        ),
    );
    publish_to_pulsar(&brokers.pulsar, &topics.source, &pulsar_records(count))
        .await
        .unwrap();
    let started = Instant::now();
    let pipeline = InProcessPipeline::start(&toml).await;
    let output = read_at_least(&brokers, &topics.output, count as usize).await;
    let elapsed = started.elapsed();
    pipeline.stop().await;
    let check = check_outputs(&output, count, |_| 1);
    assert_eq!((check.missing, check.duplicates), (0, 0));
    Some(count as f64 / elapsed.as_secs_f64())
}

/// Acceptance: four lanes with a guest whose CPU cost varies with the value: per-key order
/// kept, and the throughput of 4 lanes against 1 printed (not asserted: timings are noisy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_lanes_keep_per_key_order_and_print_their_speedup() {
    let count = 3_000;
    let Some(one) = busy_run(1, count).await else {
        return;
    };
    let four = busy_run(4, count)
        .await
        .expect("the brokers are still there");
    eprintln!(
        "busy guest, {count} records: parallelism 1 {one:.0} records/s, parallelism 4 \
         {four:.0} records/s ({:.2}x on {} cores)",
        four / one,
        std::thread::available_parallelism().map_or(0, usize::from)
    );
}

/// JSON messages over 40 ordering keys, each with its `seq` attribute.
pub(crate) fn pubsub_messages(count: u64) -> Vec<PubSubRecord> {
    (0..count)
        .map(|seq| PubSubRecord {
            ordering_key: format!("k{}", seq % 40),
            data: format!(r#"{{"seq":{seq}}}"#).into_bytes(),
            attributes: vec![("seq".into(), seq.to_string())],
        })
        .collect()
}

/// Acceptance: 20,000 Pub/Sub messages, exactly-once, the runtime SIGKILLed at least 10 times
/// at random moments and Kafka killed and restarted once: every output once, none missing,
/// per-key order kept. Unary pull: the emulator redelivers what a killed unary puller held
/// once its ack deadline passes, not what a killed streaming pull held (README).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_exactly_once_through_kills_of_runtime_and_kafka() {
    let Some((brokers, emulator, topics)) = pubsub_setup("eo-pubsub", BrokerUse::Exclusive).await
    else {
        return;
    };
    let count = 20_000 * soak_factor();
    let kills = 10 * soak_factor();
    publish_to_pubsub(&emulator, PROJECT, &topics.source, &pubsub_messages(count))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let toml = pubsub_exactly_once_config(&brokers, &emulator, &topics);
    let config = write_config(dir.path(), "sluice.toml", &toml);
    let expected = fan_out_output_count(count);

    crash_loop(
        &config,
        &brokers,
        &topics,
        kills,
        |kill| match kill {
            5 => Chaos::KillBroker("kafka"),
            _ => Chaos::None,
        },
        expected,
    )
    .await;

    let output = read_all(&brokers, &[&topics.output]).await;
    let check = check_outputs(&output, count, copies_of);
    print_check("exactly-once, Pub/Sub", &check);
    assert_eq!(check.missing, 0, "no output missing");
    assert_eq!(check.duplicates, 0, "no output twice");
    assert_eq!(check.records, expected);
}
