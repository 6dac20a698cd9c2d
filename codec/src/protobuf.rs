//! Protobuf messages from descriptors (`prost-reflect`), to and from the proto3 JSON mapping.
//!
//! Descriptors come from .proto text (compiled in-process by `protox`: no `protoc`), from a
//! serialized `FileDescriptorSet` (Pulsar's PROTOBUF_NATIVE), or from a Schema Registry. For
//! registering a schema derived from a descriptor set, [`print_file`] writes .proto text back.
//!
//! JSON: the proto3 canonical mapping with "emit default values" on: field names are the
//! lowerCamelCase `json_name`, 64-bit integers strings, enums their value names, bytes base64,
//! well-known types in their special forms (Timestamp as RFC 3339, ...); every field without
//! presence appears, even at its default; unset message / optional / oneof fields are left out.
//! Parsing accepts what the proto3 spec lets parsers accept (also the proto field names); an
//! unknown field is an error.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use prost_reflect::prost::Message as _;
use prost_reflect::prost_types::{
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorProto,
    field_descriptor_proto::{Label, Type},
};
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor, SerializeOptions,
};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};

use crate::error::{SchemaError, ValueError};

/// One .proto file of a schema: its import name and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtoFile {
    /// The name other files import it by (e.g. `orders/v1/order.proto`).
    pub name: String,
    /// The .proto text.
    pub text: String,
}

/// A Protobuf message type with everything needed to decode, encode and register it.
#[derive(Debug, Clone)]
pub struct ProtoSchema {
    message: MessageDescriptor,
    indexes: Vec<i32>,
    /// The root file first, then its imports (transitively) that are not well-known types,
    /// dependencies before dependants.
    files: Vec<ProtoFile>,
}

/// Whether a file is one of Google's well-known types, which registries and clients know
/// without references.
pub fn is_well_known(name: &str) -> bool {
    name.starts_with("google/protobuf/")
}

struct MemoryResolver(HashMap<String, String>);

impl FileResolver for MemoryResolver {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        match self.0.get(name) {
            Some(text) => File::from_source(name, text),
            None => Err(protox::Error::file_not_found(name)),
        }
    }
}

impl ProtoSchema {
    /// Compiles .proto sources held in memory. `root` names the file that holds the message;
    /// `message` is its full name (`package.Message`), or `None` for the root file's first
    /// message. Imports of Google's well-known types need no source.
    ///
    /// # Errors
    /// [`SchemaError::Invalid`] when the sources do not compile or the message is not there.
    pub fn from_sources(
        sources: &[ProtoFile],
        root: &str,
        message: Option<&str>,
        what: &str,
    ) -> Result<Self, SchemaError> {
        let map: HashMap<String, String> = sources
            .iter()
            .map(|f| (f.name.clone(), f.text.clone()))
            .collect();
        let mut resolver = ChainFileResolver::new();
        resolver.add(MemoryResolver(map.clone()));
        resolver.add(GoogleFileResolver::new());
        let mut compiler = protox::Compiler::with_file_resolver(resolver);
        compiler.include_imports(true);
        compiler
            .open_file(root)
            .map_err(|e| SchemaError::invalid(what, e))?;
        let pool = compiler.descriptor_pool();
        Self::from_pool(&pool, root, message, what, |name| map.get(name).cloned())
    }

