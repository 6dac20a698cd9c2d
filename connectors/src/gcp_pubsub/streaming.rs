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
use google_cloud_pubsub::model::Message;
use google_cloud_pubsub::subscriber::handler::Handler;
use google_cloud_pubsub::subscriber::{MessageStream, ShutdownBehavior, ShutdownToken};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::config::PubSubSourceConfig;
use super::error::PubSubError;
use super::mapping::{MessageParts, RecordMapping, subscription_path};
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
    /// What the client's stream yields, read on a task of its own ([`read_stream`]).
    messages: mpsc::Receiver<google_cloud_pubsub::Result<(Message, Handler)>>,
    shutdown: ShutdownToken,
    reader: JoinHandle<()>,
    mapping: RecordMapping,
}

/// Moves what `stream` yields into `messages`, one at a time, until the stream ends or the
/// source is dropped.
///
/// Why a task: the source driver drops a pending `receive` whenever an ack or its 100 ms tick
/// comes first, and `MessageStream::next` is not cancel-safe while it opens a streaming pull:
/// dropped then, it abandons that stream and opens another on the next call. Against an
/// emulator with nothing to deliver yet (no response headers) that was ten new streams a
/// second, and Google's emulator keeps a thread for every stream it ever opened (issue 14:
/// 10,000 threads in one CI run). Here the stream is only ever polled to completion.
async fn read_stream(
    mut stream: MessageStream,
    messages: mpsc::Sender<google_cloud_pubsub::Result<(Message, Handler)>>,
) {
    while let Some(item) = stream.next().await {
        if messages.send(item).await.is_err() {
            break;
        }
    }
}

impl PubSubSource {
    pub async fn connect(
        config: &PubSubSourceConfig,
        max_in_flight: usize,
    ) -> Result<Self, PubSubError> {
        let mut builder = Subscriber::builder();
        if let Some(endpoint) = config.endpoint_url() {
            tracing::info!(messaging.system = "gcp_pubsub", %endpoint, "using a Pub/Sub endpoint without credentials");
            builder = builder.with_endpoint(endpoint).with_credentials(
                google_cloud_auth::credentials::anonymous::Builder::new().build(),
            );
        } else if let Some(path) = &config.credentials_file {
            let key = super::credentials::service_account_key(path)
                .map_err(|message| PubSubError::Client(message.into()))?;
            let credentials = google_cloud_auth::credentials::service_account::Builder::new(key)
                .build()
                .map_err(|error| PubSubError::Client(Box::new(error)))?;
            builder = builder.with_credentials(credentials);
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
        let shutdown = stream.shutdown_token();
        let (sender, messages) = mpsc::channel(1);
        Ok(Self {
            messages,
            shutdown,
            reader: tokio::spawn(read_stream(stream, sender)),
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
        match self.messages.recv().await {
            Some(Ok((message, handler))) => Ok(Some(Received {
                record: self.mapping.to_input_record(MessageParts {
                    data: message.data,
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
        // What the reader took from the stream but nobody received is nacked (a dropped
        // handler nacks) while the client still runs; then the client's shutdown nacks what it
        // buffered and ends the stream, and with it the reader.
        self.messages.close();
        while self.messages.try_recv().is_ok() {}
        self.shutdown.shutdown().await;
    }
}

impl Drop for PubSubSource {
    fn drop(&mut self) {
        self.reader.abort();
    }
}
