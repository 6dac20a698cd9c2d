//! Avro binary datums to and from Sluice's JSON mapping (see `docs/schemas.md`, "Avro").
//!
//! `apache-avro` does the Avro work: it parses schemas (names, namespaces, logical types,
//! canonical form), reads datums and writes them (`GenericDatumReader` / `GenericDatumWriter`:
//! what its `from_avro_datum` / `to_avro_datum`, deprecated in 0.22, stand for; the writer
//! validates the value against the schema first). This module maps between its `Value` tree
//! and JSON, walking the schema alongside so that every error names the field path.
//!
//! The mapping, in short: records are objects (fields in schema order); `[null, T]` unions are
//! `null` or `T`'s form, other unions `{"<branch>": value}`; bytes and fixed are base64; enums
//! their symbol; decimals strings (`"-12.30"`, exactly `scale` fraction digits); dates, times
//! and timestamps ISO 8601 / RFC 3339 strings; `NaN` and infinities strings. Encoding accepts
//! the same, plus the obvious alternatives (a number for a decimal, a count for a timestamp,
//! a bare value for a union branch).

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write as _;
use std::str::FromStr as _;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema::{InnerDecimalSchema, Name, RecordSchema, UnionSchema, UuidSchema};
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::{BigDecimal, Days, Decimal, Duration, Millis, Months, Schema, Uuid};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use num_bigint::BigInt;
use serde_json::Value as Json;

use crate::error::{SchemaError, Segment, ValueError};
use crate::time::{self, Unit};

/// Nesting deeper than this is refused (recursive schemas, hostile input).
const MAX_DEPTH: usize = 128;

/// Most bytes apache-avro may allocate for one collection while reading a datum (its default
/// is 512 MiB): a few bytes claiming millions of empty records must not cost that much. The
/// setting is process-wide and taken at the first parse.
const MAX_ALLOCATION_BYTES: usize = 64 << 20;

/// apache-avro reads nested values by recursion, without a depth limit, and each level of a
/// recursive schema can cost as little as one byte of payload: a datum of a recursive schema
/// is read on a thread whose stack fits one level per payload byte at this many bytes each
/// (measured: an unoptimised build overflows 64 KiB a level; the stack is address space,
/// touched only as deep as the datum goes)…
const STACK_PER_PAYLOAD_BYTE: usize = 256 << 10;
/// …plus this much…
const STACK_BASE: usize = 8 << 20;
/// …for payloads up to this size; larger ones of a recursive schema are refused.
const MAX_RECURSIVE_PAYLOAD: usize = 4 << 10;

/// A parsed Avro schema with its named types resolved, and its original text.
#[derive(Debug)]
pub struct AvroSchema {
    root: Schema,
    /// Schemas `root` refers to by name (Confluent schema references).
    references: Vec<Schema>,
    names: HashMap<String, Schema>,
    text: String,
    name: Option<String>,
    /// Whether a named type contains itself (directly or not): see [`STACK_PER_PAYLOAD_BYTE`].
    recursive: bool,
}

impl AvroSchema {
    /// Parses an Avro schema (JSON text). `what` names it in errors.
    ///
    /// # Errors
    /// [`SchemaError::Invalid`] when the text is not an Avro schema.
    pub fn parse(text: &str, what: &str) -> Result<Self, SchemaError> {
        apache_avro::util::max_allocation_bytes(MAX_ALLOCATION_BYTES);
        let root = Schema::parse_str(text).map_err(|e| SchemaError::invalid(what, e))?;
        Ok(Self::from_schemas(root, Vec::new(), text.to_owned()))
    }

    /// Parses an Avro schema that refers to named types defined in `references` (Confluent
    /// schema references).
    ///
    /// # Errors
    /// [`SchemaError::Invalid`] when a text is not an Avro schema.
    pub fn parse_with_references(
        text: &str,
        references: &[String],
        what: &str,
    ) -> Result<Self, SchemaError> {
        if references.is_empty() {
            return Self::parse(text, what);
        }
        apache_avro::util::max_allocation_bytes(MAX_ALLOCATION_BYTES);
        let (root, others) = Schema::parse_str_with_list(text, references)
            .map_err(|e| SchemaError::invalid(what, e))?;
        Ok(Self::from_schemas(root, others, text.to_owned()))
    }

    fn from_schemas(root: Schema, references: Vec<Schema>, text: String) -> Self {
        let mut names = HashMap::new();
        collect_names(&root, &mut names);
        for other in &references {
            collect_names(other, &mut names);
        }
        let name = root.name().map(|n| n.fullname(None));
        let recursive = is_recursive(&root, &mut Vec::new())
            || references.iter().any(|r| is_recursive(r, &mut Vec::new()));
        Self {
            root,
            references,
            names,
            text,
            name,
            recursive,
        }
    }

