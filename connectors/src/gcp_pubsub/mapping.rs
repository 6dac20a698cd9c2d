//! How a Pub/Sub message becomes a record, and where the subscription is: the same for
//! both pull modes.

use std::collections::HashMap;

use sluice_record::{Header, InputRecord, SourceInfo, SourceKind};

use super::config::PubSubSourceConfig;

/// The parts of a Pub/Sub message that make a record, whichever client (streaming or unary)
/// received it.
pub(super) struct MessageParts<'a> {
    pub(super) data: Vec<u8>,
    pub(super) attributes: &'a HashMap<String, String>,
    pub(super) ordering_key: &'a str,
    pub(super) message_id: &'a str,
    /// (seconds, nanos) since the epoch.
    pub(super) publish_time: Option<(i64, i32)>,
}

/// How the messages of one subscription become records, the same in both pull modes.
pub(super) struct RecordMapping {
    subscription: String,
    key_attribute: Option<String>,
}

impl RecordMapping {
    pub(super) fn new(config: &PubSubSourceConfig) -> Self {
        Self {
            subscription: subscription_path(config),
            key_attribute: config.key_attribute.clone(),
        }
    }

    /// `projects/P/subscriptions/S`.
    pub(super) fn subscription(&self) -> &str {
        &self.subscription
    }

    /// Maps a message (docs/delivery-guarantees.md, "Source metadata"): ordering key (or the
    /// configured attribute) → key, attributes → headers (sorted by name: Pub/Sub keeps no
    /// order), publish time kept.
    pub(super) fn to_input_record(&self, message: MessageParts<'_>) -> InputRecord {
        let key = match &self.key_attribute {
            Some(attribute) => message
                .attributes
                .get(attribute)
                .map(|v| v.as_bytes().to_vec()),
            None => {
                (!message.ordering_key.is_empty()).then(|| message.ordering_key.as_bytes().to_vec())
            }
        };
        let mut headers: Vec<Header> = message
            .attributes
            .iter()
            .map(|(k, v)| Header::new(k, v.as_bytes()))
            .collect();
        headers.sort_by(|a, b| a.name.cmp(&b.name));
        let publish_time_ms = message
            .publish_time
            .map(|(seconds, nanos)| seconds * 1000 + i64::from(nanos) / 1_000_000);
        InputRecord {
            key,
            value: Some(message.data),
            headers,
            event_time_ms: None,
            publish_time_ms,
            source: SourceInfo {
                kind: SourceKind::GcpPubsub,
                topic: self.subscription.clone(),
                message_id: message.message_id.to_owned(),
                schema_version: None,
            },
        }
    }
}

/// `projects/P/subscriptions/S`, accepting a full path as the subscription too.
pub(super) fn subscription_path(config: &PubSubSourceConfig) -> String {
    if config.subscription.starts_with("projects/") {
        config.subscription.clone()
    } else {
        format!(
            "projects/{}/subscriptions/{}",
            config.project, config.subscription
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(subscription: &str, endpoint: Option<&str>) -> PubSubSourceConfig {
        PubSubSourceConfig {
            project: "demo".into(),
            subscription: subscription.into(),
            endpoint: endpoint.map(Into::into),
            key_attribute: None,
            pull: Default::default(),
        }
    }

    #[test]
    fn subscription_paths_and_endpoints() {
        assert_eq!(
            subscription_path(&config("orders", None)),
            "projects/demo/subscriptions/orders"
        );
        let full = "projects/other/subscriptions/x";
        assert_eq!(subscription_path(&config(full, None)), full);
        let with_endpoint = config("orders", Some("127.0.0.1:8085"));
        assert_eq!(
            with_endpoint.endpoint_url().as_deref(),
            Some("http://127.0.0.1:8085")
        );
    }
}
