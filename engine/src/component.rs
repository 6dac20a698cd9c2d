//! Loading a component file: read, identify, compile (through the cache) and check it
//! against the world.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use super::bindings::TransformerPre;
use super::capabilities::{self, SensitiveImport};
use super::engine::TransformEngine;
use super::error::{Error, boxed};
use super::host::HostState;
use super::limits::Limits;
use super::world::{self, WorldVersion};
use wasmtime::component::InstancePre;

/// What `sluice check` prints about a valid component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentInfo {
    /// The file it was loaded from.
    pub path: PathBuf,
    /// File size.
    pub size_bytes: u64,
    /// `sha256:<hex>` of the file.
    pub digest: String,
    /// The world it implements, with its version (`sluice:transform/transformer@0.2.0`).
    pub world: String,
    /// The version of the world.
    pub version: WorldVersion,
    /// Interfaces it imports (the WASI ones are linked but grant nothing by default).
    pub imports: Vec<String>,
    /// Functions and interfaces it exports.
    pub exports: Vec<String>,
    /// The imports that reach the filesystem, network, environment or stdin: denied unless
    /// the pipeline config grants them (the network never is).
    pub sensitive_imports: Vec<SensitiveImport>,
}

impl ComponentInfo {
    /// The WASI interfaces among the imports.
    pub fn wasi_imports(&self) -> Vec<&str> {
        self.imports
            .iter()
            .map(String::as_str)
            .filter(|import| import.starts_with("wasi:"))
            .collect()
    }
}

/// Loads the component at `path` and checks that it implements a served version of the world
/// [`WORLD`](super::world::WORLD) (without running
/// it), under the default [`Limits::max_component_mib`]. Compiles through the engine's cache.
pub fn inspect(engine: &TransformEngine, path: &Path) -> Result<ComponentInfo, Error> {
    let loaded = load(engine, path, &Limits::default())?;
    let component_type = loaded.component.component_type();
    let names = |items: &mut dyn Iterator<Item = &str>| items.map(str::to_owned).collect();
    Ok(ComponentInfo {
        path: loaded.path,
        size_bytes: loaded.size_bytes,
        digest: loaded.digest,
        world: loaded.version.world(),
        version: loaded.version,
        imports: names(
            &mut component_type
                .imports(engine.wasmtime())
                .map(|(name, _)| name),
        ),
        exports: names(
            &mut component_type
                .exports(engine.wasmtime())
                .map(|(name, _)| name),
        ),
        sensitive_imports: component_type
            .imports(engine.wasmtime())
            .filter_map(|(name, _)| capabilities::sensitive(name))
            .collect(),
    })
}

/// A compiled component that fits the world, ready to instantiate.
pub(crate) struct LoadedComponent {
    pub(crate) path: PathBuf,
    pub(crate) size_bytes: u64,
    pub(crate) digest: String,
    pub(crate) component: Component,
    pub(crate) version: WorldVersion,
    pub(crate) pre: GuestPre,
}

/// A component linked and ready to instantiate, by the version of the world it implements.
pub(crate) enum GuestPre {
    V0_1(TransformerPre<HostState>),
    /// Called through the flat boundary (`flat`), its exports looked up by name.
    V0_2(InstancePre<HostState>),
}

/// The binary encoding's preamble: magic, then version and layer.
const WASM_MAGIC: &[u8; 4] = b"\0asm";
const CORE_MODULE_VERSION: [u8; 4] = [1, 0, 0, 0];

