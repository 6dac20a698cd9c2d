//! Schemas at Sluice's edges: decoding what Pulsar and Pub/Sub deliver into what a transform
//! sees, and encoding what a transform outputs into what Kafka consumers expect.
//!
//! - [`Decoder`] (source side, `[pipeline.decode]`, [`DecodeConfig`]): raw bytes, JSON,
//!   Pulsar schemas (per message schema version), Pub/Sub topic schemas (per revision, from the
//!   `googclient_schema*` attributes), Avro / Protobuf with a configured schema, Confluent's
//!   wire format. A guest sees the original bytes or the record as JSON (a stable mapping:
//!   `docs/schemas.md`); the record's schema identity ([`SchemaId`]) goes into its metadata.
//! - [`Encoder`] (sink side, `[pipeline.encode]`, [`EncodeConfig`]): raw, JSON, and
//!   Confluent Avro / Protobuf / JSON Schema (magic byte + schema id, Protobuf message
//!   indexes), schemas registered under subjects of a Confluent-compatible Schema Registry
//!   ([`RegistryClient`]), key and value separately.
//!
//! Per-record failures are [`DecodeError`] / [`EncodeError`]: a record's own fault (dead-letter
//! it with kind [`DEAD_LETTER_KIND`], reason = the error's text) unless `is_transient()` (a
//! schema service is unreachable: retry, do not dead-letter).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use sluice_codec::{DecodeConfig, DecodeContext, Decoder, EncodeConfig, Encoder, NoAttributes, SourceMessage};
//! let decode: DecodeConfig = toml::from_str(r#"format = "pulsar""#)?;
//! let decoder = Decoder::new(&decode, DecodeContext {
//!     pulsar_admin_url: Some("http://127.0.0.1:8080"),
//!     ..DecodeContext::default()
//! })?;
//! let (payload, version) = (b"...".as_slice(), 0i64.to_be_bytes());
//! let decoded = decoder.decode(&SourceMessage {
//!     topic: "persistent://public/default/orders",
//!     payload,
//!     schema_version: Some(&version),
//!     attributes: &NoAttributes,
//! }).await?;
//! // The guest sees decoded.json (or the payload); decoded.schema's id goes into the metadata.
//! let encode: EncodeConfig = toml::from_str(r#"
//!     registry = { url = "http://127.0.0.1:8081/apis/ccompat/v7" }
//!     value = { format = "avro", from_source = true }
//! "#)?;
//! let encoder = Encoder::new(&encode, None)?;
//! let guest_output = decoded.json.as_deref().unwrap_or(payload);
//! let out = encoder.encode("orders-clean", None, Some(guest_output), decoded.schema.as_ref()).await?;
//! # let _ = out; Ok(()) }
//! ```

mod avro;
mod config;
mod decode;
mod encode;
mod error;
mod json_schema;
mod protobuf;
pub mod pubsub;
pub mod pulsar;
mod registry;
mod schema;
mod time;
pub mod wire;

pub use avro::AvroSchema;
pub use config::{
    DecodeConfig, DecodeFormat, EncodeConfig, EncodeFormat, PartConfig, PayloadEncoding,
    RegistryConfig, Secret, SubjectStrategy, View,
};
pub use decode::{Attributes, DecodeContext, Decoded, Decoder, NoAttributes, SourceMessage};
pub use encode::{Encoded, Encoder};
pub use error::{
    DEAD_LETTER_KIND, DecodeError, EncodeError, FieldPath, Part, SchemaError, ValueError,
};
pub use json_schema::JsonSchemaDoc;
pub use protobuf::{ProtoFile, ProtoSchema, is_well_known, message_indexes, print_file};
pub use registry::{
    RegisteredSchema, RegistryClient, RegistryError, SchemaDocument, SchemaReference, SchemaType,
};
pub use schema::{Primitive, Schema, SchemaId, SchemaKind};

pub(crate) use schema::decode_base64;
