//! Google Cloud Pub/Sub source with unary Pull (`pull = "unary"`): repeated `Pull` calls sized
//! to the room left in the pipeline's in-flight budget, leases kept alive with batched
//! `ModifyAckDeadline`, batched `Acknowledge` after delivery to Kafka, nack = deadline 0.
//!
//! Why a second mode: Google's Pub/Sub emulator strands the messages a streaming pull held when
//! that stream dies (a SIGKILLed runtime); they are never redelivered. Messages held by a unary
//! Pull that dies come back once their ack deadline passes (measured on emulator 0.8.20). Real
//! Pub/Sub redelivers after the ack deadline in both modes.
//!
//! Why this crate: the official `google-cloud-pubsub` offers streaming pull only (its unary
//! dataplane calls are crate-private). `gcloud-pubsub` (maintained, same tonic) exposes
//! `Pull`, `Acknowledge` and `ModifyAckDeadline` on its `SubscriberClient`. Its own auth is left
//! out (no default features): credentials come from `google-cloud-auth` as in streaming mode —
//! anonymous and plain text with an `endpoint` or `PUBSUB_EMULATOR_HOST`, else Application
//! Default Credentials over TLS.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gcloud_gax::conn::{ConnectionOptions, Environment};
use gcloud_gax::grpc::{Code, Status};
use gcloud_googleapis::pubsub::v1::{
    AcknowledgeRequest, ModifyAckDeadlineRequest, PullRequest, ReceivedMessage,
};
use gcloud_pubsub::apiv1::conn_pool::{ConnectionManager, PUBSUB};
use gcloud_pubsub::apiv1::subscriber_client::SubscriberClient;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::config::PubSubSourceConfig;
use super::error::PubSubError;
use super::mapping::{MessageParts, RecordMapping};
use crate::source::{Placement, Received, SourceClient};

/// Pub/Sub returns at most 1,000 messages per Pull.
const MAX_PULL: usize = 1000;
/// The largest Pull response `gcloud-pubsub` decodes (a Pub/Sub message is at most 10 MB).
const RESPONSE_LIMIT: usize = 10 * 1024 * 1024;
/// Ack ids per Acknowledge / ModifyAckDeadline call (far below the 512 KB request limit).
const MAX_IDS_PER_CALL: usize = 1000;
/// The ack deadline each extension sets: a crashed runtime's messages come back this soon.
/// 10 s is the shortest deadline a subscription can have, so the first extension (after
/// `EXTEND_EVERY`) always comes before the deadline a Pull gave.
const LEASE: Duration = Duration::from_secs(10);
/// How often held messages are extended: a third of `LEASE`, so one late call is survived.
const EXTEND_EVERY: Duration = Duration::from_millis(3_300);
/// How long a message is kept leased at most (as the streaming client does); after that
/// Pub/Sub redelivers it and the copy in flight is still acked.
const MAX_LEASE: Duration = Duration::from_secs(3600);
/// Pause after a Pull that returned nothing (the emulator holds an empty Pull open instead).
const EMPTY_PULL_PAUSE: Duration = Duration::from_millis(200);

/// Ack ids pulled and not yet settled (buffered or handed out), with when they were pulled.
#[derive(Default)]
struct Leases {
    held: Mutex<HashMap<String, Instant>>,
    /// Signalled whenever one is settled: the in-flight budget has more room.
    freed: Notify,
}

impl Leases {
    fn held(&self) -> usize {
        self.held.lock().expect("lease table lock").len()
    }

    /// Ack ids to extend now: those held for less than `MAX_LEASE`.
    fn to_extend(&self) -> Vec<String> {
        let held = self.held.lock().expect("lease table lock");
        held.iter()
            .filter(|(_, pulled)| pulled.elapsed() < MAX_LEASE)
            .map(|(ack_id, _)| ack_id.clone())
            .collect()
    }

    fn release(&self, ack_id: &str) {
        self.held.lock().expect("lease table lock").remove(ack_id);
        self.freed.notify_one();
    }
}

enum Verdict {
    Ack(String),
    Nack(String),
}

/// The claim on one pulled message, the ack token of this client. Acking or nacking settles
/// it; dropping it unsettled nacks it, so Pub/Sub delivers the message again at once (like the
/// streaming client's handler).
pub struct Lease {
    message_id: String,
    ack_id: String,
    leases: Arc<Leases>,
    verdicts: mpsc::UnboundedSender<Verdict>,
    settled: bool,
}

