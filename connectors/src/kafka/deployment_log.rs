//! The deployments topic of a pipeline whose instances share their deployed transform
//! versions (`[admin] deployments = "kafka"`, docs/scale-out.md): one compacted Kafka topic
//! per pipeline, one partition, on the pipeline's sink cluster, that every instance reads from
//! the start and then follows. It holds key → value entries; compaction keeps the last value
//! of each key. What the keys mean is the runtime's business; this file moves bytes.
//!
//! An entry is at most [`MAX_ENTRY_BYTES`]: the topic is created with that
//! `max.message.bytes` and the producer may send that much, so a component that fits is
//! stored in the topic itself and needs no shared file system.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use super::config::KafkaSinkConfig;
use super::sink::producer_config;

/// Largest entry (a component's bytes, mostly): 8 MiB. Rust components are about 0.1 MB;
/// Python and JavaScript ones (12-18 MB) do not fit and are refused by a shared deploy.
pub const MAX_ENTRY_BYTES: usize = 8 * 1024 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum DeploymentLogError {
    #[error("deployments topic {topic:?}: {action}")]
    Kafka {
        topic: String,
        action: &'static str,
        #[source]
        source: KafkaError,
    },
    #[error("deployments topic {topic:?}: the reader stopped")]
    ReaderStopped { topic: String },
}

/// One entry: its key, and its value (`None`: a tombstone).
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub key: String,
    pub value: Option<Vec<u8>>,
}

/// The writing side of a deployments topic.
pub struct DeploymentLog {
    topic: String,
    producer: FutureProducer,
}

/// The reading side: every entry from the start of the topic, in order, then each new one.
pub struct DeploymentReader {
    topic: String,
    entries: mpsc::UnboundedReceiver<Result<LogEntry, KafkaError>>,
    /// Entries in the topic when it was opened: what [`DeploymentReader::catch_up`] reads.
    backlog: i64,
}

impl DeploymentLog {
    /// Opens `topic` on the cluster of `sink` (its brokers and properties), creating it
    /// (compacted, one partition) when missing, and starts reading it from the start.
    pub async fn open(
        sink: &KafkaSinkConfig,
        topic: &str,
    ) -> Result<(Self, DeploymentReader), DeploymentLogError> {
        let error = |action| {
            let topic = topic.to_owned();
            move |source| DeploymentLogError::Kafka {
                topic,
                action,
                source,
            }
        };
        let mut client = producer_config(sink);
        // The value plus the record's overhead.
        client.set(
            "message.max.bytes",
            (MAX_ENTRY_BYTES + 64 * 1024).to_string(),
        );
        let admin: AdminClient<DefaultClientContext> =
            client.create().map_err(error("cannot connect"))?;
        let max_message_bytes = (MAX_ENTRY_BYTES + 64 * 1024).to_string();
        let new = NewTopic::new(topic, 1, TopicReplication::Fixed(-1))
            .set("cleanup.policy", "compact")
            .set("max.message.bytes", &max_message_bytes);
        let options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
        let created = admin
            .create_topics([&new], &options)
            .await
            .map_err(error("cannot create"))?;
        match created.into_iter().next() {
            Some(Ok(_)) => tracing::info!(topic, "created the deployments topic (compacted)"),
            Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) | None => {}
            Some(Err((_, code))) => return Err(error("cannot create")(KafkaError::AdminOp(code))),
        }
        let producer: FutureProducer = client.create().map_err(error("cannot connect"))?;
        let consumer_settings = consumer_config(sink);
        let topic_name = topic.to_owned();
        let (backlog, entries) =
            tokio::task::spawn_blocking(move || follow(consumer_settings, topic_name))
                .await
                .expect("the deployments reader's start does not panic")
                .map_err(error("cannot read"))?;
        Ok((
            Self {
                topic: topic.to_owned(),
                producer,
            },
            DeploymentReader {
                topic: topic.to_owned(),
                entries,
                backlog,
            },
        ))
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Writes `key` → `value` (`None`: a tombstone) and waits for Kafka's acknowledgement.
    pub async fn publish(&self, key: &str, value: Option<&[u8]>) -> Result<(), DeploymentLogError> {
        let mut record = FutureRecord::<str, [u8]>::to(&self.topic).key(key);
        if let Some(value) = value {
            record = record.payload(value);
        }
        self.producer
            .send(record, REQUEST_TIMEOUT)
            .await
            .map(drop)
            .map_err(|(source, _)| DeploymentLogError::Kafka {
                topic: self.topic.clone(),
                action: "cannot write",
                source,
            })
    }
}

