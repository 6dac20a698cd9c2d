//! Google Cloud Pub/Sub source on the official `google-cloud-pubsub` crate: streaming pull with
//! flow control set from the pipeline's in-flight budget; the client extends the lease of every
//! message still in flight; ack only after delivery to Kafka, nack (redelivery) otherwise.
//!
//! Credentials: with an `endpoint` (or `PUBSUB_EMULATOR_HOST`) the client connects in plain text
//! with anonymous credentials, as the emulator expects; otherwise Application Default
//! Credentials (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud's user credentials, or the metadata
//! server on GCP).

use std::time::Duration;

use google_cloud_pubsub::client::Subscriber;
use google_cloud_pubsub::subscriber::handler::Handler;
use google_cloud_pubsub::subscriber::{MessageStream, ShutdownBehavior};

use super::config::PubSubSourceConfig;
use super::error::PubSubError;
use super::mapping::{MessageParts, RecordMapping, endpoint, subscription_path};
use crate::source::{Placement, Received, SourceClient};

/// How far each lease extension reaches. Short enough that a crashed runtime's messages come
/// back within a minute, long enough that a stalled Kafka does not cause churn.
const LEASE_EXTENSION: Duration = Duration::from_secs(60);

/// What acks one message of a streaming pull: the client's handler (dropping it nacks).
pub struct StreamingToken {
    message_id: String,
    handler: Handler,
}

pub struct PubSubSource {
    stream: MessageStream,
    mapping: RecordMapping,
}

impl PubSubSource {
    pub async fn connect(
        config: &PubSubSourceConfig,
        max_in_flight: usize,
    ) -> Result<Self, PubSubError> {
        let mut builder = Subscriber::builder();
        if let Some(endpoint) = endpoint(config) {
            tracing::info!(messaging.system = "gcp_pubsub", %endpoint, "using a Pub/Sub endpoint without credentials");
            builder = builder.with_endpoint(endpoint).with_credentials(
                google_cloud_auth::credentials::anonymous::Builder::new().build(),
            );
        }
        let subscriber = builder
            .build()
            .await
            .map_err(|error| PubSubError::Client(Box::new(error)))?;
        let subscription = subscription_path(config);
        let stream = subscriber
            .subscribe(subscription.clone())
            .set_max_outstanding_messages(max_in_flight as i64)
            .set_max_lease_extension(LEASE_EXTENSION)
            // At close every record handed to the pipeline is settled already (the driver
            // waits for that); what the client buffered beyond is nacked so Pub/Sub delivers
            // it again at once rather than after a lease expiry.
            .set_shutdown_behavior(ShutdownBehavior::NackImmediately)
            .build();
        tracing::info!(messaging.system = "gcp_pubsub", %subscription, "subscribed");
        Ok(Self {
            stream,
            mapping: RecordMapping::new(config),
        })
    }
}

impl SourceClient for PubSubSource {
    type Token = StreamingToken;
    type Key = String;
    type Error = PubSubError;
    const SYSTEM: &'static str = "gcp_pubsub";
    const WHILE_STALLED: &'static str = "the Pub/Sub client keeps extending the leases of \
        the messages in flight (up to one hour), after which Pub/Sub redelivers them";

    async fn receive(&mut self) -> Result<Option<Received<StreamingToken, String>>, PubSubError> {
        match self.stream.next().await {
            Some(Ok((message, handler))) => Ok(Some(Received {
                record: self.mapping.to_input_record(MessageParts {
                    data: message.data.to_vec(),
                    attributes: &message.attributes,
                    ordering_key: &message.ordering_key,
                    message_id: &message.message_id,
                    publish_time: message
                        .publish_time
                        .as_ref()
                        .map(|t| (t.seconds(), t.nanos())),
                }),
                key: message.message_id.clone(),
                // Pub/Sub keeps no order: the message id identifies the message.
                placement: Placement::default(),
                token: StreamingToken {
                    message_id: message.message_id,
                    handler,
                },
            })),
            Some(Err(source)) => Err(PubSubError::Receive {
                subscription: self.mapping.subscription().to_owned(),
                source,
            }),
            None => Ok(None),
        }
    }

    fn key_of(token: &StreamingToken) -> String {
        token.message_id.clone()
    }

    async fn ack(&mut self, token: StreamingToken) {
        token.handler.ack();
    }

    async fn nack(&mut self, token: StreamingToken) {
        token.handler.nack();
    }

    async fn close(&mut self) {
        self.stream.shutdown_token().shutdown().await;
    }
}