    /// Compiles a .proto file from disk, its imports resolved against `includes` (and the
    /// file's own directory).
    ///
    /// # Errors
    /// [`SchemaError`] when a file cannot be read or does not compile.
    pub fn from_file(
        path: &Path,
        includes: &[PathBuf],
        message: Option<&str>,
    ) -> Result<Self, SchemaError> {
        let what = path.display().to_string();
        let mut dirs: Vec<PathBuf> = includes.to_vec();
        let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let parent = if parent.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            parent
        };
        if !dirs.contains(&parent) {
            dirs.push(parent);
        }
        let mut compiler =
            protox::Compiler::new(&dirs).map_err(|e| SchemaError::invalid(&what, e))?;
        compiler.include_imports(true);
        compiler
            .open_file(path)
            .map_err(|e| SchemaError::invalid(&what, e))?;
        let root = compiler
            .files()
            .find(|f| !f.is_import())
            .map(|f| f.name().to_owned())
            .ok_or_else(|| SchemaError::invalid(&what, "no file compiled"))?;
        let paths: HashMap<String, PathBuf> = compiler
            .files()
            .filter_map(|f| f.path().map(|p| (f.name().to_owned(), p.to_path_buf())))
            .collect();
        let pool = compiler.descriptor_pool();
        Self::from_pool(&pool, &root, message, &what, |name| {
            paths
                .get(name)
                .and_then(|p| std::fs::read_to_string(p).ok())
        })
    }

    /// A message of a serialized `FileDescriptorSet` (e.g. Pulsar's PROTOBUF_NATIVE). The
    /// files' .proto text, needed only to register the schema, is printed from the descriptors.
    ///
    /// # Errors
    /// [`SchemaError::Invalid`] when the bytes are not a descriptor set or lack the message.
    pub fn from_descriptor_set(
        bytes: &[u8],
        message: &str,
        what: &str,
    ) -> Result<Self, SchemaError> {
        let pool = DescriptorPool::decode(bytes).map_err(|e| SchemaError::invalid(what, e))?;
        let descriptor = pool.get_message_by_name(message).ok_or_else(|| {
            SchemaError::invalid(what, format!("no message {message} in the descriptor set"))
        })?;
        let root = descriptor.parent_file().name().to_owned();
        Self::from_pool(&pool, &root, Some(message), what, |_| None)
    }

    fn from_pool(
        pool: &DescriptorPool,
        root: &str,
        message: Option<&str>,
        what: &str,
        source_of: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, SchemaError> {
        let file = pool
            .get_file_by_name(root)
            .ok_or_else(|| SchemaError::invalid(what, format!("no file {root}")))?;
        let message = match message {
            Some(name) => pool.get_message_by_name(name).ok_or_else(|| {
                SchemaError::invalid(
                    what,
                    format!("no message {name} (give its full name, package included)"),
                )
            })?,
            None => file
                .messages()
                .next()
                .ok_or_else(|| SchemaError::invalid(what, format!("{root} defines no message")))?,
        };
        if message.parent_file().name() != root {
            return Err(SchemaError::invalid(
                what,
                format!(
                    "message {} is defined in {}, not in {root}",
                    message.full_name(),
                    message.parent_file().name()
                ),
            ));
        }
        // Dependencies first (post-order), the root file last, then reversed: root first.
        let mut order = Vec::new();
        let mut seen = std::collections::HashSet::new();
        visit_files(&file, &mut seen, &mut order);
        let mut files = Vec::with_capacity(order.len());
        for f in order.iter().rev() {
            let name = f.name().to_owned();
            if is_well_known(&name) {
                continue;
            }
            let text = match source_of(&name) {
                Some(text) => text,
                None => print_file(f.file_descriptor_proto())
                    .map_err(|e| SchemaError::invalid(what, format!("{name}: {e}")))?,
            };
            files.push(ProtoFile { name, text });
        }
        let indexes = message_indexes(&message);
        Ok(Self {
            message,
            indexes,
            files,
        })
    }

    /// The message type.
    pub fn message(&self) -> &MessageDescriptor {
        &self.message
    }

    /// The message's full name (`package.Message`): what record-name subject strategies use.
    pub fn full_name(&self) -> &str {
        self.message.full_name()
    }

    /// Confluent's message-index path of the message within its file (`[0]` for the first
    /// top-level message).
    pub fn indexes(&self) -> &[i32] {
        &self.indexes
    }

    /// The root file (holding the message) first, then the non-well-known files it imports.
    pub fn files(&self) -> &[ProtoFile] {
        &self.files
    }

    /// The non-well-known files `file` imports directly.
    pub fn imports_of(&self, file: &str) -> Vec<String> {
        self.message
            .parent_pool()
            .get_file_by_name(file)
            .map(|f| {
                f.dependencies()
                    .map(|d| d.name().to_owned())
                    .filter(|name| !is_well_known(name))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The same file set, another message of the root file, by Confluent message indexes.
    ///
    /// # Errors
    /// A reason when the indexes do not name a message of the root file.
    pub fn with_indexes(&self, indexes: &[i32]) -> Result<Self, String> {
        let file = self.message.parent_file();
        let mut current: Option<MessageDescriptor> = None;
        for (depth, &index) in indexes.iter().enumerate() {
            let i =
                usize::try_from(index).map_err(|_| format!("negative message index {index}"))?;
            let next = match &current {
                None => file.messages().nth(i),
                Some(parent) => parent.child_messages().nth(i),
            };
            current = Some(next.ok_or_else(|| {
                format!(
                    "message index {index} (level {depth}) names no message in {}",
                    file.name()
                )
            })?);
        }
        let message = current.ok_or_else(|| "empty message-index list".to_owned())?;
        Ok(Self {
            indexes: indexes.to_vec(),
            message,
            files: self.files.clone(),
        })
    }

    /// Decodes binary Protobuf into proto3 JSON text appended to `out`.
    ///
    /// # Errors
    /// [`ValueError`] when the bytes are not a message of this type.
    pub fn decode_to_json(&self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), ValueError> {
        let message = DynamicMessage::decode(self.message.clone(), bytes)
            .map_err(|e| ValueError::new(e.to_string()))?;
        let mut serializer = serde_json::Serializer::new(&mut *out);
        message
            .serialize_with_options(&mut serializer, &serialize_options())
            .map_err(|e| ValueError::new(e.to_string()))
    }

    /// Encodes proto3 JSON text as binary Protobuf appended to `out`.
    ///
    /// # Errors
    /// [`ValueError`] naming the field that does not fit.
    pub fn encode_json(&self, json: &[u8], out: &mut Vec<u8>) -> Result<(), ValueError> {
        let message = self.parse_json(json)?;
        message
            .encode(out)
            .map_err(|e| ValueError::new(e.to_string()))
    }

    fn parse_json(&self, json: &[u8]) -> Result<DynamicMessage, ValueError> {
        let options = DeserializeOptions::new().deny_unknown_fields(true);
        // The fast path; on failure, parse again with path tracking to say where.
        let mut deserializer = serde_json::Deserializer::from_slice(json);
        if let Ok(message) = DynamicMessage::deserialize_with_options(
            self.message.clone(),
            &mut deserializer,
            &options,
        ) && deserializer.end().is_ok()
        {
            return Ok(message);
        }
        let mut deserializer = serde_json::Deserializer::from_slice(json);
        let mut track = serde_path_to_error::Track::new();
        let tracked = serde_path_to_error::Deserializer::new(&mut deserializer, &mut track);
        let message =
            DynamicMessage::deserialize_with_options(self.message.clone(), tracked, &options)
                .map_err(|e| {
                    let path = track.path().to_string();
                    let mut error = ValueError::new(strip_position(&e.to_string()));
                    if path != "." && !path.is_empty() {
                        error = error.at(crate::error::Segment::Field(path));
                    }
                    error
                })?;
        deserializer
            .end()
            .map_err(|e| ValueError::new(strip_position(&e.to_string())))?;
        Ok(message)
    }
}

/// serde_json appends " at line L column C": positions in one-line guest output say little.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

fn serialize_options() -> SerializeOptions {
    SerializeOptions::new()
        .stringify_64_bit_integers(true)
        .use_enum_numbers(false)
        .use_proto_field_name(false)
        .skip_default_fields(false)
}

fn visit_files(
    file: &prost_reflect::FileDescriptor,
    seen: &mut std::collections::HashSet<String>,
    order: &mut Vec<prost_reflect::FileDescriptor>,
) {
    if !seen.insert(file.name().to_owned()) {
        return;
    }
    for dependency in file.dependencies() {
        visit_files(&dependency, seen, order);
    }
    order.push(file.clone());
}

/// Confluent's message indexes: the position of each enclosing message, outermost first.
pub fn message_indexes(message: &MessageDescriptor) -> Vec<i32> {
    let mut path = Vec::new();
    let mut current = message.clone();
    loop {
        match current.parent_message() {
            Some(parent) => {
                let i = parent
                    .child_messages()
                    .position(|m| m.full_name() == current.full_name())
                    .unwrap_or(0);
                path.push(i as i32);
                current = parent;
            }
            None => {
                let i = current
                    .parent_file()
                    .messages()
                    .position(|m| m.full_name() == current.full_name())
                    .unwrap_or(0);
                path.push(i as i32);
                break;
            }
        }
    }
    path.reverse();
    path
}

// ----------------------------------------------------------------------------------------
// Descriptor → .proto text

/// Writes a file descriptor back as .proto text (syntax, package, imports, messages with
/// nested types, maps, oneofs, proto3 `optional`, reserved ranges, enums; proto2 defaults and
/// `packed`). Services, options other than those and extensions are left out: they do not
/// change what a message's bytes mean.
///
/// # Errors
/// A reason for descriptors it cannot print (groups, editions).
pub fn print_file(file: &FileDescriptorProto) -> Result<String, String> {
    let mut out = String::new();
    let syntax = match file.syntax() {
        "" | "proto2" => "proto2",
        "proto3" => "proto3",
        other => return Err(format!("cannot print syntax {other:?}")),
    };
    let _ = writeln!(out, "syntax = \"{syntax}\";");
    if !file.package().is_empty() {
        let _ = writeln!(out, "package {};", file.package());
    }
    for (i, dependency) in file.dependency.iter().enumerate() {
        let public = file.public_dependency.contains(&(i as i32));
        let _ = writeln!(
            out,
            "import {}\"{dependency}\";",
            if public { "public " } else { "" }
        );
    }
    for message in &file.message_type {
        print_message(&mut out, message, syntax, 0)?;
    }
    for e in &file.enum_type {
        print_enum(&mut out, e, 0);
    }
    Ok(out)
}

fn indent(out: &mut String, level: usize) {
    out.extend(std::iter::repeat_n("  ", level));
}

fn print_message(
    out: &mut String,
    message: &DescriptorProto,
    syntax: &str,
    level: usize,
) -> Result<(), String> {
    indent(out, level);
    let _ = writeln!(out, "message {} {{", message.name());
    let map_entries: BTreeMap<&str, &DescriptorProto> = message
        .nested_type
        .iter()
        .filter(|n| n.options.as_ref().is_some_and(|o| o.map_entry()))
        .map(|n| (n.name(), n))
        .collect();
    let mut printed_oneofs = std::collections::HashSet::new();
    for field in &message.field {
        let real_oneof = field.oneof_index.filter(|_| !field.proto3_optional());
        match real_oneof {
            Some(index) => {
                if printed_oneofs.insert(index) {
                    let oneof = message
                        .oneof_decl
                        .get(index as usize)
                        .ok_or_else(|| format!("bad oneof index in {}", message.name()))?;
                    indent(out, level + 1);
                    let _ = writeln!(out, "oneof {} {{", oneof.name());
                    for member in message
                        .field
                        .iter()
                        .filter(|f| f.oneof_index == Some(index) && !f.proto3_optional())
                    {
                        print_field(out, member, syntax, &map_entries, level + 2, true)?;
                    }
                    indent(out, level + 1);
                    out.push_str("}\n");
                }
            }
            None => print_field(out, field, syntax, &map_entries, level + 1, false)?,
        }
    }
    for nested in &message.nested_type {
        if !map_entries.contains_key(nested.name()) {
            print_message(out, nested, syntax, level + 1)?;
        }
    }
    for e in &message.enum_type {
        print_enum(out, e, level + 1);
    }
    for range in &message.reserved_range {
        indent(out, level + 1);
        // Descriptor ranges are end-exclusive; .proto ranges inclusive.
        if range.end() - range.start() == 1 {
            let _ = writeln!(out, "reserved {};", range.start());
        } else {
            let _ = writeln!(out, "reserved {} to {};", range.start(), range.end() - 1);
        }
    }
    if !message.reserved_name.is_empty() {
        indent(out, level + 1);
        let names: Vec<String> = message
            .reserved_name
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect();
        let _ = writeln!(out, "reserved {};", names.join(", "));
    }
    indent(out, level);
    out.push_str("}\n");
    Ok(())
}

fn scalar_name(t: Type) -> Option<&'static str> {
    Some(match t {
        Type::Double => "double",
        Type::Float => "float",
        Type::Int64 => "int64",
        Type::Uint64 => "uint64",
        Type::Int32 => "int32",
        Type::Fixed64 => "fixed64",
        Type::Fixed32 => "fixed32",
        Type::Bool => "bool",
        Type::String => "string",
        Type::Bytes => "bytes",
        Type::Uint32 => "uint32",
        Type::Sfixed32 => "sfixed32",
        Type::Sfixed64 => "sfixed64",
        Type::Sint32 => "sint32",
        Type::Sint64 => "sint64",
        Type::Group | Type::Message | Type::Enum => return None,
    })
}

fn type_name(field: &FieldDescriptorProto) -> Result<String, String> {
    match field.r#type() {
        Type::Group => Err(format!("field {}: groups cannot be printed", field.name())),
        Type::Message | Type::Enum => Ok(field.type_name().to_owned()),
        other => Ok(scalar_name(other).unwrap_or("bytes").to_owned()),
    }
}

/// protoc's default json_name: underscores dropped, the letter after one upper-cased.
fn default_json_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn print_field(
    out: &mut String,
    field: &FieldDescriptorProto,
    syntax: &str,
    map_entries: &BTreeMap<&str, &DescriptorProto>,
    level: usize,
    in_oneof: bool,
) -> Result<(), String> {
    indent(out, level);
    let entry = (field.label() == Label::Repeated && field.r#type() == Type::Message)
        .then(|| {
            let short = field.type_name().rsplit('.').next().unwrap_or_default();
            map_entries.get(short)
        })
        .flatten();
    if let Some(entry) = entry {
        let key = entry
            .field
            .iter()
            .find(|f| f.number() == 1)
            .ok_or("map entry without key")?;
        let value = entry
            .field
            .iter()
            .find(|f| f.number() == 2)
            .ok_or("map entry without value")?;
        let _ = write!(
            out,
            "map<{}, {}> {} = {}",
            type_name(key)?,
            type_name(value)?,
            field.name(),
            field.number()
        );
    } else {
        let label = match field.label() {
            Label::Repeated => "repeated ",
            Label::Required => "required ",
            Label::Optional if in_oneof => "",
            Label::Optional if syntax == "proto2" || field.proto3_optional() => "optional ",
            Label::Optional => "",
        };
        let _ = write!(
            out,
            "{label}{} {} = {}",
            type_name(field)?,
            field.name(),
            field.number()
        );
    }
    let mut options = Vec::new();
    if let Some(default) = &field.default_value {
        let value = match field.r#type() {
            Type::String | Type::Bytes => format!("\"{}\"", escape(default)),
            _ => default.clone(),
        };
        options.push(format!("default = {value}"));
    }
    if let Some(json_name) = &field.json_name
        && *json_name != default_json_name(field.name())
    {
        options.push(format!("json_name = \"{}\"", escape(json_name)));
    }
    if let Some(packed) = field.options.as_ref().and_then(|o| o.packed) {
        options.push(format!("packed = {packed}"));
    }
    if !options.is_empty() {
        let _ = write!(out, " [{}]", options.join(", "));
    }
    out.push_str(";\n");
    Ok(())
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {
                let _ = write!(out, "\\{:03o}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

fn print_enum(out: &mut String, e: &EnumDescriptorProto, level: usize) {
    indent(out, level);
    let _ = writeln!(out, "enum {} {{", e.name());
    if e.options.as_ref().is_some_and(|o| o.allow_alias()) {
        indent(out, level + 1);
        out.push_str("option allow_alias = true;\n");
    }
    for value in &e.value {
        indent(out, level + 1);
        let _ = writeln!(out, "{} = {};", value.name(), value.number());
    }
    indent(out, level);
    out.push_str("}\n");
}

#[cfg(test)]
mod tests;
