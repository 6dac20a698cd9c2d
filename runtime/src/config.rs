//! The `sluice.toml` file: parsing, `${ENV}` interpolation and validation.
//!
//! Every error names the offending key path (e.g. `pipeline[0].sink.topic`), so a user can find
//! it without reading our source.

mod interpolate;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use sluice_codec::{DecodeConfig, DecodeContext, DecodeFormat, Decoder, EncodeConfig, Encoder};
use sluice_connectors::config::{Invalid, string_map, within};
use sluice_connectors::gcp_pubsub::PubSubSourceConfig;
use sluice_connectors::kafka::{KafkaSinkConfig, check_topic_name};
use sluice_connectors::pulsar::PulsarSourceConfig;
use sluice_connectors::source::{ConnectSource, MergedSource};
use sluice_engine::{Capabilities, Limits, TransformSpec};
use sluice_pipeline::windows::WindowSettings;
use sluice_pipeline::{
    ExactlyOnceMode, ExactlyOnceSettings, GroupBy, Guarantee, MAX_PARALLELISM, PipelineSettings,
    Schemas,
};

pub use sluice_connectors::config::Secret;

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
    /// Where deployed versions are shared: `local` (this instance only) or `kafka` (a compacted
    /// topic per pipeline on its sink cluster, which every instance of the pipeline follows:
    /// one deploy reaches them all; docs/scale-out.md).
    #[serde(default)]
    pub deployments: DeploymentsStore,
    /// The deployments topic of pipeline `P` with `deployments = "kafka"` is this prefix
    /// followed by `P`.
    #[serde(default = "default_deployments_topic_prefix")]
    pub deployments_topic_prefix: String,
    /// `[admin.tls]`: serve https with this certificate and key instead of plain http.
    #[serde(default)]
    pub tls: Option<crate::admin::AdminTlsConfig>,
}

/// Where deployed transform versions live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentsStore {
    /// The state dir of the instance that was sent the deploy.
    #[default]
    Local,
    /// A compacted Kafka topic per pipeline, followed by every instance.
    Kafka,
}

fn default_deployments_topic_prefix() -> String {
    "sluice-deployments.".to_owned()
}

fn default_admin_listen() -> String {
    "127.0.0.1:9650".to_owned()
}

impl AdminConfig {
    /// The deployments topic of `pipeline` (with `deployments = "kafka"`).
    pub fn deployments_topic(&self, pipeline: &str) -> String {
        format!("{}{pipeline}", self.deployments_topic_prefix)
    }

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

