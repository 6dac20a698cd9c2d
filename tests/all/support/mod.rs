//! Helpers shared by the tests of this binary, one module per concern:
//!
//! - [`brokers`]: the brokers a test uses (addresses, skip-or-fail, the outage lock), fresh
//!   topics, Pub/Sub topics and subscriptions, broker outages through `scripts/brokers.sh`;
//! - [`config`]: pipeline configs (TOML) for the library API and `sluice run`;
//! - [`process`]: the runtime as a child process (`sluice run`, one-shot commands) or in
//!   process through the library API;
//! - [`read`]: reading what a pipeline wrote to Kafka;
//! - [`assertions`]: what every delivery test checks (none missing, per-key order, …);
//! - [`http`]: HTTP clients of the admin API and of Pulsar's admin API.
//!
//! Timeouts live in `sluice_tests::timeouts`, the one place for them.

pub(crate) mod assertions;
pub(crate) mod brokers;
pub(crate) mod config;
pub(crate) mod http;
pub(crate) mod process;
pub(crate) mod read;
