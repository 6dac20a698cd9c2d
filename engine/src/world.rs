//! Checks a compiled component's type against the worlds the host serves before linking, so a
//! refusal names what is wrong (an import, a version, an export) instead of passing on the
//! linker's text, and tells which version of the world a component implements: the host
//! serves `sluice:transform@0.2.0` (flat batches) beside `@0.1.0` (lists of records) and picks
//! by what the component exports and imports.

use std::fmt;

use wasmtime::component::Component;
use wasmtime::component::types::{ComponentFunc, ComponentItem, Type};

/// The world a transform implements, without its version (see [`WorldVersion`]).
pub const WORLD: &str = "sluice:transform/transformer";

/// The package this host serves.
const PACKAGE: &str = "sluice:transform";
/// The versions served, for messages.
const SERVED_VERSIONS: &str = "0.1.0, 0.2.0";

/// The version of the world a component implements; the host serves both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorldVersion {
    /// `sluice:transform@0.1.0`: records cross the boundary as lists of records.
    V0_1,
    /// `sluice:transform@0.2.0`: a batch crosses as one flat byte buffer each way
    /// (docs/flat-batch-abi.md).
    V0_2,
}

impl WorldVersion {
    /// The package version, as in `sluice:transform@<version>`.
    pub fn as_str(self) -> &'static str {
        match self {
            WorldVersion::V0_1 => "0.1.0",
            WorldVersion::V0_2 => "0.2.0",
        }
    }

    /// The full world name, as `sluice check` prints it.
    pub fn world(self) -> String {
        format!("{WORLD}@{}", self.as_str())
    }

    fn from_version(version: &str) -> Option<Self> {
        match version {
            "0.1.0" => Some(WorldVersion::V0_1),
            "0.2.0" => Some(WorldVersion::V0_2),
            _ => None,
        }
    }

    /// The `transform-batch` type of this version, rendered by [`render_func`].
    fn transform_batch(self) -> &'static str {
        match self {
            WorldVersion::V0_1 => TRANSFORM_BATCH_V0_1,
            WorldVersion::V0_2 => TRANSFORM_BATCH_V0_2,
        }
    }
}

impl fmt::Display for WorldVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.world())
    }
}
/// Interfaces of [`PACKAGE`] a transform may import.
const PACKAGE_INTERFACES: &[&str] = &["types", "host", "state"];
/// WASI 0.2 packages the host links (every interface of each is granted nothing beyond
/// what `capabilities` allow; see `host.rs`).
const WASI_PACKAGES: &[&str] = &[
    "wasi:cli",
    "wasi:clocks",
    "wasi:filesystem",
    "wasi:io",
    "wasi:random",
    "wasi:sockets",
];

/// The world's exports, the same in both versions.
const EXPORTS: &[&str] = &["init", "transform-batch"];
/// `init`'s type, the same in both versions, rendered by [`render_func`]. Published versions
/// are frozen (a breaking change is a new version), so these types are too.
const INIT: &str = "func(config: list<tuple<string, string>>) -> result<_, string>";
/// `transform-batch` in 0.2.0: one flat buffer each way.
const TRANSFORM_BATCH_V0_2: &str = "func(batch: list<u8>) -> list<u8>";
/// `transform-batch` in 0.1.0: lists of records.
const TRANSFORM_BATCH_V0_1: &str = "func(records: list<record { key: option<list<u8>>, value: option<list<u8>>, \
         headers: list<record { name: string, value: list<u8> }>, event-time-ms: option<s64>, \
         publish-time-ms: option<s64>, source: record { kind: enum { pulsar, gcp-pubsub, other }, \
         topic: string, message-id: string } }>) -> list<result<list<record { \
         key: option<list<u8>>, value: option<list<u8>>, headers: list<record { name: string, \
         value: list<u8> }>, timestamp-ms: option<s64>, topic: option<string> }>, \
         variant { skip(string), dead-letter(string), fatal(string) }>>";

/// How a component departs from the world.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorldProblem {
    /// It imports `sluice:transform` at a version this host does not serve.
    UnsupportedVersion { found: String },
    /// It imports an interface the host does not provide.
    UnknownImport { import: String },
    /// Exports of the world are missing; `unexpected` are exports the world does not have.
    MissingExports {
        missing: Vec<String>,
        unexpected: Vec<String>,
    },
    /// An export has another type than the world declares.
    ExportType {
        export: String,
        found: String,
        expected: String,
    },
}

