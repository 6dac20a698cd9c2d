//! `[pipeline.sink]`: Kafka.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::config::{ExactlyOnceMode, Guaranteeing, Invalid, Secret, non_empty, secret_map};
use crate::sink::{OversizedPolicy, SinkError};

use super::security::{self, KafkaSaslConfig, KafkaTlsConfig};

/// `[pipeline.sink]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    pub kind: SinkKind,
    pub brokers: String,
    pub topic: String,
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
    /// Topics a transform may route outputs to besides `topic`. With exactly-once these are
    /// read back at start, and an output routed anywhere else is dead-lettered
    /// (`undeclared-topic`): what was written there could not be found again.
    #[serde(default)]
    pub route_topics: Vec<String>,
    /// TLS to the brokers (custom CA, mutual TLS, hostname verification).
    #[serde(default)]
    pub tls: Option<KafkaTlsConfig>,
    /// SASL authentication (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512).
    #[serde(default)]
    pub sasl: Option<KafkaSaslConfig>,
    /// Any librdkafka producer property; values may be strings, numbers or booleans.
    #[serde(default, deserialize_with = "secret_map")]
    pub properties: BTreeMap<String, Secret>,
    /// Create missing topics (sink, dead-letter and routed ones) instead of failing.
    #[serde(default)]
    pub create_topics: bool,
    /// Partitions of topics Sluice creates.
    #[serde(default = "default_topic_partitions")]
    pub topic_partitions: i32,
    /// What to do with a record larger than the producer's `message.max.bytes`.
    #[serde(default)]
    pub oversized: OversizedPolicy,
}

fn default_topic_partitions() -> i32 {
    1
}

/// The only sink so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    Kafka,
}

/// Producer properties Sluice sets itself because its delivery guarantee rests on them.
const GUARANTEE_PROPERTIES: [(&str, &str); 2] = [("enable.idempotence", "true"), ("acks", "all")];

impl KafkaSinkConfig {
    /// Every topic this sink may write to when outputs can only go where the config says:
    /// the sink topic, the dead-letter topic and the route topics.
    pub fn declared_topics(&self) -> Vec<String> {
        let mut topics = vec![self.topic.clone()];
        topics.extend(self.dead_letter_topic.clone());
        topics.extend(self.route_topics.iter().cloned());
        topics
    }

    /// Resolves relative credential files against `base_dir` and reads the password file;
    /// keys are relative to the section.
    pub fn resolve_credentials(&mut self, base_dir: &Path) -> Result<(), Invalid> {
        security::resolve(self.tls.as_mut(), self.sasl.as_mut(), base_dir)
    }

    /// Sets the connection's security (the `tls` and `sasl` sections) on a librdkafka config.
    pub(super) fn apply_security(&self, client: &mut rdkafka::ClientConfig) {
        security::apply(self.tls.as_ref(), self.sasl.as_ref(), client);
    }

    /// Checks the section; keys are relative to it.
    pub fn validate(&self, guaranteeing: Guaranteeing) -> Result<(), Invalid> {
        let transactions = guaranteeing == Guaranteeing::ExactlyOnce(ExactlyOnceMode::Transactions);
        if transactions && self.properties.contains_key("transactional.id") {
            return Err((
                "properties.\"transactional.id\"".into(),
                "must not be set: exactly-once gives each writer (a pipeline and a source \
                 partition) its own, derived from exactly_once.transactional_id_prefix and the \
                 pipeline name"
                    .into(),
            ));
        }
        non_empty("brokers", &self.brokers)?;
        security::validate(self.tls.as_ref(), self.sasl.as_ref(), &self.properties)?;
        check_topic_name("topic", &self.topic)?;
        if let Some(dlq) = &self.dead_letter_topic {
            check_topic_name("dead_letter_topic", dlq)?;
            if dlq == &self.topic {
                return Err((
                    "dead_letter_topic".into(),
                    "must differ from the sink topic".into(),
                ));
            }
        }
        for (name, required) in GUARANTEE_PROPERTIES {
            if let Some(value) = self.properties.get(name) {
                let ok = value.expose() == required || (name == "acks" && value.expose() == "-1");
                if !ok {
                    return Err((
                        format!("properties.{name:?}"),
                        format!("must stay {required:?}: at-least-once delivery rests on it"),
                    ));
                }
            }
        }
        if self.topic_partitions < 1 {
            return Err(("topic_partitions".into(), "must be at least 1".into()));
        }
        for (r, topic) in self.route_topics.iter().enumerate() {
            check_topic_name(&format!("route_topics[{r}]"), topic)?;
        }
        Ok(())
    }
}

/// Kafka's own rule for topic names, for the config key `key`.
pub fn check_topic_name(key: &str, topic: &str) -> Result<(), Invalid> {
    sluice_record::validation::check_topic_name(topic).map_err(|problem| (key.into(), problem))
}

/// librdkafka refused a configuration built from this section.
pub(super) fn config_error(error: rdkafka::error::KafkaError) -> SinkError {
    SinkError::Config(error.into())
}
