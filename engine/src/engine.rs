//! The shared WebAssembly engine: its configuration, the epoch ticker that enforces time
//! limits, and the on-disk cache of compiled components.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};

use super::error::{Error, boxed};
use super::host::{self, HostState};

/// How often the epoch advances; time limits are kept to this granularity.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Compiled components kept in memory per engine, by content digest (a few hundred KiB of
/// code each). Beyond this the memo starts over: it only saves recompiling.
const MEMO_CAPACITY: usize = 64;

/// How many times an engine's ticker has advanced its epoch. The ticker counts right after
/// each advance, so the engine's epoch is never behind this count (at most one ahead): a
/// host call that waits for the count to pass a store's deadline knows the guest will trap.
#[derive(Clone, Default)]
pub(crate) struct EpochCount(Arc<AtomicU64>);

impl EpochCount {
    pub(crate) fn now(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    fn advanced(&self) {
        self.0.fetch_add(1, Ordering::Release);
    }
}

/// A compiled-component engine shared by all pipelines (cheap to clone).
///
/// Holds the wasmtime `Engine` (component model, epoch interruption), the host linker, and
/// the optional directory of compiled components. One background thread advances the epoch
/// every 10 ms for as long as anything (engine clone, component, store) uses the engine.
#[derive(Clone)]
pub struct TransformEngine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    engine: wasmtime::Engine,
    linker: Linker<HostState>,
    epochs: EpochCount,
    cache_dir: Option<PathBuf>,
    /// Hex digest of everything that makes a precompiled artifact loadable by this engine.
    compatibility: String,
    /// Components compiled by this engine, by SHA-256 of their source. Locked for the whole
    /// compilation, so a component wanted by several pipelines at once is compiled once
    /// (compilation uses every core anyway).
    compiled: Mutex<HashMap<String, Component>>,
}

impl TransformEngine {
    /// Creates the engine and starts its epoch ticker. `cache_dir` (created on first use)
    /// keeps compiled components so a restart does not recompile; `None` disables the cache.
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Self, Error> {
        let mut config = wasmtime::Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            // Required with the trimmed wasmtime features (no component-model-async).
            .concurrency_support(false)
            .parallel_compilation(true);
        let engine = wasmtime::Engine::new(&config).map_err(|e| Error::Engine(boxed(e)))?;
        let epochs = EpochCount::default();
        start_epoch_ticker(&engine, epochs.clone())?;
        let linker = host::linker(&engine)?;
        let compatibility = compatibility_digest(&engine);
        Ok(Self {
            inner: Arc::new(EngineInner {
                engine,
                linker,
                epochs,
                cache_dir,
                compatibility,
                compiled: Mutex::default(),
            }),
        })
    }

    /// Where compiled components are cached by default: `$SLUICE_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/sluice`, else `$HOME/.cache/sluice`; `None` when none is set.
    pub fn default_cache_dir() -> Option<PathBuf> {
        let var = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        var("SLUICE_CACHE_DIR")
            .or_else(|| var("XDG_CACHE_HOME").map(|dir| dir.join("sluice")))
            .or_else(|| var("HOME").map(|home| home.join(".cache").join("sluice")))
    }

    /// The cache directory in use, if any.
    pub fn cache_dir(&self) -> Option<&Path> {
        self.inner.cache_dir.as_deref()
    }

    pub(crate) fn wasmtime(&self) -> &wasmtime::Engine {
        &self.inner.engine
    }

    pub(crate) fn epochs(&self) -> &EpochCount {
        &self.inner.epochs
    }

    pub(crate) fn linker(&self) -> &Linker<HostState> {
        &self.inner.linker
    }

    /// Compiles `bytes` (the component at `path`, whose SHA-256 is `digest_hex`): from memory
    /// if this engine compiled it before, else through the on-disk cache when there is one.
    /// Cache problems only warn.
    pub(crate) fn compile(
        &self,
        path: &Path,
        bytes: &[u8],
        digest_hex: &str,
    ) -> Result<Component, Error> {
        // A poisoned memo is still a valid map.
        let mut compiled = self
            .inner
            .compiled
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(component) = compiled.get(digest_hex) {
            return Ok(component.clone());
        }
        let component = self.compile_uncached(path, bytes, digest_hex)?;
        if compiled.len() >= MEMO_CAPACITY {
            compiled.clear();
        }
        compiled.insert(digest_hex.to_owned(), component.clone());
        Ok(component)
    }