    fn validate(&self) -> Result<(), Invalid> {
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
        if let Some(tls) = &self.tls {
            tls.server_config()?;
        }
        if self.deployments == DeploymentsStore::Kafka {
            check_topic_name(
                "admin.deployments_topic_prefix",
                &format!("{}pipeline", self.deployments_topic_prefix),
            )?;
        }
        Ok(())
    }
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
    /// Exactly-once: how many recent source messages are recognised when they come again.
    /// Read back: records of each output partition read back at start (and after a Kafka
    /// failure), and source ids remembered while it runs. Transactions: committed message ids
    /// kept for a source without an order (Pub/Sub). A source record that comes again after
    /// it left this window is written again.
    #[serde(default = "default_dedup_window")]
    pub dedup_window: usize,
    /// How exactly-once is kept: `{ mode = "transactions" }` (the default) or
    /// `{ mode = "read-back" }`, with the settings of transactions.
    #[serde(default)]
    pub exactly_once: Option<ExactlyOnceConfig>,
    /// `[pipeline.source]`: the one source…
    #[serde(default)]
    pub source: Option<SourceConfig>,
    /// …or `[[pipeline.sources]]`: several, merged into the one pipeline
    /// (docs/group-by-and-merge.md). Their order is their index (`Placement::source`):
    /// exactly-once names the writers of source S > 0 after it, so add sources at the end.
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    /// Group-by: re-key each record from a header (`{ header = "…" }`) or a field of its JSON
    /// value (`{ json = "/pointer" }`) before the transforms; the lanes and Kafka's
    /// partitioning follow the new key (docs/group-by-and-merge.md).
    #[serde(default)]
    pub group_by: Option<GroupBy>,
    /// `[pipeline.decode]`: how source payloads are decoded before the transforms, and what
    /// the guest sees (docs/schemas.md). Default: bytes through unchanged.
    #[serde(default)]
    pub decode: Option<DecodeConfig>,
    #[serde(rename = "transform", default)]
    pub transforms: Vec<TransformConfig>,
    /// `[[pipeline.windows]]`: window stages over the chain's outputs, whose results are
    /// written instead of them (docs/windows.md).
    #[serde(default)]
    pub windows: Vec<WindowSettings>,
    pub sink: KafkaSinkConfig,
    /// `[pipeline.encode]`: how output keys and values are written to Kafka (Confluent wire
    /// format, subjects in a Schema Registry; docs/schemas.md). Default: bytes unchanged.
    #[serde(default)]
    pub encode: Option<EncodeConfig>,
    /// The config file's directory: relative schema files are resolved against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// `exactly_once = { … }`: how exactly-once is kept (docs/delivery-guarantees.md).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExactlyOnceConfig {
    /// `transactions` (Kafka transactions; the default) or `read-back` (for brokers without
    /// transactions).
    #[serde(default)]
    pub mode: ExactlyOnceMode,
    /// Transactions: the compacted topic of checkpoints; default `sluice-offsets.<pipeline>`.
    #[serde(default)]
    pub offsets_topic: Option<String>,
    /// Transactions: the compacted changelog topic of keyed state (docs/state.md); default
    /// `<pipeline>.changelog`.
    #[serde(default)]
    pub changelog_topic: Option<String>,
    /// Transactions: what each writer's `transactional.id` starts with; default `sluice.`.
    #[serde(default)]
    pub transactional_id_prefix: Option<String>,
    /// Transactions: a transaction commits once it is this old (default 100)…
    #[serde(default)]
    pub commit_interval_ms: Option<u64>,
    /// …or holds this many source records (default 10,000), whichever comes first.
    #[serde(default)]
    pub max_records_per_transaction: Option<usize>,
}

impl ExactlyOnceConfig {
    /// Keys that only transactions read, and whether each is set.
    fn transaction_keys(&self) -> [(&'static str, bool); 5] {
        [
            ("offsets_topic", self.offsets_topic.is_some()),
            ("changelog_topic", self.changelog_topic.is_some()),
            (
                "transactional_id_prefix",
                self.transactional_id_prefix.is_some(),
            ),
            ("commit_interval_ms", self.commit_interval_ms.is_some()),
            (
                "max_records_per_transaction",
                self.max_records_per_transaction.is_some(),
            ),
        ]
    }

    fn settings(&self) -> ExactlyOnceSettings {
        let defaults = ExactlyOnceSettings::default();
        ExactlyOnceSettings {
            mode: self.mode,
            offsets_topic: self.offsets_topic.clone(),
            changelog_topic: self.changelog_topic.clone(),
            transactional_id_prefix: (self.transactional_id_prefix.clone())
                .unwrap_or(defaults.transactional_id_prefix),
            commit_interval: (self.commit_interval_ms)
                .map_or(defaults.commit_interval, Duration::from_millis),
            max_records_per_transaction: (self.max_records_per_transaction)
                .unwrap_or(defaults.max_records_per_transaction),
        }
    }
}

fn default_max_in_flight() -> usize {
    PipelineSettings::new("").max_in_flight
}

fn default_batch_size() -> usize {
    PipelineSettings::new("").batch_size
}

fn default_parallelism() -> usize {
    PipelineSettings::new("").parallelism
}

fn default_dedup_window() -> usize {
    PipelineSettings::new("").dedup_window
}

/// `[pipeline.source]`, told apart by `kind`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceConfig {
    Pulsar(PulsarSourceConfig),
    GcpPubsub(PubSubSourceConfig),
}

