//! Keyed state as the engine sees it (docs/state.md): the host side of the WIT interface
//! `state`, scoped to the key of the record a guest names, with its quotas.
//!
//! The engine keeps no durable state itself and knows nothing of brokers: the pipeline owns
//! the state (per writer scope) and lends it for a batch through [`StateBackend`] (reads and
//! byte accounting) plus one [`RecordStateContext`] per source record. What a batch changes is
//! handed back per source record ([`StateChange`]), for the pipeline to apply and to write to
//! its changelog with the record's outputs.
//!
//! Changes of one guest call stay in a call overlay until the call's results are judged: a
//! trap drops them (the records are called again, one by one, and must not count twice), and
//! so does a record that fails. Changes of judged records go to the batch overlay, which later
//! calls and later transforms of the chain read before the backend.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use sluice_record::Bytes;

/// Which writer scope's state a record belongs to; opaque to the engine.
pub type StateScope = u64;

/// What the host knows about one source record of a batch, for its transforms' state calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordStateContext {
    pub scope: StateScope,
    /// False for a record whose effects are committed already (it came again after a crash
    /// and is not written again): it reads the state but its changes are dropped.
    pub writable: bool,
}

/// One change a record made to the state: in `namespace`, `key` set to `value` (deleted when
/// `None`). `key` is [`state_key`]`(record key, name)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    pub namespace: Arc<str>,
    pub key: Bytes,
    pub value: Option<Bytes>,
}

/// Bytes (keys and values) held in one namespace of a scope, in all and under one record key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateUsage {
    pub group_bytes: u64,
    pub namespace_bytes: u64,
}

/// The state the pipeline keeps, read by transforms through the engine.
pub trait StateBackend: Send + Sync {
    /// The value under `key` of `namespace` in `scope`.
    fn get(&self, scope: StateScope, namespace: &str, key: &[u8]) -> Option<Bytes>;
    /// What `namespace` of `scope` holds, in all and under the record key `group`
    /// ([`key_group`]).
    fn usage(&self, scope: StateScope, namespace: &str, group: &[u8]) -> StateUsage;
}

/// The state lent to one batch: the backend, and each source record's context by message id
/// (a record keeps its source's message id through every transform of the chain).
pub struct BatchState {
    pub backend: Arc<dyn StateBackend>,
    pub contexts: HashMap<Arc<str>, RecordStateContext>,
}

/// State kept in memory only, in one scope (0): what `sluice exec` gives a stateful guest,
/// and a stand-in for tests.
#[derive(Debug, Default)]
pub struct MemoryState {
    entries: Mutex<HashMap<(Arc<str>, Bytes), Bytes>>,
}

impl MemoryState {
    /// Applies what a batch changed ([`crate::TransformChain::run_batch_with_state`]).
    pub fn apply(&self, changes: &[StateChange]) {
        let mut entries = self.entries.lock().expect("memory state lock poisoned");
        for change in changes {
            let id = (change.namespace.clone(), change.key.clone());
            match &change.value {
                Some(value) => entries.insert(id, value.clone()),
                None => entries.remove(&id),
            };
        }
    }

    /// Every source record of `records` in scope 0, writable.
    pub fn lend(self: &Arc<Self>, records: &[sluice_record::InputRecord]) -> BatchState {
        let context = RecordStateContext {
            scope: 0,
            writable: true,
        };
        BatchState {
            backend: self.clone(),
            contexts: (records.iter())
                .map(|record| (record.source.message_id.clone(), context))
                .collect(),
        }
    }
}

impl StateBackend for MemoryState {
    fn get(&self, _scope: StateScope, namespace: &str, key: &[u8]) -> Option<Bytes> {
        let entries = self.entries.lock().expect("memory state lock poisoned");
        entries
            .get(&(Arc::from(namespace), Bytes::copy_from_slice(key)))
            .cloned()
    }

