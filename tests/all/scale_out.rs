//! Scale-out on the brokers' own subscriptions (docs/scale-out.md), with the real `sluice`
//! binary: several instances of one config share a Pulsar key_shared or failover
//! subscription, or a Pub/Sub subscription, with no coordinator of Sluice's own; an instance
//! is SIGKILLed or added mid-stream, and nothing is lost, per-key order is kept (and, on a
//! failover subscription with transactions, every output is written once).
//!
//! Every instance runs the same config file; the fan-out guest's `instance` setting comes
//! from `SLUICE_TEST_INSTANCE` (config interpolation), so each output says which instance
//! wrote it and the test prints each instance's share.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use sluice_tests::addresses;
use sluice_tests::kafka::KafkaRecord;
use sluice_tests::pubsub::publish_to_pubsub;
use sluice_tests::pulsar::{PulsarRecord, publish_to_pulsar, publish_to_pulsar_unbatched};

use crate::exactly_once::{
    check_outputs, copies_of, count_outputs, fan_out_output_count, guarantee_settings, output_size,
    print_check, pubsub_messages, pulsar_config_transforming, pulsar_records,
    wait_for_every_output, wait_for_outputs,
};
use crate::support::assertions::header_u64;
use crate::support::brokers::{BrokerUse, PROJECT, brokers_and_topics_for, pubsub_setup};
use crate::support::config::{Pull, pubsub_pipeline_toml, transform_entry, write_config};
use crate::support::http::create_partitioned_pulsar_topic;
use crate::support::process::SluiceProcess;
use crate::support::read::read_all;

/// The environment variable naming an instance; the config reads it.
const INSTANCE_VARIABLE: &str = "SLUICE_TEST_INSTANCE";

/// The fan-out guest (`1 + seq % 3` copies, pinned stamps) tagging outputs with the instance.
fn fan_out_tagged_by_instance() -> String {
    transform_entry(
        sluice_tests::FAN_OUT_WORK,
        &format!(r#"copies = "seq", stamp = "true", instance = "${{{INSTANCE_VARIABLE}}}""#),
    )
}

/// Instances of one config, each logging to its own file next to the config.
struct Instances<'a> {
    config: &'a Path,
    running: BTreeMap<&'static str, SluiceProcess>,
}

impl<'a> Instances<'a> {
    fn new(config: &'a Path) -> Self {
        Self {
            config,
            running: BTreeMap::new(),
        }
    }

    fn log_of(&self, name: &str) -> std::path::PathBuf {
        self.config.with_file_name(format!("{name}.log"))
    }

    fn start(&mut self, name: &'static str) {
        let process = SluiceProcess::run_with_env_logging_to(
            self.config,
            &[],
            &[(INSTANCE_VARIABLE, name)],
            &self.log_of(name),
        );
        self.running.insert(name, process);
    }

    /// SIGKILL: no drain.
    fn kill(&mut self, name: &str) {
        self.running.remove(name).expect("the instance runs").kill();
    }

    /// SIGTERM to every instance still running: each drains and exits 0.
    fn terminate_all(&mut self) {
        for (_, mut process) in std::mem::take(&mut self.running) {
            process.terminate_and_wait_success();
        }
    }

    /// The log of one instance still running (shown when the outputs stall).
    fn any_log(&self) -> std::path::PathBuf {
        let name = self.running.keys().next().expect("an instance runs");
        self.log_of(name)
    }
}

/// Prints, per instance, the outputs it wrote (duplicates included) and the outputs whose
/// first copy in Kafka it wrote.
fn print_shares(context: &str, records: &[KafkaRecord]) {
    let mut sorted: Vec<&KafkaRecord> = records.iter().collect();
    sorted.sort_by_key(|r| (r.partition, r.offset));
    let mut written: BTreeMap<String, usize> = BTreeMap::new();
    let mut first: BTreeMap<String, usize> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for record in sorted {
        let instance = record.header("instance").expect("tagged").to_owned();
        *written.entry(instance.clone()).or_default() += 1;
        let id = (
            header_u64(record, "seq"),
            header_u64(record, "sluice.output.index"),
        );
        if seen.insert(id) {
            *first.entry(instance).or_default() += 1;
        }
    }
    let total = seen.len().max(1);
    let shares: Vec<String> = written
        .iter()
        .map(|(instance, n)| {
            let firsts = first.get(instance).copied().unwrap_or(0);
            format!(
                "{instance}: {n} written, {firsts} first copies ({:.1} %)",
                100.0 * firsts as f64 / total as f64
            )
        })
        .collect();
    eprintln!("{context}: shares: {}", shares.join("; "));
}