impl Lease {
    fn settle(&mut self, verdict: fn(String) -> Verdict) {
        if std::mem::replace(&mut self.settled, true) {
            return;
        }
        self.leases.release(&self.ack_id);
        // After close the message is left to its ack deadline.
        let _ = self
            .verdicts
            .send(verdict(std::mem::take(&mut self.ack_id)));
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.settle(Verdict::Nack);
    }
}

type PullResult = Result<Vec<ReceivedMessage>, Status>;

pub struct UnaryPubSubSource {
    client: SubscriberClient,
    mapping: RecordMapping,
    max_in_flight: usize,
    leases: Arc<Leases>,
    verdicts: mpsc::UnboundedSender<Verdict>,
    /// Pulled, not yet handed out; dropping one nacks it.
    pulled: VecDeque<Received<Lease, String>>,
    /// The Pull in progress, on its own task so a cancelled `receive` loses nothing.
    pull: Option<JoinHandle<PullResult>>,
    /// Messages asked for per Pull at most: cut tenfold when a response is over
    /// `RESPONSE_LIMIT` (big messages), doubled again after a Pull that used under a quarter.
    pull_limit: usize,
    /// After an empty Pull, no new one before this.
    next_pull: Option<tokio::time::Instant>,
    /// The pipeline is stopping: nothing more is handed out.
    stop: CancellationToken,
    /// Stops the lease and verdict loops at close.
    closing: CancellationToken,
    lease_loop: JoinHandle<()>,
    verdict_loop: Option<JoinHandle<()>>,
}

impl UnaryPubSubSource {
    pub async fn connect(
        config: &PubSubSourceConfig,
        max_in_flight: usize,
        stop: CancellationToken,
    ) -> Result<Self, PubSubError> {
        let environment = match config.endpoint_url() {
            Some(url) => {
                tracing::info!(messaging.system = "gcp_pubsub", endpoint = %url, "using a Pub/Sub endpoint without credentials");
                Environment::Emulator(url.trim_start_matches("http://").to_owned())
            }
            None => Environment::GoogleCloud(Box::new(AdcTokens::new(config)?)),
        };
        let options = ConnectionOptions::default();
        let connect = || ConnectionManager::new(1, PUBSUB, &environment, &options);
        let client_error = |error| PubSubError::Client(Box::new(error));
        // The second connection is the client's streaming-pull pool, unused here.
        let client = SubscriberClient::new(
            connect().await.map_err(client_error)?,
            connect().await.map_err(client_error)?,
        );
        let mapping = RecordMapping::new(config);
        let subscription = mapping.subscription().to_owned();
        let leases = Arc::new(Leases::default());
        let closing = CancellationToken::new();
        let (verdicts, verdicts_rx) = mpsc::unbounded_channel();
        let lease_loop = tokio::spawn(extend_leases(
            client.clone(),
            subscription.clone(),
            leases.clone(),
        ));
        let verdict_loop = tokio::spawn(send_verdicts(
            client.clone(),
            subscription.clone(),
            verdicts_rx,
            closing.clone(),
        ));
        tracing::info!(messaging.system = "gcp_pubsub", %subscription, "pulling (unary)");
        Ok(Self {
            client,
            mapping,
            max_in_flight,
            leases,
            verdicts,
            pulled: VecDeque::new(),
            pull: None,
            pull_limit: MAX_PULL,
            next_pull: None,
            stop,
            closing,
            lease_loop,
            verdict_loop: Some(verdict_loop),
        })
    }

