//! Shared helpers of the integration tests: the guest components `build.rs` compiled, one
//! transform engine per test binary, unique names, and broker discovery.

pub mod brokers;
pub mod pubsub;

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sluice_engine::TransformEngine;

/// `examples/passthrough`: every record unchanged.
pub const PASSTHROUGH: &str = env!("PASSTHROUGH_COMPONENT");
/// `examples/json-filter`: keeps records whose JSON field equals a value.
pub const JSON_FILTER: &str = env!("JSON_FILTER_COMPONENT");
/// `examples/redact`: masks JSON fields.
pub const REDACT: &str = env!("REDACT_COMPONENT");
/// `examples/router`: picks the topic from a JSON field.
pub const ROUTER: &str = env!("ROUTER_COMPONENT");
/// `examples/redact-python`: `REDACT` in Python (componentize-py).
pub const REDACT_PY: &str = env!("REDACT_PY_COMPONENT");
/// `examples/redact-js`: `REDACT` in JavaScript (componentize-js).
pub const REDACT_JS: &str = env!("REDACT_JS_COMPONENT");
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

/// The broker address from env `var` (else `default_addr`) if something listens there.
///
/// When nothing does: with env `CI` set this panics (CI must run every test), otherwise it
/// prints `skipping: <reason>` and returns `None`, so the caller can return early.
pub fn broker_env_or_skip(var: &str, default_addr: &str) -> Option<String> {
    let address = std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default_addr.to_owned());
    match reachable(&address) {
        Ok(()) => Some(address),
        Err(reason) => {
            let reason = format!(
                "{var}={address} is not reachable ({reason}); start the brokers with scripts/ (see README.md)"
            );
            if std::env::var_os("CI").is_some() {
                panic!("CI is set, so tests must not skip: {reason}");
            }
            eprintln!("skipping: {reason}");
            None
        }
    }
}

/// Connects by TCP (1 s timeout) to `host:port`, also accepting `scheme://host:port[/…]` and
/// comma-separated lists (the first entry is tried).
fn reachable(address: &str) -> Result<(), String> {
    let first = address.split(',').next().unwrap_or_default().trim();
    let without_scheme = first.split_once("://").map_or(first, |(_, rest)| rest);
    let host_port = without_scheme.split('/').next().unwrap_or_default();
    let addresses: Vec<SocketAddr> = host_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host_port:?}: {e}"))?
        .collect();
    let mut last_error = format!("{host_port:?} resolves to no address");
    for socket in addresses {
        match TcpStream::connect_timeout(&socket, Duration::from_secs(1)) {
            Ok(_) => return Ok(()),
            Err(e) => last_error = format!("connect to {socket}: {e}"),
        }
    }
    Err(last_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ() {
        assert_ne!(unique_name("t"), unique_name("t"));
        assert!(unique_name("topic").starts_with(&format!("topic-{}-", std::process::id())));
    }

    #[test]
    fn reachability_understands_urls_and_lists() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(reachable(&format!("127.0.0.1:{port}")), Ok(()));
        assert_eq!(reachable(&format!("pulsar://127.0.0.1:{port}")), Ok(()));
        assert_eq!(
            reachable(&format!("http://127.0.0.1:{port}/x,127.0.0.1:1")),
            Ok(())
        );
        drop(listener);
        assert!(reachable(&format!("127.0.0.1:{port}")).is_err());
        assert!(reachable("no-such-host.invalid:1").is_err());
    }
}
