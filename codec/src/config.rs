//! Config sections, ready to embed in the pipeline config: `[pipeline.decode]`
//! ([`DecodeConfig`]) and `[pipeline.encode]` ([`EncodeConfig`], with `key` and `value`
//! tables and a `registry`). Every table refuses unknown keys; every key has a default, so an
//! absent section means "bytes through unchanged".
//!
//! ```toml
//! [pipeline.decode]
//! format = "pulsar"                  # raw | json | pulsar | pubsub | avro | protobuf | confluent
//! # view = "json"                    # what the guest sees: json (decoded) | original (bytes)
//!
//! [pipeline.encode.registry]
//! url = "http://127.0.0.1:8081/apis/ccompat/v7"
//!
//! [pipeline.encode.value]
//! format = "avro"                    # raw | json | avro | protobuf | json_schema
//! from_source = true                 # or schema / schema_file, or use_latest
//! # subject_strategy = "topic"       # topic | record | topic_record
//! ```

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

/// A secret string (password, token): `Debug` and `Display` print `***`.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// What a source payload is, and so how it is decoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecodeFormat {
    /// Opaque bytes, passed on unchanged (the default).
    #[default]
    Raw,
    /// JSON text: checked to be JSON, passed on unchanged.
    Json,
    /// Pulsar's own schema registry: the message's schema version names the topic's schema
    /// (AVRO, JSON, PROTOBUF_NATIVE, primitives), fetched from the admin API once per version.
    Pulsar,
    /// Pub/Sub topic schemas: the `googclient_schemaname` / `googclient_schemarevisionid` /
    /// `googclient_schemaencoding` attributes name the schema revision and encoding, fetched
    /// from the Pub/Sub schema service once per revision.
    Pubsub,
    /// Avro with the schema given here (`schema` or `schema_file`), binary or JSON encoded.
    Avro,
    /// Protobuf with the message given here (`schema`/`schema_file` + `message`, or
    /// `descriptor_set_file` + `message`), binary or JSON encoded.
    Protobuf,
    /// Confluent's wire format (magic byte + schema id), schemas fetched from `registry` by id.
    Confluent,
}

/// What the guest sees of a decoded record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum View {
    /// The decoded record as JSON text (the default).
    #[default]
    Json,
    /// The original bytes (decoding still checks them and finds the schema for the sink).
    Original,
}

/// How Avro or Protobuf payloads with a configured schema are encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadEncoding {
    /// Avro binary datum / Protobuf wire format (the default).
    #[default]
    Binary,
    /// Avro's JSON encoding / proto3 JSON.
    Json,
}

/// `[pipeline.decode]`: how source payloads are decoded before the transforms.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecodeConfig {
    /// What the payload is. Default: `raw`.
    #[serde(default)]
    pub format: DecodeFormat,
    /// What the guest sees: `json` (default) or `original`.
    #[serde(default)]
    pub view: View,
    /// `avro` / `protobuf`: the schema text (Avro JSON or .proto source).
    #[serde(default)]
    pub schema: Option<String>,
    /// `avro` / `protobuf`: a file holding the schema (relative to the config file).
    #[serde(default)]
    pub schema_file: Option<PathBuf>,
    /// `protobuf`: a serialized `FileDescriptorSet` (`protoc --descriptor_set_out
    /// --include_imports`) instead of .proto text.
    #[serde(default)]
    pub descriptor_set_file: Option<PathBuf>,
    /// `protobuf`: the message's full name (`package.Message`). Default: the first message of
    /// the file.
    #[serde(default)]
    pub message: Option<String>,
    /// `protobuf`: directories searched for imports of `schema_file` (its own directory is
    /// searched too; Google's well-known types are built in).
    #[serde(default)]
    pub proto_includes: Vec<PathBuf>,
    /// `avro` / `protobuf`: `binary` (default) or `json`.
    #[serde(default)]
    pub encoding: PayloadEncoding,
    /// `pulsar`: the Pulsar admin (web service) URL. Default: given by the source (its
    /// `admin_url`, else `http://<service host>:8080`).
    #[serde(default)]
    pub admin_url: Option<String>,
    /// `pulsar`: a token for the admin API.
    #[serde(default)]
    pub admin_token: Option<Secret>,
    /// `pubsub`: the schema service endpoint. Default: the source's endpoint (the emulator's
    /// `http://HOST:PORT`), else `https://pubsub.googleapis.com`.
    #[serde(default)]
    pub schema_endpoint: Option<String>,
    /// `confluent`: the Schema Registry.
    #[serde(default)]
    pub registry: Option<RegistryConfig>,
    /// Seconds an unknown schema (version, revision or id that the service says does not
    /// exist) is remembered before asking again. Default: 30.
    #[serde(default = "default_unknown_retry_secs")]
    pub unknown_schema_retry_secs: u64,
}

fn default_unknown_retry_secs() -> u64 {
    30
}

/// A Confluent-compatible Schema Registry.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// The base URL of the Confluent API (Apicurio: `http://HOST:PORT/apis/ccompat/v7`).
    pub url: String,
    /// Basic-auth user.
    #[serde(default)]
    pub username: Option<String>,
    /// Basic-auth password.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Bearer token (instead of basic auth).
    #[serde(default)]
    pub token: Option<Secret>,
    /// Timeout of one registry request, in milliseconds. Default: 10000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8081/apis/ccompat/v7".to_owned(),
            username: None,
            password: None,
            token: None,
            timeout_ms: default_timeout_ms(),
        }
    }
}

