//! Durable keyed state (docs/state.md), partitioned like the writer scopes: each source
//! partition's state lives in its scope ([`ScopeState`]), its changes commit in that scope's
//! transaction with its outputs and checkpoint (the changelog, `changelog.rs`; outside
//! transactions they are delivered before the record's ack, `durable.rs`), and a scope
//! opened again (restart, fail-over, a renewed sink) restores it from the changelog before its
//! first record is transformed (`Transactions::open_state`). The lanes share the state of
//! every scope through the [`StateStore`], which the engine reads as its `StateBackend`.

mod changelog;
mod durable;
mod scope_state;
mod store;

pub(crate) use changelog::restore;
pub(crate) use durable::{Changelog, StateLog};
#[allow(unused_imports, reason = "the agreed interface of window state")]
pub(crate) use scope_state::{Change, ScopeState};
pub(crate) use store::{ScopeKey, StateStore, engine_scope, scope_key};
