//! `[pipeline.source]` with `kind = "pulsar"`.

use serde::Deserialize;

use crate::config::{Invalid, non_empty};

/// `kind = "pulsar"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PulsarSourceConfig {
    pub url: String,
    pub topic: String,
    pub subscription: String,
    /// Default (filled in at load): `exclusive` with `guarantee = "exactly-once"`, else
    /// `failover`.
    #[serde(default)]
    pub subscription_type: Option<SubscriptionType>,
    /// Where a new subscription starts. Earliest, so nothing published before the first start
    /// is skipped.
    #[serde(default)]
    pub initial_position: InitialPosition,
}

/// Pulsar subscription types.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionType {
    Exclusive,
    #[default]
    Failover,
    Shared,
    KeyShared,
}

impl SubscriptionType {
    /// The name as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionType::Exclusive => "exclusive",
            SubscriptionType::Failover => "failover",
            SubscriptionType::Shared => "shared",
            SubscriptionType::KeyShared => "key_shared",
        }
    }
}

/// Where a new Pulsar subscription starts reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitialPosition {
    #[default]
    Earliest,
    Latest,
}

impl PulsarSourceConfig {
    /// Fills in what depends on the pipeline's guarantee: the subscription type.
    pub fn fill_defaults(&mut self, exactly_once: bool) {
        self.subscription_type.get_or_insert(if exactly_once {
            SubscriptionType::Exclusive
        } else {
            SubscriptionType::Failover
        });
    }

    /// Checks the section; keys are relative to it. Exactly-once (the read-back mode) needs
    /// one writer per source partition: an exclusive subscription.
    pub fn validate(&self, exactly_once: bool) -> Result<(), Invalid> {
        if !self.url.starts_with("pulsar://") && !self.url.starts_with("pulsar+ssl://") {
            return Err((
                "url".into(),
                format!("{:?} must start with pulsar:// or pulsar+ssl://", self.url),
            ));
        }
        non_empty("topic", &self.topic)?;
        non_empty("subscription", &self.subscription)?;
        let subscription_type = self.subscription_type.unwrap_or_default();
        if exactly_once && subscription_type != SubscriptionType::Exclusive {
            return Err((
                "subscription_type".into(),
                format!(
                    "{:?} does not go with guarantee = \"exactly-once\", which needs one \
                     writer per source partition: use \"exclusive\" (a failover standby \
                     takes over without reading back what the active consumer wrote; \
                     shared and key_shared split a partition over consumers)",
                    subscription_type.as_str()
                ),
            ));
        }
        Ok(())
    }
}
