//! A source whose records a test pushes in; it hands them out through the shared read loop
//! like any broker client and records what was acked. A nacked or released record is queued
//! again, as a broker redelivers it.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use sluice_record::{InputRecord, SourceInfo, SourceKind};
use tokio::sync::Notify;

use crate::source::{
    ConnectSource, Received, RunningSource, SourceClient, SourceError, SourceStart,
};

/// An in-memory source; clones share the same records.
#[derive(Clone, Default)]
pub struct MemorySource {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Signalled when a record is queued.
    queued: Notify,
}

#[derive(Default)]
struct State {
    pushed: u64,
    queue: VecDeque<InputRecord>,
    /// Handed out and not settled, by message id.
    out: HashMap<String, InputRecord>,
    acked: Vec<String>,
    /// Times a record was handed to the read loop, redeliveries included.
    deliveries: u64,
}

impl MemorySource {
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues a record with `key` and `value`; returns its message id (`memory-<n>`).
    pub fn push(&self, key: Option<&[u8]>, value: &[u8]) -> String {
        let mut state = self.state();
        state.pushed += 1;
        let message_id = format!("memory-{}", state.pushed);
        state.queue.push_back(InputRecord {
            key: key.map(<[u8]>::to_vec),
            value: Some(value.to_vec()),
            headers: Vec::new(),
            event_time_ms: None,
            publish_time_ms: Some(sluice_record::now_ms()),
            source: SourceInfo {
                kind: SourceKind::Other,
                topic: "memory".into(),
                message_id: message_id.clone(),
            },
        });
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

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().expect("memory source lock")
    }
}

impl ConnectSource for MemorySource {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn start(&self, start: SourceStart) -> BoxFuture<'_, Result<RunningSource, SourceError>> {
        let client = self.clone();
        Box::pin(async move { Ok(start.run(client)) })
    }
}

impl SourceClient for MemorySource {
    /// The message id.
    type Token = String;
    type Key = String;
    type Error = Infallible;
    const SYSTEM: &'static str = "memory";
    const WHILE_STALLED: &'static str = "the records stay queued in memory";

    async fn receive(&mut self) -> Result<Option<Received<String, String>>, Infallible> {
        loop {
            // Registered before looking, so a push in between is not missed.
            let queued = self.shared.queued.notified();
            {
                let mut state = self.state();
                if let Some(record) = state.queue.pop_front() {
                    let id = record.source.message_id.clone();
                    state.out.insert(id.clone(), record.clone());
                    state.deliveries += 1;
                    return Ok(Some(Received {
                        record,
                        token: id.clone(),
                        key: id,
                    }));
                }
            }
            queued.await;
        }
    }

    fn key_of(token: &String) -> String {
        token.clone()
    }

    async fn ack(&mut self, token: String) {
        let mut state = self.state();
        state.out.remove(&token);
        state.acked.push(token);
    }

    async fn nack(&mut self, token: String) {
        let mut state = self.state();
        if let Some(record) = state.out.remove(&token) {
            state.queue.push_front(record);
            drop(state);
            self.shared.queued.notify_one();
        }
    }

    async fn close(&mut self) {}
}
