//! Kafka sink: librdkafka's idempotent producer with `acks=all`; delivery reports drive acks.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

use crate::config::{OversizedPolicy, SinkConfig};
use crate::record::OutputRecord;

/// librdkafka's default `message.max.bytes`.
const LIBRDKAFKA_MESSAGE_MAX_BYTES: &str = "1000000";

/// How long metadata and admin calls may take before we call the broker unreachable.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("invalid Kafka producer configuration")]
    Config(#[source] KafkaError),
    #[error("cannot reach Kafka at {brokers}")]
    Unreachable {
        brokers: String,
        #[source]
        source: KafkaError,
    },
    #[error("Kafka topic {topic:?} does not exist on {brokers}")]
    MissingTopic { topic: String, brokers: String },
    #[error("cannot create Kafka topic {topic:?}")]
    CreateTopic {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("Kafka refused a record for topic {topic:?}")]
    Produce {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error(
        "a record of {bytes} bytes for topic {topic:?} is larger than the producer's \
         message.max.bytes ({limit}); raise sink.properties.\"message.max.bytes\" (and the \
         broker's max.message.bytes) to pass such records"
    )]
    TooLarge {
        topic: String,
        bytes: usize,
        limit: String,
    },
    #[error("Kafka did not acknowledge a record for topic {topic:?}")]
    Delivery {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("the Kafka producer shut down before acknowledging a record for topic {topic:?}")]
    Canceled { topic: String },
    #[error(
        "reading back what was written stalled: nothing came from {partitions} partition(s) \
         (e.g. of topic {topic:?}) for 30 s"
    )]
    ReadBackStalled { topic: String, partitions: usize },
}

impl SinkError {
    /// Whether the error is in the user's hands (bad config, missing topic) rather than a
    /// runtime failure.
    pub fn is_user_input_error(&self) -> bool {
        matches!(self, SinkError::Config(_) | SinkError::MissingTopic { .. })
    }
}

impl SinkError {
    /// Whether the broker failed (unreachable, restarting, refusing requests) rather than the
    /// configuration or the record: a fresh producer may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SinkError::Unreachable { .. }
                | SinkError::Produce { .. }
                | SinkError::Delivery { .. }
                | SinkError::Canceled { .. }
                | SinkError::CreateTopic { .. }
                | SinkError::ReadBackStalled { .. }
        )
    }
}

/// Whether a topic can be written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicStatus {
    Exists,
    Missing,
}

/// A produced record waiting for its delivery report.
pub struct PendingDelivery {
    topic: String,
    future: DeliveryFuture,
}

impl PendingDelivery {
    /// Resolves once Kafka acknowledged the record (all in-sync replicas), or failed for good
    /// after librdkafka's own retries.
    pub async fn wait(self) -> Result<(), SinkError> {
        match self.future.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((source, _))) => Err(SinkError::Delivery {
                topic: self.topic,
                source,
            }),
            Err(_canceled) => Err(SinkError::Canceled { topic: self.topic }),
        }
    }
}

pub struct KafkaSink {
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
    brokers: String,
    default_topic: String,
    dead_letter_topic: Option<String>,
    create_topics: bool,
    topic_partitions: i32,
    topics: Mutex<HashMap<String, TopicStatus>>,
    /// The producer's `message.max.bytes`, for the too-large error.
    message_max_bytes: String,
    oversized: OversizedPolicy,
}

impl KafkaSink {
    /// Builds the producer and checks that the sink and dead-letter topics exist (creating
    /// them when `create_topics` is set).
    pub async fn connect(config: &SinkConfig) -> Result<Self, SinkError> {
        let client_config = client_config(config);
        let producer: FutureProducer = client_config.create().map_err(SinkError::Config)?;
        let admin: AdminClient<DefaultClientContext> =
            client_config.create().map_err(SinkError::Config)?;
        let sink = Self {
            producer,
            admin,
            brokers: config.brokers.clone(),
            default_topic: config.topic.clone(),
            dead_letter_topic: config.dead_letter_topic.clone(),
            create_topics: config.create_topics,
            topic_partitions: config.topic_partitions,
            topics: Mutex::default(),
            message_max_bytes: client_config
                .get("message.max.bytes")
                .unwrap_or(LIBRDKAFKA_MESSAGE_MAX_BYTES)
                .to_owned(),
            oversized: config.oversized,
        };
        let mut required = vec![sink.default_topic.clone()];
        required.extend(sink.dead_letter_topic.clone());
        for topic in required {
            if sink.ensure_topic(&topic).await? == TopicStatus::Missing {
                return Err(SinkError::MissingTopic {
                    topic,
                    brokers: sink.brokers.clone(),
                });
            }
        }
        Ok(sink)
    }

