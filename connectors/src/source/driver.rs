//! The read loop every source shares: reserve an in-flight slot, receive, drop redeliveries,
//! hand the record on, apply acks — and on stop, keep applying acks until everything handed
//! out is settled, then close.

use std::future::Future;
use std::hash::Hash;
use std::time::{Duration, Instant};

use std::sync::Arc;

use sluice_record::InputRecord;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::ack::{AckHandle, Verdict};
use super::in_flight::InFlight;
use super::placement::Placement;
use super::redelivery::{Delivery, RedeliveryFilter};
use super::{RunningSource, SourceError, SourceMessage, SourceObserver};

/// How long the in-flight budget may stay full with no ack before the stall is logged.
const STALL_WARNING_AFTER: Duration = Duration::from_secs(10);

/// How long closing the client may take once every record is settled.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Acked message ids remembered to drop redeliveries (about 100 bytes each).
const REMEMBERED_ACKS: usize = 100_000;

/// One message as a source client received it.
pub struct Received<T, K> {
    pub record: InputRecord,
    /// What the client needs to ack or nack the message.
    pub token: T,
    /// Identity of the message, to recognise a redelivery.
    pub key: K,
    /// Where the message sits in its source.
    pub placement: Placement,
}

/// What a broker client must offer the shared loop. Its ack token and errors are its own.
pub trait SourceClient: Send + 'static {
    /// What acks or nacks one message (a message id, a lease, a handler).
    type Token: Send + Sync + 'static;
    /// The identity of a message, to recognise a redelivery.
    type Key: Hash + Eq + Clone + Send;
    type Error: std::error::Error + Send + Sync + 'static;
    /// `messaging.system` in logs: `pulsar`, `gcp_pubsub`.
    const SYSTEM: &'static str;
    /// What happens to unacked messages while the sink stalls, for the stall warning.
    const WHILE_STALLED: &'static str;

    /// The next message; `Ok(None)` when the stream ended for good.
    #[expect(
        clippy::type_complexity,
        reason = "the associated types are the point: each client names its own"
    )]
    fn receive(
        &mut self,
    ) -> impl Future<Output = Result<Option<Received<Self::Token, Self::Key>>, Self::Error>> + Send;
    /// The identity of the message an ack token belongs to.
    fn key_of(token: &Self::Token) -> Self::Key;
    fn ack(&mut self, token: Self::Token) -> impl Future<Output = ()> + Send;
    fn nack(&mut self, token: Self::Token) -> impl Future<Output = ()> + Send;
    /// Another instance took the message's partition over ([`AckHandle::relinquish`]). A
    /// client that hands partitions over subscribes to the partition again (once per claim);
    /// the others nack.
    fn relinquish(&mut self, token: Self::Token) -> impl Future<Output = ()> + Send {
        self.nack(token)
    }
    fn close(&mut self) -> impl Future<Output = ()> + Send;
}

/// Starts the loop of `client` on its own task: at most `max_in_flight` records handed out
/// and not yet settled; each one handed out is reported to `observer`, its placement naming
/// `source` (the source's index in its pipeline).
pub(super) fn start<C: SourceClient>(
    client: C,
    max_in_flight: usize,
    observer: Arc<dyn SourceObserver>,
    stop: CancellationToken,
    source: u32,
) -> RunningSource {
    let (records_tx, records_rx) = mpsc::channel(max_in_flight);
    let task = tokio::spawn(run(
        client,
        max_in_flight,
        observer,
        records_tx,
        stop,
        source,
    ));
    RunningSource {
        messages: records_rx,
        task,
    }
}

