//! The `sluice.toml` file: parsing, `${ENV}` interpolation and validation.
//!
//! Every error names the offending key path (e.g. `pipeline[0].sink.topic`), so a user can find
//! it without reading our source.

mod interpolate;
mod values;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::transform::{Capabilities, Limits, TransformSpec};

pub use values::Secret;

/// A configuration that could not be read, parsed or validated. Always a user error (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path:?}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path:?} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path:?}: `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

/// The whole file: an optional admin section and one or more pipelines.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    #[serde(rename = "pipeline", default)]
    pub pipelines: Vec<PipelineConfig>,
}

/// `[admin]`: the admin HTTP API (deploy, status, metrics).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    #[serde(default = "default_admin_listen")]
    pub listen: String,
    /// When set, every mutating call needs `Authorization: Bearer <token>`. Required when
    /// `listen` is not a loopback address.
    #[serde(default)]
    pub token: Option<Secret>,
    /// Where deployed components and their version history live; relative paths are
    /// resolved against the config file's directory. Default: `$XDG_STATE_HOME/sluice`, else
    /// `~/.local/state/sluice`.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
}

fn default_admin_listen() -> String {
    "127.0.0.1:9650".to_owned()
}

impl AdminConfig {
    /// The configured state dir, else the per-user default.
    pub fn state_dir(&self) -> Option<PathBuf> {
        self.state_dir.clone().or_else(|| {
            std::env::var_os("XDG_STATE_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state"))
                })
                .map(|dir| dir.join("sluice"))
        })
    }

    fn validate(&self) -> Result<(), (String, String)> {
        let address: std::net::SocketAddr = self.listen.parse().map_err(|_| {
            (
                "admin.listen".to_owned(),
                format!("{:?} is not an IP:PORT address", self.listen),
            )
        })?;
        if !address.ip().is_loopback() && self.token.is_none() {
            return Err((
                "admin.listen".into(),
                format!(
                    "{address} is not a loopback address: set `admin.token` (anyone who can \
                     reach the admin API could deploy code into the pipelines)"
                ),
            ));
        }
        if self.token.as_ref().is_some_and(|t| t.expose().is_empty()) {
            return Err(("admin.token".into(), "must not be empty".into()));
        }
        Ok(())
    }
}

/// Delivery guarantee of a pipeline (DESIGN §6).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Guarantee {
    #[default]
    AtLeastOnce,
    ExactlyOnce,
}

/// `[[pipeline]]`: one source, a chain of transforms, one sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    pub name: String,
    #[serde(default)]
    pub guarantee: Guarantee,
    /// Most source records held between the source read and the source ack. Bounds memory:
    /// a slow Kafka slows the source read instead.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Most records handed to a transform in one call.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Transform lanes: records are spread over this many lanes by key, each with its own
    /// instances, so records of one key stay in order while different keys run in parallel.
    #[serde(default = "default_parallelism")]
    pub parallelism: usize,
    /// Exactly-once: how many records of each output partition are read back at start (and
    /// after a Kafka failure), and how many source ids the pipeline remembers while it runs.
    /// A source record redelivered after its outputs left this window is written again.
    #[serde(default = "default_dedup_window")]
    pub dedup_window: usize,
    pub source: SourceConfig,
    #[serde(rename = "transform", default)]
    pub transforms: Vec<TransformConfig>,
    pub sink: SinkConfig,
}

fn default_max_in_flight() -> usize {
    10_000
}

fn default_batch_size() -> usize {
    256
}

fn default_parallelism() -> usize {
    1
}

/// Most lanes a pipeline may run: each holds its own instances of every transform.
pub const MAX_PARALLELISM: usize = 64;

fn default_dedup_window() -> usize {
    100_000
}

/// `[pipeline.source]`, told apart by `kind`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceConfig {
    Pulsar(PulsarSourceConfig),
    GcpPubsub(PubSubSourceConfig),
}

impl SourceConfig {
    /// The `kind` as written in the config.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::Pulsar(_) => "pulsar",
            SourceConfig::GcpPubsub(_) => "gcp_pubsub",
        }
    }
}

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

/// `kind = "gcp_pubsub"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PubSubSourceConfig {
    pub project: String,
    pub subscription: String,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub key_attribute: Option<String>,
    /// How messages are pulled.
    #[serde(default)]
    pub pull: PubSubPull,
}

/// How the Pub/Sub source pulls: repeated unary Pull calls, or one long-lived streaming pull.
/// Both lease, ack and nack the same way. Unary is the default: as fast on the emulator, and
/// the emulator redelivers what a killed unary puller held (README, "Pub/Sub pull modes").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PubSubPull {
    #[default]
    Unary,
    Streaming,
}

