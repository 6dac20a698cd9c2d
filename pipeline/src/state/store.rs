//! The keyed state of every scope of a pipeline, shared by the transform lanes (which read it
//! and apply what each batch changed) and the sink stage (which restores a scope when it
//! opens, and drops it when its transaction can no longer commit).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use sluice_connectors::source::Placement;
use sluice_engine::{StateBackend, StateChange, StateScope, StateUsage};
use sluice_record::Bytes;
use sluice_record::InputRecord;

use super::scope_state::ScopeState;
use crate::exactly_once::Done;

/// The partition a writer scope covers (`None`: the source is one stream).
pub(crate) type ScopeKey = Option<u32>;

/// A scope's state, once restored.
struct Slot {
    state: ScopeState,
    /// What the scope had committed when it was restored: a record it covers came again
    /// after a crash, its changes are in the state already (its own are dropped).
    covered: Option<Done>,
}

/// The state of the scopes this instance holds.
#[derive(Default)]
pub(crate) struct StateStore {
    scopes: Mutex<HashMap<ScopeKey, Slot>>,
}

/// The engine's opaque name of a scope.
pub(crate) fn engine_scope(key: ScopeKey) -> StateScope {
    key.map_or(StateScope::MAX, u64::from)
}

fn scope_key(scope: StateScope) -> ScopeKey {
    (scope != StateScope::MAX).then_some(scope as u32)
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
        self.scopes().insert(key, Slot { state, covered });
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
            .get(&placement.partition)
            .and_then(|slot| slot.covered.as_ref());
        !covered.is_some_and(|done| done.covers(record, placement))
    }

    /// Applies a record's changes.
    pub(crate) fn apply(&self, key: ScopeKey, changes: &[StateChange]) {
        let mut scopes = self.scopes();
        let slot = scopes.entry(key).or_insert_with(|| Slot {
            state: ScopeState::default(),
            covered: None,
        });
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
}

impl StateBackend for StateStore {
    fn get(&self, scope: StateScope, namespace: &str, key: &[u8]) -> Option<Bytes> {
        let scopes = self.scopes();
        scopes
            .get(&scope_key(scope))?
            .state
            .get(namespace, key)
            .cloned()
    }

    fn usage(&self, scope: StateScope, namespace: &str, group: &[u8]) -> StateUsage {
        let scopes = self.scopes();
        let (namespace_bytes, group_bytes) = scopes
            .get(&scope_key(scope))
            .map_or((0, 0), |slot| slot.state.usage(namespace, group));
        StateUsage {
            group_bytes,
            namespace_bytes,
        }
    }
}