async fn run<C: SourceClient>(
    mut client: C,
    max_in_flight: usize,
    observer: Arc<dyn SourceObserver>,
    records: mpsc::Sender<SourceMessage>,
    stop: CancellationToken,
    source: u32,
) -> Result<(), SourceError> {
    let in_flight = InFlight::new(max_in_flight);
    let mut redeliveries = RedeliveryFilter::new(REMEMBERED_ACKS);
    let mut dropped_redeliveries = 0u64;
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<(Verdict, C::Token)>();
    let mut records = Some(records);
    let mut slot = None;
    let mut idle_check = tokio::time::interval(Duration::from_millis(100));
    let mut stall = StallWatch::new(C::SYSTEM, C::WHILE_STALLED);
    // While draining, what the client still delivers is nacked (it comes again).
    let mut nacked_while_draining = 0u64;
    let mut stream_open = true;
    let result = loop {
        let reading = records.is_some();
        tokio::select! {
            biased;
            Some(command) = ack_rx.recv() => {
                stall.settled();
                apply(&mut client, &mut redeliveries, command).await;
            }
            _ = stop.cancelled(), if reading => {
                // Stop reading; in-flight records still drain and get acked.
                tracing::debug!(messaging.system = C::SYSTEM, in_flight = in_flight.taken(), "stopped reading; draining");
                records = None;
            }
            reserved = in_flight.reserve(), if reading && slot.is_none() => slot = Some(reserved),
            // Before receiving: a client that hands a nacked message straight back (the
            // memory source, Pub/Sub) must not starve the check that ends a drain.
            _ = idle_check.tick() => {
                // Sampled: exact enough for a gauge, and free on the record path.
                // The slot reserved for the next receive holds no record yet.
                observer.in_flight(in_flight.taken() - usize::from(slot.is_some()));
                if reading {
                    stall.check(&in_flight);
                    continue;
                }
                drop(slot.take());
                tracing::trace!(messaging.system = C::SYSTEM, in_flight = in_flight.taken(), "waiting for the in-flight records to settle");
                if in_flight.is_idle() {
                    break Ok(());
                }
            }
            received = client.receive(), if (reading && slot.is_some()) || (!reading && stream_open) => {
                if !reading {
                    // Keep taking deliveries while draining: a pulsar-rs consumer whose
                    // prefetched messages are not taken stops sending acks too (measured: the
                    // acks of a drain were lost, and a restart received the whole topic again).
                    match received {
                        Ok(Some(unwanted)) => {
                            nacked_while_draining += 1;
                            client.nack(unwanted.token).await;
                        }
                        Ok(None) | Err(_) => stream_open = false,
                    }
                    continue;
                }
                let Received { record, token, key, mut placement } = match received {
                    Ok(Some(received)) => received,
                    Ok(None) => break Err(SourceError::StreamEnded { system: C::SYSTEM }),
                    Err(error) => break Err(SourceError::client(error)),
                };
                match redeliveries.delivered(&key) {
                    Delivery::New => {}
                    Delivery::InFlight => {
                        dropped_redeliveries += 1;
                        // The copy in flight will be acked; this one is let go.
                        drop(token);
                        continue;
                    }
                    Delivery::AlreadyAcked => {
                        dropped_redeliveries += 1;
                        client.ack(token).await;
                        continue;
                    }
                }
                placement.source = source;
                let slot = slot.take().expect("a slot is reserved before reading");
                let verdicts = ack_tx.clone();
                // A closed channel means the source already stopped: the message is redelivered.
                let settle = move |verdict| drop(verdicts.send((verdict, token)));
                let ack = AckHandle::new(settle, placement, slot);
                observer.received(&placement);
                if let Some(sender) = &records
                    && sender.send(SourceMessage { record, ack }).await.is_err()
                {
                    // The pipeline is gone; stop reading.
                    records = None;
                }
            }
        }
    };
    while let Ok(command) = ack_rx.try_recv() {
        apply(&mut client, &mut redeliveries, command).await;
    }
    if nacked_while_draining > 0 {
        tracing::debug!(
            messaging.system = C::SYSTEM,
            count = nacked_while_draining,
            "nacked while draining; they will be delivered again"
        );
    }
    if dropped_redeliveries > 0 {
        tracing::info!(
            messaging.system = C::SYSTEM,
            count = dropped_redeliveries,
            "dropped redeliveries of messages already in flight or acked"
        );
    }
    observer.in_flight(0);
    // A broker that never answers the close (measured once against a Pulsar stand-in stopping
    // mid-backlog) must not hold the stop. Everything is settled by now; an unfinished close
    // costs nothing.
    if tokio::time::timeout(CLOSE_TIMEOUT, client.close())
        .await
        .is_err()
    {
        tracing::warn!(
            messaging.system = C::SYSTEM,
            timeout_s = CLOSE_TIMEOUT.as_secs(),
            "closing the source connection did not finish in time; leaving it"
        );
    }
    result
}

async fn apply<C: SourceClient>(
    client: &mut C,
    redeliveries: &mut RedeliveryFilter<C::Key>,
    (verdict, token): (Verdict, C::Token),
) {
    match verdict {
        Verdict::Ack => {
            redeliveries.acked(C::key_of(&token));
            client.ack(token).await;
        }
        Verdict::Nack | Verdict::Release => {
            redeliveries.released(&C::key_of(&token));
            client.nack(token).await;
        }
        Verdict::Relinquish => {
            redeliveries.released(&C::key_of(&token));
            client.relinquish(token).await;
        }
    }
}

/// Notices when the in-flight budget is used up and nothing gets acked (the sink is down or
/// slow), says so once, and says when acks resume.
struct StallWatch {
    system: &'static str,
    while_stalled: &'static str,
    last_settled: Instant,
    warned: bool,
}

impl StallWatch {
    fn new(system: &'static str, while_stalled: &'static str) -> Self {
        Self {
            system,
            while_stalled,
            last_settled: Instant::now(),
            warned: false,
        }
    }

    /// A message was acked or released.
    fn settled(&mut self) {
        if self.warned {
            tracing::info!(
                messaging.system = self.system,
                stalled_for_s = self.last_settled.elapsed().as_secs(),
                "acks resumed: the sink is delivering again"
            );
            self.warned = false;
        }
        self.last_settled = Instant::now();
    }

    fn check(&mut self, in_flight: &InFlight) {
        if !self.warned && in_flight.is_full() && self.last_settled.elapsed() >= STALL_WARNING_AFTER
        {
            tracing::warn!(
                messaging.system = self.system,
                in_flight = in_flight.capacity(),
                stalled_for_s = self.last_settled.elapsed().as_secs(),
                "in-flight limit reached and nothing acked: reading paused until the sink \
                 delivers again; {}",
                self.while_stalled
            );
            self.warned = true;
        }
    }
}
