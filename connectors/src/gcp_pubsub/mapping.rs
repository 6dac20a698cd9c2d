//! How a Pub/Sub message becomes a record, and where the subscription is: the same for
//! both pull modes.

use std::sync::Arc;

use sluice_record::InputRecord;

use super::config::PubSubSourceConfig;
use crate::source::metadata;
pub(super) use crate::source::metadata::PubSubMessageParts as MessageParts;

/// How the messages of one subscription become records, the same in both pull modes.
pub(super) struct RecordMapping {
    /// Shared by every record (no copy per record).
    subscription: Arc<str>,
    key_attribute: Option<String>,
}

impl RecordMapping {
    pub(super) fn new(config: &PubSubSourceConfig) -> Self {
        Self {
            subscription: subscription_path(config).into(),
            key_attribute: config.key_attribute.clone(),
        }
    }

    /// `projects/P/subscriptions/S`.
    pub(super) fn subscription(&self) -> &str {
        &self.subscription
    }

    /// Maps a message (docs/delivery-guarantees.md, "Source metadata"; the mapping itself is
    /// `source::metadata`).
    pub(super) fn to_input_record(&self, message: MessageParts<'_>) -> InputRecord {
        metadata::pubsub_record(message, &self.subscription, self.key_attribute.as_deref())
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
            credentials_file: None,
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
