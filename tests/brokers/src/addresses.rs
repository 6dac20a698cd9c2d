//! Where the brokers are, and what a test does when one is not there: skip with a reason
//! outside CI, fail in CI (`CI` set), so CI never passes by skipping.
//!
//! Addresses come from the environment `scripts/env.sh` sets (`scripts/brokers.sh env` prints
//! it), with the loopback defaults of `scripts/brokers.sh`.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};

use crate::timeouts;

/// Apache Kafka's bootstrap servers.
pub const KAFKA: (&str, &str) = ("SLUICE_KAFKA_BROKERS", "127.0.0.1:9092");
/// Apache Kafka's SASL_SSL listener (SCRAM users; scripts/brokers/credentials.sh).
pub const KAFKA_SECURE: (&str, &str) = ("SLUICE_KAFKA_SECURE_BROKERS", "127.0.0.1:9094");
/// Apache Pulsar's TLS port (token authentication).
pub const PULSAR_TLS: (&str, &str) = ("SLUICE_PULSAR_TLS_URL", "pulsar+ssl://127.0.0.1:6651");
/// The local OAuth2 issuer (`scripts/brokers.sh`'s `oauth2`): Pulsar's OAuth2 client credentials.
pub const OAUTH2_ISSUER: (&str, &str) = ("SLUICE_OAUTH2_ISSUER_URL", "http://127.0.0.1:8090/");
/// Apache Pulsar's binary protocol.
pub const PULSAR: (&str, &str) = ("SLUICE_PULSAR_URL", "pulsar://127.0.0.1:6650");
/// Apache Pulsar's admin API (HTTP).
pub const PULSAR_ADMIN: (&str, &str) = ("SLUICE_PULSAR_ADMIN_URL", "http://127.0.0.1:8080");
/// Google's Pub/Sub emulator (`host:port`, as `PUBSUB_EMULATOR_HOST` is for Google's clients).
pub const PUBSUB: (&str, &str) = ("PUBSUB_EMULATOR_HOST", "127.0.0.1:8085");
/// Apicurio Registry's Confluent-compatible API (`scripts/brokers.sh`'s `registry`).
pub const REGISTRY: (&str, &str) = (
    "SLUICE_REGISTRY_URL",
    "http://127.0.0.1:8081/apis/ccompat/v7",
);

/// The address of `broker` (one of the constants above) if something listens there.
///
/// When nothing does: with env `CI` set this panics (CI must run every test), otherwise it
/// prints `skipping: <reason>` and returns `None`, so the caller can return early.
pub fn or_skip((var, default_addr): (&str, &str)) -> Option<String> {
    broker_env_or_skip(var, default_addr)
}

/// The broker address from env `var` (else `default_addr`) if something listens there; see
/// [`or_skip`].
pub fn broker_env_or_skip(var: &str, default_addr: &str) -> Option<String> {
    let address = std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default_addr.to_owned());
    match reachable(&address) {
        Ok(()) => Some(address),
        Err(reason) => {
            let reason = format!(
                "{var}={address} is not reachable ({reason}); start the brokers with \
                 scripts/brokers.sh up (see README.md, \"Local brokers\")"
            );
            if std::env::var_os("CI").is_some() {
                panic!("CI is set, so tests must not skip: {reason}");
            }
            eprintln!("skipping: {reason}");
            None
        }
    }
}

/// Connects by TCP to `host:port`, also accepting `scheme://host:port[/…]` and
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
        match TcpStream::connect_timeout(&socket, timeouts::REACHABLE) {
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
