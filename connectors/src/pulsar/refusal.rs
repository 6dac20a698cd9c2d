//! Why Pulsar would not let the source in. The `pulsar` crate reports a refused TLS handshake
//! or token only as "fatal error when connecting" (the cause goes to its log), so a fatal
//! connect error is diagnosed here: a TLS handshake of our own with the same CA and hostname
//! check names a certificate problem; past that, the token is what was refused, and its
//! `exp` claim tells an expired one from a bad one. The token itself never appears.

use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;

use super::config::PulsarSourceConfig;
use crate::credentials::{read_credential_file, read_secret_file};
use crate::source::SourceError;

/// How long the diagnosing handshake may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether `error` is the crate's fatal (not retryable) connect error: TLS or authentication
/// refused, as opposed to a broker that is down or restarting.
pub(super) fn is_fatal_connect(error: &pulsar::Error) -> bool {
    error.to_string().contains("fatal error when connecting")
}

/// What refused the connection of `config`'s source, as [`SourceError::Refused`];
/// `oauth2` is the issuer's refusal of the OAuth2 client credentials, if any.
pub(super) fn diagnose(config: &PulsarSourceConfig, oauth2: Option<String>) -> SourceError {
    let connection = format!("Pulsar at {}", config.url);
    let cause = tls_refusal(config)
        .or(oauth2)
        .or_else(|| token_refusal(config))
        .unwrap_or_else(|| {
            "the broker closed the connection during the handshake (see its log)".into()
        });
    SourceError::Refused { connection, cause }
}

/// The TLS handshake's failure, if it fails.
fn tls_refusal(config: &PulsarSourceConfig) -> Option<String> {
    let address = config.url.strip_prefix("pulsar+ssl://")?;
    let address = address.split('/').next().unwrap_or(address);
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    let mut builder = native_tls::TlsConnector::builder();
    if let Some(tls) = &config.tls {
        if let Some(ca) = &tls.ca_file {
            let pem = read_credential_file(ca).ok()?;
            let certificate = native_tls::Certificate::from_pem(&pem).ok()?;
            builder.disable_built_in_roots(true);
            builder.add_root_certificate(certificate);
        }
        builder.danger_accept_invalid_hostnames(!tls.verify_hostname);
    }
    let connector = builder.build().ok()?;
    let socket = address
        .parse()
        .ok()
        .and_then(|addr| TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).ok())
        .or_else(|| TcpStream::connect(address).ok())?;
    socket.set_read_timeout(Some(PROBE_TIMEOUT)).ok()?;
    socket.set_write_timeout(Some(PROBE_TIMEOUT)).ok()?;
    match connector.connect(host, socket) {
        Ok(_) => None,
        Err(native_tls::HandshakeError::Failure(error)) => {
            Some(format!("TLS handshake failed: {error}"))
        }
        Err(native_tls::HandshakeError::WouldBlock(_)) => None,
    }
}

/// Why the token was refused: expired (by its `exp` claim), else not accepted.
fn token_refusal(config: &PulsarSourceConfig) -> Option<String> {
    let auth = config.auth.as_ref()?;
    if let Some(oauth2) = &auth.oauth2 {
        return Some(format!(
            "authentication failed: the broker did not accept the access token the OAuth2 \
             issuer {} gave (is the broker's token key the issuer's?)",
            oauth2.issuer_url
        ));
    }
    let token = match (&auth.token, &auth.token_file) {
        (Some(token), _) => token.clone(),
        (None, Some(path)) => match read_secret_file("auth.token_file", path) {
            Ok(token) => token,
            Err((_, message)) => return Some(format!("authentication token: {message}")),
        },
        (None, None) => return None,
    };
    let origin = match &auth.token_file {
        Some(path) if auth.token.is_none() => format!(" (from {})", path.display()),
        _ => String::new(),
    };
    if let Some(exp) = expiry(token.expose()) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if exp <= now {
            return Some(format!(
                "authentication failed: the token{origin} expired {} s ago",
                now - exp
            ));
        }
    }
    Some(format!(
        "authentication failed: the broker did not accept the token{origin} (wrong signing key, unknown issuer or malformed)"
    ))
}

/// The `exp` claim of a JWT (seconds since the epoch), if it has one.
fn expiry(token: &str) -> Option<u64> {
    let payload = token.split('.').nth(1)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&json).ok()?;
    claims.get("exp")?.as_u64()
}
