//! Apache Pulsar, as a source: its config section, its errors, and a consumer on the
//! `pulsar` crate whose ack token is the message id.

mod config;
mod error;
mod oauth2;
mod refusal;
mod source;
mod token;

pub use config::{
    InitialPosition, PulsarAuthConfig, PulsarSourceConfig, PulsarTlsConfig, SubscriptionType,
};
pub use error::PulsarError;
pub use oauth2::PulsarOAuth2Config;
pub use source::PulsarSource;