impl DeploymentReader {
    /// Every entry that was in the topic when it was opened, in order.
    pub async fn catch_up(&mut self) -> Result<Vec<LogEntry>, DeploymentLogError> {
        let mut entries = Vec::new();
        while (entries.len() as i64) < self.backlog {
            entries.push(self.next().await?);
        }
        Ok(entries)
    }

    /// The next entry; waits for one.
    pub async fn next(&mut self) -> Result<LogEntry, DeploymentLogError> {
        match self.entries.recv().await {
            Some(Ok(entry)) => Ok(entry),
            Some(Err(source)) => Err(DeploymentLogError::Kafka {
                topic: self.topic.clone(),
                action: "cannot read",
                source,
            }),
            None => Err(DeploymentLogError::ReaderStopped {
                topic: self.topic.clone(),
            }),
        }
    }
}

/// A consumer of the whole topic with the sink's connection settings, no group.
fn consumer_config(sink: &KafkaSinkConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &sink.brokers);
    for (key, value) in &sink.properties {
        // Producer-only properties would be refused by a consumer; connection and security
        // ones are what matters here.
        if key.starts_with("security.")
            || key.starts_with("sasl.")
            || key.starts_with("ssl.")
            || key == "client.id"
        {
            client.set(key, value.expose());
        }
    }
    sink.apply_security(&mut client);
    client
        .set("group.id", "sluice-deployments-reader")
        .set("enable.auto.commit", "false")
        .set(
            "fetch.message.max.bytes",
            (MAX_ENTRY_BYTES + 64 * 1024).to_string(),
        )
        .set("isolation.level", "read_committed");
    client
}

/// Assigns the topic's partition from its start on a thread of its own that sends every
/// entry; returns how many entries the partition held at the start (its high watermark: a
/// compacted topic may hold fewer, see below) and the receiver.
#[allow(
    clippy::type_complexity,
    reason = "a receiver of entries or read errors, used once"
)]
fn follow(
    settings: ClientConfig,
    topic: String,
) -> Result<(i64, mpsc::UnboundedReceiver<Result<LogEntry, KafkaError>>), KafkaError> {
    let consumer: BaseConsumer = settings.create()?;
    let (low, high) = consumer.fetch_watermarks(&topic, 0, REQUEST_TIMEOUT)?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(&topic, 0, Offset::Beginning)?;
    consumer.assign(&assignment)?;
    let (sender, receiver) = mpsc::unbounded_channel();
    // Compaction leaves gaps in the offsets: count the entries up to the high watermark by
    // reading them, here, so the backlog is exact.
    // Typed: with `offset` inferred, `offset + 1` has too many `Add` impls to choose from.
    let mut backlog: Vec<(i64, _)> = Vec::new();
    while backlog.last().is_none_or(|(offset, _)| offset + 1 < high) && high > low {
        match consumer.poll(POLL) {
            Some(Ok(message)) => {
                let offset = message.offset();
                backlog.push((offset, entry_of(&message)));
            }
            Some(Err(error)) => return Err(error),
            None => {}
        }
    }
    let count = backlog.len() as i64;
    for (_, entry) in backlog {
        let _ = sender.send(Ok(entry));
    }
    std::thread::Builder::new()
        .name("sluice-deployments".into())
        .spawn(move || {
            while !sender.is_closed() {
                match consumer.poll(POLL) {
                    Some(Ok(message)) => {
                        let _ = sender.send(Ok(entry_of(&message)));
                    }
                    Some(Err(error)) => {
                        tracing::warn!(topic, %error, "reading the deployments topic failed; retrying");
                    }
                    None => {}
                }
            }
        })
        .expect("a thread can be started");
    Ok((count, receiver))
}

fn entry_of(message: &rdkafka::message::BorrowedMessage<'_>) -> LogEntry {
    LogEntry {
        key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
        value: message.payload().map(<[u8]>::to_vec),
    }
}
