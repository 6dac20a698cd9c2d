//! Pulsar source on the `pulsar` crate: one consumer per partition (a non-partitioned topic is
//! one), individual acks sent only after delivery to Kafka.
//!
//! Why a consumer per partition rather than the crate's multi-topic consumer: a failover
//! subscription moves partitions between the instances reading it, and with exactly-once on
//! Kafka transactions an instance that lost a partition (another instance fenced its writer)
//! must stop receiving that partition's messages, including those its consumer already
//! prefetched, while it keeps the others. [`SourceClient::relinquish`] closes that partition's
//! consumer and subscribes again with a higher claim ([`Placement::claim`]): the broker sends
//! the new consumer messages only while this instance is the partition's active consumer.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use futures::StreamExt;
use futures::future::BoxFuture;
use pulsar::consumer::InitialPosition as PulsarInitialPosition;
use pulsar::consumer::Message;
use pulsar::proto::MessageIdData;
use pulsar::{Consumer, ConsumerOptions, Pulsar, SubType, TokioExecutor};
use sluice_record::InputRecord;

use super::config::{InitialPosition, PulsarSourceConfig, SubscriptionType};
use super::error::PulsarError;
use super::refusal;
use super::token::TokenAuthentication;
use crate::credentials::read_credential_file;
use crate::source::metadata::{self, PulsarMessageParts};
use crate::source::{
    ConnectSource, Placement, Position, Received, RunningSource, SourceClient, SourceError,
    SourceStart,
};

/// Pulsar's own default receiver queue; we go lower when the in-flight budget is smaller, so
/// the client never buffers more than the pipeline may hold.
const MAX_RECEIVER_QUEUE: usize = 1000;

/// Claims of partition subscriptions, unique in the process: a partition subscribed to again
/// gets a higher one than any before.
static NEXT_CLAIM: AtomicU64 = AtomicU64::new(1);

/// A message id as a hashable key: the partition's index in this source (one topic per
/// source, so no topic name: no allocation per record), ledger, entry, partition, batch index.
type MessageKey = (i64, u64, u64, i32, i32);

fn message_key(partition: Option<u32>, id: &MessageIdData) -> MessageKey {
    (
        partition.map_or(-1, i64::from),
        id.ledger_id,
        id.entry_id,
        id.partition.unwrap_or(-1),
        id.batch_index.unwrap_or(-1),
    )
}

/// What acks one Pulsar message: its topic and id, and the subscription that delivered it.
pub struct PulsarToken {
    /// `N` of a partitioned topic's partition (the topic name is the consumer's).
    partition: Option<u32>,
    id: MessageIdData,
    /// Messages in the batch (entry) this one came in; 1 when unbatched.
    batch_size: u32,
    /// The partition consumer that delivered it (an index into `PulsarSource::partitions`),
    /// and its claim then.
    slot: usize,
    claim: u64,
}

/// The consumer of one partition (or of the whole topic when it is not partitioned).
struct PartitionConsumer {
    /// The partition's own topic name (`…-partition-N`), or the topic's; its records share it.
    topic: Arc<str>,
    /// `N` of a partitioned topic's partition.
    index: Option<u32>,
    claim: u64,
    consumer: Consumer<Vec<u8>, TokioExecutor>,
}

pub struct PulsarSource {
    client: Pulsar<TokioExecutor>,
    config: PulsarSourceConfig,
    receiver_queue_size: u32,
    partitions: Vec<PartitionConsumer>,
    /// The partition polled first by the next receive: round robin, so a busy partition does
    /// not starve the others.
    next: usize,
    /// Acked batch indexes per batched entry not yet fully acked. pulsar-rs acks a batch
    /// index without an ack set, which a broker takes as an ack of the whole entry: acking
    /// the first message of a batch would drop the rest of it if the runtime then stopped.
    /// So an entry is acked only once every message of its batch is.
    partial_batches: HashMap<EntryKey, HashSet<i32>>,
    /// A partition could not be subscribed to again: the next receive fails with this, and the
    /// pipeline starts a new source session.
    broken: Option<PulsarError>,
}

/// A batched entry: the partition's index in this source, ledger, entry, partition.
type EntryKey = (i64, u64, u64, i32);

/// What one partition's consumer yielded, and from which partition (its slot).
type Polled = (usize, Option<Result<Message<Vec<u8>>, pulsar::Error>>);

