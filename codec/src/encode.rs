//! The sink side: [`Encoder`] turns a transform's output key and value into the bytes written
//! to Kafka: unchanged (`raw`), checked JSON, or Confluent Avro / Protobuf / JSON Schema framed
//! with the id of a schema registered under the part's subject.
//!
//! Registry calls happen once per (topic, schema) pair, never per record in steady state: the
//! id is cached; a refusal (incompatible, invalid, not registered) is cached for
//! `refusal_retry_secs` so records needing that schema fail at once with the registry's reason.
//! A record is encoded completely, key and value, before anything is returned: nothing is ever
//! written half-encoded.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::de::IgnoredAny;
use serde_json::Value as Json;

use crate::avro::AvroSchema;
use crate::config::{EncodeConfig, EncodeFormat, PartConfig, SubjectStrategy};
use crate::decode::{RegistrySchemaError, schema_from_registry};
use crate::error::{EncodeError, FieldPath, Part, SchemaError};
use crate::json_schema::JsonSchemaDoc;
use crate::protobuf::{ProtoFile, ProtoSchema};
use crate::registry::{RegistryClient, RegistryError, SchemaDocument, SchemaReference, SchemaType};
use crate::schema::{Schema, SchemaId, SchemaKind};
use crate::wire;

/// A sink-side schema with its registered id.
#[derive(Debug)]
struct Prepared {
    id: u32,
    subject: String,
    kind: SchemaKind,
}

#[derive(Clone)]
enum Entry {
    Ready(Arc<Prepared>),
    /// The registry refused (or lacks) the schema: `error` is rebuilt per record.
    Failed {
        refused: bool,
        subject: String,
        reason: String,
        until: Instant,
    },
}

enum SchemaFrom {
    /// `raw` / `json`: no schema.
    None,
    /// A schema from the config.
    Config(Arc<Schema>),
    /// The record's source schema.
    Record,
    /// The subject's latest version.
    Latest,
}

struct PartEncoder {
    part: Part,
    format: EncodeFormat,
    source: SchemaFrom,
    strategy: SubjectStrategy,
    auto_register: bool,
    registry: Option<RegistryClient>,
    refusal_retry: Duration,
    /// topic → schema identity → entry.
    cache: RwLock<HashMap<String, HashMap<SchemaId, Entry>>>,
}

/// Encodes outputs as `[pipeline.encode]` says. Shared by all lanes (`&self`).
pub struct Encoder {
    key: PartEncoder,
    value: PartEncoder,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("key", &self.key.format)
            .field("value", &self.value.format)
            .finish()
    }
}

/// An encoded record: borrowed when the bytes pass unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded<'a> {
    /// The Kafka key.
    pub key: Option<Cow<'a, [u8]>>,
    /// The Kafka value.
    pub value: Option<Cow<'a, [u8]>>,
}

const LATEST: &str = "latest";

impl Encoder {
    /// Builds the encoder a config section describes, loading configured schemas now (the
    /// registry is first asked when a record needs it).
    ///
    /// # Errors
    /// [`SchemaError`] for inconsistent keys, unreadable or invalid schemas, a format that
    /// needs a registry without one.
    pub fn new(config: &EncodeConfig, base_dir: Option<&Path>) -> Result<Self, SchemaError> {
        let registry = config
            .registry
            .as_ref()
            .map(RegistryClient::new)
            .transpose()?;
        let retry = Duration::from_secs(config.refusal_retry_secs);
        Ok(Self {
            key: PartEncoder::new(Part::Key, &config.key, registry.clone(), retry, base_dir)?,
            value: PartEncoder::new(Part::Value, &config.value, registry, retry, base_dir)?,
        })
    }

    /// True when both parts pass unchanged (`raw`): the pipeline may skip the encoder.
    pub fn is_passthrough(&self) -> bool {
        self.key.format == EncodeFormat::Raw && self.value.format == EncodeFormat::Raw
    }

    /// Whether a part needs the record's source schema (`from_source`).
    pub fn needs_source_schema(&self) -> bool {
        matches!(self.key.source, SchemaFrom::Record)
            || matches!(self.value.source, SchemaFrom::Record)
    }

