//! The keyed state of one writer scope (docs/state.md).

use std::collections::HashMap;

use sluice_engine::key_group;
use sluice_record::Bytes;

/// One change of a scope's state: `key` of `namespace` set to `value` (`None`: deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    pub(crate) namespace: String,
    pub(crate) key: Bytes,
    pub(crate) value: Option<Bytes>,
}

/// The state of one writer scope (one source partition, see exactly_once/transactions.rs):
/// namespaced keyed bytes. Every change is also recorded for the scope's changelog (same
/// transaction as the outputs) until [`ScopeState::take_changes`] takes it.
///
/// Namespaces: `t:<transform name>` for a guest's keyed state (keys from
/// [`sluice_engine::state_key`]), `w:<window stage name>` for window state.
#[derive(Debug, Default)]
pub(crate) struct ScopeState {
    namespaces: HashMap<String, Namespace>,
    changes: Vec<Change>,
}

/// One namespace's entries and what they weigh.
#[derive(Debug, Default)]
struct Namespace {
    entries: HashMap<Bytes, Bytes>,
    /// Keys and values, in all…
    bytes: u64,
    /// …and per record key ([`key_group`]).
    group_bytes: HashMap<Bytes, u64>,
}

impl Namespace {
    fn account(&mut self, key: &[u8], before: u64, after: u64) {
        self.bytes = self.bytes + after - before;
        let group = key_group(key);
        match self.group_bytes.get_mut(group) {
            Some(bytes) => {
                *bytes = *bytes + after - before;
                if *bytes == 0 {
                    self.group_bytes.remove(group);
                }
            }
            None if after > 0 => {
                self.group_bytes
                    .insert(Bytes::copy_from_slice(group), after - before);
            }
            None => {}
        }
    }
}

fn weight(key: &[u8], value: Option<&Bytes>) -> u64 {
    value.map_or(0, |value| (key.len() + value.len()) as u64)
}

impl ScopeState {
    pub(crate) fn get(&self, namespace: &str, key: &[u8]) -> Option<&Bytes> {
        self.namespaces.get(namespace)?.entries.get(key)
    }

    pub(crate) fn put(&mut self, namespace: &str, key: Bytes, value: Bytes) {
        self.changes.push(Change {
            namespace: namespace.to_owned(),
            key: key.clone(),
            value: Some(value.clone()),
        });
        self.restore(namespace, key, value);
    }

    pub(crate) fn delete(&mut self, namespace: &str, key: &[u8]) {
        let Some(space) = self.namespaces.get_mut(namespace) else {
            return;
        };
        let Some((key, before)) = space.entries.remove_entry(key) else {
            return;
        };
        space.account(&key, weight(&key, Some(&before)), 0);
        self.changes.push(Change {
            namespace: namespace.to_owned(),
            key,
            value: None,
        });
    }

    /// Every entry of `namespace`, in no particular order (a window stage builds its close
    /// index from them).
    pub(crate) fn entries(&self, namespace: &str) -> impl Iterator<Item = (&Bytes, &Bytes)> {
        (self.namespaces.get(namespace).into_iter()).flat_map(|space| space.entries.iter())
    }

    /// Sets `key` without recording a change: what the changelog already holds.
    pub(crate) fn restore(&mut self, namespace: &str, key: Bytes, value: Bytes) {
        let space = match self.namespaces.get_mut(namespace) {
            Some(space) => space,
            None => self.namespaces.entry(namespace.to_owned()).or_default(),
        };
        let after = weight(&key, Some(&value));
        let before = space.entries.insert(key.clone(), value);
        space.account(&key, weight(&key, before.as_ref()), after);
    }

    /// The changes recorded since the last call, oldest first.
    pub(crate) fn take_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changes)
    }

    /// Bytes held in `namespace`, and under the record key `group` there.
    pub(crate) fn usage(&self, namespace: &str, group: &[u8]) -> (u64, u64) {
        self.namespaces.get(namespace).map_or((0, 0), |space| {
            let group = space.group_bytes.get(group).copied().unwrap_or(0);
            (space.bytes, group)
        })
    }

    /// Entries and bytes held, over every namespace.
    pub(crate) fn size(&self) -> (usize, u64) {
        (self.namespaces.values()).fold((0, 0), |(keys, bytes), space| {
            (keys + space.entries.len(), bytes + space.bytes)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_engine::state_key;

    #[test]
    fn changes_are_recorded_and_bytes_accounted_per_namespace_and_key() {
        let mut state = ScopeState::default();
        let (a1, a2, b) = (
            state_key(b"a", b"x"),
            state_key(b"a", b"y"),
            state_key(b"b", b"x"),
        );
        state.put("t:count", a1.clone(), Bytes::from_static(b"12"));
        state.put("t:count", a2.clone(), Bytes::from_static(b"3"));
        state.put("t:count", b.clone(), Bytes::from_static(b"4"));
        state.put("t:count", a1.clone(), Bytes::from_static(b"1"));
        let group_a = key_group(&a1).to_vec();
        assert_eq!(state.usage("t:count", &group_a), (3 * 6 + 3, 2 * 6 + 2));
        state.delete("t:count", &a2);
        assert_eq!(state.usage("t:count", &group_a), (2 * 6 + 2, 6 + 1));
        assert_eq!(state.get("t:count", &a1).map(|v| &v[..]), Some(&b"1"[..]));
        let changes = state.take_changes();
        assert_eq!(changes.len(), 5);
        assert_eq!(changes[4].value, None);
        assert!(state.take_changes().is_empty());
        assert_eq!(state.size(), (2, 14));
    }
}