    /// The schema as given.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The full name of the top-level named type (record, enum, fixed), if it has one: what the
    /// record-name subject strategies use.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The Parsing Canonical Form.
    pub fn canonical_form(&self) -> String {
        self.root.canonical_form()
    }

    /// The parsed schema.
    pub fn schema(&self) -> &Schema {
        &self.root
    }

    /// Decodes one binary datum (no container, no header) into JSON text appended to `out`.
    /// Every byte must be used.
    ///
    /// # Errors
    /// [`ValueError`]: apache-avro's reason when the bytes are not a datum of this schema.
    pub fn decode_to_json(&self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), ValueError> {
        if !self.recursive {
            return self.read_datum(bytes, out);
        }
        if bytes.len() > MAX_RECURSIVE_PAYLOAD {
            return Err(ValueError::new(format!(
                "{} bytes: payloads of a recursive schema are read up to {} KiB",
                bytes.len(),
                MAX_RECURSIVE_PAYLOAD >> 10
            )));
        }
        let stack = STACK_BASE + bytes.len() * STACK_PER_PAYLOAD_BYTE;
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("avro-recursive".to_owned())
                .stack_size(stack)
                .spawn_scoped(scope, || self.read_datum(bytes, out))
                .map_err(|e| ValueError::new(format!("cannot start a reader thread: {e}")))?
                .join()
                .map_err(|_| ValueError::new("the Avro reader panicked"))?
        })
    }

    fn read_datum(&self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), ValueError> {
        let mut input = EndWatchingReader {
            rest: bytes,
            ran_out: false,
        };
        let value = GenericDatumReader::builder(&self.root)
            .writer_schemata(self.schemata())
            .and_then(|builder| builder.build())
            .and_then(|reader| reader.read_value(&mut input))
            .map_err(|e| ValueError::new(format!("not an Avro datum of this schema: {e}")))?;
        if input.ran_out {
            return Err(ValueError::new(
                "not an Avro datum of this schema: the bytes end inside it",
            ));
        }
        if !input.rest.is_empty() {
            return Err(ValueError::new(format!(
                "{} trailing bytes after the datum",
                input.rest.len()
            )));
        }
        self.write_json(&self.root, value, out, 0)
    }

    /// Encodes a JSON value (Sluice's mapping, or Avro's own JSON encoding) as one binary datum
    /// appended to `out`.
    ///
    /// # Errors
    /// [`ValueError`] naming the field that does not fit the schema.
    pub fn encode_json(&self, json: &Json, out: &mut Vec<u8>) -> Result<(), ValueError> {
        let value = self.to_value(&self.root, json, 0, false)?;
        let datum = GenericDatumWriter::builder(&self.root)
            .schemata(self.schemata())
            .and_then(|builder| builder.build())
            .and_then(|writer| writer.write_value_to_vec(value))
            .map_err(|e| ValueError::new(format!("does not fit the Avro schema: {e}")))?;
        out.extend_from_slice(&datum);
        Ok(())
    }

    /// Rewrites JSON of this schema (Avro's JSON encoding with wrapped unions, or Sluice's
    /// mapping) into Sluice's mapping: what the Pub/Sub JSON encoding needs.
    ///
    /// # Errors
    /// [`ValueError`] when the JSON does not fit the schema.
    pub fn normalize_json(&self, json: &Json, out: &mut Vec<u8>) -> Result<(), ValueError> {
        let value = self.to_value(&self.root, json, 0, false)?;
        self.write_json(&self.root, value, out, 0)
    }

    /// The schema and those it refers to: what apache-avro resolves named types against.
    fn schemata(&self) -> Vec<&Schema> {
        self.references
            .iter()
            .chain(std::iter::once(&self.root))
            .collect()
    }

    fn resolve<'a>(&'a self, schema: &'a Schema) -> Result<&'a Schema, ValueError> {
        match schema {
            Schema::Ref { name } => self
                .names
                .get(&name.fullname(None))
                .ok_or_else(|| ValueError::new(format!("unresolved named type {name}"))),
            other => Ok(other),
        }
    }

    // ------------------------------------------------------------------------------------
    // apache-avro's Value → JSON

    fn write_json(
        &self,
        schema: &Schema,
        value: Value,
        out: &mut Vec<u8>,
        depth: usize,
    ) -> Result<(), ValueError> {
        if depth > MAX_DEPTH {
            return Err(ValueError::new(format!(
                "nested deeper than {MAX_DEPTH} levels"
            )));
        }
        let schema = self.resolve(schema)?;
        match (schema, value) {
            (Schema::Null, Value::Null) => out.extend_from_slice(b"null"),
            (_, Value::Boolean(b)) => out.extend_from_slice(if b { b"true" } else { b"false" }),
            (_, Value::Int(v)) => write_display(out, v),
            (_, Value::Long(v)) => write_display(out, v),
            (_, Value::Float(v)) => write_float(out, f64::from(v), true),
            (_, Value::Double(v)) => write_float(out, v, false),
            (_, Value::Bytes(bytes) | Value::Fixed(_, bytes)) => write_base64(out, &bytes),
            (_, Value::String(s) | Value::Enum(_, s)) => write_str(out, &s),
            (Schema::Array(array), Value::Array(items)) => {
                out.push(b'[');
                for (index, item) in items.into_iter().enumerate() {
                    if index > 0 {
                        out.push(b',');
                    }
                    self.write_json(&array.items, item, out, depth + 1)
                        .map_err(|e| e.at(Segment::Index(index)))?;
                }
                out.push(b']');
            }
            (Schema::Map(map), Value::Map(entries)) => {
                // Map entries in key order: the same datum always gives the same JSON.
                let mut entries: Vec<_> = entries.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                out.push(b'{');
                for (index, (key, item)) in entries.into_iter().enumerate() {
                    if index > 0 {
                        out.push(b',');
                    }
                    write_str(out, &key);
                    out.push(b':');
                    self.write_json(&map.types, item, out, depth + 1)
                        .map_err(|e| e.at(Segment::Key(key)))?;
                }
                out.push(b'}');
            }
            (Schema::Union(union), Value::Union(index, inner)) => {
                let branch = usize::try_from(index)
                    .ok()
                    .and_then(|i| union.variants().get(i))
                    .ok_or_else(|| {
                        ValueError::new(format!(
                            "union branch {index} out of range ({} branches)",
                            union.variants().len()
                        ))
                    })?;
                if matches!(*inner, Value::Null) || is_optional(union) {
                    self.write_json(branch, *inner, out, depth + 1)?;
                } else {
                    out.push(b'{');
                    write_str(out, &branch_name(branch));
                    out.push(b':');
                    self.write_json(branch, *inner, out, depth + 1)?;
                    out.push(b'}');
                }
            }
            (Schema::Record(record), Value::Record(fields)) => {
                out.push(b'{');
                for (i, ((name, item), field)) in fields.into_iter().zip(&record.fields).enumerate()
                {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_str(out, &name);
                    out.push(b':');
                    self.write_json(&field.schema, item, out, depth + 1)
                        .map_err(|e| e.at(Segment::Field(name)))?;
                }
                out.push(b'}');
            }
            (Schema::Decimal(decimal), Value::Decimal(value)) => {
                write_str(out, &format_decimal(&BigInt::from(value), decimal.scale));
            }
            (_, Value::BigDecimal(value)) => write_str(out, &value.to_plain_string()),
            (_, Value::Uuid(uuid)) => write_str(out, &uuid.hyphenated().to_string()),
            (_, Value::Date(days)) => write_str(out, &time::format_date(i64::from(days))),
            (_, Value::TimeMillis(v)) => {
                write_str(out, &time::format_time(i64::from(v), Unit::Millis));
            }
            (_, Value::TimeMicros(v)) => write_str(out, &time::format_time(v, Unit::Micros)),
            (_, Value::TimestampMillis(v)) => {
                write_str(out, &time::format_timestamp(v, Unit::Millis, true));
            }
            (_, Value::TimestampMicros(v)) => {
                write_str(out, &time::format_timestamp(v, Unit::Micros, true));
            }
            (_, Value::TimestampNanos(v)) => {
                write_str(out, &time::format_timestamp(v, Unit::Nanos, true));
            }
            (_, Value::LocalTimestampMillis(v)) => {
                write_str(out, &time::format_timestamp(v, Unit::Millis, false));
            }
            (_, Value::LocalTimestampMicros(v)) => {
                write_str(out, &time::format_timestamp(v, Unit::Micros, false));
            }
            (_, Value::LocalTimestampNanos(v)) => {
                write_str(out, &time::format_timestamp(v, Unit::Nanos, false));
            }
            (_, Value::Duration(d)) => {
                let _ = write!(
                    out,
                    r#"{{"months":{},"days":{},"milliseconds":{}}}"#,
                    u32::from(d.months()),
                    u32::from(d.days()),
                    u32::from(d.millis())
                );
            }
            (schema, value) => {
                return Err(ValueError::new(format!(
                    "apache-avro read a {:?} for a {:?} schema",
                    apache_avro::schema::SchemaKind::from(&value),
                    apache_avro::schema::SchemaKind::from(schema)
                )));
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------------------------------
    // JSON → apache-avro's Value

    /// `default` is true while converting a field's default value from the schema: Avro's
    /// default rules apply (a union's default is for its first branch; bytes are ISO-8859-1
    /// text).
    fn to_value(
        &self,
        schema: &Schema,
        json: &Json,
        depth: usize,
        default: bool,
    ) -> Result<Value, ValueError> {
        if depth > MAX_DEPTH {
            return Err(ValueError::new(format!(
                "nested deeper than {MAX_DEPTH} levels"
            )));
        }
        let schema = self.resolve(schema)?;
        Ok(match schema {
            Schema::Null => match json {
                Json::Null => Value::Null,
                other => return Err(expected("null", other)),
            },
            Schema::Boolean => match json {
                Json::Bool(b) => Value::Boolean(*b),
                other => return Err(expected("a boolean", other)),
            },
            Schema::Int => {
                let v = json_integer(json)?;
                Value::Int(
                    i32::try_from(v)
                        .map_err(|_| ValueError::new(format!("{v} does not fit an Avro int")))?,
                )
            }
            Schema::Long => Value::Long(json_integer(json)?),
            Schema::Float => Value::Float(json_float(json)? as f32),
            Schema::Double => Value::Double(json_float(json)?),
            Schema::Bytes => Value::Bytes(json_bytes(json, default)?),
            Schema::String => Value::String(json_str(json)?.to_owned()),
            Schema::Fixed(fixed) => {
                let bytes = json_bytes(json, default)?;
                if bytes.len() != fixed.size {
                    return Err(ValueError::new(format!(
                        "fixed {} needs {} bytes, got {}",
                        fixed.name,
                        fixed.size,
                        bytes.len()
                    )));
                }
                Value::Fixed(fixed.size, bytes)
            }
            Schema::Enum(e) => {
                let symbol = json_str(json)?;
                let index = e.symbols.iter().position(|s| s == symbol).ok_or_else(|| {
                    ValueError::new(format!(
                        "{symbol:?} is not a symbol of enum {} ({})",
                        e.name,
                        e.symbols.join(", ")
                    ))
                })?;
                Value::Enum(index as u32, symbol.to_owned())
            }
            Schema::Array(array) => {
                let items = match json {
                    Json::Array(items) => items,
                    other => return Err(expected("an array", other)),
                };
                Value::Array(
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, item)| {
                            self.to_value(&array.items, item, depth + 1, default)
                                .map_err(|e| e.at(Segment::Index(i)))
                        })
                        .collect::<Result<_, _>>()?,
                )
            }
            Schema::Map(map) => {
                let entries = match json {
                    Json::Object(entries) => entries,
                    other => return Err(expected("an object (map)", other)),
                };
                Value::Map(
                    entries
                        .iter()
                        .map(|(key, item)| {
                            self.to_value(&map.types, item, depth + 1, default)
                                .map(|v| (key.clone(), v))
                                .map_err(|e| e.at(Segment::Key(key.clone())))
                        })
                        .collect::<Result<_, _>>()?,
                )
            }
            Schema::Union(union) => self.union_value(union, json, depth, default)?,
            Schema::Record(record) => self.record_value(record, json, depth, default)?,
            Schema::Decimal(decimal) => {
                let unscaled = json_decimal(json, decimal.scale, Some(decimal.precision))?;
                let bytes = unscaled.to_signed_bytes_be();
                if let InnerDecimalSchema::Fixed(fixed) = &decimal.inner
                    && bytes.len() > fixed.size
                {
                    return Err(ValueError::new(format!(
                        "decimal {unscaled} (unscaled) does not fit {} bytes",
                        fixed.size
                    )));
                }
                Value::Decimal(Decimal::from(bytes))
            }
            Schema::BigDecimal => {
                let text = json_number_text(json)?;
                if text.contains(['e', 'E']) {
                    return Err(ValueError::new(format!(
                        "{text:?}: write decimals without an exponent"
                    )));
                }
                Value::BigDecimal(BigDecimal::from_str(&text).map_err(|e| {
                    ValueError::new(format!("{text:?} is not a decimal number: {e}"))
                })?)
            }
            Schema::Uuid(kind) => {
                let text = json_str(json)?;
                let uuid = Uuid::parse_str(text)
                    .ok()
                    .filter(|_| text.len() == 36)
                    .ok_or_else(|| ValueError::new(format!("{text:?} is not a UUID")))?;
                if let UuidSchema::Fixed(fixed) = kind
                    && fixed.size != 16
                {
                    return Err(ValueError::new(format!(
                        "uuid as fixed {} of {} bytes, not 16",
                        fixed.name, fixed.size
                    )));
                }
                Value::Uuid(uuid)
            }
            Schema::Date => {
                let days = match json {
                    Json::String(s) => time::parse_date(s).ok_or_else(|| {
                        ValueError::new(format!("{s:?} is not a date (YYYY-MM-DD)"))
                    })?,
                    other => json_integer(other)?,
                };
                Value::Date(
                    i32::try_from(days)
                        .map_err(|_| ValueError::new(format!("date {days} out of range")))?,
                )
            }
            Schema::TimeMillis => {
                let v = json_time(json, Unit::Millis)?;
                Value::TimeMillis(
                    i32::try_from(v)
                        .map_err(|_| ValueError::new(format!("time-millis {v} out of range")))?,
                )
            }
            Schema::TimeMicros => Value::TimeMicros(json_time(json, Unit::Micros)?),
            Schema::TimestampMillis => {
                Value::TimestampMillis(json_timestamp(json, Unit::Millis, true)?)
            }
            Schema::TimestampMicros => {
                Value::TimestampMicros(json_timestamp(json, Unit::Micros, true)?)
            }
            Schema::TimestampNanos => {
                Value::TimestampNanos(json_timestamp(json, Unit::Nanos, true)?)
            }
            Schema::LocalTimestampMillis => {
                Value::LocalTimestampMillis(json_timestamp(json, Unit::Millis, false)?)
            }
            Schema::LocalTimestampMicros => {
                Value::LocalTimestampMicros(json_timestamp(json, Unit::Micros, false)?)
            }
            Schema::LocalTimestampNanos => {
                Value::LocalTimestampNanos(json_timestamp(json, Unit::Nanos, false)?)
            }
            Schema::Duration(_) => duration_value(json)?,
            Schema::Ref { name } => {
                return Err(ValueError::new(format!("unresolved named type {name}")));
            }
        })
    }

    fn union_value(
        &self,
        union: &UnionSchema,
        json: &Json,
        depth: usize,
        default: bool,
    ) -> Result<Value, ValueError> {
        let variants = union.variants();
        let branch = |index: usize, value: Value| Value::Union(index as u32, Box::new(value));
        if default {
            // Avro: a union field's default is a value of the union's first branch.
            let first = variants
                .first()
                .ok_or_else(|| ValueError::new("empty union"))?;
            return Ok(branch(0, self.to_value(first, json, depth + 1, true)?));
        }
        if json.is_null() {
            let index = variants
                .iter()
                .position(|v| matches!(self.resolve(v), Ok(Schema::Null)))
                .ok_or_else(|| ValueError::new("null, but the union has no null branch"))?;
            return Ok(branch(index, Value::Null));
        }
        // The wrapped form {"<branch name>": value} (Avro's JSON encoding; Sluice's output for
        // unions of more than one non-null branch).
        if let Json::Object(object) = json
            && object.len() == 1
        {
            let (key, inner) = object.iter().next().expect("one entry");
            if let Some(index) = variants.iter().position(|v| branch_matches(v, key)) {
                let value = self.to_value(&variants[index], inner, depth + 1, false)?;
                return Ok(branch(index, value));
            }
        }
        // A bare value: the first branch that takes it.
        let mut first_error = None;
        for (index, variant) in variants.iter().enumerate() {
            if matches!(self.resolve(variant), Ok(Schema::Null)) {
                continue;
            }
            match self.to_value(variant, json, depth + 1, false) {
                Ok(value) => return Ok(branch(index, value)),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        let only_one = variants
            .iter()
            .filter(|v| !matches!(self.resolve(v), Ok(Schema::Null)))
            .count()
            == 1;
        match first_error {
            // One candidate: its error is the precise one.
            Some(e) if only_one => Err(e),
            _ => Err(ValueError::new(format!(
                "{} fits no branch of the union [{}]",
                describe(json),
                variants
                    .iter()
                    .map(|v| branch_name(v).into_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    fn record_value(
        &self,
        record: &RecordSchema,
        json: &Json,
        depth: usize,
        default: bool,
    ) -> Result<Value, ValueError> {
        let object = match json {
            Json::Object(o) => o,
            other => {
                return Err(expected(
                    &format!("an object (record {})", record.name),
                    other,
                ));
            }
        };
        let unknown: Vec<&str> = object
            .keys()
            .filter(|k| !record.lookup.contains_key(*k))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            return Err(ValueError::new(format!(
                "field(s) {} not in record {}",
                unknown.join(", "),
                record.name
            )));
        }
        let mut fields = Vec::with_capacity(record.fields.len());
        for field in &record.fields {
            let value = match object.get(&field.name) {
                Some(value) => self.to_value(&field.schema, value, depth + 1, default),
                None => match &field.default {
                    Some(value) => self.to_value(&field.schema, value, depth + 1, true),
                    None if self.nullable(&field.schema) => {
                        self.to_value(&field.schema, &Json::Null, depth + 1, false)
                    }
                    None => Err(ValueError::new(
                        "missing, and the schema gives no default".to_owned(),
                    )),
                },
            }
            .map_err(|e| e.at(Segment::Field(field.name.clone())))?;
            fields.push((field.name.clone(), value));
        }
        Ok(Value::Record(fields))
    }

    fn nullable(&self, schema: &Schema) -> bool {
        match self.resolve(schema) {
            Ok(Schema::Union(u)) => u
                .variants()
                .iter()
                .any(|v| matches!(self.resolve(v), Ok(Schema::Null))),
            _ => false,
        }
    }
}

/// The payload as apache-avro reads it, noting whether it asked for bytes past the end: it
/// reads a string, a boolean or a union index cut short by the end as null instead of failing,
/// so a truncated datum would otherwise pass.
struct EndWatchingReader<'a> {
    rest: &'a [u8],
    ran_out: bool,
}

impl std::io::Read for EndWatchingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if !buf.is_empty() && buf.len() > self.rest.len() {
            self.ran_out = true;
        }
        self.rest.read(buf)
    }
}

/// `{"months", "days", "milliseconds"}` (each an unsigned 32-bit count; missing ones are 0).
fn duration_value(json: &Json) -> Result<Value, ValueError> {
    let object = match json {
        Json::Object(o) => o,
        other => {
            return Err(expected(
                "an object {\"months\", \"days\", \"milliseconds\"}",
                other,
            ));
        }
    };
    if let Some(key) = object
        .keys()
        .find(|k| !matches!(k.as_str(), "months" | "days" | "milliseconds"))
    {
        return Err(ValueError::new(format!("unknown duration field {key:?}")));
    }
    let part = |key: &str| -> Result<u32, ValueError> {
        let v = object.get(key).map_or(Ok(0), json_integer)?;
        u32::try_from(v)
            .map_err(|_| ValueError::new(format!("duration {key} {v} is not an unsigned 32-bit")))
    };
    Ok(Value::Duration(Duration::new(
        Months::new(part("months")?),
        Days::new(part("days")?),
        Millis::new(part("milliseconds")?),
    )))
}

/// Every named type in `schema`, by full name.
fn collect_names(schema: &Schema, names: &mut HashMap<String, Schema>) {
    match schema {
        Schema::Record(record) => {
            names.insert(record.name.fullname(None), schema.clone());
            for field in &record.fields {
                collect_names(&field.schema, names);
            }
        }
        Schema::Enum(e) => {
            names.insert(e.name.fullname(None), schema.clone());
        }
        Schema::Fixed(f) => {
            names.insert(f.name.fullname(None), schema.clone());
        }
        Schema::Decimal(d) => {
            if let InnerDecimalSchema::Fixed(f) = &d.inner {
                names.insert(f.name.fullname(None), schema.clone());
            }
        }
        Schema::Uuid(UuidSchema::Fixed(f)) | Schema::Duration(f) => {
            names.insert(f.name.fullname(None), schema.clone());
        }
        Schema::Array(a) => collect_names(&a.items, names),
        Schema::Map(m) => collect_names(&m.types, names),
        Schema::Union(u) => u.variants().iter().for_each(|v| collect_names(v, names)),
        _ => {}
    }
}

/// Whether a named type in `schema` refers to itself or to a type enclosing it; `enclosing`
/// holds the full names of the named types around `schema`.
fn is_recursive(schema: &Schema, enclosing: &mut Vec<String>) -> bool {
    match schema {
        Schema::Ref { name } => enclosing.contains(&name.fullname(None)),
        Schema::Record(record) => {
            enclosing.push(record.name.fullname(None));
            let found = record
                .fields
                .iter()
                .any(|f| is_recursive(&f.schema, enclosing));
            enclosing.pop();
            found
        }
        Schema::Array(a) => is_recursive(&a.items, enclosing),
        Schema::Map(m) => is_recursive(&m.types, enclosing),
        Schema::Union(u) => u.variants().iter().any(|v| is_recursive(v, enclosing)),
        _ => false,
    }
}

/// `[null, T]` or `[T, null]`: written as `null` or `T`'s form, without a wrapper.
fn is_optional(union: &UnionSchema) -> bool {
    let variants = union.variants();
    variants.len() == 2 && variants.iter().any(|v| matches!(v, Schema::Null))
}

fn named(name: &Name) -> Cow<'static, str> {
    Cow::Owned(name.fullname(None))
}

/// The name of a union branch in Avro's JSON encoding: the type name, or the full name of a
/// named type. Logical types go by their underlying type.
fn branch_name(schema: &Schema) -> Cow<'static, str> {
    match schema {
        Schema::Null => "null".into(),
        Schema::Boolean => "boolean".into(),
        Schema::Int | Schema::Date | Schema::TimeMillis => "int".into(),
        Schema::Long
        | Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => "long".into(),
        Schema::Float => "float".into(),
        Schema::Double => "double".into(),
        Schema::Bytes | Schema::BigDecimal | Schema::Uuid(UuidSchema::Bytes) => "bytes".into(),
        Schema::String | Schema::Uuid(UuidSchema::String) => "string".into(),
        Schema::Array(_) => "array".into(),
        Schema::Map(_) => "map".into(),
        Schema::Union(_) => "union".into(),
        Schema::Record(r) => named(&r.name),
        Schema::Enum(e) => named(&e.name),
        Schema::Fixed(f) | Schema::Uuid(UuidSchema::Fixed(f)) | Schema::Duration(f) => {
            named(&f.name)
        }
        Schema::Decimal(d) => match &d.inner {
            InnerDecimalSchema::Bytes => "bytes".into(),
            InnerDecimalSchema::Fixed(f) => named(&f.name),
        },
        Schema::Ref { name } => named(name),
    }
}

/// Whether a wrapper key names this branch (full name, or the short name of a named type).
fn branch_matches(schema: &Schema, key: &str) -> bool {
    if branch_name(schema) == key {
        return true;
    }
    match schema {
        Schema::Record(r) => r.name.name() == key,
        Schema::Enum(e) => e.name.name() == key,
        Schema::Fixed(f) => f.name.name() == key,
        Schema::Ref { name } => name.name() == key,
        _ => false,
    }
}

pub(crate) fn write_long(out: &mut Vec<u8>, value: i64) {
    let mut n = ((value << 1) ^ (value >> 63)) as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

// ----------------------------------------------------------------------------------------
// JSON writing helpers

fn write_display(out: &mut Vec<u8>, value: impl std::fmt::Display) {
    let _ = write!(out, "{value}");
}

pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    // serde_json escapes exactly as JSON needs; writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

pub(crate) fn write_base64(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    let start = out.len();
    out.resize(
        start + base64::encoded_len(bytes.len(), true).unwrap_or(0),
        0,
    );
    let written = BASE64
        .encode_slice(bytes, &mut out[start..])
        .unwrap_or_default();
    out.truncate(start + written);
    out.push(b'"');
}

/// Finite numbers as JSON numbers (a `float` printed at f32 precision), the rest as the strings
/// `"NaN"`, `"Infinity"`, `"-Infinity"` (as proto3 JSON does).
pub(crate) fn write_float(out: &mut Vec<u8>, v: f64, single: bool) {
    if v.is_nan() {
        out.extend_from_slice(b"\"NaN\"");
    } else if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 {
            b"\"Infinity\""
        } else {
            b"\"-Infinity\""
        });
    } else if single {
        let _ = serde_json::to_writer(&mut *out, &(v as f32));
    } else {
        let _ = serde_json::to_writer(&mut *out, &v);
    }
}

fn format_decimal(unscaled: &BigInt, scale: usize) -> String {
    let negative = unscaled.sign() == num_bigint::Sign::Minus;
    let digits = unscaled.magnitude().to_string();
    let mut out = String::with_capacity(digits.len() + 3);
    if negative {
        out.push('-');
    }
    if scale == 0 {
        out.push_str(&digits);
    } else if digits.len() > scale {
        let (int, frac) = digits.split_at(digits.len() - scale);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', scale - digits.len()));
        out.push_str(&digits);
    }
    out
}

// ----------------------------------------------------------------------------------------
// JSON reading helpers

pub(crate) fn describe(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

fn expected(what: &str, got: &Json) -> ValueError {
    ValueError::new(format!("expected {what}, got {}", describe(got)))
}

/// An integer: a JSON integer, or a string holding one (how 64-bit integers travel in JSON for
/// JavaScript's sake).
pub(crate) fn json_integer(json: &Json) -> Result<i64, ValueError> {
    match json {
        Json::Number(n) => n
            .as_i64()
            .or_else(|| {
                // 3.0 is an integer; 3.5 is not.
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18)
                    .map(|f| f as i64)
            })
            .ok_or_else(|| ValueError::new(format!("{n} is not a 64-bit integer"))),
        Json::String(s) => s
            .trim()
            .parse()
            .map_err(|_| ValueError::new(format!("{s:?} is not an integer"))),
        other => Err(expected("an integer", other)),
    }
}

fn json_float(json: &Json) -> Result<f64, ValueError> {
    match json {
        Json::Number(n) => n
            .as_f64()
            .ok_or_else(|| ValueError::new(format!("{n} is not a number"))),
        Json::String(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            other => other
                .parse()
                .map_err(|_| ValueError::new(format!("{other:?} is not a number"))),
        },
        other => Err(expected("a number", other)),
    }
}

fn json_str(json: &Json) -> Result<&str, ValueError> {
    match json {
        Json::String(s) => Ok(s),
        other => Err(expected("a string", other)),
    }
}

/// Base64 (standard or URL-safe, padded or not); in a schema default, ISO-8859-1 text.
fn json_bytes(json: &Json, default: bool) -> Result<Vec<u8>, ValueError> {
    let text = json_str(json)?;
    if default {
        return text
            .chars()
            .map(|c| u8::try_from(u32::from(c)))
            .collect::<Result<_, _>>()
            .map_err(|_| ValueError::new("bytes default is not ISO-8859-1 text"));
    }
    crate::decode_base64(text).ok_or_else(|| ValueError::new(format!("{text:?} is not base64")))
}

fn json_number_text(json: &Json) -> Result<Cow<'_, str>, ValueError> {
    match json {
        Json::String(s) => Ok(Cow::Borrowed(s.trim())),
        Json::Number(n) => Ok(Cow::Owned(n.to_string())),
        other => Err(expected("a decimal (string or number)", other)),
    }
}