    /// Encodes key and value of one output for `topic`; `source` is the schema the input
    /// record was decoded with (for `from_source`).
    ///
    /// # Errors
    /// [`EncodeError`]: the output's fault (dead-letter, kind `schema`) unless
    /// [`EncodeError::is_transient`]. Either both parts are encoded or neither.
    pub async fn encode<'a>(
        &self,
        topic: &str,
        key: Option<&'a [u8]>,
        value: Option<&'a [u8]>,
        source: Option<&Arc<Schema>>,
    ) -> Result<Encoded<'a>, EncodeError> {
        let key = self.key.encode(topic, key, source).await?;
        let value = self.value.encode(topic, value, source).await?;
        Ok(Encoded { key, value })
    }

    /// Encodes one part.
    ///
    /// # Errors
    /// As [`Encoder::encode`].
    pub async fn encode_part<'a>(
        &self,
        part: Part,
        topic: &str,
        bytes: Option<&'a [u8]>,
        source: Option<&Arc<Schema>>,
    ) -> Result<Option<Cow<'a, [u8]>>, EncodeError> {
        match part {
            Part::Key => self.key.encode(topic, bytes, source).await,
            Part::Value => self.value.encode(topic, bytes, source).await,
        }
    }
}

fn load_config_schema(
    part: Part,
    config: &PartConfig,
    base_dir: Option<&Path>,
) -> Result<Option<Arc<Schema>>, SchemaError> {
    let resolve = |p: &Path| match base_dir {
        Some(base) if p.is_relative() => base.join(p),
        _ => p.to_path_buf(),
    };
    let (label, text, path) = match (&config.schema, &config.schema_file) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err(SchemaError::Config(format!(
                "encode.{part}: give schema or schema_file, not both"
            )));
        }
        (Some(text), None) => (format!("{part}:inline"), text.clone(), None),
        (None, Some(file)) => {
            let path = resolve(file);
            let text = std::fs::read_to_string(&path).map_err(|source| SchemaError::Io {
                path: path.display().to_string(),
                source,
            })?;
            (format!("{part}:{}", file.display()), text, Some(path))
        }
    };
    let id = SchemaId::config(&label);
    let what = id.to_string();
    let kind = match config.format {
        EncodeFormat::Avro => SchemaKind::Avro(Arc::new(AvroSchema::parse(&text, &what)?)),
        EncodeFormat::JsonSchema => {
            SchemaKind::JsonSchema(Arc::new(JsonSchemaDoc::parse(&text, &what)?))
        }
        EncodeFormat::Protobuf => {
            let message = config.message.as_deref();
            let proto = match path {
                Some(path) => {
                    let includes: Vec<_> =
                        config.proto_includes.iter().map(|p| resolve(p)).collect();
                    ProtoSchema::from_file(&path, &includes, message)?
                }
                None => ProtoSchema::from_sources(
                    &[ProtoFile {
                        name: "inline.proto".into(),
                        text,
                    }],
                    "inline.proto",
                    message,
                    &what,
                )?,
            };
            SchemaKind::Protobuf(Arc::new(proto))
        }
        EncodeFormat::Raw | EncodeFormat::Json => {
            return Err(SchemaError::Config(format!(
                "encode.{part}: format {:?} takes no schema",
                config.format
            )));
        }
    };
    Ok(Some(Arc::new(Schema { id, kind })))
}

impl PartEncoder {
    fn new(
        part: Part,
        config: &PartConfig,
        registry: Option<RegistryClient>,
        refusal_retry: Duration,
        base_dir: Option<&Path>,
    ) -> Result<Self, SchemaError> {
        let configured = load_config_schema(part, config, base_dir)?;
        let chosen = usize::from(configured.is_some())
            + usize::from(config.from_source)
            + usize::from(config.use_latest);
        let source = match config.format {
            EncodeFormat::Raw | EncodeFormat::Json => {
                if chosen > 0 {
                    return Err(SchemaError::Config(format!(
                        "encode.{part}: format {:?} takes no schema, from_source or use_latest",
                        config.format
                    )));
                }
                SchemaFrom::None
            }
            _ => {
                if chosen != 1 {
                    return Err(SchemaError::Config(format!(
                        "encode.{part}: format {:?} needs exactly one of schema, schema_file, \
                         from_source = true, use_latest = true",
                        config.format
                    )));
                }
                if registry.is_none() {
                    return Err(SchemaError::Config(format!(
                        "encode.{part}: format {:?} needs [encode.registry]",
                        config.format
                    )));
                }
                if config.use_latest && config.subject_strategy != SubjectStrategy::Topic {
                    return Err(SchemaError::Config(format!(
                        "encode.{part}: use_latest needs subject_strategy = \"topic\" (the record \
                         name comes from a schema, and there is none yet)"
                    )));
                }
                match configured {
                    Some(schema) => SchemaFrom::Config(schema),
                    None if config.from_source => SchemaFrom::Record,
                    None => SchemaFrom::Latest,
                }
            }
        };
        if config.from_source && part == Part::Key {
            return Err(SchemaError::Config(
                "encode.key: from_source applies to values only (source schemas describe values)"
                    .to_owned(),
            ));
        }
        if config.message.is_some() && config.format != EncodeFormat::Protobuf {
            return Err(SchemaError::Config(format!(
                "encode.{part}: `message` is only for format protobuf"
            )));
        }
        Ok(Self {
            part,
            format: config.format,
            source,
            strategy: config.subject_strategy,
            auto_register: config.auto_register,
            registry,
            refusal_retry,
            cache: RwLock::new(HashMap::new()),
        })
    }