impl PipelineConfig {
    /// The pipeline's sources with the config key each is written under (`source`, or
    /// `sources[i]`), in order.
    pub fn source_list(&self) -> Vec<(String, &SourceConfig)> {
        match &self.source {
            Some(source) => vec![("source".to_owned(), source)],
            None => (self.sources.iter().enumerate())
                .map(|(i, source)| (format!("sources[{i}]"), source))
                .collect(),
        }
    }

    fn sources_mut(&mut self) -> impl Iterator<Item = &mut SourceConfig> {
        self.source.iter_mut().chain(self.sources.iter_mut())
    }

    /// What the pipeline reads: its one source, or its sources merged (each record's
    /// placement names its source's index).
    pub fn connector(&self) -> Arc<dyn ConnectSource> {
        let mut sources: Vec<Arc<dyn ConnectSource>> = (self.source_list().into_iter())
            .map(|(_, source)| source.connector())
            .collect();
        if sources.len() == 1 {
            return sources.remove(0);
        }
        Arc::new(MergedSource::new(sources))
    }
}

impl SourceConfig {
    /// The source as something a pipeline can start.
    pub fn connector(&self) -> Arc<dyn ConnectSource> {
        match self {
            SourceConfig::Pulsar(pulsar) => Arc::new(pulsar.clone()),
            SourceConfig::GcpPubsub(pubsub) => Arc::new(pubsub.clone()),
        }
    }

