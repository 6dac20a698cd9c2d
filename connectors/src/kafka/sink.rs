//! Kafka sink: librdkafka's idempotent producer with `acks=all`; delivery reports drive acks,
//! through one ledger rather than a channel per record (`delivery_ledger.rs`). Exactly-once on
//! transactions opens a transactional producer per writer scope (`transactional.rs`).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{
    BaseRecord, DeliveryFuture, FutureProducer, FutureRecord, Producer, ThreadedProducer,
};
use sluice_record::validation::SinkLimits;
use sluice_record::{Bytes, OutputRecord};

use super::config::{KafkaSinkConfig, config_error};
use super::delivery_ledger::{DeliveryLedger, ReportedDelivery, ReportingContext};
use super::refusal;
use super::transactional::{KafkaWriter, Opening};
use super::{changelog, offsets, read_back};
use crate::sink::{ConnectSink, OversizedPolicy, ReadBack, Sink, SinkError, TopicStatus};
use crate::transactions::{ChangelogRecord, Resume, WriterScope};

/// How long metadata and admin calls may take before we call the broker unreachable.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A record produced in a transaction, waiting for its delivery report.
pub struct PendingDelivery {
    /// For the error, should it fail: shared with the sink when it is the default topic, so
    /// a record costs no copy of the name.
    topic: Arc<str>,
    future: DeliveryFuture,
}

/// Resolves once Kafka acknowledged the record (all in-sync replicas), or failed for good
/// after librdkafka's own retries.
impl Future for PendingDelivery {
    type Output = Result<(), SinkError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let report = std::task::ready!(Pin::new(&mut self.future).poll(cx));
        let topic = || self.topic.to_string();
        Poll::Ready(match report {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((error, _))) => Err(classify(topic(), error, Stage::Delivery)),
            Err(_canceled) => Err(SinkError::Canceled { topic: topic() }),
        })
    }
}

pub struct KafkaSink {
    config: KafkaSinkConfig,
    producer: Arc<ThreadedProducer<ReportingContext>>,
    /// The producer's delivery reports.
    ledger: Arc<DeliveryLedger>,
    admin: AdminClient<DefaultClientContext>,
    brokers: String,
    default_topic: Arc<str>,
    dead_letter_topic: Option<String>,
    create_topics: bool,
    topic_partitions: i32,
    /// Topics looked up: whether they exist, and what they take of one record.
    topics: Mutex<HashMap<String, (TopicStatus, SinkLimits)>>,
    /// The producer's `message.max.bytes`: librdkafka refuses larger records.
    message_max_bytes: u64,
    oversized: OversizedPolicy,
    /// The consumer that reads the checkpoints of exactly-once on transactions.
    checkpoints: ClientConfig,
}

