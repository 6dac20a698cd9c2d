//! Reading what a pipeline wrote to Kafka, from async tests (the readers block, so they run on
//! the blocking pool). Every read fails after [`timeouts::DELIVERY`].

use std::collections::BTreeSet;

use sluice_tests::kafka::{
    KafkaRecord, kafka_topic_size, read_kafka_topic, read_kafka_topics_to_end,
};
use sluice_tests::timeouts;

use super::assertions::distinct_seqs;
use super::brokers::Brokers;

/// Reads `topic` until every sequence number of `expected` was seen.
pub(crate) async fn read_until_seqs(
    brokers: &Brokers,
    topic: &str,
    expected: &BTreeSet<u64>,
) -> Vec<KafkaRecord> {
    let expected = expected.clone();
    read_until(brokers, topic, move |records| {
        records.len() >= expected.len() && distinct_seqs(records).is_superset(&expected)
    })
    .await
}

/// Reads `topic` until it holds at least `count` records.
pub(crate) async fn read_at_least(
    brokers: &Brokers,
    topic: &str,
    count: usize,
) -> Vec<KafkaRecord> {
    read_until(brokers, topic, move |records| records.len() >= count).await
}

/// Reads `topic` from the start until `done(records read so far)` holds; returns what was read
/// either way (the caller asserts on it). `done` is called after every record: keep it
/// incremental on long topics.
pub(crate) async fn read_until(
    brokers: &Brokers,
    topic: &str,
    done: impl FnMut(&[KafkaRecord]) -> bool + Send + 'static,
) -> Vec<KafkaRecord> {
    let (kafka, topic) = (brokers.kafka.clone(), topic.to_owned());
    tokio::task::spawn_blocking(move || read_kafka_topic(&kafka, &topic, timeouts::DELIVERY, done))
        .await
        .unwrap()
        .unwrap()
}

/// Every record of `topics`, to the end each partition has when the read begins (all of it
/// once the writers are stopped).
pub(crate) async fn read_all(brokers: &Brokers, topics: &[&str]) -> Vec<KafkaRecord> {
    let kafka = brokers.kafka.clone();
    let topics: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        read_kafka_topics_to_end(&kafka, &topics, timeouts::DELIVERY)
    })
    .await
    .unwrap()
    .unwrap()
}

/// How many records `topic` holds (0 while it does not exist or cannot be read).
pub(crate) async fn topic_size(brokers: &Brokers, topic: &str) -> i64 {
    let (kafka, topic) = (brokers.kafka.clone(), topic.to_owned());
    tokio::task::spawn_blocking(move || kafka_topic_size(&kafka, &topic))
        .await
        .unwrap()
        .unwrap_or(0)
}
