//! `[pipeline.source]` with `kind = "pulsar"`.

use serde::Deserialize;

use crate::config::{ExactlyOnceMode, Guaranteeing, Invalid, non_empty};

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

    /// Checks the section; keys are relative to it. Exactly-once needs each partition read by
    /// one consumer at a time: with transactions an exclusive or a failover subscription (a
    /// standby that takes a partition over fences the writer of the instance that had it);
    /// read back, an exclusive one (a standby would take over without reading back).
    pub fn validate(&self, guaranteeing: Guaranteeing) -> Result<(), Invalid> {
        if !self.url.starts_with("pulsar://") && !self.url.starts_with("pulsar+ssl://") {
            return Err((
                "url".into(),
                format!("{:?} must start with pulsar:// or pulsar+ssl://", self.url),
            ));
        }
        non_empty("topic", &self.topic)?;
        non_empty("subscription", &self.subscription)?;
        let subscription_type = self.subscription_type.unwrap_or_default();
        let Guaranteeing::ExactlyOnce(mode) = guaranteeing else {
            return Ok(());
        };
        let refused = match (mode, subscription_type) {
            (_, SubscriptionType::Exclusive)
            | (ExactlyOnceMode::Transactions, SubscriptionType::Failover) => None,
            (ExactlyOnceMode::ReadBack, SubscriptionType::Failover) => Some(
                "use \"exclusive\": with exactly_once.mode = \"read-back\" a failover standby \
                 would take over without reading back what the active consumer wrote (with \
                 transactions, the default mode, failover is safe)",
            ),
            (_, SubscriptionType::Shared | SubscriptionType::KeyShared) => Some(
                "use \"exclusive\" or, with transactions, \"failover\": shared and key_shared \
                 split a partition over consumers, so no single writer owns its progress",
            ),
        };
        if let Some(why) = refused {
            return Err((
                "subscription_type".into(),
                format!(
                    "{:?} does not go with guarantee = \"exactly-once\", which needs each source \
                     partition read by one consumer at a time: {why}",
                    subscription_type.as_str()
                ),
            ));
        }
        Ok(())
    }
}