    /// Waits until the in-flight budget has room for a worthwhile Pull (a quarter of a full
    /// one, so a busy pipeline does not pull one message per call), then starts it.
    async fn start_pull(&mut self) {
        if let Some(at) = self.next_pull {
            tokio::time::sleep_until(at).await;
            self.next_pull = None;
        }
        let worthwhile = (self.max_in_flight.min(self.pull_limit) / 4).max(1);
        let room = loop {
            let room = self.max_in_flight.saturating_sub(self.leases.held());
            if room >= worthwhile {
                break room;
            }
            self.leases.freed.notified().await;
        };
        #[expect(
            deprecated,
            reason = "return_immediately is deprecated; false (waiting for messages) is the advice"
        )]
        let request = PullRequest {
            subscription: self.mapping.subscription().to_owned(),
            return_immediately: false,
            max_messages: room.min(self.pull_limit) as i32,
        };
        let client = self.client.clone();
        self.pull = Some(tokio::spawn(async move {
            Ok(client
                .pull(request, None)
                .await?
                .into_inner()
                .received_messages)
        }));
    }

    /// Takes the messages of a finished Pull: leased from now on, queued to hand out.
    fn take(&mut self, messages: Vec<ReceivedMessage>) {
        if messages.is_empty() {
            self.next_pull = Some(tokio::time::Instant::now() + EMPTY_PULL_PAUSE);
        }
        let now = Instant::now();
        // Held before any lease exists: a lease dropped below releases its entry again.
        self.leases
            .held
            .lock()
            .expect("lease table lock")
            .extend(messages.iter().map(|m| (m.ack_id.clone(), now)));
        for ReceivedMessage {
            ack_id, message, ..
        } in messages
        {
            let mut lease = Lease {
                message_id: String::new(),
                ack_id,
                leases: self.leases.clone(),
                verdicts: self.verdicts.clone(),
                settled: false,
            };
            // Pub/Sub always sends the message; without one there is nothing to hand out.
            let Some(message) = message else { continue };
            lease.message_id = message.message_id.clone();
            let record = self.mapping.to_input_record(MessageParts {
                data: message.data.into(),
                attributes: &message.attributes,
                ordering_key: &message.ordering_key,
                message_id: &message.message_id,
                publish_time: message.publish_time.map(|t| (t.seconds, t.nanos)),
            });
            self.pulled.push_back(Received {
                record,
                key: message.message_id,
                token: lease,
                // Pub/Sub keeps no order: the message id identifies the message.
                placement: Placement::default(),
            });
        }
    }

    fn pull_failed(&self, source: Status) -> PubSubError {
        PubSubError::Pull {
            subscription: self.mapping.subscription().to_owned(),
            source,
        }
    }
}

impl SourceClient for UnaryPubSubSource {
    type Token = Lease;
    type Key = String;
    type Error = PubSubError;
    const SYSTEM: &'static str = "gcp_pubsub";
    const WHILE_STALLED: &'static str = "Sluice keeps extending the leases of the messages in \
        flight (up to one hour), after which Pub/Sub redelivers them";

    async fn receive(&mut self) -> Result<Option<Received<Lease, String>>, PubSubError> {
        loop {
            if self.stop.is_cancelled() {
                // Draining: what is still queued is nacked at close.
                return Ok(None);
            }
            if let Some(next) = self.pulled.pop_front() {
                return Ok(Some(next));
            }
            let Some(pull) = &mut self.pull else {
                self.start_pull().await;
                continue;
            };
            let finished = pull.await;
            self.pull = None;
            match finished {
                Ok(Ok(messages)) => {
                    let bytes: usize = messages
                        .iter()
                        .filter_map(|m| m.message.as_ref())
                        .map(|m| m.data.len())
                        .sum();
                    if bytes < RESPONSE_LIMIT / 4 {
                        self.pull_limit = (self.pull_limit * 2).min(MAX_PULL);
                    }
                    self.take(messages);
                }
                // The response was over the client's size limit: its messages come back
                // after their ack deadline; ask for fewer at a time.
                Ok(Err(status)) if status.code() == Code::OutOfRange && self.pull_limit > 1 => {
                    self.pull_limit = (self.pull_limit / 10).max(1);
                    tracing::warn!(messaging.system = "gcp_pubsub", subscription = self.mapping.subscription(), messages_per_pull = self.pull_limit, error = %status, "a Pull response was too large; pulling fewer messages at a time");
                }
                Ok(Err(status)) => return Err(self.pull_failed(status)),
                Err(join) => return Err(self.pull_failed(Status::internal(join.to_string()))),
            }
        }
    }

    fn key_of(lease: &Lease) -> String {
        lease.message_id.clone()
    }

    async fn ack(&mut self, mut lease: Lease) {
        lease.settle(Verdict::Ack);
    }

    async fn nack(&mut self, mut lease: Lease) {
        lease.settle(Verdict::Nack);
    }

    /// Nacks what was pulled and not handed out, sends the verdicts still queued, stops
    /// extending. A Pull cut short here leaves its messages to their ack deadline.
    async fn close(&mut self) {
        self.pulled.clear();
        if let Some(pull) = self.pull.take() {
            pull.abort();
            if let Ok(Ok(messages)) = pull.await {
                self.take(messages);
                self.pulled.clear();
            }
        }
        self.lease_loop.abort();
        self.closing.cancel();
        if let Some(verdict_loop) = self.verdict_loop.take() {
            let _ = verdict_loop.await;
        }
    }
}

