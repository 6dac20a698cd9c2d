//! Pulsar source on the `pulsar` crate: individual acks, sent only after delivery to Kafka.

use std::time::Duration;

use futures::StreamExt;
use pulsar::consumer::InitialPosition as PulsarInitialPosition;
use pulsar::proto::MessageIdData;
use pulsar::{Consumer, ConsumerOptions, Pulsar, SubType, TokioExecutor};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::redelivery::{Delivery, RedeliveryFilter};
use super::{AckCommand, AckHandle, AckToken, InFlight, RunningSource, SourceError, SourceMessage};
use crate::config::{InitialPosition, PulsarSourceConfig, SubscriptionType};
use crate::record::{Header, InputRecord, SourceInfo, SourceKind};

/// Pulsar's own default receiver queue; we go lower when the in-flight budget is smaller, so
/// the client never buffers more than the pipeline may hold.
const MAX_RECEIVER_QUEUE: usize = 1000;

/// Acked message ids remembered to drop redeliveries (about 100 bytes each).
const REMEMBERED_ACKS: usize = 100_000;

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

pub struct PulsarSource {
    consumer: Consumer<Vec<u8>, TokioExecutor>,
    topic: String,
    max_in_flight: usize,
    redeliveries: RedeliveryFilter<MessageKey>,
    dropped_redeliveries: u64,
}

impl PulsarSource {
    pub async fn connect(
        config: &PulsarSourceConfig,
        max_in_flight: usize,
    ) -> Result<Self, SourceError> {
        let client = Pulsar::builder(&config.url, TokioExecutor)
            .build()
            .await
            .map_err(|source| SourceError::PulsarConnect {
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
            .with_subscription_type(sub_type(config.subscription_type))
            .with_consumer_name(format!("sluice-{}", std::process::id()))
            .with_options(options)
            .build::<Vec<u8>>()
            .await
            .map_err(|source| SourceError::PulsarSubscribe {
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
            max_in_flight,
            redeliveries: RedeliveryFilter::new(REMEMBERED_ACKS),
            dropped_redeliveries: 0,
        })
    }

    pub(crate) fn start(self, stop: CancellationToken) -> Result<RunningSource, SourceError> {
        let (records_tx, records_rx) = mpsc::channel(self.max_in_flight);
        let task = tokio::spawn(self.run(records_tx, stop));
        Ok(RunningSource {
            messages: records_rx,
            task,
        })
    }

    async fn run(
        mut self,
        records: mpsc::Sender<SourceMessage>,
        stop: CancellationToken,
    ) -> Result<(), SourceError> {
        let in_flight = InFlight::new(self.max_in_flight);
        let (ack_tx, mut ack_rx) = mpsc::unbounded_channel();
        let mut records = Some(records);
        let mut slot = None;
        let mut idle_check = tokio::time::interval(Duration::from_millis(100));
        let result = loop {
            let reading = records.is_some();
            tokio::select! {
                biased;
                Some(command) = ack_rx.recv() => self.apply(command).await,
                _ = stop.cancelled(), if reading => {
                    // Stop reading; in-flight records still drain and get acked.
                    records = None;
                }
                reserved = in_flight.reserve(), if reading && slot.is_none() => slot = Some(reserved),
                message = self.consumer.next(), if reading && slot.is_some() => {
                    let message = match message {
                        Some(Ok(message)) => message,
                        Some(Err(source)) => {
                            break Err(SourceError::PulsarReceive { topic: self.topic.clone(), source });
                        }
                        None => break Err(SourceError::PulsarStreamEnded { topic: self.topic.clone() }),
                    };
                    let key = message_key(&message.topic, &message.message_id.id);
                    match self.redeliveries.delivered(&key) {
                        Delivery::New => {}
                        seen => {
                            self.dropped_redeliveries += 1;
                            if seen == Delivery::AlreadyAcked {
                                let id = message.message_id.id.clone();
                                self.apply(AckCommand::Ack(AckToken::Pulsar { topic: message.topic.clone(), id })).await;
                            }
                            continue;
                        }
                    }
                    let token = AckToken::Pulsar {
                        topic: message.topic.clone(),
                        id: message.message_id.id.clone(),
                    };
                    let slot = slot.take().expect("a slot is reserved before reading");
                    let ack = AckHandle::new(token, ack_tx.clone(), slot);
                    let record = to_input_record(&message);
                    if let Some(sender) = &records
                        && sender.send(SourceMessage { record, ack }).await.is_err()
                    {
                        // The pipeline is gone; stop reading.
                        records = None;
                    }
                }
                _ = idle_check.tick(), if !reading => {
                    drop(slot.take());
                    if in_flight.is_idle() {
                        break Ok(());
                    }
                }
            }
        };
        while let Ok(command) = ack_rx.try_recv() {
            self.apply(command).await;
        }
        if self.dropped_redeliveries > 0 {
            tracing::info!(
                messaging.system = "pulsar",
                count = self.dropped_redeliveries,
                "dropped redeliveries of messages already in flight or acked"
            );
        }
        if let Err(error) = self.consumer.close().await {
            tracing::warn!(messaging.system = "pulsar", %error, "closing the consumer failed");
        }
        result
    }

    async fn apply(&mut self, command: AckCommand) {
        let (topic, id, result) = match command {
            AckCommand::Ack(AckToken::Pulsar { topic, id }) => {
                self.redeliveries.acked(message_key(&topic, &id));
                let result = self.consumer.ack_with_id(&topic, id.clone()).await;
                (topic, id, result)
            }
            AckCommand::Nack(AckToken::Pulsar { topic, id }) => {
                self.redeliveries.released(&message_key(&topic, &id));
                let result = self.consumer.nack_with_id(&topic, id.clone()).await;
                (topic, id, result)
            }
            AckCommand::Release(AckToken::Pulsar { topic, id }) => {
                self.redeliveries.released(&message_key(&topic, &id));
                return;
            }
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

fn sub_type(subscription_type: SubscriptionType) -> SubType {
    match subscription_type {
        SubscriptionType::Exclusive => SubType::Exclusive,
        SubscriptionType::Failover => SubType::Failover,
        SubscriptionType::Shared => SubType::Shared,
        SubscriptionType::KeyShared => SubType::KeyShared,
    }
}

/// Maps a Pulsar message per DESIGN §5: key → key, properties → headers, event time and
/// publish time kept, message id as `ledger:entry:partition:batch`.
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

/// The Java client's `MessageId.toString()` shape.
pub(crate) fn format_message_id(id: &MessageIdData) -> String {
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