/// Three instances of one at-least-once config on a `subscription_type` subscription of
/// `count` keyed records (published unbatched: a key_shared subscription hands a whole batch
/// to the consumer of its first key); `b` SIGKILLed after a quarter of the outputs and `d`
/// added. Returns the outputs once every one is in Kafka, after the shares are printed; `None`
/// when the test is skipped.
async fn one_killed_one_added(
    test: &str,
    subscription_type: &str,
    count: u64,
) -> Option<Vec<KafkaRecord>> {
    let (brokers, topics) = brokers_and_topics_for(test, 3, BrokerUse::Shared).await?;
    publish_to_pulsar_unbatched(&brokers.pulsar, &topics.source, &pulsar_records(count))
        .await
        .unwrap();
    let toml = pulsar_config_transforming(
        &brokers,
        &topics,
        "at-least-once",
        2,
        &format!("subscription_type = \"{subscription_type}\""),
        &fan_out_tagged_by_instance(),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "sluice.toml", &toml);
    let expected = fan_out_output_count(count);

    let mut instances = Instances::new(&config);
    for name in ["a", "b", "c"] {
        instances.start(name);
    }
    wait_for_outputs(
        &brokers,
        &topics,
        (expected / 4) as i64,
        &instances.log_of("b"),
    )
    .await;
    instances.kill("b");
    let at_kill = output_size(&brokers, &topics).await;
    eprintln!("{subscription_type}: b SIGKILLed with {at_kill} records in Kafka; d added");
    instances.start("d");
    wait_for_outputs(
        &brokers,
        &topics,
        at_kill + (expected / 4) as i64,
        &instances.log_of("d"),
    )
    .await;
    wait_for_every_output(&brokers, &topics, expected, &instances.any_log()).await;
    instances.terminate_all();

    let output = read_all(&brokers, &[&topics.output]).await;
    print_shares(
        &format!("{subscription_type}, 3 instances, b killed, d added"),
        &output,
    );
    assert!(read_all(&brokers, &[&topics.dead_letter]).await.is_empty());
    Some(output)
}

/// Acceptance (issue 21): three instances on a key_shared subscription, 50,000 keyed records;
/// one instance SIGKILLed mid-stream and another added: nothing lost, per-key order kept
/// (each key on one Kafka partition, its outputs in source order, later copies of an output
/// already written aside), each instance's share printed. At-least-once: a key_shared
/// subscription splits a partition over consumers, so no single writer owns its progress and
/// what the killed instance wrote but had not acked comes again (duplicates counted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_a_key_shared_subscription_lose_nothing_and_keep_key_order() {
    let count = 50_000;
    let Some(output) = one_killed_one_added("key-shared", "key_shared", count).await else {
        return;
    };
    let check = check_outputs(&output, count, copies_of);
    print_check("key_shared, 3 instances, b killed, d added", &check);
    assert_eq!(check.missing, 0, "no output missing");
}

/// The same on a `shared` subscription, which promises no order: nothing lost; how many keys
/// had their outputs out of source order is printed, not asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_a_shared_subscription_lose_nothing() {
    let count = 20_000;
    let Some(output) = one_killed_one_added("shared", "shared", count).await else {
        return;
    };
    let check = count_outputs(&output, count, copies_of);
    print_check("shared, 3 instances, b killed, d added", &check);
    eprintln!(
        "shared: {} of 40 keys have outputs out of source order (no order promise)",
        keys_out_of_order(&output)
    );
    assert_eq!(check.missing, 0, "no output missing");
}

/// Keys whose first copies of outputs are not in (seq, output index) order along the Kafka
/// partition.
fn keys_out_of_order(records: &[KafkaRecord]) -> usize {
    let mut sorted: Vec<&KafkaRecord> = records.iter().collect();
    sorted.sort_by_key(|r| (r.partition, r.offset));
    let mut last: HashMap<&str, (u64, u64)> = HashMap::new();
    let mut broken = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for record in sorted {
        let key = record.key_str().expect("keyed");
        let id = (
            header_u64(record, "seq"),
            header_u64(record, "sluice.output.index"),
        );
        if seen.insert(id)
            && let Some(previous) = last.insert(key, id)
            && previous > id
        {
            broken.insert(key);
        }
    }
    broken.len()
}

/// The Pulsar partition a key goes to (any stable choice: the test publishes to each
/// partition's own topic, so a key stays on one partition, in order).
fn partition_of(key: &str, partitions: u32) -> u32 {
    key.bytes().map(u32::from).sum::<u32>() % partitions
}

