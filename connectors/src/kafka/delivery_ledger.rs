//! The sink producer's delivery reports, kept in one ledger instead of a channel per record
//! (docs/performance.md, "The sink"): each record handed to librdkafka gets a sequence number
//! as its delivery opaque (a plain integer: no box), the delivery callback marks it reported,
//! and a [`ReportedDelivery`] resolves from the ledger. Reports arrive in order per partition
//! but not across partitions, so the ledger keeps one flag per record from the oldest
//! unreported one on (the watermark) and drops flags as the watermark passes them: its memory
//! is bounded by what is in flight, and a record costs no allocation once the ring has grown
//! to the in-flight size.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use rdkafka::client::ClientContext;
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::ProducerContext;

use super::sink::{Stage, classify};
use crate::sink::SinkError;

/// What the ledger knows of the records in flight.
#[derive(Default)]
struct Ledger {
    /// The sequence number of `reported[0]`: every record before it is reported.
    watermark: u64,
    /// Whether each record from the watermark on is reported.
    reported: VecDeque<bool>,
    /// How the failed ones failed, until their [`ReportedDelivery`] takes it (rare: refusals
    /// and broker failures).
    failures: HashMap<u64, SinkError>,
    /// Who waits for which record: the ack stage, one record at a time.
    waiting: Vec<(u64, Waker)>,
    /// Records whose delivery was dropped before they were reported: their report is not
    /// kept.
    forgotten: HashSet<u64>,
    /// The producer is gone: what is unreported now never will be.
    closed: bool,
}

impl Ledger {
    fn is_reported(&self, seq: u64) -> bool {
        match seq.checked_sub(self.watermark) {
            None => true,
            Some(index) => self.reported.get(index as usize) != Some(&false),
        }
    }
}

/// The delivery reports of one producer.
pub(super) struct DeliveryLedger {
    /// Where outputs without a topic of their own go (named when the producer closed under
    /// an unreported record).
    default_topic: Arc<str>,
    ledger: Mutex<Ledger>,
}

impl DeliveryLedger {
    pub(super) fn new(default_topic: Arc<str>) -> Self {
        Self {
            default_topic,
            ledger: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().expect("delivery ledger poisoned")
    }

    /// A sequence number for the next record handed to the producer.
    pub(super) fn issue(&self) -> u64 {
        let mut ledger = self.lock();
        ledger.reported.push_back(false);
        ledger.watermark + ledger.reported.len() as u64 - 1
    }

    /// Records the report of record `seq` (`Ok` as well for a record the producer never
    /// took, whose sequence number must not hold the watermark back).
    pub(super) fn report(&self, seq: u64, outcome: Result<(), SinkError>) {
        let mut ledger = self.lock();
        let Some(index) = seq.checked_sub(ledger.watermark) else {
            return;
        };
        if let Some(flag) = ledger.reported.get_mut(index as usize) {
            *flag = true;
        }
        let forgotten = ledger.forgotten.remove(&seq);
        if let (Err(error), false) = (outcome, forgotten) {
            ledger.failures.insert(seq, error);
        }
        while ledger.reported.front() == Some(&true) {
            ledger.reported.pop_front();
            ledger.watermark += 1;
        }
        if let Some(at) = ledger
            .waiting
            .iter()
            .position(|(awaited, _)| *awaited == seq)
        {
            ledger.waiting.swap_remove(at).1.wake();
        }
    }

    /// The producer is gone: every delivery still waiting resolves as canceled.
    pub(super) fn close(&self) {
        let mut ledger = self.lock();
        ledger.closed = true;
        for (_, waker) in ledger.waiting.drain(..) {
            waker.wake();
        }
    }

    fn poll_reported(&self, seq: u64, cx: &mut Context<'_>) -> Poll<Result<(), SinkError>> {
        let mut ledger = self.lock();
        if let Some(error) = ledger.failures.remove(&seq) {
            return Poll::Ready(Err(error));
        }
        if ledger.is_reported(seq) {
            return Poll::Ready(Ok(()));
        }
        if ledger.closed {
            return Poll::Ready(Err(SinkError::Canceled {
                topic: self.default_topic.to_string(),
            }));
        }
        match ledger
            .waiting
            .iter_mut()
            .find(|(awaited, _)| *awaited == seq)
        {
            Some((_, waker)) => waker.clone_from(cx.waker()),
            None => ledger.waiting.push((seq, cx.waker().clone())),
        }
        Poll::Pending
    }

    /// A delivery dropped before it resolved leaves nothing behind.
    fn forget(&self, seq: u64) {
        let mut ledger = self.lock();
        ledger.waiting.retain(|(awaited, _)| *awaited != seq);
        if ledger.failures.remove(&seq).is_none() && !ledger.is_reported(seq) {
            ledger.forgotten.insert(seq);
        }
    }
}

/// Resolves once Kafka acknowledged the record (all in-sync replicas), or failed for good
/// after librdkafka's own retries.
pub struct ReportedDelivery {
    ledger: Arc<DeliveryLedger>,
    seq: u64,
    resolved: bool,
}

impl ReportedDelivery {
    pub(super) fn new(ledger: Arc<DeliveryLedger>, seq: u64) -> Self {
        Self {
            ledger,
            seq,
            resolved: false,
        }
    }
}

impl Future for ReportedDelivery {
    type Output = Result<(), SinkError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let outcome = std::task::ready!(self.ledger.poll_reported(self.seq, cx));
        self.resolved = true;
        Poll::Ready(outcome)
    }
}

