//! `[pipeline.source]` with `kind = "gcp_pubsub"`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::{Invalid, non_empty};

/// `kind = "gcp_pubsub"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PubSubSourceConfig {
    pub project: String,
    pub subscription: String,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub key_attribute: Option<String>,
    /// How messages are pulled.
    #[serde(default)]
    pub pull: PubSubPull,
    /// A service-account key file; without it, Application Default Credentials (unused with
    /// an emulator endpoint, which takes none).
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
}

/// How the Pub/Sub source pulls: repeated unary Pull calls, or one long-lived streaming pull.
/// Both lease, ack and nack the same way. Unary is the default: as fast on the emulator, and
/// the emulator redelivers what a killed unary puller held (README, "Pub/Sub pull modes").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PubSubPull {
    #[default]
    Unary,
    Streaming,
}

impl PubSubSourceConfig {
    /// Where Google's APIs are: the configured endpoint, else `PUBSUB_EMULATOR_HOST`
    /// (`host:port`), as a URL; `None` for Google's own.
    pub fn endpoint_url(&self) -> Option<String> {
        let endpoint = self.endpoint.clone().or_else(|| {
            std::env::var("PUBSUB_EMULATOR_HOST")
                .ok()
                .filter(|h| !h.is_empty())
        })?;
        Some(if endpoint.contains("://") {
            endpoint
        } else {
            format!("http://{endpoint}")
        })
    }

    /// Resolves a relative `credentials_file` against `base_dir`.
    pub fn resolve_credentials(&mut self, base_dir: &Path) {
        if let Some(path) = &mut self.credentials_file
            && path.is_relative()
        {
            *path = base_dir.join(&*path);
        }
    }

    /// Checks the section; keys are relative to it.
    pub fn validate(&self) -> Result<(), Invalid> {
        non_empty("project", &self.project)?;
        non_empty("subscription", &self.subscription)?;
        if let Some(path) = &self.credentials_file {
            super::credentials::service_account_key(path)
                .map_err(|message| ("credentials_file".to_owned(), message))?;
        }
        if let Some(endpoint) = &self.endpoint {
            non_empty("endpoint", endpoint)?;
            // Unary pull connects to an endpoint in plain text only (as the emulator
            // expects); on GCP it uses the default endpoint over TLS.
            if self.pull == PubSubPull::Unary && endpoint.starts_with("https://") {
                return Err((
                    "endpoint".into(),
                    format!(
                        "{endpoint:?}: pull = \"unary\" supports plain-text endpoints (http:// or host:port, e.g. the emulator) only"
                    ),
                ));
            }
        }
        Ok(())
    }
}