fn default_timeout_ms() -> u64 {
    10_000
}

/// How an output key or value is written to Kafka.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EncodeFormat {
    /// The bytes the transform produced, unchanged (the default).
    #[default]
    Raw,
    /// JSON text, checked to be JSON, without a registry.
    Json,
    /// Confluent Avro: the transform's JSON encoded with the schema, framed with its id.
    Avro,
    /// Confluent Protobuf: the transform's proto3 JSON encoded, framed with id + message indexes.
    Protobuf,
    /// Confluent JSON Schema: the transform's JSON validated, framed with the schema id.
    JsonSchema,
}

/// How the subject of a schema is named (Confluent's strategies).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectStrategy {
    /// `<topic>-key` / `<topic>-value` (the default).
    #[default]
    Topic,
    /// The record's full name (Avro record, Protobuf message, JSON Schema `title`).
    Record,
    /// `<topic>-<record full name>`.
    TopicRecord,
}

/// `[pipeline.encode.key]` / `[pipeline.encode.value]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartConfig {
    /// The format. Default: `raw`.
    #[serde(default)]
    pub format: EncodeFormat,
    /// The schema text (Avro JSON, .proto source, JSON Schema).
    #[serde(default)]
    pub schema: Option<String>,
    /// A file holding the schema (relative to the config file).
    #[serde(default)]
    pub schema_file: Option<PathBuf>,
    /// `protobuf`: the message's full name. Default: the file's first message.
    #[serde(default)]
    pub message: Option<String>,
    /// `protobuf`: import directories for `schema_file`.
    #[serde(default)]
    pub proto_includes: Vec<PathBuf>,
    /// Values only: use the schema the source record was decoded with (Avro from Pulsar
    /// AVRO/JSON, Pub/Sub or Confluent Avro; Protobuf from PROTOBUF_NATIVE or Confluent
    /// Protobuf). Each source schema version is registered once; the registry decides whether
    /// it may evolve.
    #[serde(default)]
    pub from_source: bool,
    /// Use the subject's latest registered schema (registering nothing). Read once per subject.
    #[serde(default)]
    pub use_latest: bool,
    /// Register schemas the subject does not have yet. Default: true. When false, a schema
    /// must already be registered (it is looked up, once per schema and subject).
    #[serde(default = "yes")]
    pub auto_register: bool,
    /// How subjects are named. Default: `topic`.
    #[serde(default)]
    pub subject_strategy: SubjectStrategy,
}

impl Default for PartConfig {
    fn default() -> Self {
        Self {
            format: EncodeFormat::Raw,
            schema: None,
            schema_file: None,
            message: None,
            proto_includes: Vec::new(),
            from_source: false,
            use_latest: false,
            auto_register: true,
            subject_strategy: SubjectStrategy::Topic,
        }
    }
}

fn yes() -> bool {
    true
}

/// `[pipeline.encode]`: how outputs are written to Kafka.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncodeConfig {
    /// The Schema Registry (needed by `avro`, `protobuf`, `json_schema`).
    #[serde(default)]
    pub registry: Option<RegistryConfig>,
    /// The record key. Default: raw.
    #[serde(default)]
    pub key: PartConfig,
    /// The record value. Default: raw.
    #[serde(default)]
    pub value: PartConfig,
    /// Seconds a subject's refusal of a schema (incompatible, invalid) is remembered: records
    /// needing it fail at once, without asking the registry each time. Default: 60.
    #[serde(default = "default_refusal_retry_secs")]
    pub refusal_retry_secs: u64,
}

fn default_refusal_retry_secs() -> u64 {
    60
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_sections_mean_raw() {
        let d: DecodeConfig = toml::from_str("").unwrap();
        assert_eq!(d.format, DecodeFormat::Raw);
        assert_eq!(d.view, View::Json);
        assert_eq!(d.unknown_schema_retry_secs, 30);
        let e: EncodeConfig = toml::from_str("").unwrap();
        assert_eq!(e.value.format, EncodeFormat::Raw);
        assert!(e.value.auto_register);
        assert_eq!(e.refusal_retry_secs, 60);
    }

    #[test]
    fn a_full_sink_section_parses_and_secrets_stay_hidden() {
        let e: EncodeConfig = toml::from_str(
            r#"
            registry = { url = "http://127.0.0.1:8081/apis/ccompat/v7", username = "u", password = "p" }
            key = { format = "raw" }
            [value]
            format = "protobuf"
            schema_file = "order.proto"
            message = "shop.Order"
            subject_strategy = "topic_record"
            "#,
        )
        .unwrap();
        assert_eq!(e.value.format, EncodeFormat::Protobuf);
        assert_eq!(e.value.subject_strategy, SubjectStrategy::TopicRecord);
        let registry = e.registry.unwrap();
        assert_eq!(registry.timeout_ms, 10_000);
        assert_eq!(format!("{registry:?}").matches("***").count(), 1);
        assert!(!format!("{registry:?}").contains("\"p\""));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = toml::from_str::<DecodeConfig>("format = \"avro\"\nschemaa = \"x\"").unwrap_err();
        assert!(e.to_string().contains("unknown field `schemaa`"), "{e}");
        assert!(toml::from_str::<EncodeConfig>("[value]\nformat = \"xml\"").is_err());
    }
}
