//! The transform engine: loading, validating and running WebAssembly components of the
//! world `sluice:transform/transformer` at 0.2.0 (flat batches, docs/flat-batch-abi.md) or
//! 0.1.0 (`wit/sluice-transform@<version>/world.wit`) under
//! the sandbox described in docs/sandbox.md. It links wasmtime and nothing that talks to a
//! broker: `sluice check`, `sluice exec` and the engine benchmark build without them.
//!
//! - [`TransformEngine`]: the shared wasmtime engine, its epoch ticker and compiled cache.
//! - [`inspect`]: load and validate a component without running it (`sluice check`).
//! - [`TransformChain`]: a pipeline's transforms, instantiated and initialised; turns a
//!   batch of [`InputRecord`](sluice_record::InputRecord)s into one [`RecordOutcome`] each,
//!   reporting what each transform did to a [`TransformObserver`].
//! - [`exec`]: JSON lines through a chain (`sluice exec`).
//!
//! No guest behaviour crashes the host: traps, timeouts, memory exhaustion and oversized
//! results dead-letter the record concerned and the instance is re-created.
//!
//! The sandbox: WASI grants no filesystem, network, environment or stdin; clocks and random
//! are real. A transform's config may grant environment variables and read-only directories
//! ([`Capabilities`]); the network is never granted. Components that do not fit the world
//! (wrong exports, an unknown import or version) are refused at load ([`WorldProblem`]). Guest
//! stdout/stderr and `log` become host log lines (target `sluice::guest`, rate-limited). Each
//! call runs under an epoch deadline (`batch_timeout_ms`); guest sleeps are cut at that
//! deadline too, since a blocked host call is out of the epoch's reach.

mod bindings;
mod capabilities;
mod chain;
mod component;
mod determinism;
mod engine;
mod error;
pub mod exec;
mod flat;
mod host;
mod instance;
mod limits;
mod observer;
mod outcome;
mod spec;
mod state;
mod world;

pub use capabilities::{Capabilities, SensitiveImport};
pub use chain::{LoadedTransform, TransformChain};
pub use component::{ComponentInfo, inspect};
pub use engine::TransformEngine;
pub use error::{Error, WasmError};
pub use limits::Limits;
pub use observer::{TransformObserver, Unobserved};
pub use outcome::{FailureKind, RecordOutcome, TransformId};
pub use spec::TransformSpec;
pub use state::{
    BatchState, MemoryState, RecordStateContext, StateBackend, StateChange, StateQuotaPolicy,
    StateScope, StateUsage, key_group, state_key,
};
pub use world::{WORLD, WorldProblem, WorldVersion};