    pub fn default_topic(&self) -> &str {
        &self.default_topic
    }

    /// What to do with a record larger than `message.max.bytes`.
    pub fn oversized(&self) -> OversizedPolicy {
        self.oversized
    }

    pub fn dead_letter_topic(&self) -> Option<&str> {
        self.dead_letter_topic.as_deref()
    }

    /// Whether `topic` exists, creating it if configured to. Cached: a topic is looked up once.
    pub async fn ensure_topic(&self, topic: &str) -> Result<TopicStatus, SinkError> {
        if let Some(status) = self.topics.lock().expect("topic cache poisoned").get(topic) {
            return Ok(*status);
        }
        let mut status = self.lookup_topic(topic).await?;
        if status == TopicStatus::Missing && self.create_topics {
            self.create_topic(topic).await?;
            status = TopicStatus::Exists;
        }
        self.topics
            .lock()
            .expect("topic cache poisoned")
            .insert(topic.to_owned(), status);
        Ok(status)
    }

    async fn lookup_topic(&self, topic: &str) -> Result<TopicStatus, SinkError> {
        let client = self.producer.clone();
        let name = topic.to_owned();
        let metadata = tokio::task::spawn_blocking(move || {
            client.client().fetch_metadata(Some(&name), ADMIN_TIMEOUT)
        })
        .await
        .expect("metadata lookup panicked")
        .map_err(|source| SinkError::Unreachable {
            brokers: self.brokers.clone(),
            source,
        })?;
        let found = metadata
            .topics()
            .iter()
            .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty());
        Ok(if found {
            TopicStatus::Exists
        } else {
            TopicStatus::Missing
        })
    }

    async fn create_topic(&self, topic: &str) -> Result<(), SinkError> {
        let new_topic = NewTopic::new(topic, self.topic_partitions, TopicReplication::Fixed(1));
        let options = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
        let results = self
            .admin
            .create_topics([&new_topic], &options)
            .await
            .map_err(|source| SinkError::CreateTopic {
                topic: topic.to_owned(),
                source,
            })?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => {
                    return Err(SinkError::CreateTopic {
                        topic: topic.to_owned(),
                        source: KafkaError::AdminOp(code),
                    });
                }
            }
        }
        tracing::info!(
            topic,
            partitions = self.topic_partitions,
            "created Kafka topic"
        );
        Ok(())
    }

    /// Hands a record to the producer, waiting while its queue is full (backpressure).
    /// `record.topic` must already be resolved.
    pub async fn send(&self, record: &OutputRecord) -> Result<PendingDelivery, SinkError> {
        let topic = record.topic.as_deref().unwrap_or(&self.default_topic);
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for header in &record.headers {
            headers = headers.insert(KafkaHeader {
                key: &header.name,
                value: Some(&header.value),
            });
        }
        let mut kafka_record = FutureRecord::<[u8], [u8]>::to(topic).headers(headers);
        if let Some(key) = &record.key {
            kafka_record = kafka_record.key(key.as_slice());
        }
        if let Some(value) = &record.value {
            kafka_record = kafka_record.payload(value.as_slice());
        }
        if let Some(timestamp) = record.timestamp_ms {
            kafka_record = kafka_record.timestamp(timestamp);
        }
        loop {
            match self.producer.send_result(kafka_record) {
                Ok(future) => {
                    return Ok(PendingDelivery {
                        topic: topic.to_owned(),
                        future,
                    });
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    kafka_record = returned;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), _)) => {
                    return Err(SinkError::TooLarge {
                        topic: topic.to_owned(),
                        bytes: record.size_bytes(),
                        limit: self.message_max_bytes.clone(),
                    });
                }
                Err((source, _)) => {
                    return Err(SinkError::Produce {
                        topic: topic.to_owned(),
                        source,
                    });
                }
            }
        }
    }

    /// Waits until every queued record is delivered or `timeout` passes.
    pub async fn flush(&self, timeout: Duration) -> Result<(), SinkError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.flush(timeout))
            .await
            .expect("flush panicked")
            .map_err(|source| SinkError::Delivery {
                topic: self.default_topic.clone(),
                source,
            })
    }
}

/// The librdkafka configuration: the user's properties, then the settings the delivery
/// guarantee rests on (validated not to conflict at config load).
fn client_config(config: &SinkConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &config.brokers);
    // Java-client compatible partitioning: murmur2 on the key (librdkafka defaults to CRC32).
    client.set("partitioner", "murmur2_random");
    for (key, value) in &config.properties {
        client.set(key, value.expose());
    }
    client.set("enable.idempotence", "true");
    client.set("acks", "all");
    client
}
