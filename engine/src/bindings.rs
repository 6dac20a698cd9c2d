//! Host-side bindings of the worlds `sluice:transform/transformer@0.1.0` and `@0.2.0`,
//! generated from `wit/` at build time. The only place that runs `bindgen!`.
//!
//! Of 0.2.0 only the imports (`host.log`) are linked from here: its `transform-batch` is
//! called through the flat boundary (`flat::boundary`), which writes the batch into the
//! guest's memory and reads the results there, in place.

wasmtime::component::bindgen!({
    world: "transformer",
    path: "../wit/sluice-transform@0.1.0",
});

// `InputRecord` and `RecordResult` are in scope already: the world `use`s them.
pub(crate) use self::sluice::transform::types::{
    Header, LogLevel, OutputRecord, SourceInfo, SourceKind, TransformError,
};

/// `sluice:transform/transformer@0.2.0`.
pub(crate) mod v0_2 {
    wasmtime::component::bindgen!({
        world: "transformer",
        path: "../wit/sluice-transform@0.2.0",
        // A quota under `state_quota_exceeded = "trap"` traps the call.
        imports: { "sluice:transform/state.set": trappable },
    });
}