impl KafkaSink {
    /// Builds the producer and checks that the sink and dead-letter topics exist (creating
    /// them when `create_topics` is set).
    pub async fn connect(config: &KafkaSinkConfig) -> Result<Self, SinkError> {
        refusal::check_access(config).await?;
        let settings = producer_config(config);
        let default_topic: Arc<str> = Arc::from(config.topic.as_str());
        let ledger = Arc::new(DeliveryLedger::new(default_topic.clone()));
        let context = ReportingContext {
            ledger: ledger.clone(),
        };
        let producer = Arc::new(
            settings
                .create_with_context(context)
                .map_err(config_error)?,
        );
        let admin: AdminClient<DefaultClientContext> = settings.create().map_err(config_error)?;
        let sink = Self {
            config: config.clone(),
            producer,
            ledger,
            admin,
            brokers: config.brokers.clone(),
            default_topic,
            dead_letter_topic: config.dead_letter_topic.clone(),
            create_topics: config.create_topics,
            topic_partitions: config.topic_partitions,
            topics: Mutex::default(),
            message_max_bytes: match settings.get("message.max.bytes") {
                Some(value) => value.trim().parse().map_err(|_| {
                    SinkError::Config(
                        format!("message.max.bytes = {value:?} is not a number").into(),
                    )
                })?,
                None => SinkLimits::LIBRDKAFKA_MESSAGE_MAX_BYTES,
            },
            oversized: config.oversized,
            checkpoints: offsets::consumer_config(read_back::consumer_config(config)),
        };
        let mut required = vec![sink.default_topic.to_string()];
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

    /// Whether `topic` exists, creating it if configured to, and what it takes of one record.
    /// Cached: a topic is looked up once.
    async fn lookup_or_create(&self, topic: &str) -> Result<TopicStatus, SinkError> {
        if let Some((status, _)) = self.topics.lock().expect("topic cache poisoned").get(topic) {
            return Ok(*status);
        }
        let mut status = self.lookup_topic(topic).await?;
        if status == TopicStatus::Missing && self.create_topics {
            self.create_topic(topic).await?;
            status = TopicStatus::Exists;
        }
        let limits = match status {
            TopicStatus::Exists => self.describe_limits(topic).await,
            TopicStatus::Missing => self.producer_limits(),
        };
        self.topics
            .lock()
            .expect("topic cache poisoned")
            .insert(topic.to_owned(), (status, limits));
        Ok(status)
    }

    /// What any topic takes before its own config is known: the producer's size limit and
    /// Kafka 4.x's default timestamp window.
    fn producer_limits(&self) -> SinkLimits {
        SinkLimits {
            max_record_bytes: self.message_max_bytes,
            ..SinkLimits::default()
        }
    }

    /// What `topic` takes, from its effective config (DescribeConfigs: the topic's own
    /// settings over the broker's): its timestamp window and whether it is compacted. A broker
    /// that does not answer (or does not allow it) leaves Kafka's defaults; the broker's own
    /// refusal of a record is still dead-lettered then (docs/sandbox.md).
    async fn describe_limits(&self, topic: &str) -> SinkLimits {
        let mut limits = self.producer_limits();
        let options = AdminOptions::new().request_timeout(Some(ADMIN_TIMEOUT));
        let described = self
            .admin
            .describe_configs([&ResourceSpecifier::Topic(topic)], &options)
            .await;
        let config = match described.as_deref() {
            Ok([Ok(config)]) => config,
            Ok(other) => {
                tracing::debug!(topic, result = ?other.first().map(|r| r.as_ref().err()), "cannot describe the topic's config; assuming Kafka's defaults");
                return limits;
            }
            Err(error) => {
                tracing::debug!(topic, %error, "cannot describe the topic's config; assuming Kafka's defaults");
                return limits;
            }
        };
        let value = |name: &str| config.get(name).and_then(|entry| entry.value.clone());
        let window = |name: &str| {
            value(name)
                .and_then(|v| v.parse::<i64>().ok())
                .map(|ms| (ms < i64::MAX).then_some(ms))
        };
        if value("message.timestamp.type").as_deref() == Some("LogAppendTime") {
            // The broker stamps records itself: any timestamp is taken.
            limits.max_timestamp_ahead_ms = None;
        } else {
            // Brokers before 3.6 have one window for both sides.
            let either = window("message.timestamp.difference.max.ms");
            if let Some(ahead) = window("message.timestamp.after.max.ms").or(either) {
                limits.max_timestamp_ahead_ms = ahead;
            }
            if let Some(behind) = window("message.timestamp.before.max.ms").or(either) {
                limits.max_timestamp_behind_ms = behind;
            }
        }
        limits.key_required = value("cleanup.policy").is_some_and(|p| p.contains("compact"));
        tracing::debug!(topic, ?limits, "what the topic takes of one record");
        limits
    }

    async fn lookup_topic(&self, topic: &str) -> Result<TopicStatus, SinkError> {
        let client = self.producer.clone();
        let name = topic.to_owned();
        let metadata = tokio::task::spawn_blocking(move || {
            client.client().fetch_metadata(Some(&name), ADMIN_TIMEOUT)
        })
        .await
        .expect("metadata lookup panicked")
        .map_err(|source| match source {
            // A name librdkafka cannot take: this topic's problem, not the connection's.
            KafkaError::Nul(_) => classify(topic.to_owned(), source, Stage::Produce),
            source => SinkError::Unreachable {
                brokers: self.brokers.clone(),
                source: source.into(),
            },
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
                // The broker refuses this topic (its name, a creation policy): the problem
                // of the records routed there, not of the connection.
                Err((
                    _,
                    code @ (RDKafkaErrorCode::InvalidTopic | RDKafkaErrorCode::PolicyViolation),
                )) => {
                    return Err(SinkError::Refused {
                        topic: topic.to_owned(),
                        too_large: false,
                        source: KafkaError::AdminOp(code).into(),
                    });
                }
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

    /// Hands a record to the producer, waiting while its queue is full (backpressure). Its
    /// sequence number in the ledger is its delivery opaque: no allocation per record beyond
    /// librdkafka's own.
    async fn produce(&self, record: &OutputRecord) -> Result<ReportedDelivery, SinkError> {
        let topic = record.topic.as_deref().unwrap_or(&self.default_topic);
        let seq = self.ledger.issue();
        let mut kafka_record = BaseRecord::<[u8], [u8], usize>::with_opaque_to(topic, seq as usize)
            .headers(kafka_headers(record));
        if let Some(key) = &record.key {
            kafka_record = kafka_record.key(&key[..]);
        }
        if let Some(value) = &record.value {
            kafka_record = kafka_record.payload(&value[..]);
        }
        if let Some(timestamp) = record.timestamp_ms {
            kafka_record = kafka_record.timestamp(timestamp);
        }
        self.enqueue(kafka_record, seq).await
    }

    /// Hands `kafka_record`, numbered `seq` in the ledger, to the client, waiting while its
    /// queue is full.
    async fn enqueue(
        &self,
        mut kafka_record: BaseRecord<'_, [u8], [u8], usize>,
        seq: u64,
    ) -> Result<ReportedDelivery, SinkError> {
        let topic = kafka_record.topic;
        loop {
            match self.producer.send(kafka_record) {
                Ok(()) => return Ok(ReportedDelivery::new(self.ledger.clone(), seq)),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    kafka_record = returned;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((error, _)) => {
                    // Never produced: its number must not hold the ledger's watermark back.
                    self.ledger.report(seq, Ok(()));
                    return Err(classify(topic.to_owned(), error, Stage::Produce));
                }
            }
        }
    }
}

impl Drop for KafkaSink {
    fn drop(&mut self) {
        self.ledger.close();
    }
}

/// The record's headers as librdkafka's.
fn kafka_headers(record: &OutputRecord) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
    for header in &record.headers {
        headers = headers.insert(KafkaHeader {
            key: &header.name,
            value: Some(&header.value[..]),
        });
    }
    headers
}

/// Hands a record to `producer` (to `default_topic` unless it names its own), waiting while
/// the producer's queue is full (backpressure). The transactional writers share it.
pub(super) async fn produce<C: ClientContext + 'static>(
    producer: &FutureProducer<C>,
    default_topic: &Arc<str>,
    record: &OutputRecord,
) -> Result<PendingDelivery, SinkError> {
    let topic = record.topic.as_deref().unwrap_or(default_topic);
    let mut kafka_record = FutureRecord::<[u8], [u8]>::to(topic).headers(kafka_headers(record));
    if let Some(key) = &record.key {
        kafka_record = kafka_record.key(&key[..]);
    }
    if let Some(value) = &record.value {
        kafka_record = kafka_record.payload(&value[..]);
    }
    if let Some(timestamp) = record.timestamp_ms {
        kafka_record = kafka_record.timestamp(timestamp);
    }
    loop {
        match producer.send_result(kafka_record) {
            Ok(future) => {
                let topic = match &record.topic {
                    Some(topic) => Arc::from(topic.as_str()),
                    None => default_topic.clone(),
                };
                return Ok(PendingDelivery { topic, future });
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                kafka_record = returned;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((error, _)) => return Err(classify(topic.to_owned(), error, Stage::Produce)),
        }
    }
}

impl Sink for KafkaSink {
    type Delivery = ReportedDelivery;
    type Writer = KafkaWriter;

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

    fn record_limits(&self, topic: &str) -> SinkLimits {
        let topics = self.topics.lock().expect("topic cache poisoned");
        topics
            .get(topic)
            .map_or_else(|| self.producer_limits(), |(_, limits)| *limits)
    }

    async fn ensure_topic(&self, topic: &str) -> Result<TopicStatus, SinkError> {
        self.lookup_or_create(topic).await
    }

    async fn send(&self, record: &OutputRecord) -> Result<ReportedDelivery, SinkError> {
        self.produce(record).await
    }

    async fn send_changelog(
        &self,
        change: ChangelogRecord<'_>,
    ) -> Result<ReportedDelivery, SinkError> {
        let seq = self.ledger.issue();
        let mut kafka_record = BaseRecord::with_opaque_to(change.topic, seq as usize)
            .partition(change.partition)
            .key(change.key);
        if let Some(value) = change.value {
            kafka_record = kafka_record.payload(value);
        }
        self.enqueue(kafka_record, seq).await
    }

    async fn read_back(&self, pipeline: &str, window: usize) -> Result<ReadBack, SinkError> {
        let topics = self.config.declared_topics();
        read_back::read_back(&self.config, pipeline, topics, window).await
    }

    async fn ensure_changelog(&self, topic: &str, partition: i32) -> Result<(), SinkError> {
        let checkpoints = &self.checkpoints;
        offsets::ensure_partition(&self.admin, checkpoints, &self.brokers, topic, partition).await
    }

    async fn read_changelog(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Vec<(Bytes, Bytes)>, SinkError> {
        changelog::read(&self.checkpoints, topic, partition).await
    }

    async fn open_writer(&self, scope: &WriterScope) -> Result<(KafkaWriter, Resume), SinkError> {
        let (topic, partition) = (&scope.offsets_topic, scope.offsets_partition);
        let checkpoints = &self.checkpoints;
        offsets::ensure_partition(&self.admin, checkpoints, &self.brokers, topic, partition)
            .await?;
        let opening = Opening {
            producer: producer_config(&self.config),
            consumer: checkpoints,
            default_topic: &self.default_topic,
        };
        KafkaWriter::open(opening, scope).await
    }
}

impl ConnectSink for KafkaSinkConfig {
    type Sink = KafkaSink;

    async fn connect(&self) -> Result<KafkaSink, SinkError> {
        KafkaSink::connect(self).await
    }
}

/// Where librdkafka reported an error about one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// Handing it to the producer.
    Produce,
    /// Its delivery report.
    Delivery,
}

/// Sorts librdkafka's error about one record: the record's own problem (it is refused and
/// dead-lettered; the connection is fine) or the connection's (transient: a new producer
/// sends it again). Codes from librdkafka's `rdkafka_request.c` handling of Produce
/// responses and its local checks; docs/sandbox.md lists them.
pub(super) fn classify(topic: String, error: KafkaError, stage: Stage) -> SinkError {
    use RDKafkaErrorCode as Code;
    let refused = match (&error, error.rdkafka_error_code()) {
        // A topic name with a NUL byte cannot even be passed to librdkafka.
        (KafkaError::Nul(_), _) => Some(false),
        (
            _,
            Some(Code::MessageSizeTooLarge | Code::MessageBatchTooLarge | Code::InvalidMessageSize),
        ) => Some(true),
        (
            _,
            Some(
                Code::InvalidMessage
                | Code::InvalidTopic
                | Code::InvalidTimestamp
                | Code::InvalidRecord
                // Refused with the batch another record of it made invalid.
                | Code::InvalidDifferentRecord
                | Code::PolicyViolation
                | Code::BadMessage
                | Code::InvalidArgument,
            ),
        ) => Some(false),
        _ => None,
    };
    match (refused, stage) {
        (Some(too_large), _) => SinkError::Refused {
            topic,
            too_large,
            source: error.into(),
        },
        (None, Stage::Produce) => SinkError::Produce {
            topic,
            source: error.into(),
        },
        (None, Stage::Delivery) => SinkError::Delivery {
            topic,
            source: error.into(),
        },
    }
}

/// The librdkafka configuration: the user's properties, then the settings the delivery
/// guarantee rests on (validated not to conflict at config load).
pub(super) fn producer_config(config: &KafkaSinkConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &config.brokers);
    // Java-client compatible partitioning: murmur2 on the key (librdkafka defaults to CRC32).
    client.set("partitioner", "murmur2_random");
    for (key, value) in &config.properties {
        client.set(key, value.expose());
    }
    config.apply_security(&mut client);
    client.set("enable.idempotence", "true");
    client.set("acks", "all");
    client
}
