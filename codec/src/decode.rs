//! The source side: [`Decoder`] turns a source payload into what the guest sees (the original
//! bytes or the decoded record as JSON) and names the schema it was written with.
//!
//! Schemas are fetched once per version / revision / id and cached for the process's life
//! (they are immutable in every registry involved). A schema the service says does not exist is
//! remembered for `unknown_schema_retry_secs`, so a stream of records naming it does not turn
//! into a stream of requests. In steady state decoding makes no network call.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::de::IgnoredAny;
use serde_json::Value as Json;

use crate::avro::AvroSchema;
use crate::config::{DecodeConfig, DecodeFormat, PayloadEncoding, View};
use crate::error::{DecodeError, SchemaError, ValueError};
use crate::json_schema::JsonSchemaDoc;
use crate::protobuf::{ProtoFile, ProtoSchema};
use crate::pubsub::{self, PubSubSchemaFetcher, RestSchemaFetcher};
use crate::pulsar::{self, AdminRestFetcher, FetchError, PulsarSchemaFetcher, TopicName};
use crate::registry::{RegistryClient, RegistryError, SchemaDocument, SchemaType};
use crate::schema::{Schema, SchemaId, SchemaKind};
use crate::wire;

/// Message attributes (Pub/Sub) by name.
pub trait Attributes {
    /// The attribute's value, if the message has it.
    fn attribute(&self, name: &str) -> Option<&str>;
}

