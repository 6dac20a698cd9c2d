//! Talking to the Pub/Sub emulator from tests: create topics and ordered subscriptions,
//! publish with ordering keys and attributes.

use anyhow::{Context, Result};
use google_cloud_auth::credentials::anonymous;
use google_cloud_pubsub::client::{Publisher, SubscriptionAdmin, TopicAdmin};
use google_cloud_pubsub::model::Message;

/// A message to publish.
#[derive(Debug, Clone, Default)]
pub struct PubSubRecord {
    pub ordering_key: String,
    pub data: Vec<u8>,
    pub attributes: Vec<(String, String)>,
}

fn url(emulator: &str) -> String {
    format!("http://{emulator}")
}

/// Creates `topic` and an ordered `subscription` on it (ack deadline 10 s, the minimum, so a
/// crashed reader's messages come back quickly).
pub async fn create_topic_and_subscription(
    emulator: &str,
    project: &str,
    topic: &str,
    subscription: &str,
) -> Result<()> {
    let topics = TopicAdmin::builder()
        .with_endpoint(url(emulator))
        .with_credentials(anonymous::Builder::new().build())
        .build()
        .await
        .context("cannot create a topic admin client")?;
    let topic_path = format!("projects/{project}/topics/{topic}");
    topics
        .create_topic()
        .set_name(&topic_path)
        .send()
        .await
        .context("create topic")?;
    create_subscription(emulator, project, topic, subscription, 10).await
}

/// Creates an ordered `subscription` on an existing `topic`; `ack_deadline_s` 0 takes the
/// emulator's default.
pub async fn create_subscription(
    emulator: &str,
    project: &str,
    topic: &str,
    subscription: &str,
    ack_deadline_s: i32,
) -> Result<()> {
    let subscriptions = SubscriptionAdmin::builder()
        .with_endpoint(url(emulator))
        .with_credentials(anonymous::Builder::new().build())
        .build()
        .await
        .context("cannot create a subscription admin client")?;
    subscriptions
        .create_subscription()
        .set_name(format!("projects/{project}/subscriptions/{subscription}"))
        .set_topic(format!("projects/{project}/topics/{topic}"))
        .set_ack_deadline_seconds(ack_deadline_s)
        .set_enable_message_ordering(true)
        .send()
        .await
        .context("create subscription")?;
    Ok(())
}

/// Publishes `records` in order (per ordering key) and waits for every message id.
pub async fn publish_to_pubsub(
    emulator: &str,
    project: &str,
    topic: &str,
    records: &[PubSubRecord],
) -> Result<()> {
    let publisher = Publisher::builder(format!("projects/{project}/topics/{topic}"))
        .with_endpoint(url(emulator))
        .with_credentials(anonymous::Builder::new().build())
        .build()
        .await
        .context("cannot create a publisher")?;
    let pending: Vec<_> = records
        .iter()
        .map(|record| {
            let mut message = Message::new()
                .set_data(record.data.clone())
                .set_attributes(record.attributes.clone());
            if !record.ordering_key.is_empty() {
                message = message.set_ordering_key(record.ordering_key.clone());
            }
            publisher.publish(message)
        })
        .collect();
    for (i, published) in pending.into_iter().enumerate() {
        published
            .await
            .with_context(|| format!("publishing message {i} failed"))?;
    }
    Ok(())
}
