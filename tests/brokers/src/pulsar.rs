//! Publishing to Apache Pulsar from tests and the demo.

use std::time::Duration;

use anyhow::{Context, Result};
use pulsar::{ProducerOptions, Pulsar, TokioExecutor};

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
    publish(url, topic, records, Some(500)).await
}

/// Like [`publish_to_pulsar`], one message per entry: a key_shared subscription hands a
/// whole entry to the consumer of its first key, so a batch mixing keys would give some keys
/// to two consumers at once (Pulsar's answer is key-based batching, which pulsar-rs lacks).
pub async fn publish_to_pulsar_unbatched(
    url: &str,
    topic: &str,
    records: &[PulsarRecord],
) -> Result<()> {
    publish(url, topic, records, None).await
}

async fn publish(
    url: &str,
    topic: &str,
    records: &[PulsarRecord],
    batch_size: Option<u32>,
) -> Result<()> {
    let client = Pulsar::builder(url, TokioExecutor)
        .build()
        .await
        .with_context(|| format!("cannot connect to Pulsar at {url}"))?;
    let mut producer = client
        .producer()
        .with_topic(topic)
        .with_options(ProducerOptions {
            batch_size,
            batch_timeout: batch_size.map(|_| Duration::from_millis(20)),
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
    if batch_size.is_some() {
        producer
            .send_batch()
            .await
            .context("flushing the producer batch failed")?;
    }
    for receipt in receipts {
        receipt
            .await
            .context("Pulsar did not acknowledge a message")?;
    }
    producer.close().await.ok();
    Ok(())
}

/// The `seq` property of every message a new exclusive subscription `subscription` reads from
/// the start of `topic`, acking each, until `idle` passes without a message.
pub async fn read_pulsar_seqs(
    url: &str,
    topic: &str,
    subscription: &str,
    idle: Duration,
) -> Result<Vec<u64>> {
    use futures::StreamExt;
    use pulsar::consumer::InitialPosition;
    use pulsar::{Consumer, ConsumerOptions, SubType};

    let client = Pulsar::builder(url, TokioExecutor)
        .build()
        .await
        .with_context(|| format!("cannot connect to Pulsar at {url}"))?;
    let mut consumer: Consumer<Vec<u8>, _> = client
        .consumer()
        .with_topic(topic)
        .with_subscription(subscription)
        .with_subscription_type(SubType::Exclusive)
        .with_options(ConsumerOptions {
            initial_position: InitialPosition::Earliest,
            durable: Some(true),
            ..ConsumerOptions::default()
        })
        .build()
        .await
        .with_context(|| format!("cannot subscribe to {topic}"))?;
    let mut seqs = Vec::new();
    while let Ok(Some(message)) = tokio::time::timeout(idle, consumer.next()).await {
        let message = message.context("receiving from Pulsar failed")?;
        let seq = message
            .metadata()
            .properties
            .iter()
            .find(|p| p.key == "seq")
            .and_then(|p| p.value.parse().ok())
            .context("a message without a numeric seq property")?;
        seqs.push(seq);
        consumer.ack(&message).await.context("ack failed")?;
    }
    consumer.close().await.ok();
    Ok(seqs)
}
