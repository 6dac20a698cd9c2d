//! Apache Pulsar, as a source: its config section, its errors, and a consumer on the
//! `pulsar` crate whose ack token is the message id.

mod config;
mod error;
mod source;

pub use config::{InitialPosition, PulsarSourceConfig, SubscriptionType};
pub use error::PulsarError;
pub use source::PulsarSource;
