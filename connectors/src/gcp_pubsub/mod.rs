//! Google Cloud Pub/Sub, as a source: its config section, its errors, and two clients — unary
//! Pull (the default; see `unary.rs` for why) and streaming pull — that map messages to
//! records the same way (`mapping.rs`).

mod config;
mod credentials;
mod error;
mod mapping;
mod streaming;
mod unary;

use futures::future::BoxFuture;

use crate::source::{ConnectSource, RunningSource, SourceError, SourceStart};

pub use config::{PubSubPull, PubSubSourceConfig};
pub use error::PubSubError;
pub use streaming::PubSubSource;
pub use unary::UnaryPubSubSource;

impl ConnectSource for PubSubSourceConfig {
    fn kind(&self) -> &'static str {
        "gcp_pubsub"
    }

    fn start(&self, start: SourceStart) -> BoxFuture<'_, Result<RunningSource, SourceError>> {
        Box::pin(async move {
            let max_in_flight = start.max_in_flight;
            Ok(match self.pull {
                PubSubPull::Unary => {
                    let stop = start.stop.clone();
                    let client = UnaryPubSubSource::connect(self, max_in_flight, stop).await;
                    start.run(client.map_err(SourceError::client)?)
                }
                PubSubPull::Streaming => {
                    let client = PubSubSource::connect(self, max_in_flight).await;
                    start.run(client.map_err(SourceError::client)?)
                }
            })
        })
    }
}
