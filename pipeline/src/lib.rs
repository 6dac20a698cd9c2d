//! A pipeline: records from a source, through a chain of transforms, into a sink, with every
//! source record acked only once the sink has all its outputs (docs/architecture.md).
//!
//! - `pipeline.rs`, `running.rs`: [`Pipeline`] — prepare (load transforms, connect the sink),
//!   then run: bring up the source session and the sink, let records flow, renew on failure;
//! - `lanes.rs`, `stages.rs`, `outcome_writer.rs`: the transform lanes, the sink and ack
//!   stages, and what each outcome becomes in the sink;
//! - `exactly_once/`: exactly-once, on Kafka transactions (`transactions.rs`) or read back
//!   (`read_back.rs`);
//! - `group_by.rs`: re-keying records before the lanes (group-by);
//! - `schemas.rs`: decoding before the transforms and encoding after them (docs/schemas.md);
//! - `restart.rs`: the one restart policy (what a broker failure renews, and when);
//! - `stats.rs`, `control.rs`: the counters and the live handle the admin API reads.
//!
//! It knows sources and sinks only by their contracts (`sluice_connectors::source` and
//! `::sink`), so it builds and is tested with no broker client.

mod control;
mod error;
pub mod exactly_once;
mod group_by;
mod lanes;
mod outcome_writer;
mod pipeline;
mod restart;
mod running;
mod schemas;
mod settings;
mod stages;
mod state;
mod stats;
pub mod windows;

pub use control::{PipelineControl, PipelineState};
pub use error::{PipelineError, error_chain};
pub use group_by::GroupBy;
pub use pipeline::{Pipeline, PipelineParts};
pub use schemas::{SCHEMA_HEADER, Schemas};
pub use settings::{
    ExactlyOnceMode, ExactlyOnceSettings, Guarantee, Guaranteeing, MAX_PARALLELISM,
    PipelineSettings,
};
pub use stats::{PipelineStats, StatsFamilies, TransformStats};
