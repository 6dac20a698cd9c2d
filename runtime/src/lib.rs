//! Sluice: moves events from Apache Pulsar or Google Cloud Pub/Sub into Apache Kafka, passing
//! every record through sandboxed WebAssembly transform components.
//!
//! Data flows `source` → `transform` → `sink`, wired together by [`pipeline`].

pub mod admin;
pub mod config;
pub mod deploy;
pub mod exec;
pub mod metrics;
pub mod pipeline;
pub mod record;
pub mod sink;
pub mod source;
pub mod supervisor;
pub mod transform;

/// `error: cause: cause`, as `main` prints it.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    text
}