/// `[[pipeline.transform]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformConfig {
    /// Defaults to the component's file stem.
    #[serde(default)]
    pub name: Option<String>,
    /// Relative paths are resolved against the config file's directory.
    pub component: PathBuf,
    #[serde(default, deserialize_with = "values::string_map")]
    pub config: BTreeMap<String, String>,
    #[serde(default)]
    pub limits: Limits,
    /// What the transform may reach beyond its records; nothing unless granted here.
    #[serde(default)]
    pub capabilities: Capabilities,
}

/// `[pipeline.sink]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
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
    /// Any librdkafka producer property; values may be strings, numbers or booleans.
    #[serde(default, deserialize_with = "values::secret_map")]
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

/// `sink.oversized`: a record Kafka cannot take (larger than `message.max.bytes`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OversizedPolicy {
    /// Dead-letter the source record with kind `too-large`, its value left out (the copy must
    /// fit), and go on.
    #[default]
    DeadLetter,
    /// Stop the pipeline with an error; the record is not acked and comes back on restart.
    Fail,
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

impl Config {
    /// Reads, interpolates, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base_dir = path.parent().map(Path::to_owned).unwrap_or_default();
        Self::parse(&text, path, &base_dir)
    }

    /// Parses config text; `path` only names the file in errors, `base_dir` resolves
    /// relative component paths.
    pub fn parse(text: &str, path: &Path, base_dir: &Path) -> Result<Self, ConfigError> {
        let mut value: toml::Value = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        interpolate::interpolate_env(&mut value, &|name| std::env::var(name).ok()).map_err(
            |(key, message)| ConfigError::Invalid {
                path: path.to_owned(),
                key,
                message,
            },
        )?;
        let mut config: Config = serde_path_to_error::deserialize(value).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::Invalid {
                path: path.to_owned(),
                key,
                message: e.into_inner().to_string(),
            }
        })?;
        if let Some(admin) = &mut config.admin
            && let Some(state_dir) = &mut admin.state_dir
            && state_dir.is_relative()
        {
            *state_dir = base_dir.join(&*state_dir);
        }
        for pipeline in &mut config.pipelines {
            if let SourceConfig::Pulsar(pulsar) = &mut pipeline.source {
                pulsar
                    .subscription_type
                    .get_or_insert(match pipeline.guarantee {
                        Guarantee::ExactlyOnce => SubscriptionType::Exclusive,
                        Guarantee::AtLeastOnce => SubscriptionType::Failover,
                    });
            }
            for transform in &mut pipeline.transforms {
                if transform.component.is_relative() {
                    transform.component = base_dir.join(&transform.component);
                }
            }
        }
        config
            .validate()
            .map_err(|(key, message)| ConfigError::Invalid {
                path: path.to_owned(),
                key,
                message,
            })?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), (String, String)> {
        if let Some(admin) = &self.admin {
            admin.validate()?;
        }
        if self.pipelines.is_empty() {
            return Err((
                "pipeline".into(),
                "at least one [[pipeline]] is required".into(),
            ));
        }
        let mut names = HashSet::new();
        for (i, pipeline) in self.pipelines.iter().enumerate() {
            let at = |key: &str| format!("pipeline[{i}].{key}");
            if pipeline.name.trim().is_empty() {
                return Err((at("name"), "must not be empty".into()));
            }
            if !names.insert(pipeline.name.as_str()) {
                return Err((
                    at("name"),
                    format!("duplicate pipeline name {:?}", pipeline.name),
                ));
            }
            pipeline
                .validate()
                .map_err(|(key, message)| (at(&key), message))?;
        }
        Ok(())
    }
}