impl fmt::Display for WorldProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let quoted = |names: &[String]| {
            names
                .iter()
                .map(|name| format!("{name:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            WorldProblem::UnsupportedVersion { found } => write!(
                f,
                "unsupported version {PACKAGE}@{found} (this host serves {SERVED_VERSIONS})"
            ),
            WorldProblem::UnknownImport { import } => {
                write!(f, "imports {import} which the host does not provide")
            }
            WorldProblem::MissingExports {
                missing,
                unexpected,
            } => {
                let plural = if missing.len() == 1 { "" } else { "s" };
                write!(f, "missing export{plural} {}", quoted(missing))?;
                if !unexpected.is_empty() {
                    write!(
                        f,
                        "; it exports {} instead (built for another world?)",
                        quoted(unexpected)
                    )?;
                }
                Ok(())
            }
            WorldProblem::ExportType {
                export,
                found,
                expected,
            } => write!(
                f,
                "export {export:?} has type `{found}` but the world declares `{expected}`"
            ),
        }
    }
}

/// Checks the imports, then the exports, of `component` against the worlds served, and says
/// which version it implements: the one its `sluice:transform` imports name, else the one its
/// `transform-batch` type matches (a component need not import the `host` interface).
pub(crate) fn check(
    engine: &wasmtime::Engine,
    component: &Component,
) -> Result<WorldVersion, WorldProblem> {
    let component_type = component.component_type();
    let mut imported: Option<WorldVersion> = None;
    for (import, _) in component_type.imports(engine) {
        let version = check_import(import)?;
        match (imported, version) {
            (Some(first), Some(other)) if first != other => {
                return Err(WorldProblem::UnsupportedVersion {
                    found: format!("{} and {}", first.as_str(), other.as_str()),
                });
            }
            (None, Some(version)) => imported = Some(version),
            _ => {}
        }
    }
    let mut found = Vec::new();
    let mut unexpected = Vec::new();
    for (name, item) in component_type.exports(engine) {
        match EXPORTS.iter().find(|export| **export == name) {
            Some(_) => found.push((name.to_owned(), item)),
            None => unexpected.push(name.to_owned()),
        }
    }
    let missing: Vec<String> = EXPORTS
        .iter()
        .filter(|export| !found.iter().any(|(name, _)| name == *export))
        .map(|export| (*export).to_owned())
        .collect();
    if !missing.is_empty() {
        return Err(WorldProblem::MissingExports {
            missing,
            unexpected,
        });
    }
    let rendered: Vec<(String, String)> = found
        .into_iter()
        .map(|(export, item)| {
            let found = match &item.ty {
                ComponentItem::ComponentFunc(func) => render_func(func),
                other => format!("a {} (not a function)", item_kind(other)),
            };
            (export, found)
        })
        .collect();
    let batch_type = rendered
        .iter()
        .find(|(export, _)| export == "transform-batch")
        .map(|(_, found)| found.as_str())
        .unwrap_or_default();
    let version = imported.unwrap_or(if batch_type == TRANSFORM_BATCH_V0_1 {
        WorldVersion::V0_1
    } else {
        WorldVersion::V0_2
    });
    for (export, found) in rendered {
        let expected = match export.as_str() {
            "init" => INIT,
            _ => version.transform_batch(),
        };
        if found != expected {
            return Err(WorldProblem::ExportType {
                export,
                found,
                expected: expected.to_owned(),
            });
        }
    }
    Ok(version)
}

/// `ns:pkg/interface@version` → refused unless the host provides it; the world version when
/// it is an interface of `sluice:transform`.
fn check_import(import: &str) -> Result<Option<WorldVersion>, WorldProblem> {
    let (path, version) = import.split_once('@').unwrap_or((import, ""));
    let (package, interface) = path.split_once('/').unwrap_or((path, ""));
    let unknown = || WorldProblem::UnknownImport {
        import: import.to_owned(),
    };
    if package == PACKAGE {
        let Some(served) = WorldVersion::from_version(version) else {
            return Err(WorldProblem::UnsupportedVersion {
                found: version.to_owned(),
            });
        };
        return match PACKAGE_INTERFACES.contains(&interface) {
            true => Ok(Some(served)),
            false => Err(unknown()),
        };
    }
    if WASI_PACKAGES.contains(&package) && version.starts_with("0.2.") {
        return Ok(None);
    }
    Err(unknown())
}

fn item_kind(item: &ComponentItem) -> &'static str {
    match item {
        ComponentItem::ComponentFunc(_) => "function",
        ComponentItem::CoreFunc(_) => "core function",
        ComponentItem::Module(_) => "core module",
        ComponentItem::Component(_) => "component",
        ComponentItem::ComponentInstance(_) => "instance",
        ComponentItem::Type(_) => "type",
        ComponentItem::Resource(_) => "resource",
    }
}