/// Two instances on one failover subscription of a `partitions`-partition Pulsar topic with
/// exactly-once share the partitions; the active owner of some of them is SIGKILLed
/// mid-stream and the other takes its partitions over (its writers fence the dead one's).
async fn failover_exactly_once_when_one_dies(test: &str, partitions: u32, count: u64) {
    let Some((brokers, topics)) = brokers_and_topics_for(test, 3, BrokerUse::Shared).await else {
        return;
    };
    let admin = addresses::or_skip(addresses::PULSAR_ADMIN).expect("Pulsar is up");
    create_partitioned_pulsar_topic(&admin, &topics.source, partitions).await;
    let mut by_partition: HashMap<u32, Vec<PulsarRecord>> = HashMap::new();
    for record in pulsar_records(count) {
        let key = record.key.as_deref().expect("keyed");
        by_partition
            .entry(partition_of(key, partitions))
            .or_default()
            .push(record);
    }
    for (partition, records) in &by_partition {
        let topic = format!("{}-partition-{partition}", topics.source);
        publish_to_pulsar(&brokers.pulsar, &topic, records)
            .await
            .unwrap();
    }
    let toml = pulsar_config_transforming(
        &brokers,
        &topics,
        "exactly-once",
        2,
        "subscription_type = \"failover\"",
        &fan_out_tagged_by_instance(),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "sluice.toml", &toml);
    let expected = fan_out_output_count(count);

    let mut instances = Instances::new(&config);
    instances.start("a");
    instances.start("b");
    wait_for_outputs(
        &brokers,
        &topics,
        (expected / 3) as i64,
        &instances.log_of("a"),
    )
    .await;
    instances.kill("a");
    let at_kill = output_size(&brokers, &topics).await;
    eprintln!("a (the active owner of some partitions) SIGKILLed with {at_kill} records in Kafka");
    wait_for_every_output(&brokers, &topics, expected, &instances.log_of("b")).await;
    instances.terminate_all();

    let log = std::fs::read_to_string(instances.log_of("a")).unwrap()
        + &std::fs::read_to_string(instances.log_of("b")).unwrap();
    let writers = log
        .lines()
        .filter(|l| l.contains("transactional writer open"))
        .count();
    let output = read_all(&brokers, &[&topics.output]).await;
    let check = check_outputs(&output, count, copies_of);
    let context = format!(
        "failover, {partitions} Pulsar partitions, 2 instances, a killed ({writers} writers opened)"
    );
    print_check(&context, &check);
    print_shares(&context, &output);
    assert!(
        output.iter().any(|r| r.header("instance") == Some("a")),
        "a owned some partitions when it was killed: it wrote"
    );
    assert_eq!(check.missing, 0, "no output missing");
    assert_eq!(check.duplicates, 0, "no output twice");
    assert_eq!(check.records, expected);
}

/// Acceptance (issues 16 and 21): two instances on a failover subscription of a 6-partition
/// topic with exactly-once; the active owner of some partitions is SIGKILLed mid-stream:
/// every output once, per-key order kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_a_failover_subscription_write_exactly_once_when_one_dies() {
    failover_exactly_once_when_one_dies("failover", 6, 20_000).await;
}

/// Acceptance (issue 21): three instances pulling from one Pub/Sub subscription with message
/// ordering (the emulator balances messages over them): nothing lost, per ordering key the
/// outputs in publish order, each instance's share printed. At-least-once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_pubsub_subscribers_on_one_subscription_lose_nothing_and_keep_key_order() {
    let Some((brokers, emulator, topics)) = pubsub_setup("ps-scale", BrokerUse::Shared).await
    else {
        return;
    };
    let count = 20_000;
    publish_to_pubsub(&emulator, PROJECT, &topics.source, &pubsub_messages(count))
        .await
        .unwrap();
    let toml = pubsub_pipeline_toml(
        "eo",
        &format!(
            "{}\nparallelism = 2",
            guarantee_settings("at-least-once", &topics)
        ),
        &brokers,
        &emulator,
        &topics,
        &fan_out_tagged_by_instance(),
        Pull::Unary,
    );
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "sluice.toml", &toml);
    let expected = fan_out_output_count(count);

    let mut instances = Instances::new(&config);
    for name in ["a", "b", "c"] {
        instances.start(name);
    }
    wait_for_every_output(&brokers, &topics, expected, &instances.any_log()).await;
    instances.terminate_all();

    let output = read_all(&brokers, &[&topics.output]).await;
    let check = check_outputs(&output, count, copies_of);
    let context = "Pub/Sub, 3 subscribers on one ordered subscription";
    print_check(context, &check);
    print_shares(context, &output);
    assert_eq!(check.missing, 0, "no output missing");
}