    fn usage(&self, _scope: StateScope, namespace: &str, group: &[u8]) -> StateUsage {
        let entries = self.entries.lock().expect("memory state lock poisoned");
        let mut usage = StateUsage::default();
        for ((space, key), value) in entries.iter() {
            if &**space == namespace {
                let bytes = (key.len() + value.len()) as u64;
                usage.namespace_bytes += bytes;
                if key_group(key) == group {
                    usage.group_bytes += bytes;
                }
            }
        }
        usage
    }
}

/// What happens when a `set` would exceed a state quota of the transform's limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StateQuotaPolicy {
    /// `set` returns the error and the record is dead-lettered with it (kind `state-quota`).
    #[default]
    DeadLetter,
    /// The call traps: the batch is run again record by record, and the record that exceeds
    /// the quota alone is dead-lettered (kind `state-quota`).
    Trap,
}

/// The storage key of `name` for a record with key `record_key`: the record key,
/// length-prefixed (u32, little-endian), then the name. Its prefix is the [`key_group`]
/// per-key quotas count.
pub fn state_key(record_key: &[u8], name: &[u8]) -> Bytes {
    let mut key = Vec::with_capacity(4 + record_key.len() + name.len());
    key.extend_from_slice(&(record_key.len() as u32).to_le_bytes());
    key.extend_from_slice(record_key);
    key.extend_from_slice(name);
    Bytes::from(key)
}

/// The record-key prefix of a storage key ([`state_key`]); the whole key when it has none.
pub fn key_group(key: &[u8]) -> &[u8] {
    let Some(len) = key.get(..4) else { return key };
    let len = u32::from_le_bytes(len.try_into().expect("four bytes")) as usize;
    key.get(..4 + len).unwrap_or(key)
}

/// Bytes an entry costs against the quotas.
fn entry_bytes(key: &[u8], value: Option<&Bytes>) -> i64 {
    value.map_or(0, |value| (key.len() + value.len()) as i64)
}

/// The quotas of one transform.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StateQuota {
    pub(crate) bytes_per_key: u64,
    pub(crate) bytes_per_transform: u64,
    pub(crate) policy: StateQuotaPolicy,
}

type EntryId = (StateScope, Bytes);

/// What a batch changed so far, over the backend.
pub(crate) struct BatchOverlay {
    input: BatchState,
    /// Per namespace: the entries changed, by scope and key.
    written: HashMap<Arc<str>, HashMap<EntryId, Option<Bytes>>>,
    /// Per namespace: byte deltas by scope and group, and by scope.
    group_delta: HashMap<Arc<str>, HashMap<EntryId, i64>>,
    namespace_delta: HashMap<Arc<str>, HashMap<StateScope, i64>>,
    /// Per source record (message id): its changes, in order.
    changes: HashMap<Arc<str>, Vec<StateChange>>,
}

impl BatchOverlay {
    pub(crate) fn new(input: BatchState) -> Self {
        Self {
            input,
            written: HashMap::new(),
            group_delta: HashMap::new(),
            namespace_delta: HashMap::new(),
            changes: HashMap::new(),
        }
    }

    fn get(&self, namespace: &Arc<str>, id: &EntryId) -> Option<Bytes> {
        match self.written.get(namespace).and_then(|w| w.get(id)) {
            Some(value) => value.clone(),
            None => self.input.backend.get(id.0, namespace, &id.1),
        }
    }

    fn usage(&self, namespace: &Arc<str>, scope: StateScope, group: &[u8]) -> (i64, i64) {
        let base = self.input.backend.usage(scope, namespace, group);
        let group_delta = (self.group_delta.get(namespace))
            .and_then(|d| d.get(&(scope, Bytes::copy_from_slice(group))))
            .copied()
            .unwrap_or(0);
        let namespace_delta = (self.namespace_delta.get(namespace))
            .and_then(|d| d.get(&scope))
            .copied()
            .unwrap_or(0);
        (
            base.group_bytes as i64 + group_delta,
            base.namespace_bytes as i64 + namespace_delta,
        )
    }

