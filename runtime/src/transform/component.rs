//! Loading a component file: read, identify, compile (through the cache) and check it
//! against the world.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use super::TransformEngine;
use super::bindings::TransformerPre;
use super::error::{Error, boxed};
use super::host::HostState;

/// The world every transform must implement.
pub const WORLD: &str = "sluice:transform/transformer@0.1.0";

/// What `sluice check` prints about a valid component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentInfo {
    /// The file it was loaded from.
    pub path: PathBuf,
    /// File size.
    pub size_bytes: u64,
    /// `sha256:<hex>` of the file.
    pub digest: String,
    /// The world it implements.
    pub world: String,
    /// Interfaces it imports (the WASI ones are linked but grant nothing).
    pub imports: Vec<String>,
    /// Functions and interfaces it exports.
    pub exports: Vec<String>,
}

/// Loads the component at `path` and checks that it implements [`WORLD`] (without running
/// it). Compiles through the engine's cache.
pub fn inspect(engine: &TransformEngine, path: &Path) -> Result<ComponentInfo, Error> {
    let loaded = load(engine, path)?;
    let component_type = loaded.component.component_type();
    let names = |items: &mut dyn Iterator<Item = &str>| items.map(str::to_owned).collect();
    Ok(ComponentInfo {
        path: loaded.path,
        size_bytes: loaded.size_bytes,
        digest: loaded.digest,
        world: WORLD.to_owned(),
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
    })
}

/// A compiled component that fits the world, ready to instantiate.
pub(crate) struct LoadedComponent {
    pub(crate) path: PathBuf,
    pub(crate) size_bytes: u64,
    pub(crate) digest: String,
    pub(crate) component: Component,
    pub(crate) pre: TransformerPre<HostState>,
}

/// The binary encoding's preamble: magic, then version and layer.
const WASM_MAGIC: &[u8; 4] = b"\0asm";
const CORE_MODULE_VERSION: [u8; 4] = [1, 0, 0, 0];

pub(crate) fn load(engine: &TransformEngine, path: &Path) -> Result<LoadedComponent, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
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
    let mismatch = |e| Error::WorldMismatch {
        path: path.to_owned(),
        source: boxed(e),
    };
    let instance_pre = engine
        .linker()
        .instantiate_pre(&component)
        .map_err(mismatch)?;
    let pre = TransformerPre::new(instance_pre).map_err(mismatch)?;
    Ok(LoadedComponent {
        path: path.to_owned(),
        size_bytes: bytes.len() as u64,
        digest: format!("sha256:{digest_hex}"),
        component,
        pre,
    })
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
            let error = load(&engine, &path).err().expect("must fail");
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
        let error = load(&engine(), &path).err().expect("must fail");
        assert!(matches!(error, Error::WorldMismatch { .. }), "{error:?}");
        let chain = error_chain(&error);
        assert!(chain.contains(WORLD), "{chain}");
        assert!(
            chain.contains("init") || chain.contains("transform-batch"),
            "{chain}"
        );
    }

    fn error_chain(error: &dyn std::error::Error) -> String {
        let mut text = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }
}
