//! Kafka sink: librdkafka's idempotent producer with `acks=all`; delivery reports drive acks.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use sluice_record::OutputRecord;

use super::config::{KafkaSinkConfig, config_error};
use super::read_back;
use crate::sink::{ConnectSink, OversizedPolicy, ReadBack, Sink, SinkError, TopicStatus};

/// librdkafka's default `message.max.bytes`.
const LIBRDKAFKA_MESSAGE_MAX_BYTES: &str = "1000000";

/// How long metadata and admin calls may take before we call the broker unreachable.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A produced record waiting for its delivery report.
pub struct PendingDelivery {
    topic: String,
    future: DeliveryFuture,
}

/// Resolves once Kafka acknowledged the record (all in-sync replicas), or failed for good
/// after librdkafka's own retries.
impl Future for PendingDelivery {
    type Output = Result<(), SinkError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let report = std::task::ready!(Pin::new(&mut self.future).poll(cx));
        let topic = std::mem::take(&mut self.topic);
        Poll::Ready(match report {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((source, _))) => Err(SinkError::Delivery {
                topic,
                source: source.into(),
            }),
            Err(_canceled) => Err(SinkError::Canceled { topic }),
        })
    }
}

pub struct KafkaSink {
    config: KafkaSinkConfig,
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
    pub async fn connect(config: &KafkaSinkConfig) -> Result<Self, SinkError> {
        let settings = producer_config(config);
        let producer: FutureProducer = settings.create().map_err(config_error)?;
        let admin: AdminClient<DefaultClientContext> = settings.create().map_err(config_error)?;
        let sink = Self {
            config: config.clone(),
            producer,
            admin,
            brokers: config.brokers.clone(),
            default_topic: config.topic.clone(),
            dead_letter_topic: config.dead_letter_topic.clone(),
            create_topics: config.create_topics,
            topic_partitions: config.topic_partitions,
            topics: Mutex::default(),
            message_max_bytes: settings
                .get("message.max.bytes")
                .unwrap_or(LIBRDKAFKA_MESSAGE_MAX_BYTES)
                .to_owned(),
            oversized: config.oversized,
        };
        let mut required = vec![sink.default_topic.clone()];
        required.extend(sink.dead_letter_topic.clone());
        for topic in required {
            if sink.lookup_or_create(&topic).await? == TopicStatus::Missing {
                return Err(SinkError::MissingTopic {
                    topic,
                    brokers: sink.brokers.clone(),
                });
            }
        }
        Ok(sink)
    }

    /// Whether `topic` exists, creating it if configured to. Cached: a topic is looked up once.
    async fn lookup_or_create(&self, topic: &str) -> Result<TopicStatus, SinkError> {
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
            source: source.into(),
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
                source: source.into(),
            })?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => {
                    return Err(SinkError::CreateTopic {
                        topic: topic.to_owned(),
                        source: KafkaError::AdminOp(code).into(),
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
    async fn produce(&self, record: &OutputRecord) -> Result<PendingDelivery, SinkError> {
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
                        source: source.into(),
                    });
                }
            }
        }
    }
}

impl Sink for KafkaSink {
    type Delivery = PendingDelivery;

    fn default_topic(&self) -> &str {
        &self.default_topic
    }

    fn dead_letter_topic(&self) -> Option<&str> {
        self.dead_letter_topic.as_deref()
    }

    fn declared_topics(&self) -> Vec<String> {
        self.config.declared_topics()
    }

    fn oversized(&self) -> OversizedPolicy {
        self.oversized
    }

    async fn ensure_topic(&self, topic: &str) -> Result<TopicStatus, SinkError> {
        self.lookup_or_create(topic).await
    }

    async fn send(&self, record: &OutputRecord) -> Result<PendingDelivery, SinkError> {
        self.produce(record).await
    }

    async fn read_back(&self, pipeline: &str, window: usize) -> Result<ReadBack, SinkError> {
        let topics = self.config.declared_topics();
        read_back::read_back(&self.config, pipeline, topics, window).await
    }
}

impl ConnectSink for KafkaSinkConfig {
    type Sink = KafkaSink;

    async fn connect(&self) -> Result<KafkaSink, SinkError> {
        KafkaSink::connect(self).await
    }
}

/// The librdkafka configuration: the user's properties, then the settings the delivery
/// guarantee rests on (validated not to conflict at config load).
fn producer_config(config: &KafkaSinkConfig) -> ClientConfig {
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
