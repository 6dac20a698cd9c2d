//! The brokers under every test are the real ones (issue 14): Apache Kafka with transactions,
//! and Apache Pulsar 4.x — not API-compatible stand-ins; and they keep what they acknowledged
//! across a SIGKILL, which the crash tests rely on.

use std::collections::BTreeSet;
use std::time::Duration;

use pulsar::{Pulsar, TokioExecutor};
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, FutureProducer, FutureRecord, Producer};
use sluice_tests::addresses::{self, PULSAR_ADMIN};
use sluice_tests::kafka::{Isolation, KafkaRecord, read_to_end};
use sluice_tests::pulsar::{PulsarRecord, publish_to_pulsar, read_pulsar_seqs};
use sluice_tests::timeouts;

use crate::support::assertions::{assert_no_duplicates, distinct_seqs};
use crate::support::brokers::{
    BrokerUse, brokers_and_topics, brokers_and_topics_for, brokers_script,
};
use crate::support::http::{get_json, get_text};
use crate::support::read::read_all;

/// A transactional producer commits one batch, aborts the next and commits a third on the Kafka
/// broker: a `read_committed` consumer sees the committed records only, in order, while a
/// `read_uncommitted` one sees the aborted batch too (so it did reach the log).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_commits_and_aborts_transactions() {
    let Some((brokers, topics)) = brokers_and_topics("txn", 1).await else {
        return;
    };
    let (kafka, topic) = (brokers.kafka.clone(), topics.output.clone());
    let (committed, everything) = tokio::task::spawn_blocking(move || {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &kafka)
            .set(
                "transactional.id",
                sluice_tests::unique_name("sluice-tests-txn"),
            )
            .create()
            .unwrap();
        producer
            .init_transactions(timeouts::BROKER_REQUEST)
            .unwrap();
        let batches = [
            ("commit", ["c0", "c1", "c2"].as_slice()),
            ("abort", ["a0", "a1", "a2"].as_slice()),
            ("commit", ["c3"].as_slice()),
        ];
        for (outcome, values) in batches {
            producer.begin_transaction().unwrap();
            for value in values {
                producer
                    .send(BaseRecord::to(&topic).key("k").payload(*value))
                    .map_err(|(e, _)| e)
                    .unwrap();
            }
            // Let the records reach the broker before the outcome, so an abort has something
            // to abort.
            producer.flush(timeouts::BROKER_REQUEST).unwrap();
            match outcome {
                "commit" => producer.commit_transaction(timeouts::BROKER_REQUEST),
                _ => producer.abort_transaction(timeouts::BROKER_REQUEST),
            }
            .unwrap();
        }
        let read = |isolation| read_to_end(&kafka, &[&topic], timeouts::DELIVERY, isolation);
        (
            read(Isolation::ReadCommitted).unwrap(),
            read(Isolation::ReadUncommitted).unwrap(),
        )
    })
    .await
    .unwrap();

    let values = |records: &[KafkaRecord]| -> Vec<String> {
        records
            .iter()
            .map(|r| r.value_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(values(&committed), ["c0", "c1", "c2", "c3"]);
    assert_eq!(
        values(&everything),
        ["c0", "c1", "c2", "a0", "a1", "a2", "c3"]
    );
}

/// Pulsar's admin API reports a 4.x broker of the standalone cluster, and counts the messages
/// the `pulsar` crate published to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulsar_is_apache_pulsar_4() {
    let Some((brokers, topics)) = brokers_and_topics("pulsar-admin", 1).await else {
        return;
    };
    let Some(admin) = addresses::or_skip(PULSAR_ADMIN) else {
        return;
    };
    let version = get_text(&format!("{admin}/admin/v2/brokers/version")).await;
    let version = version.trim().trim_matches('"');
    eprintln!("Pulsar broker version {version}");
    assert!(version.starts_with("4."), "Pulsar {version} is not 4.x");
    assert_eq!(
        get_json(&format!("{admin}/admin/v2/clusters")).await,
        serde_json::json!(["standalone"])
    );

    let records: Vec<PulsarRecord> = (0..5)
        .map(|i| PulsarRecord {
            value: format!("m{i}").into_bytes(),
            ..PulsarRecord::default()
        })
        .collect();
    publish_to_pulsar(&brokers.pulsar, &topics.source, &records)
        .await
        .unwrap();
    let path = topics.source.replacen("persistent://", "persistent/", 1);
    // Topic stats are refreshed by the broker, not at every publish: look again until they say.
    let deadline = std::time::Instant::now() + timeouts::ADMIN;
    loop {
        let stats = get_json(&format!("{admin}/admin/v2/{path}/stats")).await;
        if stats["msgInCounter"] == 5 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Pulsar's stats of {path} do not count the 5 messages: {stats}"
        );
        tokio::time::sleep(timeouts::RECHECK).await;
    }
}

