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

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_time_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

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
