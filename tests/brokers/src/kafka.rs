//! Apache Kafka from tests and the demo: create topics, read them back (readers that wait
//! until a condition holds, or read to the end), count what a topic holds.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::ClientConfig;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::timeouts;

fn admin(brokers: &str) -> Result<AdminClient<DefaultClientContext>> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("cannot create a Kafka admin client")
}

/// Creates Kafka topics (an existing topic is fine).
pub async fn create_kafka_topics(brokers: &str, topics: &[&str], partitions: i32) -> Result<()> {
    let new_topics: Vec<_> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
        .collect();
    create(brokers, &new_topics).await
}

/// Creates one Kafka topic with topic-level `config` (e.g. `("cleanup.policy", "compact")`);
/// an existing topic is fine.
pub async fn create_kafka_topic_with_config(
    brokers: &str,
    topic: &str,
    partitions: i32,
    config: &[(&str, &str)],
) -> Result<()> {
    let new_topic = config.iter().fold(
        NewTopic::new(topic, partitions, TopicReplication::Fixed(1)),
        |new_topic, (name, value)| new_topic.set(name, value),
    );
    create(brokers, &[new_topic]).await
}

/// Sets topic-level `config` of an existing topic (the others keep their values: Kafka's
/// AlterConfigs replaces the whole set, so the topic's current overrides are passed along).
pub async fn alter_kafka_topic_config(
    brokers: &str,
    topic: &str,
    config: &[(&str, &str)],
) -> Result<()> {
    let admin = admin(brokers)?;
    let options = AdminOptions::new().operation_timeout(Some(timeouts::BROKER_REQUEST));
    let resource = ResourceSpecifier::Topic(topic);
    let current = admin.describe_configs([&resource], &options).await?;
    let current = (current.into_iter().next())
        .context("no answer to DescribeConfigs")?
        .with_context(|| format!("cannot describe Kafka topic {topic}"))?;
    let mut alter = AlterConfig::new(resource);
    let overrides: Vec<(String, String)> = (current.entries.iter())
        .filter(|entry| matches!(entry.source, ConfigSource::DynamicTopic))
        .filter(|entry| !config.iter().any(|(name, _)| *name == entry.name))
        .filter_map(|entry| Some((entry.name.clone(), entry.value.clone()?)))
        .collect();
    for (name, value) in &overrides {
        alter = alter.set(name, value);
    }
    for (name, value) in config {
        alter = alter.set(name, value);
    }
    for result in admin.alter_configs([&alter], &options).await? {
        if let Err((_, code)) = result {
            bail!("cannot alter the config of Kafka topic {topic}: {code}");
        }
    }
    Ok(())
}

/// Creates `new_topics`, then waits until each has a leader on every partition: Kafka answers
/// CreateTopics before its broker serves the new topic, and a pipeline started at once could
/// find it missing.
async fn create(brokers: &str, new_topics: &[NewTopic<'_>]) -> Result<()> {
    let admin = admin(brokers)?;
    let options = AdminOptions::new().operation_timeout(Some(timeouts::BROKER_REQUEST));
    for result in admin.create_topics(new_topics, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => bail!("cannot create Kafka topic {topic}: {code}"),
        }
    }
    let brokers = brokers.to_owned();
    let topics: Vec<String> = new_topics.iter().map(|t| t.name.to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        wait_for_leaders(&brokers, &topics, timeouts::ADMIN)
    })
    .await?
}