/// How many messages the durability tests get acknowledged before the SIGKILL.
const BEFORE_THE_KILL: usize = 3_000;

/// The SIGKILL and restart of a broker (through `scripts/brokers.sh`, on the blocking pool)
/// while a producer keeps writing to it.
struct KillAndRestart {
    broker: &'static str,
    task: Option<tokio::task::JoinHandle<Duration>>,
}

impl KillAndRestart {
    fn new(broker: &'static str) -> Self {
        Self { broker, task: None }
    }

    /// Starts the kill once [`BEFORE_THE_KILL`] writes were acknowledged; true once the broker
    /// is back.
    fn step(&mut self, acknowledged: usize) -> bool {
        if self.task.is_none() && acknowledged >= BEFORE_THE_KILL {
            let broker = self.broker;
            self.task = Some(tokio::task::spawn_blocking(move || {
                let started = std::time::Instant::now();
                brokers_script(&["restart", broker, "--kill"]);
                started.elapsed()
            }));
        }
        self.task.as_ref().is_some_and(|task| task.is_finished())
    }

    /// How long the kill and the restart took.
    async fn took(self) -> Duration {
        let task = self.task.expect("the broker was killed");
        task.await.unwrap()
    }
}

/// Durability of the local Pulsar under SIGKILL (docs/local-brokers.md): a producer publishes
/// without pause, Pulsar is SIGKILLed once 3,000 messages were acknowledged and restarted, and
/// every acknowledged message is there afterwards (the bookie writes each entry to its journal
/// before acknowledging, without an fsync: it survives a killed process, not a power loss). A
/// subscription that had acked 1,000 messages before is read again: Pulsar persists its acks
/// at most once a second, so it may redeliver some of them (printed; at-least-once allows it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulsar_keeps_acknowledged_messages_across_sigkill() {
    let Some((brokers, topics)) =
        brokers_and_topics_for("pulsar-kill", 1, BrokerUse::Exclusive).await
    else {
        return;
    };
    let (url, topic) = (brokers.pulsar.clone(), topics.source.clone());
    let seq_records = |seqs: std::ops::Range<u64>| -> Vec<PulsarRecord> {
        seqs.map(|seq| PulsarRecord {
            value: format!("m{seq}").into_bytes(),
            properties: vec![("seq".into(), seq.to_string())],
            ..PulsarRecord::default()
        })
        .collect()
    };
    publish_to_pulsar(&url, &topic, &seq_records(0..1_000))
        .await
        .unwrap();
    let acked_before = read_pulsar_seqs(&url, &topic, "acked-before", timeouts::PULSAR_IDLE)
        .await
        .unwrap();
    assert_eq!(acked_before.len(), 1_000);

    let client = Pulsar::builder(url.as_str(), TokioExecutor)
        .build()
        .await
        .unwrap();
    let mut producer = client.producer().with_topic(&topic).build().await.unwrap();
    let mut acknowledged: Vec<u64> = Vec::new();
    let mut kill = KillAndRestart::new("pulsar");
    let mut seq = 1_000u64;
    'publishing: loop {
        // A chunk of sends in flight at once, then their receipts.
        let mut receipts = Vec::new();
        for _ in 0..100 {
            let sent = producer
                .create_message()
                .with_content(format!("m{seq}").into_bytes())
                .with_property("seq", seq.to_string())
                .send_non_blocking()
                .await;
            match sent {
                Ok(receipt) => receipts.push((seq, receipt)),
                Err(_) => break,
            }
            seq += 1;
        }
        for (seq, receipt) in receipts {
            match tokio::time::timeout(timeouts::BROKER_REQUEST, receipt).await {
                Ok(Ok(_)) => acknowledged.push(seq),
                _ => break 'publishing,
            }
        }
        if kill.step(acknowledged.len()) {
            break;
        }
    }
    let restart = kill.took().await;
    drop(producer);
    drop(client);

    let after = read_pulsar_seqs(&url, &topic, "after-the-kill", timeouts::PULSAR_IDLE)
        .await
        .unwrap();
    let present: BTreeSet<u64> = after.iter().copied().collect();
    let lost: Vec<&u64> = acknowledged
        .iter()
        .chain(&acked_before)
        .filter(|s| !present.contains(s))
        .collect();
    let again = read_pulsar_seqs(&url, &topic, "acked-before", timeouts::PULSAR_IDLE)
        .await
        .unwrap();
    let redelivered = again.iter().filter(|s| **s < 1_000).count();
    eprintln!(
        "Pulsar SIGKILL mid-publish: {} messages acknowledged, {} in the topic after a restart \
         of {:.1} s, {} acknowledged ones lost; a subscription that had acked 1,000 got {} of \
         them again ({} messages in all)",
        acknowledged.len() + acked_before.len(),
        present.len(),
        restart.as_secs_f64(),
        lost.len(),
        redelivered,
        again.len()
    );
    assert!(lost.is_empty(), "acknowledged messages lost: {lost:?}");
}