/// Keeps every held message leased: every `EXTEND_EVERY`, one ModifyAckDeadline per
/// `MAX_IDS_PER_CALL` ack ids. A failed call is logged; the next one comes soon.
async fn extend_leases(client: SubscriberClient, subscription: String, leases: Arc<Leases>) {
    let mut ticks = tokio::time::interval(EXTEND_EVERY);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let ack_ids = leases.to_extend();
        for chunk in ack_ids.chunks(MAX_IDS_PER_CALL) {
            modify_deadline(&client, &subscription, chunk.to_vec(), LEASE).await;
        }
    }
}

/// Sends acks and nacks in batches (whatever queued while the previous call ran) until
/// `closing`, then what is still queued.
async fn send_verdicts(
    client: SubscriberClient,
    subscription: String,
    mut verdicts: mpsc::UnboundedReceiver<Verdict>,
    closing: CancellationToken,
) {
    let mut batch = Vec::with_capacity(MAX_IDS_PER_CALL);
    loop {
        let received = tokio::select! {
            received = verdicts.recv_many(&mut batch, MAX_IDS_PER_CALL) => received,
            _ = closing.cancelled() => {
                verdicts.close();
                verdicts.recv_many(&mut batch, MAX_IDS_PER_CALL).await
            }
        };
        if received == 0 {
            return;
        }
        let (mut acks, mut nacks) = (Vec::new(), Vec::new());
        for verdict in batch.drain(..) {
            match verdict {
                Verdict::Ack(ack_id) => acks.push(ack_id),
                Verdict::Nack(ack_id) => nacks.push(ack_id),
            }
        }
        if !acks.is_empty() {
            let count = acks.len();
            let request = AcknowledgeRequest {
                subscription: subscription.clone(),
                ack_ids: acks,
            };
            if let Err(status) = client.acknowledge(request, None).await {
                tracing::warn!(messaging.system = "gcp_pubsub", %subscription, count, error = %status, "acknowledge failed; Pub/Sub will deliver these messages again");
            }
        }
        if !nacks.is_empty() {
            modify_deadline(&client, &subscription, nacks, Duration::ZERO).await;
        }
    }
}

/// One ModifyAckDeadline call: `deadline` zero nacks (redelivery at once).
async fn modify_deadline(
    client: &SubscriberClient,
    subscription: &str,
    ack_ids: Vec<String>,
    deadline: Duration,
) {
    let count = ack_ids.len();
    let request = ModifyAckDeadlineRequest {
        subscription: subscription.to_owned(),
        ack_ids,
        ack_deadline_seconds: deadline.as_secs() as i32,
    };
    if let Err(status) = client.modify_ack_deadline(request, None).await {
        tracing::warn!(
            messaging.system = "gcp_pubsub",
            %subscription,
            count,
            deadline_s = deadline.as_secs(),
            error = %status,
            "modifying ack deadlines failed"
        );
    }
}

/// Application Default Credentials (as in streaming mode) as the bearer token `gcloud-pubsub`
/// puts on each call.
#[derive(Debug)]
struct AdcTokens(Arc<AdcToken>);

#[derive(Debug)]
struct AdcToken(google_cloud_auth::credentials::AccessTokenCredentials);

impl AdcTokens {
    /// The key file of `credentials_file`, else Application Default Credentials.
    fn new(config: &PubSubSourceConfig) -> Result<Self, PubSubError> {
        let credentials = match &config.credentials_file {
            Some(path) => {
                let key = super::credentials::service_account_key(path)
                    .map_err(|message| PubSubError::Client(message.into()))?;
                google_cloud_auth::credentials::service_account::Builder::new(key)
                    .build_access_token_credentials()
            }
            None => {
                google_cloud_auth::credentials::Builder::default().build_access_token_credentials()
            }
        }
        .map_err(|error| PubSubError::Client(Box::new(error)))?;
        Ok(Self(Arc::new(AdcToken(credentials))))
    }
}

impl token_source::TokenSourceProvider for AdcTokens {
    fn token_source(&self) -> Arc<dyn token_source::TokenSource> {
        self.0.clone()
    }
}

#[async_trait::async_trait]
impl token_source::TokenSource for AdcToken {
    async fn token(&self) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
        Ok(format!("Bearer {}", self.0.access_token().await?.token))
    }
}
