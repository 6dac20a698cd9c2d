//! The audit log of deploys and rollbacks: who (the bearer token's identity, or `anonymous`
//! when the API has no token, and the peer address), what (the call, the pipeline and
//! transform, the component digest, the answer's status) and when (milliseconds since the
//! epoch). One JSON line per call, accepted or refused, appended to `<state_dir>/audit.jsonl`
//! and logged at info under the target `sluice::audit`.
//!
//! A token is identified by a fingerprint (the first 12 hex digits of its SHA-256), never by
//! itself: the log shows which token was used without giving it away.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::ConnectInfo;
use axum::http::Extensions;
use serde_json::json;
use sha2::{Digest, Sha256};

/// Where the audit lines go.
pub(crate) struct AuditLog {
    file: Option<PathBuf>,
    /// One line at a time: concurrent calls must not interleave their lines.
    write: Mutex<()>,
}

/// The caller of one mutating call.
pub(crate) struct Caller {
    pub(crate) identity: String,
    pub(crate) peer: Option<SocketAddr>,
}

/// One audited call.
pub(crate) struct AuditEntry<'a> {
    pub(crate) action: &'static str,
    pub(crate) pipeline: &'a str,
    pub(crate) transform: &'a str,
    /// The component digest deployed or rolled back to, when known.
    pub(crate) digest: Option<&'a str>,
    pub(crate) status: u16,
}

impl AuditLog {
    /// Appends to `<state_dir>/audit.jsonl` (the log only without a state dir).
    pub(crate) fn new(state_dir: Option<PathBuf>) -> Self {
        Self {
            file: state_dir.map(|dir| dir.join("audit.jsonl")),
            write: Mutex::new(()),
        }
    }

    pub(crate) fn record(&self, caller: &Caller, entry: &AuditEntry<'_>) {
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let peer = caller.peer.map(|p| p.to_string());
        tracing::info!(
            target: "sluice::audit",
            action = entry.action,
            who = %caller.identity,
            peer = peer.as_deref().unwrap_or("unknown"),
            pipeline = entry.pipeline,
            transform = entry.transform,
            digest = entry.digest.unwrap_or("-"),
            status = entry.status,
            at_ms,
            "audit"
        );
        let Some(file) = &self.file else {
            return;
        };
        let line = json!({
            "at_ms": at_ms,
            "action": entry.action,
            "who": caller.identity,
            "peer": peer,
            "pipeline": entry.pipeline,
            "transform": entry.transform,
            "digest": entry.digest,
            "status": entry.status,
        });
        let _one_line_at_a_time = self.write.lock().expect("audit lock poisoned");
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
            .and_then(|mut f| writeln!(f, "{line}"));
        if let Err(error) = written {
            tracing::error!(path = %file.display(), %error, "cannot write the audit log");
        }
    }
}

/// The caller of a request: `token:<fingerprint>` when it presented the API's token,
/// `unauthenticated` when the API has a token and the request did not present it, `anonymous`
/// when the API has none; and the peer address when the server knows it.
pub(crate) fn caller(token: Option<&str>, presented: bool, extensions: &Extensions) -> Caller {
    let identity = match token {
        Some(token) if presented => format!(
            "token:{}",
            &hex::encode(Sha256::digest(token.as_bytes()))[..12]
        ),
        Some(_) => "unauthenticated".to_owned(),
        None => "anonymous".to_owned(),
    };
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| *peer);
    Caller { identity, peer }
}
