//! The Sluice runtime application: what `sluice run` runs, as a library, so tests run it
//! in-process too.
//!
//! - `config.rs`: the `sluice.toml` file — parsing, `${ENV}` interpolation, validation; each
//!   connector's section is its own (`sluice_connectors`), secrets stay redacted;
//! - `app.rs`: assembling every pipeline of a config and running them side by side;
//! - `metrics.rs`: the Prometheus registry behind `/metrics`;
//! - `component_store.rs`: deployed transform versions, content-addressed under the state dir;
//! - `shared_deployments.rs`: the deployments topic through which one deploy reaches every
//!   instance of a pipeline;
//! - `admin.rs`, `admin/versions.rs`, `admin/follower.rs`: the admin HTTP API, its deploy /
//!   rollback / versions handlers, and what swaps in the versions the deployments topic brings.

pub mod admin;
mod app;
pub mod component_store;
pub mod config;
pub mod metrics;
pub mod shared_deployments;

pub use app::{KafkaPipeline, RuntimeError, Shutdown, run, run_with, standalone_pipeline};
