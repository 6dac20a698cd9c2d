//! Sluice: moves events from Apache Pulsar or Google Cloud Pub/Sub into Apache Kafka, passing
//! every record through sandboxed WebAssembly transform components.
//!
//! Data flows `source` → `transform` → `sink`, wired together by [`pipeline`].

pub mod config;
pub mod exec;
pub mod pipeline;
pub mod record;
pub mod sink;
pub mod source;
pub mod transform;