    async fn encode<'a>(
        &self,
        topic: &str,
        bytes: Option<&'a [u8]>,
        source: Option<&Arc<Schema>>,
    ) -> Result<Option<Cow<'a, [u8]>>, EncodeError> {
        // A null key or value (tombstone) stays null in every format.
        let Some(bytes) = bytes else { return Ok(None) };
        let mismatch = |schema: &str, path: FieldPath, reason: String| EncodeError::Mismatch {
            topic: topic.to_owned(),
            part: self.part,
            schema: schema.to_owned(),
            path,
            reason,
        };
        match self.format {
            EncodeFormat::Raw => return Ok(Some(Cow::Borrowed(bytes))),
            EncodeFormat::Json => {
                serde_json::from_slice::<IgnoredAny>(bytes)
                    .map_err(|e| mismatch("JSON", FieldPath::root(), format!("not JSON: {e}")))?;
                return Ok(Some(Cow::Borrowed(bytes)));
            }
            _ => {}
        }
        let prepared = self.prepare(topic, source).await?;
        let mut out = Vec::with_capacity(bytes.len() + 16);
        let parse = |bytes: &[u8]| {
            serde_json::from_slice::<Json>(bytes).map_err(|e| {
                mismatch(
                    &prepared.subject,
                    FieldPath::root(),
                    format!("not JSON: {e}"),
                )
            })
        };
        match &prepared.kind {
            SchemaKind::Avro(avro) => {
                let json = parse(bytes)?;
                wire::write_header(&mut out, prepared.id, None);
                avro.encode_json(&json, &mut out)
                    .map_err(|e| mismatch(&prepared.subject, e.path(), e.reason().to_owned()))?;
            }
            SchemaKind::Protobuf(proto) => {
                wire::write_header(&mut out, prepared.id, Some(proto.indexes()));
                proto
                    .encode_json(bytes, &mut out)
                    .map_err(|e| mismatch(&prepared.subject, e.path(), e.reason().to_owned()))?;
            }
            SchemaKind::JsonSchema(doc) => {
                let json = parse(bytes)?;
                doc.validate(&json)
                    .map_err(|e| mismatch(&prepared.subject, e.path(), e.reason().to_owned()))?;
                wire::write_header(&mut out, prepared.id, None);
                out.extend_from_slice(bytes);
            }
            SchemaKind::JsonWithAvro(_) | SchemaKind::Primitive(_) => {
                unreachable!("prepare converts these to Avro")
            }
        }
        Ok(Some(Cow::Owned(out)))
    }

    fn cached(&self, topic: &str, key: &SchemaId) -> Option<Entry> {
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        match cache.get(topic)?.get(key)? {
            Entry::Failed { until, .. } if *until <= Instant::now() => None,
            entry => Some(entry.clone()),
        }
    }

    fn remember(&self, topic: &str, key: SchemaId, entry: Entry) {
        self.cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(topic.to_owned())
            .or_default()
            .insert(key, entry);
    }

    fn failed_error(&self, topic: &str, entry: &Entry) -> Option<EncodeError> {
        match entry {
            Entry::Failed {
                refused: true,
                subject,
                reason,
                ..
            } => Some(EncodeError::Refused {
                topic: topic.to_owned(),
                part: self.part,
                subject: subject.clone(),
                reason: reason.clone(),
            }),
            Entry::Failed {
                refused: false,
                subject,
                reason,
                ..
            } => Some(EncodeError::NoSchema {
                topic: topic.to_owned(),
                part: self.part,
                what: format!("subject {subject}"),
                reason: reason.clone(),
            }),
            Entry::Ready(_) => None,
        }
    }

    /// The schema and id for this topic and source schema: from the cache, else the registry.
    async fn prepare(
        &self,
        topic: &str,
        source: Option<&Arc<Schema>>,
    ) -> Result<Arc<Prepared>, EncodeError> {
        let no_schema = |what: String, reason: String| EncodeError::NoSchema {
            topic: topic.to_owned(),
            part: self.part,
            what,
            reason,
        };
        let (key, schema): (SchemaId, Option<Cow<'_, Schema>>) = match &self.source {
            SchemaFrom::None => unreachable!("raw and json need no schema"),
            SchemaFrom::Config(schema) => (schema.id.clone(), Some(Cow::Borrowed(schema.as_ref()))),
            SchemaFrom::Latest => (SchemaId::config(LATEST), None),
            SchemaFrom::Record => {
                let source = source.ok_or_else(|| {
                    no_schema(
                        "the source record".into(),
                        "it was not decoded with a schema (set the source's decode format)".into(),
                    )
                })?;
                (source.id.clone(), None)
            }
        };
        if let Some(entry) = self.cached(topic, &key) {
            return match entry {
                Entry::Ready(prepared) => Ok(prepared),
                failed => Err(self.failed_error(topic, &failed).expect("a failure")),
            };
        }
        let schema = match (schema, &self.source) {
            (Some(schema), _) => Some(schema),
            (None, SchemaFrom::Record) => {
                let source = source.expect("checked above");
                Some(Cow::Owned(self.derive(source).map_err(|reason| {
                    no_schema(format!("source schema {}", source.id), reason)
                })?))
            }
            _ => None,
        };
        let registry = self.registry.as_ref().expect("checked at construction");
        let subject = match &schema {
            Some(schema) => self
                .subject(topic, &schema.kind)
                .map_err(|reason| no_schema(format!("schema {}", schema.id), reason))?,
            None => format!("{topic}-{}", self.part),
        };
        let unavailable = |e: RegistryError| EncodeError::Unavailable {
            topic: topic.to_owned(),
            part: self.part,
            subject: subject.clone(),
            reason: e.to_string(),
        };
        let result = match &schema {
            None => self.latest(registry, &subject).await,
            Some(schema) => self.register(registry, &subject, schema).await,
        };
        let entry = match result {
            Ok(prepared) => Entry::Ready(Arc::new(prepared)),
            Err(Failure::Refused(reason)) => Entry::Failed {
                refused: true,
                subject: subject.clone(),
                reason,
                until: Instant::now() + self.refusal_retry,
            },
            Err(Failure::Missing(reason)) => Entry::Failed {
                refused: false,
                subject: subject.clone(),
                reason,
                until: Instant::now() + self.refusal_retry,
            },
            Err(Failure::Unavailable(e)) => return Err(unavailable(e)),
        };
        self.remember(topic, key, entry.clone());
        match entry {
            Entry::Ready(prepared) => Ok(prepared),
            failed => Err(self.failed_error(topic, &failed).expect("a failure")),
        }
    }

    /// The sink schema a source schema gives for this part's format.
    fn derive(&self, source: &Schema) -> Result<Schema, String> {
        let kind = match (self.format, &source.kind) {
            (EncodeFormat::Avro, SchemaKind::Avro(a) | SchemaKind::JsonWithAvro(a)) => {
                SchemaKind::Avro(a.clone())
            }
            (EncodeFormat::Avro, SchemaKind::Primitive(p)) => {
                let text = p
                    .avro_equivalent()
                    .ok_or_else(|| format!("Pulsar {} has no Avro equivalent", p.pulsar_name()))?;
                SchemaKind::Avro(Arc::new(
                    AvroSchema::parse(text, source.id.as_str()).map_err(|e| e.to_string())?,
                ))
            }
            (EncodeFormat::Protobuf, SchemaKind::Protobuf(p)) => SchemaKind::Protobuf(p.clone()),
            (EncodeFormat::JsonSchema, SchemaKind::JsonSchema(j)) => {
                SchemaKind::JsonSchema(j.clone())
            }
            (format, kind) => {
                return Err(format!(
                    "a {} source schema cannot be written as {format:?}",
                    kind.type_name()
                ));
            }
        };
        Ok(Schema {
            id: source.id.clone(),
            kind,
        })
    }

    fn subject(&self, topic: &str, kind: &SchemaKind) -> Result<String, String> {
        let record = || -> Result<&str, String> {
            match kind {
                SchemaKind::Avro(a) => a
                    .name()
                    .ok_or_else(|| "the record-name strategies need a named Avro type".to_owned()),
                SchemaKind::Protobuf(p) => Ok(p.full_name()),
                SchemaKind::JsonSchema(j) => j.title().ok_or_else(|| {
                    "the record-name strategies need a JSON Schema with a title".to_owned()
                }),
                _ => Err("no record name".to_owned()),
            }
        };
        Ok(match self.strategy {
            SubjectStrategy::Topic => format!("{topic}-{}", self.part),
            SubjectStrategy::Record => record()?.to_owned(),
            SubjectStrategy::TopicRecord => format!("{topic}-{}", record()?),
        })
    }

    async fn latest(&self, registry: &RegistryClient, subject: &str) -> Result<Prepared, Failure> {
        let registered = registry
            .version(subject, LATEST)
            .await
            .map_err(Failure::from)?
            .ok_or_else(|| Failure::Missing(format!("subject {subject} has no version")))?;
        let schema = schema_from_registry(
            registry,
            &registered.document,
            SchemaId::confluent(registered.id),
        )
        .await
        .map_err(|e| match e {
            RegistrySchemaError::Invalid(reason) => Failure::Missing(reason),
            RegistrySchemaError::Registry(e) => Failure::from(e),
        })?;
        let expected = match self.format {
            EncodeFormat::Avro => "AVRO",
            EncodeFormat::Protobuf => "PROTOBUF",
            _ => "JSON",
        };
        if schema.kind.type_name() != expected {
            return Err(Failure::Missing(format!(
                "the latest schema of {subject} is {}, not {expected}",
                schema.kind.type_name()
            )));
        }
        Ok(Prepared {
            id: registered.id,
            subject: subject.to_owned(),
            kind: schema.kind,
        })
    }

    async fn register(
        &self,
        registry: &RegistryClient,
        subject: &str,
        schema: &Schema,
    ) -> Result<Prepared, Failure> {
        let document = match &schema.kind {
            SchemaKind::Avro(a) => SchemaDocument {
                schema: a.text().to_owned(),
                schema_type: SchemaType::Avro,
                references: Vec::new(),
            },
            SchemaKind::JsonSchema(j) => SchemaDocument {
                schema: j.text().to_owned(),
                schema_type: SchemaType::Json,
                references: Vec::new(),
            },
            SchemaKind::Protobuf(p) => self.protobuf_document(registry, p).await?,
            SchemaKind::JsonWithAvro(_) | SchemaKind::Primitive(_) => {
                unreachable!("derive converts these")
            }
        };
        let id = if self.auto_register {
            registry.register(subject, &document).await?
        } else {
            registry
                .lookup(subject, &document)
                .await?
                .ok_or_else(|| {
                    Failure::Missing(format!(
                        "the schema is not registered under {subject} (auto_register = false)"
                    ))
                })?
                .id
        };
        Ok(Prepared {
            id,
            subject: subject.to_owned(),
            kind: schema.kind.clone(),
        })
    }

    /// The root file's document, registering the files it imports first (each under its file
    /// name as subject, as Confluent's serializers do; well-known types need no reference).
    async fn protobuf_document(
        &self,
        registry: &RegistryClient,
        proto: &ProtoSchema,
    ) -> Result<SchemaDocument, Failure> {
        let files = proto.files();
        let mut versions: HashMap<String, i32> = HashMap::new();
        let references_of = |name: &str, versions: &HashMap<String, i32>| -> Vec<SchemaReference> {
            proto
                .imports_of(name)
                .into_iter()
                .filter_map(|import| {
                    versions.get(&import).map(|version| SchemaReference {
                        subject: import.clone(),
                        name: import,
                        version: *version,
                    })
                })
                .collect()
        };
        // Dependencies come after the root, deepest last: register from the end.
        for file in files.iter().skip(1).rev() {
            let document = SchemaDocument {
                schema: file.text.clone(),
                schema_type: SchemaType::Protobuf,
                references: references_of(&file.name, &versions),
            };
            if self.auto_register {
                registry.register(&file.name, &document).await?;
            }
            let registered = registry
                .lookup(&file.name, &document)
                .await?
                .ok_or_else(|| {
                    Failure::Missing(format!("import {} is not registered", file.name))
                })?;
            versions.insert(file.name.clone(), registered.version.unwrap_or(1));
        }
        let root = files
            .first()
            .ok_or_else(|| Failure::Missing("no .proto file".into()))?;
        Ok(SchemaDocument {
            schema: root.text.clone(),
            schema_type: SchemaType::Protobuf,
            references: references_of(&root.name, &versions),
        })
    }
}

enum Failure {
    /// The registry refused (its reason).
    Refused(String),
    /// Not there (not registered, no version, unusable).
    Missing(String),
    /// Could not ask.
    Unavailable(RegistryError),
}

impl From<RegistryError> for Failure {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Refused { status: 404, .. } => Failure::Missing(e.to_string()),
            RegistryError::Refused { .. } => Failure::Refused(e.to_string()),
            RegistryError::Unavailable(_) => Failure::Unavailable(e),
        }
    }
}

#[cfg(test)]
mod tests;