/// Reads, compiles and checks the component at `path` against the world; refuses a file
/// bigger than `limits.max_component_mib` before reading it.
pub(crate) fn load(
    engine: &TransformEngine,
    path: &Path,
    limits: &Limits,
) -> Result<LoadedComponent, Error> {
    let bytes = read_limited(path, limits)?;
    if !bytes.starts_with(WASM_MAGIC) {
        return Err(Error::NotWasm {
            path: path.to_owned(),
        });
    }
    if bytes.get(4..8) == Some(&CORE_MODULE_VERSION[..]) {
        return Err(Error::CoreModule {
            path: path.to_owned(),
        });
    }
    let digest_hex = hex::encode(Sha256::digest(&bytes));
    let component = engine.compile(path, &bytes, &digest_hex)?;
    // Our own checks first: they name the import or export at fault.
    let version =
        world::check(engine.wasmtime(), &component).map_err(|problem| Error::WorldMismatch {
            path: path.to_owned(),
            problem,
        })?;
    let unlinkable = |e| Error::Unlinkable {
        path: path.to_owned(),
        source: boxed(e),
    };
    let instance_pre = engine
        .linker()
        .instantiate_pre(&component)
        .map_err(unlinkable)?;
    let pre = match version {
        WorldVersion::V0_1 => {
            GuestPre::V0_1(TransformerPre::new(instance_pre).map_err(unlinkable)?)
        }
        WorldVersion::V0_2 => GuestPre::V0_2(instance_pre),
    };
    Ok(LoadedComponent {
        path: path.to_owned(),
        size_bytes: bytes.len() as u64,
        digest: format!("sha256:{digest_hex}"),
        component,
        version,
        pre,
    })
}

/// The file's bytes, refused when its size exceeds the limit: checked on the metadata
/// before reading, and again while reading (the file may grow meanwhile).
fn read_limited(path: &Path, limits: &Limits) -> Result<Vec<u8>, Error> {
    let read_error = |source| Error::Read {
        path: path.to_owned(),
        source,
    };
    let too_large = |size_bytes| Error::TooLarge {
        path: path.to_owned(),
        size_bytes,
        limit_mib: limits.max_component_mib,
    };
    let limit = limits.max_component_bytes();
    let file = std::fs::File::open(path).map_err(read_error)?;
    let metadata = file.metadata().map_err(read_error)?;
    if metadata.is_dir() {
        return Err(read_error(std::io::Error::new(
            std::io::ErrorKind::IsADirectory,
            "is a directory",
        )));
    }
    if metadata.len() > limit {
        return Err(too_large(metadata.len()));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or_default());
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> TransformEngine {
        TransformEngine::new(None).unwrap()
    }

    fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn refuses_missing_files_random_bytes_and_core_modules_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine();
        let missing = dir.path().join("missing.wasm");
        let cases = [
            (missing.clone(), "cannot read component"),
            (
                write(&dir, "random.wasm", b"not wasm at all"),
                "does not start with the `\\0asm` magic",
            ),
            (
                write(&dir, "core.wasm", b"\0asm\x01\0\0\0"),
                "is a core WebAssembly module",
            ),
            (
                write(&dir, "broken.wasm", b"\0asm\x0d\0\x01\0\xff\xff"),
                "is not a valid WebAssembly component",
            ),
        ];
        for (path, expected) in cases {
            let error = load(&engine, &path, &Limits::default())
                .err()
                .expect("must fail");
            let message = error.to_string();
            assert!(message.contains(expected), "{message}");
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert!(error.is_user_input_error());
        }
    }

    #[test]
    fn refuses_a_component_of_another_world_naming_what_is_missing() {
        // The smallest valid component: no imports, no exports.
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "empty.wasm", b"\0asm\x0d\0\x01\0");
        let error = load(&engine(), &path, &Limits::default())
            .err()
            .expect("must fail");
        assert!(matches!(error, Error::WorldMismatch { .. }), "{error:?}");
        let chain = format!("{:#}", anyhow::Error::new(error));
        assert!(chain.contains(super::world::WORLD), "{chain}");
        assert!(
            chain.contains("missing exports \"init\", \"transform-batch\""),
            "{chain}"
        );
    }

    #[test]
    fn refuses_a_file_over_the_size_limit_before_reading_it() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            max_component_mib: 1,
            ..Limits::default()
        };
        let big = write(&dir, "big.wasm", &vec![0u8; 1024 * 1024 + 1]);
        let error = load(&engine(), &big, &limits).err().expect("must fail");
        assert!(error.is_user_input_error());
        assert_eq!(
            error.to_string(),
            format!(
                "{} is 1048577 bytes, more than max_component_mib = 1 allows",
                big.display()
            )
        );
        // At the limit the size is fine (and the content is judged next).
        let exact = write(&dir, "exact.wasm", &vec![0u8; 1024 * 1024]);
        let error = load(&engine(), &exact, &limits).err().expect("must fail");
        assert!(matches!(error, Error::NotWasm { .. }), "{error:?}");
    }
}