    fn apply(&mut self, owner: &Arc<str>, namespace: &Arc<str>, id: EntryId, value: Option<Bytes>) {
        let before = entry_bytes(&id.1, self.get(namespace, &id).as_ref());
        let delta = entry_bytes(&id.1, value.as_ref()) - before;
        let group = Bytes::copy_from_slice(key_group(&id.1));
        *(self.group_delta.entry(namespace.clone()).or_default())
            .entry((id.0, group))
            .or_default() += delta;
        *(self.namespace_delta.entry(namespace.clone()).or_default())
            .entry(id.0)
            .or_default() += delta;
        (self.changes.entry(owner.clone()).or_default()).push(StateChange {
            namespace: namespace.clone(),
            key: id.1.clone(),
            value: value.clone(),
        });
        (self.written.entry(namespace.clone()).or_default()).insert(id, value);
    }

    /// The changes each source record made, by message id.
    pub(crate) fn into_changes(self) -> HashMap<Arc<str>, Vec<StateChange>> {
        self.changes
    }
}

/// One input of a guest call, as its state calls see it.
struct CallRecord {
    owner: Arc<str>,
    key: Option<Bytes>,
}

/// A change made during the current call, not yet judged.
struct PendingChange {
    index: usize,
    id: EntryId,
    value: Option<Bytes>,
    /// Byte delta against what was visible when it was made.
    delta: i64,
}

/// The state side of one instance's store: which batch it reads, and the current call's
/// overlay.
pub(crate) struct CallState {
    namespace: Arc<str>,
    quota: StateQuota,
    batch: Option<Arc<Mutex<BatchOverlay>>>,
    records: Vec<CallRecord>,
    pending: Vec<PendingChange>,
    /// Per input of the call: why a `set` of it was refused, under `dead-letter`.
    refused: Vec<Option<String>>,
    /// Why the call trapped on a quota, under `trap`.
    pub(crate) trapped: Option<String>,
}

/// Why a state call failed.
pub(crate) enum StateCallError {
    /// Returned to the guest.
    Refused(String),
    /// Traps the call.
    Trap(String),
}

impl CallState {
    pub(crate) fn new(transform: &str, quota: StateQuota) -> Self {
        Self {
            namespace: Arc::from(format!("t:{transform}")),
            quota,
            batch: None,
            records: Vec::new(),
            pending: Vec::new(),
            refused: Vec::new(),
            trapped: None,
        }
    }

    /// A call on `inputs` begins, reading `batch` (none outside a batch with state).
    pub(crate) fn begin(
        &mut self,
        batch: Option<Arc<Mutex<BatchOverlay>>>,
        inputs: &[sluice_record::InputRecord],
    ) {
        self.records.clear();
        self.pending.clear();
        self.refused.clear();
        self.trapped = None;
        if batch.is_some() {
            self.records.extend(inputs.iter().map(|input| CallRecord {
                owner: input.source.message_id.clone(),
                key: input.key.clone(),
            }));
            self.refused.resize(inputs.len(), None);
        }
        self.batch = batch;
    }

    /// The batch is over: what the store kept of it goes.
    pub(crate) fn release(&mut self) {
        self.batch = None;
        self.records.clear();
        self.pending.clear();
        self.refused.clear();
    }

    /// The call's results were judged (`ok[i]`: input i succeeded): the changes of the inputs
    /// that succeeded go to the batch; returns, per input, the quota refusal that must
    /// dead-letter it.
    pub(crate) fn settle(&mut self, ok: &[bool]) -> Vec<Option<String>> {
        let refused = std::mem::take(&mut self.refused);
        let pending = std::mem::take(&mut self.pending);
        if let Some(batch) = &self.batch {
            let mut batch = batch.lock().expect("batch state lock poisoned");
            for change in pending {
                let index = change.index;
                if ok.get(index).copied().unwrap_or(false) && refused[index].is_none() {
                    let owner = &self.records[index].owner;
                    batch.apply(owner, &self.namespace, change.id, change.value);
                }
            }
        }
        refused
    }