/// Waits until every partition of each of `topics` has a leader: after the topic's creation,
/// or after a broker restart or pause (a broker whose heartbeats stopped is fenced, and its
/// partitions have no leader until it registers again).
pub fn wait_for_leaders(brokers: &str, topics: &[&str], timeout: Duration) -> Result<()> {
    let consumer = consumer(brokers, Isolation::ReadCommitted)?;
    let deadline = Instant::now() + timeout;
    for topic in topics {
        loop {
            let led = consumer
                .fetch_metadata(Some(topic), timeouts::BROKER_REQUEST)
                .map(|metadata| {
                    metadata.topics().iter().any(|t| {
                        t.name() == *topic
                            && t.error().is_none()
                            && !t.partitions().is_empty()
                            && t.partitions()
                                .iter()
                                .all(|p| p.error().is_none() && p.leader() >= 0)
                    })
                });
            match led {
                Ok(true) => break,
                _ if Instant::now() >= deadline => {
                    bail!(
                        "Kafka topic {topic} has no leader on every partition after {timeout:?}: {led:?}"
                    )
                }
                _ => std::thread::sleep(timeouts::RECHECK),
            }
        }
    }
    Ok(())
}

/// A record read back from Kafka.
#[derive(Debug, Clone)]
pub struct KafkaRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// The last value of each header name.
    pub headers: BTreeMap<String, Vec<u8>>,
    /// Every header in the record's order, repeated names included.
    pub header_list: Vec<(String, Vec<u8>)>,
    pub timestamp_ms: Option<i64>,
}

impl KafkaRecord {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// How many headers called `name` the record has (`headers` shows only the last).
    pub fn header_count(&self, name: &str) -> usize {
        self.header_list.iter().filter(|(n, _)| n == name).count()
    }

    pub fn key_str(&self) -> Option<&str> {
        self.key
            .as_deref()
            .and_then(|k| std::str::from_utf8(k).ok())
    }

    pub fn value_str(&self) -> Option<&str> {
        self.value
            .as_deref()
            .and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// Reads every record of `topic` from the start until `done(records)` holds or `timeout`
/// passes; returns what was read either way (callers assert on it).
pub fn read_kafka_topic(
    brokers: &str,
    topic: &str,
    timeout: Duration,
    done: impl FnMut(&[KafkaRecord]) -> bool,
) -> Result<Vec<KafkaRecord>> {
    read_kafka_topics(brokers, &[topic], timeout, done)
}

/// Like [`read_kafka_topic`], over several topics at once (interleaved as they arrive).
pub fn read_kafka_topics(
    brokers: &str,
    topics: &[&str],
    timeout: Duration,
    mut done: impl FnMut(&[KafkaRecord]) -> bool,
) -> Result<Vec<KafkaRecord>> {
    let consumer = consumer(brokers, Isolation::ReadCommitted)?;
    let deadline = Instant::now() + timeout;
    let mut assignment = TopicPartitionList::new();
    for topic in topics {
        for partition in wait_for_partitions(&consumer, topic, deadline)? {
            assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
        }
    }
    consumer.assign(&assignment)?;
    let mut records = Vec::new();
    while !done(&records) && Instant::now() < deadline {
        if let Some(polled) = consumer.poll(timeouts::KAFKA_POLL) {
            records.extend(record_or_reconnect(polled)?);
        }
    }
    Ok(records)
}

/// Which records of transactions a reader sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Only committed ones (librdkafka's default, and what exactly-once consumers use).
    ReadCommitted,
    /// Also those of open and aborted transactions.
    ReadUncommitted,
}

/// A consumer reading by assignment (no group membership, no commits).
fn consumer(brokers: &str, isolation: Isolation) -> Result<BaseConsumer> {
    let mut config = ClientConfig::new();
    if let Ok(debug) = std::env::var("SLUICE_TEST_KAFKA_DEBUG") {
        // librdkafka debug contexts, e.g. `fetch,protocol`, to see what a broker answers.
        config.set("debug", debug);
    }
    let isolation = match isolation {
        Isolation::ReadCommitted => "read_committed",
        Isolation::ReadUncommitted => "read_uncommitted",
    };
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("sluice-tests-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("isolation.level", isolation)
        .create()
        .context("cannot create a Kafka consumer")
}

fn record_of(message: &BorrowedMessage<'_>) -> KafkaRecord {
    let header_list: Vec<(String, Vec<u8>)> = message
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                .collect()
        })
        .unwrap_or_default();
    KafkaRecord {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        headers: header_list.iter().cloned().collect(),
        header_list,
        timestamp_ms: message.timestamp().to_millis(),
    }
}