/// The consumer name of this process: the broker orders a failover subscription's consumers
/// by name to pick each partition's active one, so names must differ between instances (two
/// containers both running as PID 1 must not tie) and stay the same while one runs (a
/// partition subscribed to again must not move).
fn consumer_name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        format!("sluice-{}-{nanos:08x}", std::process::id())
    })
}

/// The client for `config`'s URL with its TLS and authentication settings.
fn client_builder(
    config: &PulsarSourceConfig,
) -> Result<pulsar::PulsarBuilder<TokioExecutor>, PulsarError> {
    let mut builder = Pulsar::builder(&config.url, TokioExecutor);
    if let Some(tls) = &config.tls {
        if let Some(ca) = &tls.ca_file {
            let chain = read_credential_file(ca).map_err(PulsarError::CredentialFile)?;
            builder = builder.with_certificate_chain(chain);
        }
        builder = builder.with_tls_hostname_verification_enabled(tls.verify_hostname);
    }
    if let Some(oauth2) = config.auth.as_ref().and_then(|auth| auth.oauth2.as_ref()) {
        return Ok(builder.with_auth_provider(oauth2.authentication()));
    }
    if let Some(auth) = &config.auth {
        let token = match (&auth.token, &auth.token_file) {
            (Some(token), _) => TokenAuthentication::Inline(token.clone()),
            (None, Some(path)) => TokenAuthentication::File(path.clone()),
            (None, None) => return Ok(builder),
        };
        builder = builder.with_auth_provider(Box::new(token));
    }
    Ok(builder)
}

impl PulsarSource {
    pub async fn connect(
        config: &PulsarSourceConfig,
        max_in_flight: usize,
    ) -> Result<Self, PulsarError> {
        let client =
            client_builder(config)?
                .build()
                .await
                .map_err(|source| PulsarError::Connect {
                    url: config.url.clone(),
                    source,
                })?;
        let subscribe_error = |source| PulsarError::Subscribe {
            topic: config.topic.clone(),
            subscription: config.subscription.clone(),
            source,
        };
        let topics = client
            .lookup_partitioned_topic(config.topic.as_str())
            .await
            .map_err(subscribe_error)?;
        let partitioned = topics.len() > 1 || topics.iter().any(|(t, _)| *t != config.topic);
        let mut source = Self {
            client,
            config: config.clone(),
            receiver_queue_size: max_in_flight.min(MAX_RECEIVER_QUEUE) as u32,
            partitions: Vec::with_capacity(topics.len()),
            next: 0,
            partial_batches: HashMap::new(),
            broken: None,
        };
        for (topic, _) in topics {
            let index = partitioned.then(|| partition_index(&topic)).flatten();
            let consumer = source.subscribe(&topic).await?;
            source.partitions.push(PartitionConsumer {
                topic: topic.into(),
                index,
                claim: NEXT_CLAIM.fetch_add(1, Ordering::Relaxed),
                consumer,
            });
        }
        tracing::info!(
            messaging.system = "pulsar",
            topic = %config.topic,
            subscription = %config.subscription,
            partitions = source.partitions.len(),
            consumer = consumer_name(),
            "subscribed"
        );
        Ok(source)
    }

    /// Subscribes to one partition (or to the non-partitioned topic).
    async fn subscribe(
        &self,
        topic: &str,
    ) -> Result<Consumer<Vec<u8>, TokioExecutor>, PulsarError> {
        let config = &self.config;
        let options = ConsumerOptions {
            receiver_queue_size: Some(self.receiver_queue_size),
            initial_position: match config.initial_position {
                InitialPosition::Earliest => PulsarInitialPosition::Earliest,
                InitialPosition::Latest => PulsarInitialPosition::Latest,
            },
            durable: Some(true),
            ..ConsumerOptions::default()
        };
        self.client
            .consumer()
            .with_topic(topic)
            .with_subscription(&config.subscription)
            .with_subscription_type(sub_type(config.subscription_type.unwrap_or_default()))
            .with_consumer_name(consumer_name())
            .with_options(options)
            .build::<Vec<u8>>()
            .await
            .map_err(|source| PulsarError::Subscribe {
                topic: topic.to_owned(),
                subscription: config.subscription.clone(),
                source,
            })
    }

    /// The next message of any partition, the partitions taken in turn.
    fn poll_partitions(&mut self, cx: &mut Context<'_>) -> Poll<Polled> {
        let count = self.partitions.len();
        for turn in 0..count {
            let slot = (self.next + turn) % count;
            if let Poll::Ready(item) = self.partitions[slot].consumer.poll_next_unpin(cx) {
                self.next = (slot + 1) % count;
                return Poll::Ready((slot, item));
            }
        }
        Poll::Pending
    }

