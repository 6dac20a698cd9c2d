//! A source whose records a test pushes in; it hands them out through the shared read loop
//! like any broker client and records what was acked. As a broker does, it delivers again, to
//! a new session, every record an earlier session left unacked, nacked or released, and, on
//! [`MemorySource::redeliver_unsettled`], what is unsettled (as an ack deadline does). A test
//! may cut the stream off ([`MemorySource::cut_off`]) to play a source failure. Records are one
//! ordered partition (their position is the order they were pushed in), like a non-partitioned
//! Pulsar topic, or, made with [`MemorySource::unordered`], unordered like a Pub/Sub
//! subscription.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use sluice_record::{Bytes, InputRecord, SourceInfo, SourceKind};
use tokio::sync::Notify;

use crate::source::{
    ConnectSource, Placement, Position, Received, RunningSource, SourceClient, SourceError,
    SourceStart,
};

/// An in-memory source; clones share the same records.
#[derive(Clone, Default)]
pub struct MemorySource {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    /// Records carry no position (as Pub/Sub's).
    unordered: bool,
    state: Mutex<State>,
    /// Signalled when a record is queued.
    queued: Notify,
}

#[derive(Default)]
struct State {
    pushed: u64,
    /// Records to hand out, with their number (the order they were pushed in).
    queue: VecDeque<(u64, InputRecord)>,
    /// Handed out and not settled, by number.
    out: BTreeMap<u64, InputRecord>,
    acked: Vec<String>,
    /// Times a record was handed to the read loop, redeliveries included.
    deliveries: u64,
    /// The next receive fails.
    cut_off: bool,
}

/// The stream was cut off by the test.
#[derive(Debug, thiserror::Error)]
#[error("the memory source was cut off")]
pub struct CutOff;

impl MemorySource {
    pub fn new() -> Self {
        Self::default()
    }

    /// A source without an order: its records carry no position, only their message id.
    pub fn unordered() -> Self {
        Self {
            shared: Arc::new(Shared {
                unordered: true,
                ..Shared::default()
            }),
        }
    }

    /// Queues a record with `key` and `value`; returns its message id (`memory-<n>`).
    pub fn push(&self, key: Option<&[u8]>, value: &[u8]) -> String {
        self.push_with_headers(key, value, Vec::new())
    }

    /// Like [`MemorySource::push`], with `headers`.
    pub fn push_with_headers(
        &self,
        key: Option<&[u8]>,
        value: &[u8],
        headers: Vec<sluice_record::Header>,
    ) -> String {
        let mut state = self.state();
        state.pushed += 1;
        let number = state.pushed;
        let message_id = format!("memory-{number}");
        let record = InputRecord {
            key: key.map(Bytes::copy_from_slice),
            value: Some(Bytes::copy_from_slice(value)),
            headers,
            event_time_ms: None,
            publish_time_ms: Some(sluice_record::now_ms()),
            source: SourceInfo {
                kind: SourceKind::Other,
                topic: "memory".into(),
                message_id: message_id.as_str().into(),
                schema_version: None,
            },
        };
        state.queue.push_back((number, record));
        drop(state);
        self.shared.queued.notify_one();
        message_id
    }

    /// Message ids acked so far, in ack order.
    pub fn acked(&self) -> Vec<String> {
        self.state().acked.clone()
    }

    /// Times a record was handed out, redeliveries included.
    pub fn deliveries(&self) -> u64 {
        self.state().deliveries
    }

    /// Hands out again everything handed out and not settled, as a broker does once an ack
    /// deadline passes or a consumer is gone (a session already holding one of them drops the
    /// copy: it is in flight there).
    pub fn redeliver_unsettled(&self) {
        let mut state = self.state();
        let unsettled = std::mem::take(&mut state.out);
        for (number, record) in unsettled.into_iter().rev() {
            state.queue.push_front((number, record));
        }
        drop(state);
        self.shared.queued.notify_one();
    }

    /// Makes the next receive fail, as a broker connection that drops does.
    pub fn cut_off(&self) {
        self.state().cut_off = true;
        self.shared.queued.notify_one();
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().expect("memory source lock")
    }
}

impl ConnectSource for MemorySource {
    fn kind(&self) -> &'static str {
        "memory"
    }

    /// A new session: what an earlier one left unacked is delivered again first.
    fn start(&self, start: SourceStart) -> BoxFuture<'_, Result<RunningSource, SourceError>> {
        let mut state = self.state();
        let unacked = std::mem::take(&mut state.out);
        for (number, record) in unacked.into_iter().rev() {
            state.queue.push_front((number, record));
        }
        drop(state);
        let client = self.clone();
        Box::pin(async move { Ok(start.run(client)) })
    }
}

impl SourceClient for MemorySource {
    /// The record's number.
    type Token = u64;
    type Key = u64;
    type Error = CutOff;
    const SYSTEM: &'static str = "memory";
    const WHILE_STALLED: &'static str = "the records stay queued in memory";

    async fn receive(&mut self) -> Result<Option<Received<u64, u64>>, CutOff> {
        loop {
            // Registered before looking, so a push in between is not missed.
            let queued = self.shared.queued.notified();
            {
                let mut state = self.state();
                if std::mem::take(&mut state.cut_off) {
                    return Err(CutOff);
                }
                if let Some((number, record)) = state.queue.pop_front() {
                    state.out.insert(number, record.clone());
                    state.deliveries += 1;
                    let position = (!self.shared.unordered).then_some(Position {
                        ledger: 0,
                        entry: number,
                        batch: -1,
                    });
                    return Ok(Some(Received {
                        record,
                        token: number,
                        key: number,
                        placement: Placement {
                            position,
                            ..Placement::default()
                        },
                    }));
                }
            }
            queued.await;
        }
    }

    fn key_of(number: &u64) -> u64 {
        *number
    }

    async fn ack(&mut self, number: u64) {
        let mut state = self.state();
        if let Some(record) = state.out.remove(&number) {
            state.acked.push(record.source.message_id.to_string());
        }
    }

    /// The record stays unacked: the next session delivers it again. (A broker redelivers a
    /// nacked message after a delay; handing it out again at once would keep a draining
    /// read loop, which nacks what it still receives, busy forever.)
    async fn nack(&mut self, _number: u64) {}

    async fn close(&mut self) {}
}