impl Attributes for HashMap<String, String> {
    fn attribute(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl Attributes for BTreeMap<String, String> {
    fn attribute(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl Attributes for Vec<(String, String)> {
    fn attribute(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Attributes for Vec<(&str, &str)> {
    fn attribute(&self, name: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }
}

/// No attributes (Pulsar messages).
pub struct NoAttributes;

impl Attributes for NoAttributes {
    fn attribute(&self, _: &str) -> Option<&str> {
        None
    }
}

/// One source payload and what the source knows about its schema.
pub struct SourceMessage<'a> {
    /// The Pulsar topic (the message's own, partition included) or the Pub/Sub subscription:
    /// named in errors, and the topic whose schema a Pulsar schema version refers to.
    pub topic: &'a str,
    /// The payload.
    pub payload: &'a [u8],
    /// Pulsar: the message's schema version (its metadata's `schema_version`).
    pub schema_version: Option<&'a [u8]>,
    /// Pub/Sub: the message's attributes.
    pub attributes: &'a dyn Attributes,
}

/// The result of decoding one payload.
#[derive(Debug, Clone, Default)]
pub struct Decoded {
    /// What the guest sees instead of the payload; `None` means the payload itself (view
    /// `original`, formats whose payload is already the JSON, `raw`).
    pub json: Option<Vec<u8>>,
    /// The schema the payload was written with (for the record's metadata and for sinks that
    /// derive their schema from the source).
    pub schema: Option<Arc<Schema>>,
}

/// Where the codec finds things the source config knows.
#[derive(Debug, Clone, Copy, Default)]
pub struct DecodeContext<'a> {
    /// Directory that relative schema files are resolved against (the config file's).
    pub base_dir: Option<&'a Path>,
    /// The Pulsar admin URL when the decode section gives none.
    pub pulsar_admin_url: Option<&'a str>,
    /// The Pub/Sub endpoint when the decode section gives none (the emulator's
    /// `http://HOST:PORT`).
    pub pubsub_endpoint: Option<&'a str>,
}

/// A cached answer of a schema service.
#[derive(Clone)]
enum Cached {
    Ready(Arc<Schema>),
    /// The service said it does not exist: remembered until `until`.
    Unknown {
        reason: String,
        until: Instant,
    },
    /// It exists but cannot be used (immutable, so remembered for good).
    Unusable(String),
}

/// Schemas by (topic or schema name, version / revision / id): looked up by borrowed keys, so a
/// hit allocates nothing.
struct Cache<K> {
    map: RwLock<HashMap<String, HashMap<K, Cached>>>,
    retry: Duration,
}

impl<K: Eq + Hash> Cache<K> {
    fn new(retry: Duration) -> Self {
        Self {
            map: RwLock::new(HashMap::new()),
            retry,
        }
    }

    fn get<Q>(&self, outer: &str, inner: &Q) -> Option<Cached>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        match map.get(outer)?.get(inner) {
            Some(Cached::Unknown { until, .. }) if *until <= Instant::now() => None,
            other => other.cloned(),
        }
    }

    fn put(&self, outer: &str, inner: K, value: Cached) {
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(outer.to_owned())
            .or_default()
            .insert(inner, value);
    }

    fn unknown(&self, reason: String) -> Cached {
        Cached::Unknown {
            reason,
            until: Instant::now() + self.retry,
        }
    }
}

enum Mode {
    Raw,
    Json,
    Fixed {
        schema: Arc<Schema>,
        encoding: PayloadEncoding,
    },
    Pulsar {
        fetcher: Arc<dyn PulsarSchemaFetcher>,
        cache: Cache<i64>,
    },
    PubSub {
        fetcher: Arc<dyn PubSubSchemaFetcher>,
        cache: Cache<String>,
    },
    Confluent {
        registry: RegistryClient,
        cache: Cache<u32>,
    },
}

/// Decodes source payloads as `[pipeline.decode]` says. Shared by all lanes of a
/// pipeline (`&self` everywhere; caches are internal).
pub struct Decoder {
    mode: Mode,
    view: View,
    /// Every schema handed out, by identity: lets a record carry only its [`SchemaId`].
    by_id: RwLock<HashMap<SchemaId, Arc<Schema>>>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match &self.mode {
            Mode::Raw => "raw",
            Mode::Json => "json",
            Mode::Fixed { .. } => "fixed schema",
            Mode::Pulsar { .. } => "pulsar",
            Mode::PubSub { .. } => "pubsub",
            Mode::Confluent { .. } => "confluent",
        };
        f.debug_struct("Decoder")
            .field("mode", &mode)
            .field("view", &self.view)
            .finish()
    }
}

fn resolve(base: Option<&Path>, path: &Path) -> std::path::PathBuf {
    match base {
        Some(base) if path.is_relative() => base.join(path),
        _ => path.to_path_buf(),
    }
}

fn read(path: &Path) -> Result<String, SchemaError> {
    std::fs::read_to_string(path).map_err(|source| SchemaError::Io {
        path: path.display().to_string(),
        source,
    })
}

impl Decoder {
    /// Builds the decoder a config section describes, loading configured schemas now.
    ///
    /// # Errors
    /// [`SchemaError`] for keys that do not fit the format, unreadable or invalid schemas,
    /// unusable URLs.
    pub fn new(config: &DecodeConfig, context: DecodeContext<'_>) -> Result<Self, SchemaError> {
        let misplaced = |key: &str, set: bool, allowed: &[DecodeFormat]| {
            if set && !allowed.contains(&config.format) {
                Err(SchemaError::Config(format!(
                    "decode: `{key}` does not apply to format {:?}",
                    config.format
                )))
            } else {
                Ok(())
            }
        };
        use DecodeFormat as F;
        misplaced("schema", config.schema.is_some(), &[F::Avro, F::Protobuf])?;
        misplaced(
            "schema_file",
            config.schema_file.is_some(),
            &[F::Avro, F::Protobuf],
        )?;
        misplaced(
            "descriptor_set_file",
            config.descriptor_set_file.is_some(),
            &[F::Protobuf],
        )?;
        misplaced("message", config.message.is_some(), &[F::Protobuf])?;
        misplaced(
            "proto_includes",
            !config.proto_includes.is_empty(),
            &[F::Protobuf],
        )?;
        misplaced(
            "encoding",
            config.encoding != PayloadEncoding::Binary,
            &[F::Avro, F::Protobuf],
        )?;
        misplaced("admin_url", config.admin_url.is_some(), &[F::Pulsar])?;
        misplaced("admin_token", config.admin_token.is_some(), &[F::Pulsar])?;
        misplaced(
            "schema_endpoint",
            config.schema_endpoint.is_some(),
            &[F::Pubsub],
        )?;
        misplaced("registry", config.registry.is_some(), &[F::Confluent])?;
        let retry = Duration::from_secs(config.unknown_schema_retry_secs);
        let mode = match config.format {
            F::Raw => Mode::Raw,
            F::Json => Mode::Json,
            F::Avro => {
                let (label, text) = configured_text(config, context.base_dir)?;
                let id = SchemaId::config(&label);
                let avro = AvroSchema::parse(&text, id.as_str())?;
                Mode::Fixed {
                    schema: Arc::new(Schema {
                        id,
                        kind: SchemaKind::Avro(Arc::new(avro)),
                    }),
                    encoding: config.encoding,
                }
            }
            F::Protobuf => {
                let message = config.message.as_deref();
                let (label, proto) = if let Some(file) = &config.descriptor_set_file {
                    if config.schema.is_some() || config.schema_file.is_some() {
                        return Err(SchemaError::Config(
                            "decode: give one of schema, schema_file, descriptor_set_file".into(),
                        ));
                    }
                    let path = resolve(context.base_dir, file);
                    let bytes = std::fs::read(&path).map_err(|source| SchemaError::Io {
                        path: path.display().to_string(),
                        source,
                    })?;
                    let message = message.ok_or_else(|| {
                        SchemaError::Config(
                            "decode: a descriptor_set_file needs `message` (its full name)".into(),
                        )
                    })?;
                    let label = file.display().to_string();
                    let proto = ProtoSchema::from_descriptor_set(&bytes, message, &label)?;
                    (label, proto)
                } else if let Some(file) = &config.schema_file {
                    if config.schema.is_some() {
                        return Err(SchemaError::Config(
                            "decode: give schema or schema_file, not both".into(),
                        ));
                    }
                    let path = resolve(context.base_dir, file);
                    let includes: Vec<_> = config
                        .proto_includes
                        .iter()
                        .map(|p| resolve(context.base_dir, p))
                        .collect();
                    (
                        file.display().to_string(),
                        ProtoSchema::from_file(&path, &includes, message)?,
                    )
                } else if let Some(text) = &config.schema {
                    let file = ProtoFile {
                        name: "inline.proto".into(),
                        text: text.clone(),
                    };
                    (
                        "inline".to_owned(),
                        ProtoSchema::from_sources(&[file], "inline.proto", message, "inline")?,
                    )
                } else {
                    return Err(SchemaError::Config(
                        "decode: format protobuf needs schema, schema_file or descriptor_set_file"
                            .into(),
                    ));
                };
                Mode::Fixed {
                    schema: Arc::new(Schema {
                        id: SchemaId::config(&label),
                        kind: SchemaKind::Protobuf(Arc::new(proto)),
                    }),
                    encoding: config.encoding,
                }
            }
            F::Pulsar => {
                let url = config
                    .admin_url
                    .as_deref()
                    .or(context.pulsar_admin_url)
                    .ok_or_else(|| {
                        SchemaError::Config("decode: format pulsar needs admin_url".into())
                    })?;
                Mode::Pulsar {
                    fetcher: Arc::new(AdminRestFetcher::new(url, config.admin_token.clone())?),
                    cache: Cache::new(retry),
                }
            }
            F::Pubsub => {
                let endpoint = config
                    .schema_endpoint
                    .as_deref()
                    .or(context.pubsub_endpoint)
                    .unwrap_or("https://pubsub.googleapis.com");
                Mode::PubSub {
                    fetcher: Arc::new(RestSchemaFetcher::new(endpoint, None)?),
                    cache: Cache::new(retry),
                }
            }
            F::Confluent => {
                let registry = config.registry.as_ref().ok_or_else(|| {
                    SchemaError::Config("decode: format confluent needs a registry".into())
                })?;
                Mode::Confluent {
                    registry: RegistryClient::new(registry)?,
                    cache: Cache::new(retry),
                }
            }
        };
        let by_id = RwLock::new(HashMap::new());
        if let Mode::Fixed { schema, .. } = &mode {
            by_id
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(schema.id.clone(), schema.clone());
        }
        Ok(Self {
            mode,
            view: config.view,
            by_id,
        })
    }

    /// A schema this decoder has decoded a record with, by its identity: a record can carry
    /// just the [`SchemaId`] (e.g. in a header) and the sink get the schema back for
    /// `from_source` encoding.
    pub fn schema(&self, id: &SchemaId) -> Option<Arc<Schema>> {
        self.by_id
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    fn remember(&self, cached: &Cached) {
        if let Cached::Ready(schema) = cached {
            self.by_id
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(schema.id.clone(), schema.clone());
        }
    }

    /// Replaces where Pulsar schemas come from (format `pulsar`), e.g. with the binary
    /// protocol's GetSchema; no effect for other formats.
    pub fn with_pulsar_fetcher(mut self, fetcher: Arc<dyn PulsarSchemaFetcher>) -> Self {
        if let Mode::Pulsar { fetcher: f, .. } = &mut self.mode {
            *f = fetcher;
        }
        self
    }

    /// Replaces where Pub/Sub schemas come from (format `pubsub`), e.g. a fetcher with Google
    /// credentials; no effect for other formats.
    pub fn with_pubsub_fetcher(mut self, fetcher: Arc<dyn PubSubSchemaFetcher>) -> Self {
        if let Mode::PubSub { fetcher: f, .. } = &mut self.mode {
            *f = fetcher;
        }
        self
    }

    /// True when decoding changes nothing and checks nothing (format `raw`): the pipeline may
    /// skip calling [`Decoder::decode`].
    pub fn is_passthrough(&self) -> bool {
        matches!(self.mode, Mode::Raw)
    }

    /// Decodes one payload.
    ///
    /// # Errors
    /// [`DecodeError`]: the record's fault (dead-letter, kind `schema`) unless
    /// [`DecodeError::is_transient`].
    pub async fn decode(&self, message: &SourceMessage<'_>) -> Result<Decoded, DecodeError> {
        match &self.mode {
            Mode::Raw => Ok(Decoded::default()),
            Mode::Json => {
                serde_json::from_slice::<IgnoredAny>(message.payload).map_err(|e| {
                    DecodeError::Malformed {
                        topic: message.topic.to_owned(),
                        schema: SchemaId::config("json"),
                        path: crate::FieldPath::root(),
                        reason: format!("not JSON: {e}"),
                    }
                })?;
                Ok(Decoded::default())
            }
            Mode::Fixed { schema, encoding } => {
                self.decode_with(message.topic, schema, message.payload, *encoding)
            }
            Mode::Pulsar { fetcher, cache } => {
                let schema = self.pulsar_schema(message, fetcher.as_ref(), cache).await?;
                self.decode_with(
                    message.topic,
                    &schema,
                    message.payload,
                    PayloadEncoding::Binary,
                )
            }
            Mode::PubSub { fetcher, cache } => {
                let (schema, encoding) =
                    self.pubsub_schema(message, fetcher.as_ref(), cache).await?;
                self.decode_with(message.topic, &schema, message.payload, encoding)
            }
            Mode::Confluent { registry, cache } => {
                let (id, rest) = wire::read_header(message.payload).map_err(|reason| {
                    DecodeError::Malformed {
                        topic: message.topic.to_owned(),
                        schema: SchemaId::config("confluent"),
                        path: crate::FieldPath::root(),
                        reason,
                    }
                })?;
                let schema = self
                    .confluent_schema(message.topic, id, registry, cache)
                    .await?;
                let malformed = |reason: String| DecodeError::Malformed {
                    topic: message.topic.to_owned(),
                    schema: schema.id.clone(),
                    path: crate::FieldPath::root(),
                    reason,
                };
                if let SchemaKind::Protobuf(proto) = &schema.kind {
                    let (indexes, body) = wire::read_indexes(rest).map_err(malformed)?;
                    if indexes != proto.indexes() {
                        let nested = proto.with_indexes(&indexes).map_err(malformed)?;
                        let nested = Arc::new(Schema {
                            id: schema.id.clone(),
                            kind: SchemaKind::Protobuf(Arc::new(nested)),
                        });
                        return self.decode_with(
                            message.topic,
                            &nested,
                            body,
                            PayloadEncoding::Binary,
                        );
                    }
                    return self.decode_with(message.topic, &schema, body, PayloadEncoding::Binary);
                }
                self.decode_with(message.topic, &schema, rest, PayloadEncoding::Binary)
            }
        }
    }

    fn decode_with(
        &self,
        topic: &str,
        schema: &Arc<Schema>,
        payload: &[u8],
        encoding: PayloadEncoding,
    ) -> Result<Decoded, DecodeError> {
        let mut out = Vec::with_capacity(payload.len() * 2 + 16);
        let wrote = decode_payload(&schema.kind, payload, encoding, &mut out).map_err(|e| {
            DecodeError::Malformed {
                topic: topic.to_owned(),
                schema: schema.id.clone(),
                path: e.path(),
                reason: e.reason().to_owned(),
            }
        })?;
        Ok(Decoded {
            json: (wrote && self.view == View::Json).then_some(out),
            schema: Some(schema.clone()),
        })
    }

    async fn pulsar_schema(
        &self,
        message: &SourceMessage<'_>,
        fetcher: &dyn PulsarSchemaFetcher,
        cache: &Cache<i64>,
    ) -> Result<Arc<Schema>, DecodeError> {
        let topic = message.topic;
        let version_bytes = message
            .schema_version
            .filter(|v| !v.is_empty())
            .ok_or_else(|| DecodeError::MissingSchema {
                topic: topic.to_owned(),
                reason: "the message carries no schema version (produced without a Pulsar schema)"
                    .to_owned(),
            })?;
        let version =
            pulsar::parse_version(version_bytes).map_err(|reason| DecodeError::MissingSchema {
                topic: topic.to_owned(),
                reason,
            })?;
        let label = || format!("version {version} of {topic}");
        let cached = match cache.get(topic, &version) {
            Some(hit) => hit,
            None => {
                let name =
                    TopicName::parse(topic).map_err(|reason| DecodeError::MissingSchema {
                        topic: topic.to_owned(),
                        reason,
                    })?;
                let fetched = match fetcher.fetch(&name, version).await {
                    Ok(info) => match pulsar::to_schema(&name, &info) {
                        Ok(schema) => Cached::Ready(Arc::new(schema)),
                        Err(e) => Cached::Unusable(e.to_string()),
                    },
                    Err(FetchError::NotFound(reason)) => cache.unknown(reason),
                    Err(FetchError::Unavailable(reason)) => {
                        return Err(DecodeError::Unavailable {
                            topic: topic.to_owned(),
                            schema: label(),
                            reason,
                        });
                    }
                };
                self.remember(&fetched);
                cache.put(topic, version, fetched.clone());
                fetched
            }
        };
        ready(topic, cached, label)
    }

    async fn pubsub_schema(
        &self,
        message: &SourceMessage<'_>,
        fetcher: &dyn PubSubSchemaFetcher,
        cache: &Cache<String>,
    ) -> Result<(Arc<Schema>, PayloadEncoding), DecodeError> {
        let topic = message.topic;
        let missing = |what: &str| DecodeError::MissingSchema {
            topic: topic.to_owned(),
            reason: format!(
                "the message has no {what} attribute: its topic has no schema (name the schema \
                 in the config instead: format = \"avro\" or \"protobuf\")"
            ),
        };
        let name = message
            .attributes
            .attribute(pubsub::SCHEMA_NAME)
            .ok_or_else(|| missing(pubsub::SCHEMA_NAME))?;
        let encoding = match message.attributes.attribute(pubsub::SCHEMA_ENCODING) {
            Some("JSON") => PayloadEncoding::Json,
            Some("BINARY") => PayloadEncoding::Binary,
            Some(other) => {
                return Err(DecodeError::MissingSchema {
                    topic: topic.to_owned(),
                    reason: format!("unknown {} {other:?}", pubsub::SCHEMA_ENCODING),
                });
            }
            None => return Err(missing(pubsub::SCHEMA_ENCODING)),
        };
        let revision = message
            .attributes
            .attribute(pubsub::SCHEMA_REVISION)
            .ok_or_else(|| missing(pubsub::SCHEMA_REVISION))?;
        let label = || format!("{name}@{revision}");
        let cached = match cache.get(name, revision) {
            Some(hit) => hit,
            None => {
                let fetched = match fetcher.fetch(name, revision).await {
                    Ok(info) => match pubsub::to_schema(&info, revision) {
                        Ok(schema) => Cached::Ready(Arc::new(schema)),
                        Err(e) => Cached::Unusable(e.to_string()),
                    },
                    Err(FetchError::NotFound(reason)) => cache.unknown(reason),
                    Err(FetchError::Unavailable(reason)) => {
                        return Err(DecodeError::Unavailable {
                            topic: topic.to_owned(),
                            schema: label(),
                            reason,
                        });
                    }
                };
                self.remember(&fetched);
                cache.put(name, revision.to_owned(), fetched.clone());
                fetched
            }
        };
        Ok((ready(topic, cached, label)?, encoding))
    }

    async fn confluent_schema(
        &self,
        topic: &str,
        id: u32,
        registry: &RegistryClient,
        cache: &Cache<u32>,
    ) -> Result<Arc<Schema>, DecodeError> {
        let label = || format!("id {id}");
        let cached = match cache.get("", &id) {
            Some(hit) => hit,
            None => {
                let fetched = match registry.schema_by_id(id).await {
                    Ok(Some(document)) => {
                        match schema_from_registry(registry, &document, SchemaId::confluent(id))
                            .await
                        {
                            Ok(schema) => Cached::Ready(Arc::new(schema)),
                            Err(RegistrySchemaError::Invalid(e)) => Cached::Unusable(e),
                            Err(RegistrySchemaError::Registry(e)) => {
                                return Err(DecodeError::Unavailable {
                                    topic: topic.to_owned(),
                                    schema: label(),
                                    reason: e.to_string(),
                                });
                            }
                        }
                    }
                    Ok(None) => cache.unknown(format!(
                        "the registry at {} has no schema with id {id}",
                        registry.url()
                    )),
                    Err(e) => {
                        return Err(DecodeError::Unavailable {
                            topic: topic.to_owned(),
                            schema: label(),
                            reason: e.to_string(),
                        });
                    }
                };
                self.remember(&fetched);
                cache.put("", id, fetched.clone());
                fetched
            }
        };
        ready(topic, cached, label)
    }
}

fn ready(
    topic: &str,
    cached: Cached,
    label: impl Fn() -> String,
) -> Result<Arc<Schema>, DecodeError> {
    match cached {
        Cached::Ready(schema) => Ok(schema),
        Cached::Unknown { reason, .. } => Err(DecodeError::UnknownSchema {
            topic: topic.to_owned(),
            schema: label(),
            reason,
        }),
        Cached::Unusable(reason) => Err(DecodeError::UnusableSchema {
            topic: topic.to_owned(),
            schema: label(),
            reason,
        }),
    }
}

fn configured_text(
    config: &DecodeConfig,
    base: Option<&Path>,
) -> Result<(String, String), SchemaError> {
    match (&config.schema, &config.schema_file) {
        (Some(text), None) => Ok(("inline".to_owned(), text.clone())),
        (None, Some(file)) => Ok((file.display().to_string(), read(&resolve(base, file))?)),
        (Some(_), Some(_)) => Err(SchemaError::Config(
            "decode: give schema or schema_file, not both".into(),
        )),
        (None, None) => Err(SchemaError::Config(format!(
            "decode: format {:?} needs schema or schema_file",
            config.format
        ))),
    }
}

/// Decodes `payload` by `kind` into JSON in `out`; false when the payload is already the JSON
/// the guest should see (nothing written).
pub(crate) fn decode_payload(
    kind: &SchemaKind,
    payload: &[u8],
    encoding: PayloadEncoding,
    out: &mut Vec<u8>,
) -> Result<bool, ValueError> {
    let parse = |payload: &[u8]| {
        serde_json::from_slice::<Json>(payload)
            .map_err(|e| ValueError::new(format!("not JSON: {e}")))
    };
    match (kind, encoding) {
        (SchemaKind::Avro(avro), PayloadEncoding::Binary) => avro.decode_to_json(payload, out)?,
        (SchemaKind::Avro(avro), PayloadEncoding::Json) => {
            avro.normalize_json(&parse(payload)?, out)?
        }
        (SchemaKind::Protobuf(proto), PayloadEncoding::Binary) => {
            proto.decode_to_json(payload, out)?
        }
        (SchemaKind::Protobuf(proto), PayloadEncoding::Json) => {
            let mut binary = Vec::with_capacity(payload.len());
            proto.encode_json(payload, &mut binary)?;
            proto.decode_to_json(&binary, out)?;
        }
        (SchemaKind::JsonWithAvro(_), _) => {
            serde_json::from_slice::<IgnoredAny>(payload)
                .map_err(|e| ValueError::new(format!("not JSON: {e}")))?;
            return Ok(false);
        }
        (SchemaKind::JsonSchema(doc), _) => {
            doc.validate(&parse(payload)?)?;
            return Ok(false);
        }
        (SchemaKind::Primitive(primitive), _) => primitive.decode_to_json(payload, out)?,
    }
    Ok(true)
}

/// Why a registry schema could not be turned into a [`Schema`].
pub(crate) enum RegistrySchemaError {
    /// Its text (or a reference's) does not parse.
    Invalid(String),
    /// The registry failed while fetching references.
    Registry(RegistryError),
}

/// Builds a [`Schema`] from a registry document, fetching its references (recursively).
pub(crate) async fn schema_from_registry(
    registry: &RegistryClient,
    document: &SchemaDocument,
    id: SchemaId,
) -> Result<Schema, RegistrySchemaError> {
    let what = id.to_string();
    // name → text of every referenced schema, in dependency order.
    let mut referenced: Vec<(String, String)> = Vec::new();
    let mut pending: Vec<crate::registry::SchemaReference> = document.references.clone();
    let mut seen = std::collections::HashSet::new();
    while let Some(reference) = pending.pop() {
        if !seen.insert(reference.name.clone()) || referenced.len() > 256 {
            continue;
        }
        let version = registry
            .version(&reference.subject, &reference.version.to_string())
            .await
            .map_err(RegistrySchemaError::Registry)?
            .ok_or_else(|| {
                RegistrySchemaError::Invalid(format!(
                    "{what}: reference {} (subject {} version {}) not found",
                    reference.name, reference.subject, reference.version
                ))
            })?;
        pending.extend(version.document.references.iter().cloned());
        referenced.push((reference.name, version.document.schema));
    }
    let kind = match document.schema_type {
        SchemaType::Avro => {
            let texts: Vec<String> = referenced.into_iter().rev().map(|(_, t)| t).collect();
            SchemaKind::Avro(Arc::new(
                AvroSchema::parse_with_references(&document.schema, &texts, &what)
                    .map_err(|e| RegistrySchemaError::Invalid(e.to_string()))?,
            ))
        }
        SchemaType::Protobuf => {
            let root = "registry_root.proto";
            let mut files: Vec<ProtoFile> = referenced
                .into_iter()
                .map(|(name, text)| ProtoFile { name, text })
                .collect();
            files.push(ProtoFile {
                name: root.to_owned(),
                text: document.schema.clone(),
            });
            SchemaKind::Protobuf(Arc::new(
                ProtoSchema::from_sources(&files, root, None, &what)
                    .map_err(|e| RegistrySchemaError::Invalid(e.to_string()))?,
            ))
        }
        SchemaType::Json => SchemaKind::JsonSchema(Arc::new(
            JsonSchemaDoc::parse(&document.schema, &what)
                .map_err(|e| RegistrySchemaError::Invalid(e.to_string()))?,
        )),
    };
    Ok(Schema { id, kind })
}

#[cfg(test)]
mod tests;