impl Drop for ReportedDelivery {
    fn drop(&mut self) {
        if !self.resolved {
            self.ledger.forget(self.seq);
        }
    }
}

/// The sink producer's context: librdkafka's log lines as by default, and every delivery
/// report into the ledger.
pub(super) struct ReportingContext {
    pub(super) ledger: Arc<DeliveryLedger>,
}

impl ClientContext for ReportingContext {}

impl ProducerContext for ReportingContext {
    /// The record's sequence number in the ledger.
    type DeliveryOpaque = usize;

    fn delivery(&self, report: &DeliveryResult<'_>, seq: usize) {
        let outcome = match report {
            Ok(_) => Ok(()),
            Err((error, message)) => Err(classify(
                message.topic().to_owned(),
                error.clone(),
                Stage::Delivery,
            )),
        };
        self.ledger.report(seq as u64, outcome);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use super::*;

    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn refusal() -> SinkError {
        SinkError::Refused {
            topic: "t".into(),
            too_large: true,
            source: "too large".into(),
        }
    }

    #[test]
    fn reports_out_of_order_resolve_each_record_and_free_the_ring_behind_the_watermark() {
        let ledger = Arc::new(DeliveryLedger::new(Arc::from("t")));
        let waker = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let as_waker = Waker::from(waker.clone());
        let mut cx = Context::from_waker(&as_waker);
        let seqs: Vec<u64> = (0..4).map(|_| ledger.issue()).collect();
        assert_eq!(seqs, [0, 1, 2, 3]);
        let mut first = ReportedDelivery::new(ledger.clone(), 0);
        let mut third = ReportedDelivery::new(ledger.clone(), 2);
        assert!(Pin::new(&mut first).poll(&mut cx).is_pending());

        // Another partition's records report first: the watermark stays at the oldest.
        ledger.report(2, Err(refusal()));
        ledger.report(3, Ok(()));
        assert_eq!(ledger.lock().watermark, 0);
        assert_eq!(waker.0.load(Ordering::SeqCst), 0, "nobody waits for 2 or 3");
        assert!(matches!(
            Pin::new(&mut third).poll(&mut cx),
            Poll::Ready(Err(SinkError::Refused { .. }))
        ));

        ledger.report(0, Ok(()));
        assert_eq!(
            waker.0.load(Ordering::SeqCst),
            1,
            "the waiter of 0 is woken"
        );
        assert!(matches!(
            Pin::new(&mut first).poll(&mut cx),
            Poll::Ready(Ok(()))
        ));
        ledger.report(1, Ok(()));
        let state = ledger.lock();
        assert_eq!(state.watermark, 4);
        assert!(state.reported.is_empty() && state.failures.is_empty());
        assert!(state.waiting.is_empty());
    }

    #[test]
    fn a_closed_producer_cancels_what_it_never_reported() {
        let ledger = Arc::new(DeliveryLedger::new(Arc::from("out")));
        let seq = ledger.issue();
        let mut delivery = ReportedDelivery::new(ledger.clone(), seq);
        let waker = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let as_waker = Waker::from(waker.clone());
        let mut cx = Context::from_waker(&as_waker);
        assert!(Pin::new(&mut delivery).poll(&mut cx).is_pending());
        ledger.close();
        assert_eq!(waker.0.load(Ordering::SeqCst), 1);
        match Pin::new(&mut delivery).poll(&mut cx) {
            Poll::Ready(Err(SinkError::Canceled { topic })) => assert_eq!(topic, "out"),
            other => panic!("expected a cancellation, got {other:?}"),
        }
    }

    #[test]
    fn a_delivery_dropped_unresolved_leaves_no_failure_or_waiter_behind() {
        let ledger = Arc::new(DeliveryLedger::new(Arc::from("t")));
        let seq = ledger.issue();
        let mut delivery = ReportedDelivery::new(ledger.clone(), seq);
        let waker = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let as_waker = Waker::from(waker);
        let mut cx = Context::from_waker(&as_waker);
        assert!(Pin::new(&mut delivery).poll(&mut cx).is_pending());
        drop(delivery);
        ledger.report(seq, Err(refusal()));
        let state = ledger.lock();
        assert!(state.waiting.is_empty() && state.failures.is_empty());
        assert!(state.forgotten.is_empty() && state.reported.is_empty());
    }
}