/// Durability of the local Kafka under SIGKILL (docs/local-brokers.md): an idempotent
/// producer (`acks=all`) writes without pause, Kafka is SIGKILLed once 3,000 records were
/// acknowledged and restarted, the producer carries on (its retries span the restart); every
/// acknowledged record is in the topic afterwards, once (Kafka acknowledges a record once it is
/// in the log in the OS page cache: it survives a killed process, not a power loss).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_keeps_acknowledged_records_across_sigkill() {
    let Some((brokers, topics)) =
        brokers_and_topics_for("kafka-kill", 1, BrokerUse::Exclusive).await
    else {
        return;
    };
    let (kafka, topic) = (brokers.kafka.clone(), topics.output.clone());
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &kafka)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // Longer than a restart of the broker: records in flight wait for it.
        .set("message.timeout.ms", "180000")
        .create()
        .unwrap();
    let mut acknowledged: Vec<u64> = Vec::new();
    let mut failed = 0usize;
    let mut kill = KillAndRestart::new("kafka");
    let mut seq = 0u64;
    loop {
        let chunk: Vec<_> = (seq..seq + 100)
            .map(|s| {
                let value = format!("r{s}");
                let seq_header = s.to_string();
                let record = FutureRecord::to(&topic).key("k").payload(&value).headers(
                    OwnedHeaders::new().insert(Header {
                        key: "seq",
                        value: Some(&seq_header),
                    }),
                );
                (s, producer.send_result(record).map_err(|(e, _)| e).unwrap())
            })
            .collect();
        seq += 100;
        for (s, delivery) in chunk {
            match delivery.await {
                Ok(Ok(_)) => acknowledged.push(s),
                _ => failed += 1,
            }
        }
        if kill.step(acknowledged.len()) {
            break;
        }
    }
    let restart = kill.took().await;
    drop(producer);

    let records = read_all(&brokers, &[&topic]).await;
    let present = distinct_seqs(&records);
    let lost: Vec<&u64> = acknowledged
        .iter()
        .filter(|s| !present.contains(s))
        .collect();
    eprintln!(
        "Kafka SIGKILL mid-produce: {} records acknowledged ({failed} failed), {} in the topic \
         ({} distinct) after a restart of {:.1} s, {} acknowledged ones lost",
        acknowledged.len(),
        records.len(),
        present.len(),
        restart.as_secs_f64(),
        lost.len()
    );
    assert!(lost.is_empty(), "acknowledged records lost: {lost:?}");
    assert_no_duplicates(&records);
}
