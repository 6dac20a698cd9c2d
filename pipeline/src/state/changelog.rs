//! The changelog of keyed state (docs/state.md): a compacted Kafka topic per pipeline
//! (`<pipeline>.changelog` unless `exactly_once.changelog_topic` says; `.source-S` added for
//! source S > 0 of a merge), partition = the scope's partition (0 for a source of one stream),
//! record key = namespace and key (the namespace length-prefixed, u32 little-endian), value =
//! the bytes, a tombstone for a delete.

use sluice_record::Bytes;

use super::scope_state::ScopeState;

/// The changelog record key of `key` in `namespace`.
pub(crate) fn record_key(namespace: &str, key: &[u8]) -> Vec<u8> {
    let mut record_key = Vec::with_capacity(4 + namespace.len() + key.len());
    record_key.extend_from_slice(&(namespace.len() as u32).to_le_bytes());
    record_key.extend_from_slice(namespace.as_bytes());
    record_key.extend_from_slice(key);
    record_key
}

/// The namespace and key of a changelog record key; `None` when it is not one.
pub(crate) fn split_record_key(record_key: &Bytes) -> Option<(&str, Bytes)> {
    let len = u32::from_le_bytes(record_key.get(..4)?.try_into().ok()?) as usize;
    let namespace = std::str::from_utf8(record_key.get(4..4 + len)?).ok()?;
    Some((namespace, record_key.slice(4 + len..)))
}

/// The state the live entries of a scope's changelog partition hold; and how many entries
/// were not changelog records (skipped).
pub(crate) fn restore(entries: Vec<(Bytes, Bytes)>) -> (ScopeState, usize) {
    let mut state = ScopeState::default();
    let mut skipped = 0;
    for (record_key, value) in entries {
        match split_record_key(&record_key) {
            Some((namespace, key)) => state.restore(namespace, key, value),
            None => skipped += 1,
        }
    }
    (state, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_keys_round_trip() {
        let key = Bytes::from(record_key("t:count", b"\x01\x00\x00\x00kname"));
        let (namespace, inner) = split_record_key(&key).unwrap();
        assert_eq!(namespace, "t:count");
        assert_eq!(&inner[..], b"\x01\x00\x00\x00kname");
        assert!(split_record_key(&Bytes::from_static(b"\xff\xff")).is_none());
    }
}
