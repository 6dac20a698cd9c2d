//! Schemas as the codec uses them: an identity for the record's metadata and a decoded form
//! (Avro, Protobuf, JSON Schema, Pulsar's JSON-with-Avro-definition, Pulsar primitives).

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::avro::{AvroSchema, write_base64, write_float, write_str};
use crate::error::ValueError;
use crate::json_schema::JsonSchemaDoc;
use crate::protobuf::ProtoSchema;
use crate::time::{self, Unit};

/// A schema's identity, carried in the record's metadata so a guest (and the sink) knows what
/// the record was written with: `pulsar:<topic>@<version>`, `pubsub:<schema>@<revision>`,
/// `confluent:<id>`, or `config:<label>` for a schema given in the pipeline config.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SchemaId(Arc<str>);

impl SchemaId {
    /// `pulsar:<topic>@<version>` (the topic as `persistent://tenant/namespace/name`).
    pub fn pulsar(topic: &str, version: i64) -> Self {
        Self(format!("pulsar:{topic}@{version}").into())
    }

    /// `pubsub:<schema>@<revision>` (the schema as `projects/P/schemas/S`).
    pub fn pubsub(schema: &str, revision: &str) -> Self {
        Self(format!("pubsub:{schema}@{revision}").into())
    }

    /// `confluent:<id>`.
    pub fn confluent(id: u32) -> Self {
        Self(format!("confluent:{id}").into())
    }

    /// `config:<label>`: a schema from the pipeline config (label: file name or `inline`).
    pub fn config(label: &str) -> Self {
        Self(format!("config:{label}").into())
    }

    /// The identity as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SchemaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SchemaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

/// A schema a record was decoded with, or that an output is encoded with.
#[derive(Debug, Clone)]
pub struct Schema {
    /// Its identity.
    pub id: SchemaId,
    /// What it is.
    pub kind: SchemaKind,
}

/// The kinds of schema the codec understands.
#[derive(Debug, Clone)]
pub enum SchemaKind {
    /// Avro (binary datums).
    Avro(Arc<AvroSchema>),
    /// A Protobuf message type.
    Protobuf(Arc<ProtoSchema>),
    /// JSON validated by a JSON Schema.
    JsonSchema(Arc<JsonSchemaDoc>),
    /// JSON described by an Avro schema: Pulsar's JSON schema type.
    JsonWithAvro(Arc<AvroSchema>),
    /// A Pulsar primitive schema.
    Primitive(Primitive),
}

impl SchemaKind {
    /// A short name for messages: `AVRO`, `PROTOBUF`, `JSON`, or the primitive's Pulsar name.
    pub fn type_name(&self) -> &'static str {
        match self {
            SchemaKind::Avro(_) => "AVRO",
            SchemaKind::Protobuf(_) => "PROTOBUF",
            SchemaKind::JsonSchema(_) | SchemaKind::JsonWithAvro(_) => "JSON",
            SchemaKind::Primitive(p) => p.pulsar_name(),
        }
    }
}

/// Pulsar's primitive schema types and their payload encodings (Pulsar's Java schemas).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Primitive {
    /// UTF-8 text.
    String,
    /// Opaque bytes.
    Bytes,
    /// One byte, 0 or 1.
    Boolean,
    /// 1 byte, two's complement.
    Int8,
    /// 2 bytes, big-endian.
    Int16,
    /// 4 bytes, big-endian.
    Int32,
    /// 8 bytes, big-endian.
    Int64,
    /// IEEE 754, 4 bytes, big-endian.
    Float,
    /// IEEE 754, 8 bytes, big-endian.
    Double,
    /// `java.util.Date`: 8-byte big-endian milliseconds since the epoch.
    Date,
    /// `java.sql.Time`: 8-byte big-endian milliseconds.
    Time,
    /// `java.sql.Timestamp`: 8-byte big-endian milliseconds since the epoch.
    Timestamp,
    /// `java.time.Instant`: 8-byte seconds then 4-byte nanoseconds, big-endian.
    Instant,
    /// `java.time.LocalDate`: 8-byte big-endian days since the epoch.
    LocalDate,
    /// `java.time.LocalTime`: 8-byte big-endian nanoseconds of the day.
    LocalTime,
    /// `java.time.LocalDateTime`: 8-byte epoch day then 8-byte nanosecond of the day.
    LocalDateTime,
}