impl PipelineConfig {
    fn validate(&self) -> Result<(), (String, String)> {
        if self.max_in_flight == 0 {
            return Err(("max_in_flight".into(), "must be at least 1".into()));
        }
        if self.batch_size == 0 || self.batch_size > self.max_in_flight {
            return Err((
                "batch_size".into(),
                format!(
                    "must be between 1 and max_in_flight ({})",
                    self.max_in_flight
                ),
            ));
        }
        match &self.source {
            SourceConfig::Pulsar(pulsar) => {
                if !pulsar.url.starts_with("pulsar://") && !pulsar.url.starts_with("pulsar+ssl://")
                {
                    return Err((
                        "source.url".into(),
                        format!(
                            "{:?} must start with pulsar:// or pulsar+ssl://",
                            pulsar.url
                        ),
                    ));
                }
                non_empty("source.topic", &pulsar.topic)?;
                non_empty("source.subscription", &pulsar.subscription)?;
                let subscription_type = pulsar.subscription_type.unwrap_or_default();
                if self.guarantee == Guarantee::ExactlyOnce
                    && subscription_type != SubscriptionType::Exclusive
                {
                    return Err((
                        "source.subscription_type".into(),
                        format!(
                            "{:?} does not go with guarantee = \"exactly-once\", which needs one \
                             writer per source partition: use \"exclusive\" (a failover standby \
                             takes over without reading back what the active consumer wrote; \
                             shared and key_shared split a partition over consumers)",
                            subscription_type.as_str()
                        ),
                    ));
                }
            }
            SourceConfig::GcpPubsub(pubsub) => {
                non_empty("source.project", &pubsub.project)?;
                non_empty("source.subscription", &pubsub.subscription)?;
                if let Some(endpoint) = &pubsub.endpoint {
                    non_empty("source.endpoint", endpoint)?;
                    // Unary pull connects to an endpoint in plain text only (as the emulator
                    // expects); on GCP it uses the default endpoint over TLS.
                    if pubsub.pull == PubSubPull::Unary && endpoint.starts_with("https://") {
                        return Err((
                            "source.endpoint".into(),
                            format!(
                                "{endpoint:?}: pull = \"unary\" supports plain-text endpoints (http:// or host:port, e.g. the emulator) only"
                            ),
                        ));
                    }
                }
            }
        }
        if !(1..=MAX_PARALLELISM).contains(&self.parallelism) {
            return Err((
                "parallelism".into(),
                format!("must be between 1 and {MAX_PARALLELISM}"),
            ));
        }
        if self.guarantee == Guarantee::ExactlyOnce && self.dedup_window < self.max_in_flight {
            return Err((
                "dedup_window".into(),
                format!(
                    "must be at least max_in_flight ({}): every record in flight at a crash \
                     must be found again when the pipeline restarts",
                    self.max_in_flight
                ),
            ));
        }
        let mut transform_names = HashSet::new();
        for (t, transform) in self.transforms.iter().enumerate() {
            let name = transform.name();
            if !transform_names.insert(name.clone()) {
                return Err((
                    format!("transform[{t}].name"),
                    format!("duplicate transform name {name:?} in this pipeline; set `name`"),
                ));
            }
            validate_limits(&transform.limits)
                .map_err(|(k, m)| (format!("transform[{t}].limits.{k}"), m))?;
        }
        self.sink
            .validate()
            .map_err(|(key, message)| (format!("sink.{key}"), message))
    }

    /// The transform chain this pipeline runs, in order.
    pub fn transform_specs(&self) -> Vec<TransformSpec> {
        self.transforms
            .iter()
            .map(|t| TransformSpec {
                name: t.name(),
                component: t.component.clone(),
                config: t.config.clone(),
                limits: t.limits.clone(),
                capabilities: t.capabilities.clone(),
            })
            .collect()
    }
}

impl SinkConfig {
    /// Every topic this sink may write to when outputs can only go where the config says:
    /// the sink topic, the dead-letter topic and the route topics.
    pub fn declared_topics(&self) -> Vec<String> {
        let mut topics = vec![self.topic.clone()];
        topics.extend(self.dead_letter_topic.clone());
        topics.extend(self.route_topics.iter().cloned());
        topics
    }
}

impl TransformConfig {
    /// The configured name, else the component's file stem.
    pub fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            self.component
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "transform".to_owned())
        })
    }
}

/// Producer properties Sluice sets itself because its delivery guarantee rests on them.
const GUARANTEE_PROPERTIES: [(&str, &str); 2] = [("enable.idempotence", "true"), ("acks", "all")];

impl SinkConfig {
    fn validate(&self) -> Result<(), (String, String)> {
        non_empty("brokers", &self.brokers)?;
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

fn validate_limits(limits: &Limits) -> Result<(), (String, String)> {
    let at_least = |key: &str, value: u64, min: u64| {
        if value < min {
            Err((key.to_owned(), format!("must be at least {min}")))
        } else {
            Ok(())
        }
    };
    at_least("memory_mib", limits.memory_mib.into(), 1)?;
    // The epoch ticks every 10 ms: a shorter deadline could not be kept.
    at_least("batch_timeout_ms", limits.batch_timeout_ms, 10)?;
    at_least(
        "max_outputs_per_record",
        limits.max_outputs_per_record.into(),
        1,
    )?;
    at_least(
        "max_output_bytes_per_record",
        limits.max_output_bytes_per_record,
        1,
    )
}

fn non_empty(key: &str, value: &str) -> Result<(), (String, String)> {
    if value.trim().is_empty() {
        return Err((key.into(), "must not be empty".into()));
    }
    Ok(())
}

/// Kafka's own rule for topic names.
pub fn check_topic_name(key: &str, topic: &str) -> Result<(), (String, String)> {
    let valid_chars = topic
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if topic.is_empty() || topic.len() > 249 || !valid_chars || topic == "." || topic == ".." {
        return Err((
            key.into(),
            format!("{topic:?} is not a valid Kafka topic name ([A-Za-z0-9._-], 1 to 249 chars)"),
        ));
    }
    Ok(())
}

impl fmt::Display for Guarantee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Guarantee::AtLeastOnce => "at-least-once",
            Guarantee::ExactlyOnce => "exactly-once",
        })
    }
}

#[cfg(test)]
mod tests;
