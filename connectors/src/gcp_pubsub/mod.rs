//! Google Cloud Pub/Sub, as a source: its config section, its errors, and two clients — unary
//! Pull (the default; see `unary.rs` for why) and streaming pull — that map messages to
//! records the same way (`mapping.rs`).

mod config;
mod error;
mod mapping;
mod streaming;
mod unary;

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::source::{ConnectSource, RunningSource, SourceError, SourceObserver};

pub use config::{PubSubPull, PubSubSourceConfig};
pub use error::PubSubError;
pub use streaming::PubSubSource;
pub use unary::UnaryPubSubSource;

impl ConnectSource for PubSubSourceConfig {
    fn kind(&self) -> &'static str {
        "gcp_pubsub"
    }

    fn start(
        &self,
        max_in_flight: usize,
        observer: Arc<dyn SourceObserver>,
        stop: CancellationToken,
    ) -> BoxFuture<'_, Result<RunningSource, SourceError>> {
        Box::pin(async move {
            Ok(match self.pull {
                PubSubPull::Unary => crate::source::start(
                    UnaryPubSubSource::connect(self, max_in_flight, stop.clone())
                        .await
                        .map_err(SourceError::client)?,
                    max_in_flight,
                    observer,
                    stop,
                ),
                PubSubPull::Streaming => crate::source::start(
                    PubSubSource::connect(self, max_in_flight)
                        .await
                        .map_err(SourceError::client)?,
                    max_in_flight,
                    observer,
                    stop,
                ),
            })
        })
    }
}