    /// The `kind` as written in the config.
    pub fn kind(&self) -> &'static str {
        self.connector().kind()
    }

    /// Whether `other` reads the same messages (the same topic or subscription of the same
    /// service): merging it would read each message twice.
    fn reads_same_as(&self, other: &SourceConfig) -> bool {
        match (self, other) {
            (SourceConfig::Pulsar(a), SourceConfig::Pulsar(b)) => {
                a.url == b.url && a.topic == b.topic && a.subscription == b.subscription
            }
            (SourceConfig::GcpPubsub(a), SourceConfig::GcpPubsub(b)) => {
                a.project == b.project && a.subscription == b.subscription
            }
            _ => false,
        }
    }
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
    #[serde(default, deserialize_with = "string_map")]
    pub config: BTreeMap<String, String>,
    #[serde(default)]
    pub limits: Limits,
    /// What the transform may reach beyond its records; nothing unless granted here.
    #[serde(default)]
    pub capabilities: Capabilities,
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
        if let Some(tls) = config.admin.as_mut().and_then(|admin| admin.tls.as_mut()) {
            tls.resolve(base_dir);
        }
        for (i, pipeline) in config.pipelines.iter_mut().enumerate() {
            pipeline.base_dir = base_dir.to_owned();
            let exactly_once = pipeline.guarantee == Guarantee::ExactlyOnce;
            for source in pipeline.sources_mut() {
                match source {
                    SourceConfig::Pulsar(pulsar) => {
                        pulsar.fill_defaults(exactly_once);
                        pulsar.resolve_credentials(base_dir);
                    }
                    SourceConfig::GcpPubsub(pubsub) => pubsub.resolve_credentials(base_dir),
                }
            }
            let section = format!("pipeline[{i}].sink");
            pipeline
                .sink
                .resolve_credentials(base_dir)
                .map_err(within(&section))
                .map_err(|(key, message)| ConfigError::Invalid {
                    path: path.to_owned(),
                    key,
                    message,
                })?;
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

    fn validate(&self) -> Result<(), Invalid> {
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
        let mut offsets_topics = HashSet::new();
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
            let settings = pipeline.settings();
            if settings.exactly_once_mode() == Some(ExactlyOnceMode::Transactions)
                && !offsets_topics.insert(settings.offsets_topic())
            {
                return Err((
                    at("exactly_once.offsets_topic"),
                    format!(
                        "{:?} is the offsets topic of another pipeline too: each pipeline needs its own",
                        settings.offsets_topic()
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl PipelineConfig {
    fn validate(&self) -> Result<(), Invalid> {
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
        let guaranteeing = self.settings().guaranteeing();
        self.validate_exactly_once()?;
        self.validate_sources()?;
        for (key, source) in self.source_list() {
            match source {
                SourceConfig::Pulsar(pulsar) => pulsar.validate(guaranteeing),
                SourceConfig::GcpPubsub(pubsub) => pubsub.validate(),
            }
            .map_err(within(&key))?;
        }
        if let Some(group_by) = &self.group_by {
            let key = match group_by {
                GroupBy::Header(_) => "group_by.header",
                GroupBy::Json(_) => "group_by.json",
            };
            group_by
                .validate()
                .map_err(|message| (key.to_owned(), message))?;
        }
        if !(1..=MAX_PARALLELISM).contains(&self.parallelism) {
            return Err((
                "parallelism".into(),
                format!("must be between 1 and {MAX_PARALLELISM}"),
            ));
        }
        sluice_pipeline::exactly_once::validate(&self.settings())?;
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
        self.sink.validate(guaranteeing).map_err(within("sink"))?;
        self.validate_windows()?;
        self.schemas().map(drop)
    }

    /// Checks `[[pipeline.windows]]`: each table, unique names, valid topics, and one lane
    /// (window results follow the order records reach them: docs/windows.md).
    fn validate_windows(&self) -> Result<(), Invalid> {
        let mut names = HashSet::new();
        for (w, window) in self.windows.iter().enumerate() {
            let at = |key: &str| format!("windows[{w}].{key}");
            window
                .validate()
                .map_err(|(key, message)| (at(&key), message))?;
            if !names.insert(&window.name) {
                return Err((
                    at("name"),
                    format!("duplicate window name {:?} in this pipeline", window.name),
                ));
            }
            if let Some(topic) = &window.topic {
                check_topic_name(&at("topic"), topic)?;
            }
        }
        if !self.windows.is_empty() && self.parallelism != 1 {
            return Err((
                "parallelism".into(),
                "must be 1 with [[pipeline.windows]]: windows take records in source order, \
                 which several lanes would not keep"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The codecs of `[pipeline.decode]` and `[pipeline.encode]`, schemas loaded; an error
    /// names the section.
    pub fn schemas(&self) -> Result<Schemas, Invalid> {
        let decoder = match &self.decode {
            None => None,
            Some(decode) => {
                // With several sources, the first of each kind names its schema service.
                let sources = self.source_list();
                let pulsar_admin_url = sources.iter().find_map(|(_, source)| match source {
                    SourceConfig::Pulsar(pulsar) => Some(default_pulsar_admin_url(&pulsar.url)),
                    SourceConfig::GcpPubsub(_) => None,
                });
                let pubsub_endpoint = sources.iter().find_map(|(_, source)| match source {
                    // Pub/Sub's schema service is where its messages come from (else Google's,
                    // the codec's default).
                    SourceConfig::GcpPubsub(pubsub) => pubsub.endpoint_url(),
                    SourceConfig::Pulsar(_) => None,
                });
                let context = DecodeContext {
                    base_dir: Some(&self.base_dir),
                    pulsar_admin_url: pulsar_admin_url.as_deref(),
                    pubsub_endpoint: pubsub_endpoint.as_deref(),
                };
                let decoder = Decoder::new(decode, context)
                    .map_err(|e| ("decode".to_owned(), e.to_string()))?;
                Some(Arc::new(decoder))
            }
        };
        let encoder = match &self.encode {
            None => None,
            Some(encode) => {
                let encoder = Encoder::new(encode, Some(&self.base_dir))
                    .map_err(|e| ("encode".to_owned(), e.to_string()))?;
                Some(Arc::new(encoder))
            }
        };
        if self
            .decode
            .as_ref()
            .is_some_and(|d| d.format != DecodeFormat::Raw)
            && let Some(encode) = &self.encode
            && encode.key.from_source
        {
            return Err((
                "encode.key.from_source".into(),
                "applies to values only: the source schema describes the payload".into(),
            ));
        }
        Ok(Schemas {
            decoder,
            encoder,
            default_topic: self.sink.topic.clone(),
        })
    }

    /// Checks that the pipeline has one `source` or several `sources`, and what several
    /// sources allow.
    fn validate_sources(&self) -> Result<(), Invalid> {
        match (&self.source, self.sources.len()) {
            (None, 0) => {
                return Err((
                    "source".into(),
                    "a pipeline needs a [pipeline.source] or at least one [[pipeline.sources]]"
                        .into(),
                ));
            }
            (Some(_), 1..) => {
                return Err((
                    "sources".into(),
                    "set either [pipeline.source] or [[pipeline.sources]], not both".into(),
                ));
            }
            _ => {}
        }
        if self.sources.len() > 1
            && self.settings().exactly_once_mode() == Some(ExactlyOnceMode::ReadBack)
        {
            return Err((
                "sources".into(),
                "exactly_once mode \"read-back\" reads one source; merge sources with mode \
                 \"transactions\" (the default)"
                    .into(),
            ));
        }
        let list = self.source_list();
        for (i, (key, source)) in list.iter().enumerate() {
            if let Some((other, _)) =
                (list[..i].iter()).find(|(_, earlier)| earlier.reads_same_as(source))
            {
                return Err((
                    key.clone(),
                    format!("reads the same topic or subscription as {other}"),
                ));
            }
        }
        Ok(())
    }

    /// Checks `exactly_once`: only with the exactly-once guarantee, only the keys of its mode,
    /// and a valid offsets topic of the pipeline's own.
    fn validate_exactly_once(&self) -> Result<(), Invalid> {
        if let Some(exactly_once) = &self.exactly_once {
            if self.guarantee != Guarantee::ExactlyOnce {
                return Err((
                    "exactly_once".into(),
                    "applies only with guarantee = \"exactly-once\"".into(),
                ));
            }
            if exactly_once.mode == ExactlyOnceMode::ReadBack
                && let Some((key, _)) = exactly_once.transaction_keys().iter().find(|(_, set)| *set)
            {
                return Err((
                    format!("exactly_once.{key}"),
                    "applies only with mode = \"transactions\"".into(),
                ));
            }
        }
        let settings = self.settings();
        if settings.exactly_once_mode() == Some(ExactlyOnceMode::Transactions) {
            let topic = settings.offsets_topic();
            if let Err((_, message)) = check_topic_name("exactly_once.offsets_topic", &topic) {
                let hint = match settings.exactly_once.offsets_topic {
                    Some(_) => "",
                    None => {
                        " (the default, from the pipeline name); set exactly_once.offsets_topic"
                    }
                };
                return Err((
                    "exactly_once.offsets_topic".into(),
                    format!("{message}{hint}"),
                ));
            }
            if self.sink.declared_topics().contains(&topic) {
                return Err((
                    "exactly_once.offsets_topic".into(),
                    format!(
                        "{topic:?} is also an output topic of the sink: it must be Sluice's own"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The pipeline's settings, apart from its source, transforms and sink.
    pub fn settings(&self) -> PipelineSettings {
        PipelineSettings {
            name: self.name.clone(),
            guarantee: self.guarantee,
            max_in_flight: self.max_in_flight,
            batch_size: self.batch_size,
            parallelism: self.parallelism,
            dedup_window: self.dedup_window,
            exactly_once: self.exactly_once.clone().unwrap_or_default().settings(),
            group_by: self.group_by.clone(),
            windows: self.windows.clone(),
        }
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

/// The Pulsar admin API of a service URL when `[pipeline.decode]` gives no `admin_url`: the
/// same host on Pulsar's default web service port, 8080.
fn default_pulsar_admin_url(service_url: &str) -> String {
    let rest = service_url
        .split_once("://")
        .map_or(service_url, |(_, rest)| rest);
    let host = rest
        .split([',', '/'])
        .next()
        .unwrap_or_default()
        .rsplit_once(':')
        .map_or(rest, |(host, _)| host);
    format!("http://{host}:8080")
}

fn validate_limits(limits: &Limits) -> Result<(), Invalid> {
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

#[cfg(test)]
mod tests;
