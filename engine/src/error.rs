//! Errors of loading, validating and initialising transform components.
//!
//! Failures while transforming records are not errors: they become a
//! [`RecordOutcome`](super::RecordOutcome) for the record concerned.

use std::path::PathBuf;

use super::outcome::FailureKind;
use super::world::{WORLD, WorldProblem};

/// A wasmtime error with its cause chain (`wasmtime::Error` is not a `std::error::Error`).
pub type WasmError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Converts a wasmtime error into a [`WasmError`], keeping its chain.
pub(crate) fn boxed(error: wasmtime::Error) -> WasmError {
    error.into_boxed_dyn_error()
}

/// Why a transform component could not be loaded, validated or initialised.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The WebAssembly engine could not be created (a host problem).
    #[error("cannot create the WebAssembly engine")]
    Engine(#[source] WasmError),

    /// The component file could not be read.
    #[error("cannot read component {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The file is bigger than the transform's `max_component_mib`.
    #[error(
        "{} is {size_bytes} bytes, more than max_component_mib = {limit_mib} allows",
        path.display()
    )]
    TooLarge {
        path: PathBuf,
        size_bytes: u64,
        limit_mib: u32,
    },

    /// The file is not WebAssembly at all.
    #[error("{} is not a WebAssembly component (it does not start with the `\\0asm` magic)", path.display())]
    NotWasm { path: PathBuf },

    /// The file is a core WebAssembly module, not a component.
    #[error(
        "{} is a core WebAssembly module, not a component: build it for `wasm32-wasip2` (or wrap it with `wasm-tools component new`)",
        path.display()
    )]
    CoreModule { path: PathBuf },

    /// The component failed validation or compilation.
    #[error("{} is not a valid WebAssembly component", path.display())]
    InvalidComponent {
        path: PathBuf,
        #[source]
        source: WasmError,
    },

    /// The component does not fit the world: an export is missing or has another type, or
    /// it imports something the host does not provide (or another version of the world).
    #[error("{} does not implement the world {}: {problem}", path.display(), WORLD)]
    WorldMismatch {
        path: PathBuf,
        problem: WorldProblem,
    },

    /// The component passed the checks of its type but the host could not link it (the
    /// linker's own, less specific, refusal).
    #[error("{} does not implement the world {}", path.display(), WORLD)]
    Unlinkable {
        path: PathBuf,
        #[source]
        source: WasmError,
    },

    /// A capability granted in the config cannot be given.
    #[error("transform {transform:?}: capabilities.{message}")]
    Capability { transform: String, message: String },

    /// The component's `init` refused the configuration.
    #[error("transform {transform:?} ({}) refused its configuration: {reason}", path.display())]
    InitRefused {
        transform: String,
        path: PathBuf,
        reason: String,
    },

    /// Instantiating the component or calling its `init` trapped or timed out.
    #[error("transform {transform:?} ({}) failed to start ({}): {reason}", path.display(), kind.as_str())]
    InitFailed {
        transform: String,
        path: PathBuf,
        kind: FailureKind,
        reason: String,
    },

    /// The host's own bindings could not be set up (a bug, not a user error).
    #[error("cannot link the host functions")]
    Linker(#[source] WasmError),
}

impl Error {
    /// Whether the error is the user's input (a bad path, not a component, the wrong world, a
    /// configuration or component that fails at `init`): the CLI exits with code 2 for these
    /// and 1 for the rest.
    pub fn is_user_input_error(&self) -> bool {
        match self {
            Error::Read { .. }
            | Error::TooLarge { .. }
            | Error::NotWasm { .. }
            | Error::CoreModule { .. }
            | Error::InvalidComponent { .. }
            | Error::WorldMismatch { .. }
            | Error::Unlinkable { .. }
            | Error::Capability { .. }
            | Error::InitRefused { .. }
            | Error::InitFailed { .. } => true,
            Error::Engine(_) | Error::Linker(_) => false,
        }
    }
}