/// A function type in WIT-like syntax, types spelled out structurally (names of records and
/// variants are not part of a component's type).
pub(crate) fn render_func(func: &ComponentFunc) -> String {
    let params: Vec<String> = func
        .params()
        .map(|(name, ty)| format!("{name}: {}", render(&ty)))
        .collect();
    let results: Vec<String> = func.results().map(|ty| render(&ty)).collect();
    let mut text = format!("func({})", params.join(", "));
    match results.as_slice() {
        [] => {}
        [one] => text.push_str(&format!(" -> {one}")),
        many => text.push_str(&format!(" -> ({})", many.join(", "))),
    }
    text
}

fn render(ty: &Type) -> String {
    let option = |ty: Option<Type>| ty.map_or_else(|| "_".to_owned(), |ty| render(&ty));
    match ty {
        Type::Bool => "bool".into(),
        Type::S8 => "s8".into(),
        Type::U8 => "u8".into(),
        Type::S16 => "s16".into(),
        Type::U16 => "u16".into(),
        Type::S32 => "s32".into(),
        Type::U32 => "u32".into(),
        Type::S64 => "s64".into(),
        Type::U64 => "u64".into(),
        Type::Float32 => "f32".into(),
        Type::Float64 => "f64".into(),
        Type::Char => "char".into(),
        Type::String => "string".into(),
        Type::List(list) => format!("list<{}>", render(&list.ty())),
        Type::Record(record) => {
            let fields: Vec<String> = record
                .fields()
                .map(|field| format!("{}: {}", field.name, render(&field.ty)))
                .collect();
            format!("record {{ {} }}", fields.join(", "))
        }
        Type::Tuple(tuple) => {
            let types: Vec<String> = tuple.types().map(|ty| render(&ty)).collect();
            format!("tuple<{}>", types.join(", "))
        }
        Type::Variant(variant) => {
            let cases: Vec<String> = variant
                .cases()
                .map(|case| match case.ty {
                    Some(ty) => format!("{}({})", case.name, render(&ty)),
                    None => case.name.to_owned(),
                })
                .collect();
            format!("variant {{ {} }}", cases.join(", "))
        }
        Type::Enum(names) => format!(
            "enum {{ {} }}",
            names.names().collect::<Vec<_>>().join(", ")
        ),
        Type::Flags(names) => {
            format!(
                "flags {{ {} }}",
                names.names().collect::<Vec<_>>().join(", ")
            )
        }
        Type::Option(inner) => format!("option<{}>", render(&inner.ty())),
        Type::Result(result) => {
            format!("result<{}, {}>", option(result.ok()), option(result.err()))
        }
        Type::Own(_) => "own<resource>".into(),
        Type::Borrow(_) => "borrow<resource>".into(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_are_judged_by_package_and_version() {
        assert_eq!(
            check_import("sluice:transform/host@0.1.0"),
            Ok(Some(WorldVersion::V0_1))
        );
        assert_eq!(
            check_import("sluice:transform/host@0.2.0"),
            Ok(Some(WorldVersion::V0_2))
        );
        assert_eq!(check_import("wasi:cli/stdout@0.2.6"), Ok(None));
        assert_eq!(
            check_import("sluice:transform/host@0.3.0"),
            Err(WorldProblem::UnsupportedVersion {
                found: "0.3.0".into()
            })
        );
        for import in [
            "sluice:transform/secrets@0.1.0",
            "acme:secrets/vault",
            "wasi:http/outgoing-handler@0.2.0",
            "wasi:cli/stdout@0.3.0",
        ] {
            assert_eq!(
                check_import(import),
                Err(WorldProblem::UnknownImport {
                    import: import.into()
                })
            );
        }
    }

    #[test]
    fn problems_name_what_is_wrong() {
        assert_eq!(
            WorldProblem::UnsupportedVersion {
                found: "0.3.0".into()
            }
            .to_string(),
            "unsupported version sluice:transform@0.3.0 (this host serves 0.1.0, 0.2.0)"
        );
        assert_eq!(
            WorldProblem::MissingExports {
                missing: vec!["transform-batch".into()],
                unexpected: vec![],
            }
            .to_string(),
            "missing export \"transform-batch\""
        );
        assert_eq!(
            WorldProblem::MissingExports {
                missing: vec!["init".into(), "transform-batch".into()],
                unexpected: vec!["transform".into()],
            }
            .to_string(),
            "missing exports \"init\", \"transform-batch\"; it exports \"transform\" instead (built for another world?)"
        );
    }
}