    /// The consumer that delivered `token`'s message, if it is still the partition's.
    fn consumer_of(&mut self, token: &PulsarToken) -> Option<&mut PartitionConsumer> {
        self.partitions
            .get_mut(token.slot)
            .filter(|partition| partition.claim == token.claim)
    }

    async fn acknowledge(&mut self, token: PulsarToken, positive: bool) {
        if positive && token.batch_size > 1 {
            let id = &token.id;
            let entry = (
                token.partition.map_or(-1, i64::from),
                id.ledger_id,
                id.entry_id,
                id.partition.unwrap_or(-1),
            );
            let acked = self.partial_batches.entry(entry).or_default();
            acked.insert(id.batch_index.unwrap_or(-1));
            if acked.len() < token.batch_size as usize {
                return;
            }
            self.partial_batches.remove(&entry);
        }
        let Some(partition) = self.consumer_of(&token) else {
            // Its subscription was given up: the broker delivers it again to the partition's
            // active consumer.
            tracing::debug!(messaging.system = "pulsar", partition = ?token.partition, "not acking a message of a partition given up");
            return;
        };
        let id = token.id;
        let topic = &*partition.topic;
        let result = if positive {
            partition.consumer.ack_with_id(topic, id.clone()).await
        } else {
            partition.consumer.nack_with_id(topic, id.clone()).await
        };
        if let Err(error) = result {
            // Not fatal: an unacked message is redelivered, which at-least-once allows.
            tracing::warn!(
                messaging.system = "pulsar",
                %error,
                topic,
                message_id = %format_message_id(&id),
                "ack failed; the message will be redelivered"
            );
        }
    }
}

/// `N` of a partition's topic name `…-partition-N`.
fn partition_index(topic: &str) -> Option<u32> {
    topic.rsplit_once("-partition-")?.1.parse().ok()
}

impl SourceClient for PulsarSource {
    type Token = PulsarToken;
    type Key = MessageKey;
    type Error = PulsarError;
    const SYSTEM: &'static str = "pulsar";
    const WHILE_STALLED: &'static str =
        "the unacked messages stay assigned to this consumer until acked or disconnected";

    async fn receive(&mut self) -> Result<Option<Received<PulsarToken, MessageKey>>, PulsarError> {
        if let Some(error) = self.broken.take() {
            return Err(error);
        }
        let (slot, message) = std::future::poll_fn(|cx| self.poll_partitions(cx)).await;
        let partition = &self.partitions[slot];
        let message = match message {
            Some(Ok(message)) => message,
            Some(Err(source)) => {
                return Err(PulsarError::Receive {
                    topic: partition.topic.to_string(),
                    source,
                });
            }
            None => return Ok(None),
        };
        let id = message.message_id.id.clone();
        let batch_size = message
            .metadata()
            .num_messages_in_batch
            .map_or(1, |n| n.max(1) as u32);
        let placement = Placement {
            // The read loop sets which of the pipeline's sources this is.
            source: 0,
            partition: partition.index,
            claim: partition.claim,
            position: Some(Position {
                ledger: id.ledger_id,
                entry: id.entry_id,
                batch: id.batch_index.unwrap_or(-1),
            }),
        };
        let partition_index = partition.index;
        Ok(Some(Received {
            key: message_key(partition_index, &id),
            record: to_input_record(message, partition.topic.clone()),
            placement,
            token: PulsarToken {
                partition: partition_index,
                id,
                batch_size,
                slot,
                claim: partition.claim,
            },
        }))
    }

    fn key_of(token: &PulsarToken) -> MessageKey {
        message_key(token.partition, &token.id)
    }

    async fn ack(&mut self, token: PulsarToken) {
        self.acknowledge(token, true).await;
    }

    async fn nack(&mut self, token: PulsarToken) {
        self.acknowledge(token, false).await;
    }

