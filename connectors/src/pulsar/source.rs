//! Pulsar source on the `pulsar` crate: individual acks, sent only after delivery to Kafka.

use std::collections::{HashMap, HashSet};

use futures::StreamExt;
use futures::future::BoxFuture;
use pulsar::consumer::InitialPosition as PulsarInitialPosition;
use pulsar::proto::MessageIdData;
use pulsar::{Consumer, ConsumerOptions, Pulsar, SubType, TokioExecutor};
use sluice_record::{Header, InputRecord, SourceInfo, SourceKind};

use super::config::{InitialPosition, PulsarSourceConfig, SubscriptionType};
use super::error::PulsarError;
use crate::source::{
    ConnectSource, Received, RunningSource, SourceClient, SourceError, SourceStart,
};

/// Pulsar's own default receiver queue; we go lower when the in-flight budget is smaller, so
/// the client never buffers more than the pipeline may hold.
const MAX_RECEIVER_QUEUE: usize = 1000;

/// A message id as a hashable key: topic, ledger, entry, partition, batch index.
type MessageKey = (String, u64, u64, i32, i32);

fn message_key(topic: &str, id: &MessageIdData) -> MessageKey {
    (
        topic.to_owned(),
        id.ledger_id,
        id.entry_id,
        id.partition.unwrap_or(-1),
        id.batch_index.unwrap_or(-1),
    )
}

/// What acks one Pulsar message: its topic and id.
pub struct PulsarToken {
    topic: String,
    id: MessageIdData,
    /// Messages in the batch (entry) this one came in; 1 when unbatched.
    batch_size: u32,
}

pub struct PulsarSource {
    consumer: Consumer<Vec<u8>, TokioExecutor>,
    topic: String,
    /// Acked batch indexes per batched entry not yet fully acked. pulsar-rs acks a batch
    /// index without an ack set, which a broker takes as an ack of the whole entry: acking
    /// the first message of a batch would drop the rest of it if the runtime then stopped.
    /// So an entry is acked only once every message of its batch is.
    partial_batches: HashMap<EntryKey, HashSet<i32>>,
}

/// A batched entry: topic, ledger, entry, partition.
type EntryKey = (String, u64, u64, i32);

impl PulsarSource {
    pub async fn connect(
        config: &PulsarSourceConfig,
        max_in_flight: usize,
    ) -> Result<Self, PulsarError> {
        let client = Pulsar::builder(&config.url, TokioExecutor)
            .build()
            .await
            .map_err(|source| PulsarError::Connect {
                url: config.url.clone(),
                source,
            })?;
        let options = ConsumerOptions {
            receiver_queue_size: Some(max_in_flight.min(MAX_RECEIVER_QUEUE) as u32),
            initial_position: match config.initial_position {
                InitialPosition::Earliest => PulsarInitialPosition::Earliest,
                InitialPosition::Latest => PulsarInitialPosition::Latest,
            },
            durable: Some(true),
            ..ConsumerOptions::default()
        };
        let consumer = client
            .consumer()
            .with_topic(&config.topic)
            .with_subscription(&config.subscription)
            .with_subscription_type(sub_type(config.subscription_type.unwrap_or_default()))
            .with_consumer_name(format!("sluice-{}", std::process::id()))
            .with_options(options)
            .build::<Vec<u8>>()
            .await
            .map_err(|source| PulsarError::Subscribe {
                topic: config.topic.clone(),
                subscription: config.subscription.clone(),
                source,
            })?;
        tracing::info!(
            messaging.system = "pulsar",
            topic = %config.topic,
            subscription = %config.subscription,
            "subscribed"
        );
        Ok(Self {
            consumer,
            topic: config.topic.clone(),
            partial_batches: HashMap::new(),
        })
    }

    async fn acknowledge(&mut self, token: PulsarToken, positive: bool) {
        let PulsarToken {
            topic,
            id,
            batch_size,
        } = token;
        if positive && batch_size > 1 {
            let entry = (
                topic.clone(),
                id.ledger_id,
                id.entry_id,
                id.partition.unwrap_or(-1),
            );
            let acked = self.partial_batches.entry(entry.clone()).or_default();
            acked.insert(id.batch_index.unwrap_or(-1));
            if acked.len() < batch_size as usize {
                return;
            }
            self.partial_batches.remove(&entry);
        }
        let result = if positive {
            self.consumer.ack_with_id(&topic, id.clone()).await
        } else {
            self.consumer.nack_with_id(&topic, id.clone()).await
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

impl SourceClient for PulsarSource {
    type Token = PulsarToken;
    type Key = MessageKey;
    type Error = PulsarError;
    const SYSTEM: &'static str = "pulsar";
    const WHILE_STALLED: &'static str =
        "the unacked messages stay assigned to this consumer until acked or disconnected";

    async fn receive(&mut self) -> Result<Option<Received<PulsarToken, MessageKey>>, PulsarError> {
        let message = match self.consumer.next().await {
            Some(Ok(message)) => message,
            Some(Err(source)) => {
                return Err(PulsarError::Receive {
                    topic: self.topic.clone(),
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
        Ok(Some(Received {
            record: to_input_record(&message),
            key: message_key(&message.topic, &id),
            token: PulsarToken {
                topic: message.topic.clone(),
                id,
                batch_size,
            },
        }))
    }

    fn key_of(token: &PulsarToken) -> MessageKey {
        message_key(&token.topic, &token.id)
    }

    async fn ack(&mut self, token: PulsarToken) {
        self.acknowledge(token, true).await;
    }

    async fn nack(&mut self, token: PulsarToken) {
        self.acknowledge(token, false).await;
    }

    async fn close(&mut self) {
        if let Err(error) = self.consumer.close().await {
            tracing::warn!(messaging.system = "pulsar", %error, "closing the consumer failed");
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

/// Maps a Pulsar message (docs/delivery-guarantees.md, "Source metadata"): key → key,
/// properties → headers, event time and publish time kept, message id as
/// `ledger:entry:partition:batch`.
fn to_input_record(message: &pulsar::consumer::Message<Vec<u8>>) -> InputRecord {
    let metadata = message.metadata();
    let key = message.key_bytes().unwrap_or_else(|error| {
        tracing::warn!(messaging.system = "pulsar", %error, "undecodable key; treating it as absent");
        None
    });
    let value = (!metadata.null_value.unwrap_or(false)).then(|| message.payload.data.clone());
    InputRecord {
        key,
        value,
        headers: metadata
            .properties
            .iter()
            .map(|p| Header::new(&p.key, p.value.as_bytes()))
            .collect(),
        event_time_ms: metadata.event_time.filter(|&t| t > 0).map(|t| t as i64),
        publish_time_ms: Some(metadata.publish_time as i64),
        source: SourceInfo {
            kind: SourceKind::Pulsar,
            topic: message.topic.clone(),
            message_id: format_message_id(&message.message_id.id),
        },
    }
}

impl ConnectSource for PulsarSourceConfig {
    fn kind(&self) -> &'static str {
        "pulsar"
    }

    fn start(&self, start: SourceStart) -> BoxFuture<'_, Result<RunningSource, SourceError>> {
        Box::pin(async move {
            let client = PulsarSource::connect(self, start.max_in_flight)
                .await
                .map_err(SourceError::client)?;
            Ok(start.run(client))
        })
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
