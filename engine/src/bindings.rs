//! Host-side bindings of the world `sluice:transform/transformer@0.1.0`, generated from
//! `wit/` at build time. The only place that runs `bindgen!`.

wasmtime::component::bindgen!({
    world: "transformer",
    path: "../wit/sluice-transform@0.1.0",
});

// `InputRecord` and `RecordResult` are in scope already: the world `use`s them.
pub(crate) use self::sluice::transform::types::{
    Header, LogLevel, OutputRecord, SourceInfo, SourceKind, TransformError,
};