impl Primitive {
    /// The primitive for a Pulsar schema type name, if it is one.
    pub fn from_pulsar_name(name: &str) -> Option<Self> {
        Some(match name {
            "STRING" => Primitive::String,
            "BYTES" => Primitive::Bytes,
            "BOOLEAN" => Primitive::Boolean,
            "INT8" => Primitive::Int8,
            "INT16" => Primitive::Int16,
            "INT32" => Primitive::Int32,
            "INT64" => Primitive::Int64,
            "FLOAT" => Primitive::Float,
            "DOUBLE" => Primitive::Double,
            "DATE" => Primitive::Date,
            "TIME" => Primitive::Time,
            "TIMESTAMP" => Primitive::Timestamp,
            "INSTANT" => Primitive::Instant,
            "LOCAL_DATE" => Primitive::LocalDate,
            "LOCAL_TIME" => Primitive::LocalTime,
            "LOCAL_DATE_TIME" => Primitive::LocalDateTime,
            _ => return None,
        })
    }

    /// The Pulsar schema type name.
    pub fn pulsar_name(self) -> &'static str {
        match self {
            Primitive::String => "STRING",
            Primitive::Bytes => "BYTES",
            Primitive::Boolean => "BOOLEAN",
            Primitive::Int8 => "INT8",
            Primitive::Int16 => "INT16",
            Primitive::Int32 => "INT32",
            Primitive::Int64 => "INT64",
            Primitive::Float => "FLOAT",
            Primitive::Double => "DOUBLE",
            Primitive::Date => "DATE",
            Primitive::Time => "TIME",
            Primitive::Timestamp => "TIMESTAMP",
            Primitive::Instant => "INSTANT",
            Primitive::LocalDate => "LOCAL_DATE",
            Primitive::LocalTime => "LOCAL_TIME",
            Primitive::LocalDateTime => "LOCAL_DATE_TIME",
        }
    }

    /// The Avro schema an encoder derives from this primitive, where there is an obvious one.
    pub fn avro_equivalent(self) -> Option<&'static str> {
        Some(match self {
            Primitive::String => r#""string""#,
            Primitive::Bytes => r#""bytes""#,
            Primitive::Boolean => r#""boolean""#,
            Primitive::Int8 | Primitive::Int16 | Primitive::Int32 => r#""int""#,
            Primitive::Int64 => r#""long""#,
            Primitive::Float => r#""float""#,
            Primitive::Double => r#""double""#,
            Primitive::Date | Primitive::Timestamp => {
                r#"{"type":"long","logicalType":"timestamp-millis"}"#
            }
            Primitive::LocalDate => r#"{"type":"int","logicalType":"date"}"#,
            Primitive::Time
            | Primitive::Instant
            | Primitive::LocalTime
            | Primitive::LocalDateTime => return None,
        })
    }

    /// Decodes a payload into JSON text appended to `out`: strings and numbers as themselves,
    /// bytes base64, dates and times as in the Avro mapping (RFC 3339 / ISO 8601 strings).
    ///
    /// # Errors
    /// [`ValueError`] when the payload has the wrong length or is not UTF-8.
    pub fn decode_to_json(self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), ValueError> {
        let exact = |n: usize| -> Result<&[u8], ValueError> {
            if bytes.len() == n {
                Ok(bytes)
            } else {
                Err(ValueError::new(format!(
                    "{} needs {n} bytes, got {}",
                    self.pulsar_name(),
                    bytes.len()
                )))
            }
        };
        let be64 = |b: &[u8]| i64::from_be_bytes(b[..8].try_into().expect("8 bytes"));
        use std::io::Write as _;
        match self {
            Primitive::String => write_str(
                out,
                std::str::from_utf8(bytes)
                    .map_err(|e| ValueError::new(format!("STRING payload is not UTF-8: {e}")))?,
            ),
            Primitive::Bytes => write_base64(out, bytes),
            Primitive::Boolean => match exact(1)?[0] {
                0 => out.extend_from_slice(b"false"),
                1 => out.extend_from_slice(b"true"),
                b => {
                    return Err(ValueError::new(format!(
                        "BOOLEAN byte {b} is neither 0 nor 1"
                    )));
                }
            },
            Primitive::Int8 => {
                let _ = write!(out, "{}", exact(1)?[0] as i8);
            }
            Primitive::Int16 => {
                let b = exact(2)?;
                let _ = write!(out, "{}", i16::from_be_bytes([b[0], b[1]]));
            }
            Primitive::Int32 => {
                let b = exact(4)?;
                let _ = write!(out, "{}", i32::from_be_bytes([b[0], b[1], b[2], b[3]]));
            }
            Primitive::Int64 => {
                let _ = write!(out, "{}", be64(exact(8)?));
            }
            Primitive::Float => {
                let b = exact(4)?;
                write_float(
                    out,
                    f64::from(f32::from_be_bytes([b[0], b[1], b[2], b[3]])),
                    true,
                );
            }
            Primitive::Double => write_float(out, f64::from_bits(be64(exact(8)?) as u64), false),
            Primitive::Date | Primitive::Timestamp => write_str(
                out,
                &time::format_timestamp(be64(exact(8)?), Unit::Millis, true),
            ),
            Primitive::Time => {
                let millis = be64(exact(8)?).rem_euclid(86_400_000);
                write_str(out, &time::format_time(millis, Unit::Millis));
            }
            Primitive::Instant => {
                let b = exact(12)?;
                let seconds = be64(&b[..8]);
                let nanos = i64::from(i32::from_be_bytes([b[8], b[9], b[10], b[11]]));
                let count = seconds
                    .checked_mul(1_000_000_000)
                    .and_then(|s| s.checked_add(nanos))
                    .ok_or_else(|| ValueError::new("INSTANT out of range"))?;
                write_str(out, &time::format_timestamp(count, Unit::Nanos, true));
            }
            Primitive::LocalDate => write_str(out, &time::format_date(be64(exact(8)?))),
            Primitive::LocalTime => {
                write_str(out, &time::format_time(be64(exact(8)?), Unit::Nanos));
            }
            Primitive::LocalDateTime => {
                let b = exact(16)?;
                let count = be64(&b[..8])
                    .checked_mul(86_400_000_000_000)
                    .and_then(|d| d.checked_add(be64(&b[8..])))
                    .ok_or_else(|| ValueError::new("LOCAL_DATE_TIME out of range"))?;
                write_str(out, &time::format_timestamp(count, Unit::Nanos, false));
            }
        }
        Ok(())
    }
}

