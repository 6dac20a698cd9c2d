//! STAND-IN (windows branch): a minimal in-memory `ScopeState` with the agreed signatures, so
//! the window stages build and run before the state branch lands. It is NOT durable: nothing
//! goes to a changelog and nothing is restored after a restart. The state branch replaces
//! this file; the windows code uses only `get`, `put`, `delete` and `entries`.
//!
//! `entries` is beyond the agreed three: a window stage scans its namespace to find the
//! windows the watermark closed (only when the watermark passes the earliest close time it
//! keeps, not per record). A store restored from a changelog holds every entry in memory, so
//! it can list a namespace.

use std::collections::HashMap;

use bytes::Bytes;

/// The state of one writer scope (one source partition, see exactly_once/transactions.rs):
/// namespaced keyed bytes.
#[derive(Debug, Default)]
pub(crate) struct ScopeState {
    namespaces: HashMap<String, HashMap<Bytes, Bytes>>,
}

impl ScopeState {
    pub(crate) fn get(&self, namespace: &str, key: &[u8]) -> Option<&Bytes> {
        self.namespaces.get(namespace)?.get(key)
    }

    pub(crate) fn put(&mut self, namespace: &str, key: Bytes, value: Bytes) {
        (self.namespaces.entry(namespace.to_owned()).or_default()).insert(key, value);
    }

    pub(crate) fn delete(&mut self, namespace: &str, key: &[u8]) {
        if let Some(entries) = self.namespaces.get_mut(namespace) {
            entries.remove(key);
        }
    }

    /// Every entry of `namespace`, in no particular order.
    pub(crate) fn entries(&self, namespace: &str) -> impl Iterator<Item = (&Bytes, &Bytes)> {
        self.namespaces.get(namespace).into_iter().flatten()
    }
}