    /// The scope and storage key of `name` for input `record`, if it may use state.
    fn locate(&self, record: u32, name: &[u8]) -> Result<(EntryId, bool), String> {
        let input = (self.records.get(record as usize)).ok_or_else(|| {
            format!(
                "no record {record} in this batch of {} (state is only reachable through the \
                 current batch's records)",
                self.records.len()
            )
        })?;
        let batch = self.batch.as_ref().expect("records only with a batch");
        let batch = batch.lock().expect("batch state lock poisoned");
        let context = (batch.input.contexts.get(&input.owner)).ok_or_else(|| {
            "keyed state is not available to this record (no state scope)".to_owned()
        })?;
        let key = (input.key.as_ref())
            .ok_or_else(|| "the record has no key: keyed state needs one".to_owned())?;
        Ok(((context.scope, state_key(key, name)), context.writable))
    }

    /// What is visible under `id`: this call's latest change, else the batch's, else the
    /// backend's.
    fn visible(&self, id: &EntryId) -> Option<Bytes> {
        if let Some(change) = self.pending.iter().rev().find(|change| change.id == *id) {
            return change.value.clone();
        }
        let batch = self.batch.as_ref()?;
        let batch = batch.lock().expect("batch state lock poisoned");
        batch.get(&self.namespace, id)
    }

    pub(crate) fn get(&self, record: u32, name: &[u8]) -> Option<Bytes> {
        let (id, _) = self.locate(record, name).ok()?;
        self.visible(&id)
    }

    pub(crate) fn set(
        &mut self,
        record: u32,
        name: &[u8],
        value: Bytes,
    ) -> Result<(), StateCallError> {
        let (id, writable) = self.locate(record, name).map_err(StateCallError::Refused)?;
        if !writable {
            return Ok(());
        }
        let before = entry_bytes(&id.1, self.visible(&id).as_ref());
        let delta = entry_bytes(&id.1, Some(&value)) - before;
        if delta > 0
            && let Some(reason) = self.over_quota(&id, delta)
        {
            return Err(match self.quota.policy {
                StateQuotaPolicy::DeadLetter => {
                    let slot = &mut self.refused[record as usize];
                    slot.get_or_insert_with(|| reason.clone());
                    StateCallError::Refused(reason)
                }
                StateQuotaPolicy::Trap => {
                    self.trapped = Some(reason.clone());
                    StateCallError::Trap(reason)
                }
            });
        }
        self.pending.push(PendingChange {
            index: record as usize,
            id,
            value: Some(value),
            delta,
        });
        Ok(())
    }

    pub(crate) fn delete(&mut self, record: u32, name: &[u8]) {
        let Ok((id, writable)) = self.locate(record, name) else {
            return;
        };
        if !writable {
            return;
        }
        let before = entry_bytes(&id.1, self.visible(&id).as_ref());
        self.pending.push(PendingChange {
            index: record as usize,
            id,
            value: None,
            delta: -before,
        });
    }

    /// Why adding `delta` bytes under `id` would break a quota, if it would.
    fn over_quota(&self, id: &EntryId, delta: i64) -> Option<String> {
        let group = key_group(&id.1);
        let (mut group_bytes, mut namespace_bytes) = {
            let batch = self.batch.as_ref()?;
            let batch = batch.lock().expect("batch state lock poisoned");
            batch.usage(&self.namespace, id.0, group)
        };
        for change in self.pending.iter().filter(|change| change.id.0 == id.0) {
            namespace_bytes += change.delta;
            if key_group(&change.id.1) == group {
                group_bytes += change.delta;
            }
        }
        let quota = &self.quota;
        if (group_bytes + delta) as u64 > quota.bytes_per_key {
            return Some(format!(
                "state quota exceeded: the record's key would hold {} bytes of state; \
                 state_bytes_per_key is {}",
                group_bytes + delta,
                quota.bytes_per_key
            ));
        }
        if (namespace_bytes + delta) as u64 > quota.bytes_per_transform {
            return Some(format!(
                "state quota exceeded: the transform would hold {} bytes of state in this \
                 scope; state_bytes_per_transform is {}",
                namespace_bytes + delta,
                quota.bytes_per_transform
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storage_key_starts_with_its_record_key_group() {
        let key = state_key(b"user-1", b"count");
        assert_eq!(key_group(&key), &key[..4 + 6]);
        assert_eq!(&key[10..], b"count");
        assert_eq!(key_group(b"ab"), b"ab", "too short: the whole key");
    }
}