/// Base64, standard or URL-safe alphabet, padded or not.
pub(crate) fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    BASE64
        .decode(text)
        .or_else(|_| STANDARD_NO_PAD.decode(text))
        .or_else(|_| URL_SAFE.decode(text))
        .or_else(|_| URL_SAFE_NO_PAD.decode(text))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(p: Primitive, bytes: &[u8]) -> String {
        let mut out = Vec::new();
        p.decode_to_json(bytes, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn primitives_decode_as_pulsar_writes_them() {
        assert_eq!(
            json(Primitive::String, "hé \"q\"".as_bytes()),
            r#""hé \"q\"""#
        );
        assert_eq!(json(Primitive::Bytes, &[0, 255]), r#""AP8=""#);
        assert_eq!(json(Primitive::Boolean, &[1]), "true");
        assert_eq!(json(Primitive::Int8, &[0xff]), "-1");
        assert_eq!(json(Primitive::Int16, &[0x01, 0x00]), "256");
        assert_eq!(json(Primitive::Int32, &(-5i32).to_be_bytes()), "-5");
        assert_eq!(
            json(Primitive::Int64, &(1i64 << 40).to_be_bytes()),
            "1099511627776"
        );
        assert_eq!(json(Primitive::Float, &1.5f32.to_be_bytes()), "1.5");
        assert_eq!(json(Primitive::Double, &f64::NAN.to_be_bytes()), r#""NaN""#);
        assert_eq!(
            json(Primitive::Timestamp, &1_706_704_496_789i64.to_be_bytes()),
            r#""2024-01-31T12:34:56.789Z""#
        );
        let mut instant = 1_706_704_496i64.to_be_bytes().to_vec();
        instant.extend_from_slice(&5i32.to_be_bytes());
        assert_eq!(
            json(Primitive::Instant, &instant),
            r#""2024-01-31T12:34:56.000000005Z""#
        );
        assert_eq!(
            json(Primitive::LocalDate, &19_753i64.to_be_bytes()),
            r#""2024-01-31""#
        );
    }

    #[test]
    fn wrong_lengths_and_bad_text_are_errors() {
        let mut out = Vec::new();
        let e = Primitive::Int32
            .decode_to_json(&[1, 2], &mut out)
            .unwrap_err();
        assert_eq!(e.reason(), "INT32 needs 4 bytes, got 2");
        assert!(Primitive::String.decode_to_json(&[0xff], &mut out).is_err());
        assert!(Primitive::Boolean.decode_to_json(&[2], &mut out).is_err());
    }

    #[test]
    fn identities() {
        assert_eq!(
            SchemaId::pulsar("persistent://public/default/t", 3).as_str(),
            "pulsar:persistent://public/default/t@3"
        );
        assert_eq!(SchemaId::confluent(7).to_string(), "confluent:7");
        assert_eq!(
            SchemaId::pubsub("projects/p/schemas/s", "ab12").as_str(),
            "pubsub:projects/p/schemas/s@ab12"
        );
    }

    #[test]
    fn base64_alphabets() {
        assert_eq!(decode_base64("AP8="), Some(vec![0, 255]));
        assert_eq!(decode_base64("AP8"), Some(vec![0, 255]));
        assert_eq!(decode_base64("_-8"), Some(vec![255, 239]));
        assert_eq!(decode_base64("%%"), None);
    }
}
