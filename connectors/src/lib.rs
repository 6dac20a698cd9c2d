//! Connectors: one folder per system Sluice reads from or writes to. Each folder owns its
//! config section, its errors and, for a source, its ack token (an associated type of
//! [`source::SourceClient`]); the contracts they implement are [`source`], [`sink`] and, for
//! exactly-once on sink transactions, [`transactions`].
//!
//! - `pulsar/`, `gcp_pubsub/`: sources (Cargo features `pulsar`, `gcp-pubsub`);
//! - `kafka/`: the sink (feature `kafka`);
//! - `memory/`: an in-memory source and sink for tests without brokers (always built: no
//!   client library).
//!
//! The pipeline crate depends on this one without features, so it builds with no broker
//! client at all; the runtime turns every connector on.

pub mod config;
pub mod credentials;
pub mod memory;
pub mod sink;
pub mod source;
pub mod transactions;

#[cfg(feature = "gcp-pubsub")]
pub mod gcp_pubsub;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "pulsar")]
pub mod pulsar;
