//! Pipeline configs (TOML) for the tests: Pulsar or Pub/Sub → transforms → Kafka.

use std::path::{Path, PathBuf};

use super::brokers::{Brokers, PROJECT, Topics};

/// A `[[pipeline.transform]]` entry; `config` is the inside of its inline table.
pub(crate) fn transform_entry(component: &str, config: &str) -> String {
    format!("[[pipeline.transform]]\ncomponent = {component:?}\nconfig = {{ {config} }}\n")
}

/// A `[[pipeline.transform]]` entry with an explicit `name` (the admin API addresses a
/// transform by it); `config` is the inside of its inline table.
pub(crate) fn named_transform_entry(name: &str, component: &str, config: &str) -> String {
    format!("{}name = {name:?}\n", transform_entry(component, config))
}

/// A one-pipeline config: Pulsar `topics.source` → `transforms` → Kafka `topics.output`.
pub(crate) fn pipeline_toml(
    brokers: &Brokers,
    topics: &Topics,
    transforms: &str,
    extra_sink: &str,
) -> String {
    named_pipeline_toml("test", brokers, topics, transforms, extra_sink)
}

/// Like [`pipeline_toml`], for a pipeline called `name` (configs may hold several).
pub(crate) fn named_pipeline_toml(
    name: &str,
    brokers: &Brokers,
    topics: &Topics,
    transforms: &str,
    extra_sink: &str,
) -> String {
    pulsar_pipeline_toml(
        name,
        "max_in_flight = 2000",
        "subscription_type = \"failover\"",
        brokers,
        topics,
        &format!("{transforms}\n{}", sink_toml(brokers, topics, extra_sink)),
    )
}

/// A Pulsar pipeline called `name` with `settings` lines in its `[[pipeline]]` table,
/// `source_settings` lines in its source, then `rest` (transforms and sink).
pub(crate) fn pulsar_pipeline_toml(
    name: &str,
    settings: &str,
    source_settings: &str,
    brokers: &Brokers,
    topics: &Topics,
    rest: &str,
) -> String {
    format!(
        r#"
[[pipeline]]
name = "{name}"
{settings}

[pipeline.source]
kind = "pulsar"
url = "{pulsar}"
topic = "{source}"
subscription = "{subscription}"
{source_settings}

{rest}"#,
        pulsar = brokers.pulsar,
        source = topics.source,
        subscription = topics.subscription,
    )
}

/// The `[pipeline.sink]` section every test pipeline uses: Kafka, the test's output and
/// dead-letter topics, then `extra_sink` lines.
pub(crate) fn sink_toml(brokers: &Brokers, topics: &Topics, extra_sink: &str) -> String {
    format!(
        r#"[pipeline.sink]
kind = "kafka"
brokers = "{kafka}"
topic = "{output}"
dead_letter_topic = "{dead_letter}"
{extra_sink}"#,
        kafka = brokers.kafka,
        output = topics.output,
        dead_letter = topics.dead_letter,
    )
}

/// The Pub/Sub source's `pull` setting.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pull {
    Streaming,
    Unary,
}

impl Pull {
    pub(crate) fn toml(self) -> &'static str {
        match self {
            Pull::Streaming => "streaming",
            Pull::Unary => "unary",
        }
    }
}

/// A Pub/Sub pipeline called `name`, max 1,000 records in flight, with `settings` lines in
/// its `[[pipeline]]` table: `topics.subscription` → `transforms` → Kafka.
pub(crate) fn pubsub_pipeline_toml(
    name: &str,
    settings: &str,
    brokers: &Brokers,
    emulator: &str,
    topics: &Topics,
    transforms: &str,
    pull: Pull,
) -> String {
    format!(
        r#"
[[pipeline]]
name = "{name}"
max_in_flight = 1000
{settings}

[pipeline.source]
kind = "gcp_pubsub"
project = "{PROJECT}"
subscription = "{subscription}"
endpoint = "http://{emulator}"
pull = "{pull}"

{transforms}
{sink}"#,
        subscription = topics.subscription,
        pull = pull.toml(),
        sink = sink_toml(brokers, topics, ""),
    )
}

/// Writes `toml` as `dir/name` and returns its path, for `sluice run --config`.
pub(crate) fn write_config(dir: &Path, name: &str, toml: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, toml).unwrap();
    path
}

/// Writes a one-pipeline config running `component` against brokers that do not exist
/// (port 1): for tests that must fail before anything connects. Returns the config's path.
pub(crate) fn write_offline_config(dir: &Path, component: &str) -> PathBuf {
    let toml = format!(
        r#"
[[pipeline]]
name = "p"
[pipeline.source]
kind = "pulsar"
url = "pulsar://127.0.0.1:1"
topic = "t"
subscription = "s"
[[pipeline.transform]]
component = {component:?}
[pipeline.sink]
kind = "kafka"
brokers = "127.0.0.1:1"
topic = "out"
"#
    );
    write_config(dir, "sluice.toml", &toml)
}

/// A sink setting for outage tests: a delivery fails after 10 s instead of librdkafka's 300 s,
/// so a 20 s Kafka outage takes Sluice's failure path (records kept, the producer replaced with
/// backoff, the kept records replayed in order) instead of being ridden out inside the
/// client's retries, as a real Kafka client does with the default.
pub(crate) const DELIVERIES_FAIL_AFTER_10_S: &str =
    r#"properties = { "message.timeout.ms" = "10000" }"#;

/// `toml` with `setting` added to its (first) `[pipeline.sink]` table.
pub(crate) fn with_sink_setting(toml: &str, setting: &str) -> String {
    toml.replacen("[pipeline.sink]", &format!("[pipeline.sink]\n{setting}"), 1)
}
