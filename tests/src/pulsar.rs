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
