//! Talking to the real brokers from tests and the demo: publish to Pulsar, create Kafka
//! topics, read Kafka topics back.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use pulsar::{ProducerOptions, Pulsar, TokioExecutor};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

/// A record to publish to Pulsar.
#[derive(Debug, Clone, Default)]
pub struct PulsarRecord {
    pub key: Option<String>,
    pub value: Vec<u8>,
    pub properties: Vec<(String, String)>,
    pub event_time_ms: Option<u64>,
}

/// Publishes `records` in order to `topic` (batched, waits for every receipt).
pub async fn publish_to_pulsar(url: &str, topic: &str, records: &[PulsarRecord]) -> Result<()> {
    let client = Pulsar::builder(url, TokioExecutor)
        .build()
        .await
        .with_context(|| format!("cannot connect to Pulsar at {url}"))?;
    let mut producer = client
        .producer()
        .with_topic(topic)
        .with_options(ProducerOptions {
            batch_size: Some(500),
            batch_timeout: Some(Duration::from_millis(20)),
            block_queue_if_full: true,
            ..ProducerOptions::default()
        })
        .build()
        .await
        .with_context(|| format!("cannot create a producer for {topic}"))?;
    let mut receipts = Vec::with_capacity(records.len());
    for record in records {
        let mut message = producer.create_message().with_content(record.value.clone());
        if let Some(key) = &record.key {
            message = message.with_key(key.clone());
        }
        for (name, value) in &record.properties {
            message = message.with_property(name.clone(), value.clone());
        }
        if let Some(event_time) = record.event_time_ms {
            message = message.event_time(event_time);
        }
        receipts.push(
            message
                .send_non_blocking()
                .await
                .context("publish failed")?,
        );
    }
    producer
        .send_batch()
        .await
        .context("flushing the producer batch failed")?;
    for receipt in receipts {
        receipt
            .await
            .context("Pulsar did not acknowledge a message")?;
    }
    producer.close().await.ok();
    Ok(())
}

fn admin(brokers: &str) -> Result<AdminClient<DefaultClientContext>> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("cannot create a Kafka admin client")
}

/// Creates Kafka topics (an existing topic is fine).
pub async fn create_kafka_topics(brokers: &str, topics: &[&str], partitions: i32) -> Result<()> {
    let admin = admin(brokers)?;
    let new_topics: Vec<_> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&new_topics, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => bail!("cannot create Kafka topic {topic}: {code}"),
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
    let mut config = ClientConfig::new();
    if let Ok(debug) = std::env::var("SLUICE_TEST_KAFKA_DEBUG") {
        // librdkafka debug contexts, e.g. `fetch,protocol`, to see what a broker answers.
        config.set("debug", debug);
    }
    let consumer: BaseConsumer = config
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("sluice-tests-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .context("cannot create a Kafka consumer")?;
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
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.context("reading from Kafka failed")?;
        let header_list: Vec<(String, Vec<u8>)> = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        let headers = header_list.iter().cloned().collect();
        records.push(KafkaRecord {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers,
            header_list,
            timestamp_ms: message.timestamp().to_millis(),
        });
    }
    Ok(records)
}

/// How many records `topic` holds (the sum of its partitions' watermark spans); 0 when it
/// does not exist.
pub fn kafka_topic_size(brokers: &str, topic: &str) -> Result<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("cannot create a Kafka consumer")?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .with_context(|| format!("cannot read metadata of {topic}"))?;
    let mut size = 0;
    for partition in metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
    {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, Duration::from_secs(10))
            .with_context(|| format!("cannot read the offsets of {topic}/{partition}"))?;
        size += high - low;
    }
    Ok(size)
}

/// Reads every record of `topics` from the start up to the end each partition had when the
/// read began (the whole topics once their writers are gone), failing after `timeout`.
pub fn read_kafka_topics_to_end(
    brokers: &str,
    topics: &[&str],
    timeout: Duration,
) -> Result<Vec<KafkaRecord>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("cannot create a Kafka consumer")?;
    let deadline = Instant::now() + timeout;
    // Per partition: the offset of its last record.
    let mut last: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for topic in topics {
        for partition in wait_for_partitions(&consumer, topic, deadline)? {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition, Duration::from_secs(10))
                .with_context(|| format!("cannot read the offsets of {topic}/{partition}"))?;
            if high > low {
                last.insert(((*topic).to_owned(), partition), high - 1);
            }
        }
    }
    let records = read_kafka_topics(brokers, topics, timeout, move |records| {
        if let Some(record) = records.last() {
            let key = (record.topic.clone(), record.partition);
            if last.get(&key).is_some_and(|end| record.offset >= *end) {
                last.remove(&key);
            }
        }
        last.is_empty()
    })?;
    Ok(records)
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
            .fetch_metadata(Some(topic), Duration::from_secs(10))
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
        std::thread::sleep(Duration::from_millis(250));
    }
}
