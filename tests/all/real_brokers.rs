//! The brokers under every test are the real ones (issue 14): Apache Kafka with transactions,
//! and Apache Pulsar 4.x — not API-compatible stand-ins.

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use sluice_tests::addresses::{self, PULSAR_ADMIN};
use sluice_tests::kafka::{Isolation, KafkaRecord, read_to_end};
use sluice_tests::pulsar::{PulsarRecord, publish_to_pulsar};
use sluice_tests::timeouts;

use crate::support::brokers::brokers_and_topics;
use crate::support::http::{get_json, get_text};

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
