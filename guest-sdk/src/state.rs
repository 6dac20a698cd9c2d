//! Keyed state (docs/state.md): bytes a transform keeps between records, scoped to the key of
//! the record being transformed. The host keeps it durable (a changelog in Kafka, restored
//! after a restart) and, with exactly-once, commits each change with the record's outputs.
//!
//! In a component the calls go to the host's `state` import, naming the record by its index
//! in the batch; in native builds (unit tests) they use an in-memory map of the current
//! thread, so a transform's tests need no host ([`crate::testing::clear_state`] empties it).

use crate::{Error, Message};

/// The keyed state of one record's key, from [`Message::state`].
///
/// ```
/// use sluice_sdk::{Message, Writer};
///
/// fn count(msg: Message, out: &mut Writer) -> sluice_sdk::Result<()> {
///     let state = msg.state();
///     let seen = state.get_u64("count").unwrap_or(0) + 1;
///     state.set_u64("count", seen)?;
///     out.write(msg.with_value(seen.to_string()));
///     Ok(())
/// }
///
/// let mut out = Writer::default();
/// for _ in 0..3 {
///     count(Message::from_value("x").with_key("k"), &mut out).unwrap();
/// }
/// assert_eq!(out.outputs()[2].value(), Some(&b"3"[..]));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct State<'a> {
    message: &'a Message,
}

impl<'a> State<'a> {
    pub(crate) fn new(message: &'a Message) -> Self {
        Self { message }
    }

    /// The value stored under `name` for this record's key, if any.
    pub fn get(&self, name: impl AsRef<[u8]>) -> Option<Vec<u8>> {
        backend::get(self.message, name.as_ref())
    }

    /// Stores `value` under `name` for this record's key.
    ///
    /// # Errors
    ///
    /// A dead-letter [`Error`] when the host refuses it: a state quota of the transform's
    /// limits (the host dead-letters the record anyway), or a record without a key.
    pub fn set(&self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<(), Error> {
        backend::set(self.message, name.as_ref(), value.as_ref()).map_err(Error::dead_letter)
    }

    /// Removes what is stored under `name` for this record's key.
    pub fn delete(&self, name: impl AsRef<[u8]>) {
        backend::delete(self.message, name.as_ref());
    }

    /// [`State::get`] of a number stored with [`State::set_u64`] (8 bytes, little-endian);
    /// `None` when absent or not 8 bytes.
    pub fn get_u64(&self, name: impl AsRef<[u8]>) -> Option<u64> {
        let bytes = self.get(name)?;
        Some(u64::from_le_bytes(bytes.try_into().ok()?))
    }

    /// Stores a number under `name` (8 bytes, little-endian).
    ///
    /// # Errors
    ///
    /// As [`State::set`].
    pub fn set_u64(&self, name: impl AsRef<[u8]>, value: u64) -> Result<(), Error> {
        self.set(name, value.to_le_bytes())
    }
}

#[cfg(target_arch = "wasm32")]
mod backend {
    use crate::__private::bindings::sluice::transform::state;
    use crate::Message;

    /// The record's index in the batch; a message made by the transform itself has none and
    /// reaches no state.
    fn index(message: &Message) -> Option<u32> {
        message.index
    }

    pub(super) fn get(message: &Message, name: &[u8]) -> Option<Vec<u8>> {
        state::get(index(message)?, name)
    }

    pub(super) fn set(message: &Message, name: &[u8], value: &[u8]) -> Result<(), String> {
        let index = index(message)
            .ok_or("keyed state is reached through a record of the batch, not a new message")?;
        state::set(index, name, value)
    }

    pub(super) fn delete(message: &Message, name: &[u8]) {
        if let Some(index) = index(message) {
            state::delete(index, name);
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod backend {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use crate::Message;

    /// (record key, name): where a value is kept.
    type Entry = (Vec<u8>, Vec<u8>);

    thread_local! {
        /// Entry → value, for native tests.
        static STATE: RefCell<HashMap<Entry, Vec<u8>>> = RefCell::default();
    }

    fn entry(message: &Message, name: &[u8]) -> Option<Entry> {
        Some((message.key()?.to_vec(), name.to_vec()))
    }

    pub(super) fn get(message: &Message, name: &[u8]) -> Option<Vec<u8>> {
        let entry = entry(message, name)?;
        STATE.with(|state| state.borrow().get(&entry).cloned())
    }

    pub(super) fn set(message: &Message, name: &[u8], value: &[u8]) -> Result<(), String> {
        let entry = entry(message, name).ok_or("the record has no key: keyed state needs one")?;
        STATE.with(|state| state.borrow_mut().insert(entry, value.to_vec()));
        Ok(())
    }

    pub(super) fn delete(message: &Message, name: &[u8]) {
        if let Some(entry) = entry(message, name) {
            STATE.with(|state| state.borrow_mut().remove(&entry));
        }
    }

    /// Empties the current thread's state.
    pub(crate) fn clear() {
        STATE.with(|state| state.borrow_mut().clear());
    }
}