/// How many records `topic` holds (the sum of its partitions' watermark spans); 0 when it
/// does not exist.
pub fn kafka_topic_size(brokers: &str, topic: &str) -> Result<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("cannot create a Kafka consumer")?;
    let metadata = consumer
        .fetch_metadata(Some(topic), timeouts::BROKER_REQUEST)
        .with_context(|| format!("cannot read metadata of {topic}"))?;
    let mut size = 0;
    for partition in metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
    {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, timeouts::BROKER_REQUEST)
            .with_context(|| format!("cannot read the offsets of {topic}/{partition}"))?;
        size += high - low;
    }
    Ok(size)
}

/// Reads every committed record of `topics` from the start up to the end each partition had
/// when the read began (the whole topics once their writers are gone), failing after `timeout`.
pub fn read_kafka_topics_to_end(
    brokers: &str,
    topics: &[&str],
    timeout: Duration,
) -> Result<Vec<KafkaRecord>> {
    read_to_end(brokers, topics, timeout, Isolation::ReadCommitted)
}

/// Like [`read_kafka_topics_to_end`], seeing what `isolation` shows. The end of a partition is
/// reached when the consumer's position passes the end offset it had at the start, so
/// transaction markers (which take offsets but are no records) and aborted records hidden by
/// `read_committed` end the read too.
pub fn read_to_end(
    brokers: &str,
    topics: &[&str],
    timeout: Duration,
    isolation: Isolation,
) -> Result<Vec<KafkaRecord>> {
    let consumer = consumer(brokers, isolation)?;
    let deadline = Instant::now() + timeout;
    let mut ends: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    for topic in topics {
        for partition in wait_for_partitions(&consumer, topic, deadline)? {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition, timeouts::BROKER_REQUEST)
                .with_context(|| format!("cannot read the offsets of {topic}/{partition}"))?;
            assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
            if high > low {
                ends.insert(((*topic).to_owned(), partition), high);
            }
        }
    }
    consumer.assign(&assignment)?;
    let mut records = Vec::new();
    while !ends.is_empty() {
        if Instant::now() >= deadline {
            bail!(
                "not at the end of {ends:?} after {timeout:?} ({} records read)",
                records.len()
            );
        }
        if let Some(polled) = consumer.poll(timeouts::KAFKA_POLL) {
            records.extend(record_or_reconnect(polled)?);
        }
        let positions = consumer.position()?;
        ends.retain(|(topic, partition), end| {
            let position = positions
                .find_partition(topic, *partition)
                .and_then(|p| p.offset().to_raw());
            position.is_none_or(|position| position < *end)
        });
    }
    Ok(records)
}

/// The record polled, or `None` when librdkafka reports that its connections dropped (a broker
/// restarting or paused by an outage test): the consumer reconnects by itself and the read goes
/// on. Any other error ends the read.
fn record_or_reconnect(polled: KafkaResult<BorrowedMessage<'_>>) -> Result<Option<KafkaRecord>> {
    match polled {
        Ok(message) => Ok(Some(record_of(&message))),
        Err(KafkaError::MessageConsumption(
            RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure,
        )) => Ok(None),
        Err(error) => Err(error).context("reading from Kafka failed"),
    }
}

/// The partitions of `topic`, waiting until `deadline` for it to exist (a pipeline creates
/// routed topics on first use).
fn wait_for_partitions(
    consumer: &BaseConsumer,
    topic: &str,
    deadline: Instant,
) -> Result<Vec<i32>> {
    loop {
        let metadata = consumer
            .fetch_metadata(Some(topic), timeouts::BROKER_REQUEST)
            .with_context(|| format!("cannot read metadata of {topic}"))?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if !partitions.is_empty() {
            return Ok(partitions);
        }
        if Instant::now() >= deadline {
            bail!("Kafka topic {topic} does not exist");
        }
        std::thread::sleep(timeouts::RECHECK);
    }
}