    /// Gives the message's partition up: closes its consumer (dropping what it prefetched;
    /// the broker delivers the unacked messages to the partition's active consumer) and
    /// subscribes again, once per claim. The new consumer receives messages only once the
    /// broker makes this instance the partition's active consumer again: consumers keep their
    /// names, so the broker's choice does not move.
    async fn relinquish(&mut self, token: PulsarToken) {
        let slot = token.slot;
        let Some(partition) = self.consumer_of(&token) else {
            return;
        };
        if let Err(error) = partition.consumer.close().await {
            tracing::debug!(messaging.system = "pulsar", %error, "closing a given-up partition's consumer failed");
        }
        let topic = partition.topic.clone();
        match self.subscribe(&topic).await {
            Ok(consumer) => {
                let partition = &mut self.partitions[slot];
                partition.consumer = consumer;
                partition.claim = NEXT_CLAIM.fetch_add(1, Ordering::Relaxed);
                let index = partition.index.map_or(-1, i64::from);
                self.partial_batches.retain(|(p, ..), _| *p != index);
                tracing::info!(
                    messaging.system = "pulsar",
                    topic = &*topic,
                    "subscribed again to a partition another instance took over; standing by \
                     until the broker makes this consumer its active one again"
                );
            }
            Err(error) => self.broken = Some(error),
        }
    }

    async fn close(&mut self) {
        for partition in &mut self.partitions {
            if let Err(error) = partition.consumer.close().await {
                tracing::warn!(messaging.system = "pulsar", %error, topic = %partition.topic, "closing the consumer failed");
            }
        }
    }
}

fn sub_type(subscription_type: SubscriptionType) -> SubType {
    match subscription_type {
        SubscriptionType::Exclusive => SubType::Exclusive,
        SubscriptionType::Failover => SubType::Failover,
        SubscriptionType::Shared => SubType::Shared,
        SubscriptionType::KeyShared => SubType::KeyShared,
    }
}

/// Maps a Pulsar message (docs/delivery-guarantees.md, "Source metadata"; the mapping itself
/// is `source::metadata`). Takes the message: its payload moves into the record instead of
/// being copied; the partition's topic name is shared.
fn to_input_record(message: Message<Vec<u8>>, topic: Arc<str>) -> InputRecord {
    let key = message.key_bytes().unwrap_or_else(|error| {
        tracing::warn!(messaging.system = "pulsar", %error, "undecodable key; treating it as absent");
        None
    });
    let message_id = format_message_id(&message.message_id.id);
    let Message { payload, .. } = message;
    let metadata = payload.metadata;
    metadata::pulsar_record(PulsarMessageParts {
        key,
        payload: payload.data,
        null_value: metadata.null_value.unwrap_or(false),
        properties: metadata
            .properties
            .iter()
            .map(|p| (p.key.as_str(), p.value.as_str()))
            .collect(),
        event_time: metadata.event_time,
        publish_time: metadata.publish_time,
        topic,
        message_id,
        schema_version: metadata.schema_version,
    })
}

impl ConnectSource for PulsarSourceConfig {
    fn kind(&self) -> &'static str {
        "pulsar"
    }

    fn start(&self, start: SourceStart) -> BoxFuture<'_, Result<RunningSource, SourceError>> {
        Box::pin(async move {
            let client = match PulsarSource::connect(self, start.max_in_flight).await {
                Ok(client) => client,
                Err(PulsarError::Connect { source, .. }) if refusal::is_fatal_connect(&source) => {
                    let config = self.clone();
                    let oauth2 = match config.auth.as_ref().and_then(|a| a.oauth2.as_ref()) {
                        Some(oauth2) => oauth2.refusal().await,
                        None => None,
                    };
                    return Err(tokio::task::spawn_blocking(move || {
                        refusal::diagnose(&config, oauth2)
                    })
                    .await
                    .expect("diagnosing a refused Pulsar connection panicked"));
                }
                Err(error) => return Err(SourceError::client(error)),
            };
            Ok(start.run(client))
        })
    }

    /// A failover subscription moves partitions to a standby instance, one at a time.
    fn hands_over_partitions(&self) -> bool {
        self.subscription_type == Some(SubscriptionType::Failover)
    }
}

/// The Java client's `MessageId.toString()` shape.
fn format_message_id(id: &MessageIdData) -> String {
    format!(
        "{}:{}:{}:{}",
        id.ledger_id,
        id.entry_id,
        id.partition.unwrap_or(-1),
        id.batch_index.unwrap_or(-1)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_id_prints_like_the_java_client() {
        let id = MessageIdData {
            ledger_id: 7,
            entry_id: 12,
            ..Default::default()
        };
        assert_eq!(format_message_id(&id), "7:12:-1:-1");
        let id = MessageIdData {
            partition: Some(2),
            batch_index: Some(3),
            ..id
        };
        assert_eq!(format_message_id(&id), "7:12:2:3");
    }
}