    fn compile_uncached(
        &self,
        path: &Path,
        bytes: &[u8],
        digest_hex: &str,
    ) -> Result<Component, Error> {
        let engine = self.wasmtime();
        let invalid = |e| Error::InvalidComponent {
            path: path.to_owned(),
            source: boxed(e),
        };
        let Some(cache_dir) = self.cache_dir() else {
            return Component::from_binary(engine, bytes).map_err(invalid);
        };
        let cached = cache_dir.join(format!("{digest_hex}-{}.cwasm", self.inner.compatibility));
        match std::fs::read(&cached) {
            // SAFETY: `deserialize` trusts the bytes to be machine code wasmtime produced.
            // This file is one we wrote ourselves (below) from `precompile_component`, named by
            // the SHA-256 of the source component and of this engine's compilation settings
            // and version, in a directory created private to the user; wasmtime also checks
            // its header and refuses an artifact from another version or configuration.
            // It is read into memory rather than mapped (`deserialize_file`): a mapped file
            // truncated or rewritten in place by someone else would crash the host (SIGBUS).
            Ok(artifact) => match unsafe { Component::deserialize(engine, &artifact) } {
                Ok(component) => {
                    tracing::debug!(path = %path.display(), cache = %cached.display(), "compiled component loaded from cache");
                    return Ok(component);
                }
                Err(error) => tracing::warn!(
                    cache = %cached.display(),
                    error = %error,
                    "ignoring an unusable cached component; recompiling"
                ),
            },
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => tracing::warn!(
                cache = %cached.display(),
                error = %error,
                "cannot read the cached component; recompiling"
            ),
        }
        let compiled = engine.precompile_component(bytes).map_err(invalid)?;
        if let Err(error) = write_atomically(cache_dir, &cached, &compiled) {
            tracing::warn!(
                cache = %cached.display(),
                error = %error,
                "cannot write the compiled-component cache; continuing without it"
            );
        }
        // SAFETY: `compiled` was produced just now by this engine's `precompile_component`.
        unsafe { Component::deserialize(engine, &compiled) }.map_err(invalid)
    }
}

/// Advances the epoch of `engine` every [`EPOCH_TICK`] until the engine is dropped. The
/// thread holds only a weak reference, so it never keeps the engine alive.
fn start_epoch_ticker(engine: &wasmtime::Engine, epochs: EpochCount) -> Result<(), Error> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("sluice-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(EPOCH_TICK);
                match weak.upgrade() {
                    Some(engine) => {
                        engine.increment_epoch();
                        epochs.advanced();
                    }
                    None => break,
                }
            }
        })
        .map(drop)
        .map_err(|e| Error::Engine(Box::new(e)))
}

/// SHA-256 over wasmtime's precompile compatibility hash (its version, target and every
/// setting that affects compiled code), truncated to 16 hex digits.
fn compatibility_digest(engine: &wasmtime::Engine) -> String {
    struct Sha256Hasher(Sha256);
    impl Hasher for Sha256Hasher {
        fn finish(&self) -> u64 {
            let digest = self.0.clone().finalize();
            u64::from_le_bytes(digest[..8].try_into().unwrap_or_default())
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex::encode(&hasher.0.finalize()[..8])
}

/// Writes `bytes` to `target` so readers never see a partial file: a temporary file in the
/// same directory, renamed over the target.
fn write_atomically(dir: &Path, target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    create_private_dir(dir)?;
    let unique = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let temporary = dir.join(format!(".tmp-{}-{unique}.cwasm", std::process::id()));
    let result =
        std::fs::write(&temporary, bytes).and_then(|()| std::fs::rename(&temporary, target));
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compatibility_digest_is_stable_for_one_engine_config() {
        let a = TransformEngine::new(None).unwrap();
        let b = TransformEngine::new(None).unwrap();
        assert_eq!(a.inner.compatibility, b.inner.compatibility);
        assert_eq!(a.inner.compatibility.len(), 16);
    }

    #[test]
    fn atomic_write_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("nested").join("cache");
        let target = cache.join("x.cwasm");
        write_atomically(&cache, &target, b"one").unwrap();
        write_atomically(&cache, &target, b"two").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["x.cwasm"]);
    }
}
