//! The keyed state of every scope of a pipeline, shared by the transform lanes (which read it
//! and apply what each batch changed) and the sink stage (which restores a scope when it
//! opens, and drops it when its transaction can no longer commit).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use sluice_connectors::source::Placement;
use sluice_engine::{StateBackend, StateChange, StateScope, StateUsage};
use sluice_record::Bytes;
use sluice_record::InputRecord;

use super::scope_state::ScopeState;
use crate::exactly_once::Done;

/// The source ([`Placement::source`]) and the partition a writer scope covers (`None`: the
/// source is one stream).
pub(crate) type ScopeKey = (u32, Option<u32>);

/// The scope a record's placement falls in.
pub(crate) fn scope_key(placement: &Placement) -> ScopeKey {
    (placement.source, placement.partition)
}

/// The partition half of an engine scope that stands for "the source is one stream": never a
/// real partition (Kafka and Pulsar number theirs from 0 as signed 32-bit integers).
const WHOLE_SOURCE: u32 = u32::MAX;

/// Numbers each [`Slot`] put in place, so that what is derived from a scope's state (the
/// windows' close indexes) can tell that it was replaced.
static EPOCHS: AtomicU64 = AtomicU64::new(0);

/// A scope's state, once restored.
struct Slot {
    state: ScopeState,
    /// Which putting-in-place this is ([`EPOCHS`]).
    epoch: u64,
    /// What the scope had committed when it was restored: a record it covers came again
    /// after a crash, its changes are in the state already (its own are dropped).
    covered: Option<Done>,
}

/// The state of the scopes this instance holds.
#[derive(Default)]
pub(crate) struct StateStore {
    scopes: Mutex<HashMap<ScopeKey, Slot>>,
}

/// The engine's opaque name of a scope: the source in the high half, the partition in the
/// low half.
pub(crate) fn engine_scope((source, partition): ScopeKey) -> StateScope {
    (u64::from(source) << 32) | u64::from(partition.unwrap_or(WHOLE_SOURCE))
}

fn from_engine_scope(scope: StateScope) -> ScopeKey {
    let partition = scope as u32;
    (
        (scope >> 32) as u32,
        (partition != WHOLE_SOURCE).then_some(partition),
    )
}

impl StateStore {
    fn scopes(&self) -> MutexGuard<'_, HashMap<ScopeKey, Slot>> {
        self.scopes.lock().expect("state store lock poisoned")
    }

    /// Whether the scope's state is here (restored, or started empty).
    pub(crate) fn holds(&self, key: ScopeKey) -> bool {
        self.scopes().contains_key(&key)
    }

    /// Puts a restored scope in place.
    pub(crate) fn insert(&self, key: ScopeKey, state: ScopeState, covered: Option<Done>) {
        let epoch = EPOCHS.fetch_add(1, Ordering::Relaxed);
        (self.scopes()).insert(
            key,
            Slot {
                state,
                epoch,
                covered,
            },
        );
    }

    /// Forgets a scope's state (its uncommitted changes are lost with its transaction): it is
    /// restored again when the scope opens again.
    pub(crate) fn drop_scope(&self, key: ScopeKey) {
        self.scopes().remove(&key);
    }

    /// Forgets every scope.
    pub(crate) fn clear(&self) {
        self.scopes().clear();
    }

    /// Whether `record` may change the state: not when its scope's restored state holds its
    /// changes already.
    pub(crate) fn writable(&self, record: &InputRecord, placement: &Placement) -> bool {
        let scopes = self.scopes();
        let covered = scopes
            .get(&scope_key(placement))
            .and_then(|slot| slot.covered.as_ref());
        !covered.is_some_and(|done| done.covers(record, placement))
    }

    /// Applies a record's changes.
    pub(crate) fn apply(&self, key: ScopeKey, changes: &[StateChange]) {
        let mut scopes = self.scopes();
        let slot = scopes.entry(key).or_insert_with(Slot::empty);
        for change in changes {
            match &change.value {
                Some(value) => slot
                    .state
                    .put(&change.namespace, change.key.clone(), value.clone()),
                None => slot.state.delete(&change.namespace, &change.key),
            }
        }
        // The changes travel with their record to the changelog (they were handed back by the
        // chain per record); the scope's own record of them is not needed.
        slot.state.take_changes();
    }

    /// Lets `update` change the state of scope `key` (given with its epoch: a new one means
    /// the state was replaced since), and hands back what it changed, for the changelog.
    pub(crate) fn update<R>(
        &self,
        key: ScopeKey,
        update: impl FnOnce(&mut ScopeState, u64) -> R,
    ) -> (R, Vec<StateChange>) {
        let mut scopes = self.scopes();
        let slot = scopes.entry(key).or_insert_with(Slot::empty);
        let result = update(&mut slot.state, slot.epoch);
        let changes = (slot.state.take_changes().into_iter())
            .map(|change| StateChange {
                namespace: Arc::from(change.namespace),
                key: change.key,
                value: change.value,
            })
            .collect();
        (result, changes)
    }
}

impl Slot {
    /// A scope whose state starts empty (none restored into it).
    fn empty() -> Self {
        Self {
            state: ScopeState::default(),
            epoch: EPOCHS.fetch_add(1, Ordering::Relaxed),
            covered: None,
        }
    }
}

impl StateBackend for StateStore {
    fn get(&self, scope: StateScope, namespace: &str, key: &[u8]) -> Option<Bytes> {
        let scopes = self.scopes();
        scopes
            .get(&from_engine_scope(scope))?
            .state
            .get(namespace, key)
            .cloned()
    }

    fn usage(&self, scope: StateScope, namespace: &str, group: &[u8]) -> StateUsage {
        let scopes = self.scopes();
        let (namespace_bytes, group_bytes) = scopes
            .get(&from_engine_scope(scope))
            .map_or((0, 0), |slot| slot.state.usage(namespace, group));
        StateUsage {
            group_bytes,
            namespace_bytes,
        }
    }
}