/// A decimal as its unscaled integer at `scale`: more fraction digits than `scale` is an error,
/// never rounded.
fn json_decimal(json: &Json, scale: usize, precision: Option<usize>) -> Result<BigInt, ValueError> {
    let text = json_number_text(json)?;
    let invalid = || ValueError::new(format!("{text:?} is not a decimal number"));
    if text.contains(['e', 'E']) {
        return Err(ValueError::new(format!(
            "{text:?}: write decimals without an exponent"
        )));
    }
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(&text)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(invalid());
    }
    let significant = frac.trim_end_matches('0');
    if significant.len() > scale {
        return Err(ValueError::new(format!(
            "{text} has more than {scale} fraction digits (the schema's scale)"
        )));
    }
    let mut all = String::with_capacity(int.len() + scale);
    all.push_str(int);
    all.push_str(&frac[..frac.len().min(scale)]);
    all.extend(std::iter::repeat_n('0', scale.saturating_sub(frac.len())));
    let trimmed = all.trim_start_matches('0');
    if let Some(precision) = precision
        && trimmed.len() > precision
    {
        return Err(ValueError::new(format!(
            "{text} has more than {precision} digits (the schema's precision)"
        )));
    }
    let magnitude: BigInt = if trimmed.is_empty() {
        BigInt::from(0)
    } else {
        trimmed.parse().map_err(|_| invalid())?
    };
    Ok(if negative { -magnitude } else { magnitude })
}

fn json_time(json: &Json, unit: Unit) -> Result<i64, ValueError> {
    match json {
        Json::String(s) if !s.bytes().all(|b| b.is_ascii_digit() || b == b'-') => {
            time::parse_time(s, unit).ok_or_else(|| {
                ValueError::new(format!("{s:?} is not a time of day (HH:MM:SS[.fraction])"))
            })
        }
        other => json_integer(other),
    }
}

fn json_timestamp(json: &Json, unit: Unit, utc: bool) -> Result<i64, ValueError> {
    match json {
        Json::String(s) if !s.bytes().all(|b| b.is_ascii_digit() || b == b'-') => {
            time::parse_timestamp(s, unit, utc).ok_or_else(|| {
                ValueError::new(if utc {
                    format!("{s:?} is not an RFC 3339 timestamp (e.g. 2024-01-31T12:34:56.789Z)")
                } else {
                    format!("{s:?} is not a local timestamp (e.g. 2024-01-31T12:34:56.789)")
                })
            })
        }
        other => json_integer(other),
    }
}

#[cfg(test)]
mod tests;
