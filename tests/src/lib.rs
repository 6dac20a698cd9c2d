//! What the integration tests (`tests/all`) share: the guest components `build.rs` compiled, one
//! transform engine per test binary, unique names; and, from `sluice-test-brokers` (re-exported),
//! where the brokers are ([`addresses`]), how to talk to them ([`kafka`], [`pulsar`], [`pubsub`]),
//! and the one set of [`timeouts`].

pub use sluice_test_brokers::{addresses, kafka, pubsub, pulsar, timeouts};

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sluice_engine::TransformEngine;

/// `examples/passthrough`: every record unchanged.
pub const PASSTHROUGH: &str = env!("PASSTHROUGH_COMPONENT");
/// `examples/json-filter`: keeps records whose JSON field equals a value.
pub const JSON_FILTER: &str = env!("JSON_FILTER_COMPONENT");
/// `examples/redact`: masks JSON fields.
pub const REDACT: &str = env!("REDACT_COMPONENT");
/// `examples/router`: picks the topic from a JSON field.
pub const ROUTER: &str = env!("ROUTER_COMPONENT");
/// `examples/windowed-count`: keys JSON events by a field, event time from another.
pub const WINDOWED_COUNT: &str = env!("WINDOWED_COUNT_COMPONENT");
/// `examples/sessionizer`: JSON page views as user → page at their event time.
pub const SESSIONIZER: &str = env!("SESSIONIZER_COMPONENT");
/// `examples/windowed-count-python`: `WINDOWED_COUNT` in Python (componentize-py).
pub const WINDOWED_COUNT_PY: &str = env!("WINDOWED_COUNT_PY_COMPONENT");
/// `examples/redact-python`: `REDACT` in Python (componentize-py).
pub const REDACT_PY: &str = env!("REDACT_PY_COMPONENT");
/// `examples/redact-js`: `REDACT` in JavaScript (componentize-js).
pub const REDACT_JS: &str = env!("REDACT_JS_COMPONENT");
/// `tests/guests/languages/edges-python`: the Python SDK's edge cases, by header `op`.
pub const EDGES_PY: &str = env!("EDGES_PY_COMPONENT");
/// `tests/guests/languages/edges-js`: `EDGES_PY` in JavaScript.
pub const EDGES_JS: &str = env!("EDGES_JS_COMPONENT");
/// `tests/guests/languages/keyed-count-python`: `KEYED_COUNT` in Python (keyed state).
pub const KEYED_COUNT_PY: &str = env!("KEYED_COUNT_PY_COMPONENT");
/// `tests/guests/languages/keyed-count-js`: `KEYED_COUNT` in JavaScript (keyed state).
pub const KEYED_COUNT_JS: &str = env!("KEYED_COUNT_JS_COMPONENT");
/// `tests/guests/fault-on-marker`: misbehaves when the value names a fault.
pub const FAULT_ON_MARKER: &str = env!("FAULT_ON_MARKER_COMPONENT");
/// `tests/guests/other-world`: a valid component of an unrelated world.
pub const OTHER_WORLD: &str = env!("OTHER_WORLD_COMPONENT");
/// `tests/guests/wrong-signature`: the world's export names with another `transform-batch` type.
pub const WRONG_SIGNATURE: &str = env!("WRONG_SIGNATURE_COMPONENT");
/// `tests/guests/missing-export`: exports `init` but no `transform-batch`.
pub const MISSING_EXPORT: &str = env!("MISSING_EXPORT_COMPONENT");
/// `tests/guests/future-version`: built against `sluice:transform@0.2.0`.
pub const FUTURE_VERSION: &str = env!("FUTURE_VERSION_COMPONENT");
/// `tests/guests/foreign-import`: imports `acme:secrets/vault`, which no host provides.
pub const FOREIGN_IMPORT: &str = env!("FOREIGN_IMPORT_COMPONENT");
/// `tests/guests/version-stamp-v1`: every record unchanged, plus header `transform-version` = `1`.
pub const VERSION_STAMP_V1: &str = env!("VERSION_STAMP_V1_COMPONENT");
/// `tests/guests/version-stamp-v2`: like `VERSION_STAMP_V1`, stamping `2`.
pub const VERSION_STAMP_V2: &str = env!("VERSION_STAMP_V2_COMPONENT");
/// Test guest: outputs per record by `seq`, CPU work keyed on the value, random/clock stamps.
pub const FAN_OUT_WORK: &str = env!("FAN_OUT_WORK_COMPONENT");
/// `tests/guests/bad-outputs` (raw `wit-bindgen`): bad outputs and huge texts on request.
pub const BAD_OUTPUTS: &str = env!("BAD_OUTPUTS_COMPONENT");
/// Hand-written 0.2.0 result buffers: malformed, or forwarding an input many times.
pub const FLAT_HOSTILE: &str = env!("FLAT_HOSTILE_COMPONENT");
/// The identity transform on 0.1.0 (raw `wit-bindgen`), beside the 0.2.0 `PASSTHROUGH`.
pub const IDENTITY_V0_1: &str = env!("IDENTITY_V0_1_COMPONENT");
/// `tests/guests/keyed-count` (Rust SDK): a running count per key in keyed state, as header
/// `count`; `grow = "<bytes>"` stores that much more state per record.
pub const KEYED_COUNT: &str = env!("KEYED_COUNT_COMPONENT");

/// A component path as a `PathBuf`.
pub fn component(path: &str) -> PathBuf {
    Path::new(path).to_owned()
}

/// The engine shared by the whole test binary (no compiled cache: tests that need one make
/// their own). Creating engines is cheap, but this keeps one epoch ticker thread.
pub fn engine() -> &'static TransformEngine {
    static ENGINE: OnceLock<TransformEngine> = OnceLock::new();
    ENGINE.get_or_init(|| TransformEngine::new(None).expect("cannot create the transform engine"))
}

/// A name no other test (in this or a concurrent run) uses: `prefix-<pid>-<time>-<counter>`.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{millis}-{n}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ() {
        assert_ne!(unique_name("t"), unique_name("t"));
        assert!(unique_name("topic").starts_with(&format!("topic-{}-", std::process::id())));
    }
}
