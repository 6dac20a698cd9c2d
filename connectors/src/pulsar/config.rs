//! `[pipeline.source]` with `kind = "pulsar"`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::oauth2::PulsarOAuth2Config;
use crate::config::{ExactlyOnceMode, Guaranteeing, Invalid, Secret, non_empty};
use crate::credentials::{check_pem_file, read_secret_file};

/// `kind = "pulsar"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PulsarSourceConfig {
    pub url: String,
    pub topic: String,
    pub subscription: String,
    /// Default (filled in at load): `exclusive` with `guarantee = "exactly-once"`, else
    /// `failover`.
    #[serde(default)]
    pub subscription_type: Option<SubscriptionType>,
    /// Where a new subscription starts. Earliest, so nothing published before the first start
    /// is skipped.
    #[serde(default)]
    pub initial_position: InitialPosition,
    /// TLS settings of a `pulsar+ssl://` URL.
    #[serde(default)]
    pub tls: Option<PulsarTlsConfig>,
    /// Token (JWT) or OAuth2 client credentials authentication.
    #[serde(default)]
    pub auth: Option<PulsarAuthConfig>,
}

/// `[pipeline.source.tls]`. (Mutual TLS is not offered: the `pulsar` crate presents no client
/// certificate.)
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PulsarTlsConfig {
    /// PEM file of the CA certificates the broker's certificate must chain up to (default:
    /// the system's).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Check that the broker's certificate names the host connected to. On by default.
    #[serde(default = "crate::config::default_true")]
    pub verify_hostname: bool,
}

/// `[pipeline.source.auth]`: a token, inline (`"${PULSAR_TOKEN}"` takes it from the
/// environment) or from a file read again at every (re)connection, so a rotated token is
/// picked up without a restart; or OAuth2 client credentials (`oauth2`), one of the three.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PulsarAuthConfig {
    #[serde(default)]
    pub token: Option<Secret>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    #[serde(default)]
    pub oauth2: Option<PulsarOAuth2Config>,
}

/// Pulsar subscription types.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionType {
    Exclusive,
    #[default]
    Failover,
    Shared,
    KeyShared,
}

impl SubscriptionType {
    /// The name as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionType::Exclusive => "exclusive",
            SubscriptionType::Failover => "failover",
            SubscriptionType::Shared => "shared",
            SubscriptionType::KeyShared => "key_shared",
        }
    }
}

/// Where a new Pulsar subscription starts reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitialPosition {
    #[default]
    Earliest,
    Latest,
}

impl PulsarSourceConfig {
    /// Fills in what depends on the pipeline's guarantee: the subscription type.
    pub fn fill_defaults(&mut self, exactly_once: bool) {
        self.subscription_type.get_or_insert(if exactly_once {
            SubscriptionType::Exclusive
        } else {
            SubscriptionType::Failover
        });
    }

    /// Resolves relative credential files against `base_dir`.
    pub fn resolve_credentials(&mut self, base_dir: &Path) {
        let tls_ca = self.tls.as_mut().and_then(|tls| tls.ca_file.as_mut());
        let token = self.auth.as_mut().and_then(|auth| auth.token_file.as_mut());
        for path in [tls_ca, token].into_iter().flatten() {
            if path.is_relative() {
                *path = base_dir.join(&*path);
            }
        }
        if let Some(oauth2) = self.auth.as_mut().and_then(|auth| auth.oauth2.as_mut()) {
            oauth2.resolve(base_dir);
        }
    }

    fn validate_credentials(&self) -> Result<(), Invalid> {
        if let Some(tls) = &self.tls {
            if !self.url.starts_with("pulsar+ssl://") {
                return Err((
                    "tls".into(),
                    format!("TLS settings need a pulsar+ssl:// url, not {:?}", self.url),
                ));
            }
            if let Some(ca) = &tls.ca_file {
                check_pem_file("tls.ca_file", ca)?;
            }
        }
        if let Some(auth) = &self.auth
            && let Some(oauth2) = &auth.oauth2
        {
            if auth.token.is_some() || auth.token_file.is_some() {
                return Err((
                    "auth.oauth2".into(),
                    "set either a token (token or token_file) or oauth2, not both".into(),
                ));
            }
            oauth2.validate()?;
        } else if let Some(auth) = &self.auth {
            match (&auth.token, &auth.token_file) {
                (Some(_), Some(_)) => {
                    return Err((
                        "auth.token_file".into(),
                        "set either token or token_file, not both".into(),
                    ));
                }
                (None, None) => {
                    return Err((
                        "auth.token".into(),
                        "missing: set token (e.g. \"${PULSAR_TOKEN}\"), token_file or oauth2"
                            .into(),
                    ));
                }
                (Some(token), None) if token.expose().trim().is_empty() => {
                    return Err(("auth.token".into(), "must not be empty".into()));
                }
                (Some(_), None) => {}
                (None, Some(path)) => {
                    read_secret_file("auth.token_file", path)?;
                }
            }
        }
        Ok(())
    }

    /// Checks the section; keys are relative to it. Exactly-once needs each partition read by
    /// one consumer at a time: with transactions an exclusive or a failover subscription (a
    /// standby that takes a partition over fences the writer of the instance that had it);
    /// read back, an exclusive one (a standby would take over without reading back).
    pub fn validate(&self, guaranteeing: Guaranteeing) -> Result<(), Invalid> {
        if !self.url.starts_with("pulsar://") && !self.url.starts_with("pulsar+ssl://") {
            return Err((
                "url".into(),
                format!("{:?} must start with pulsar:// or pulsar+ssl://", self.url),
            ));
        }
        non_empty("topic", &self.topic)?;
        non_empty("subscription", &self.subscription)?;
        self.validate_credentials()?;
        let subscription_type = self.subscription_type.unwrap_or_default();
        let Guaranteeing::ExactlyOnce(mode) = guaranteeing else {
            return Ok(());
        };
        let refused = match (mode, subscription_type) {
            (_, SubscriptionType::Exclusive)
            | (ExactlyOnceMode::Transactions, SubscriptionType::Failover) => None,
            (ExactlyOnceMode::ReadBack, SubscriptionType::Failover) => Some(
                "use \"exclusive\": with exactly_once.mode = \"read-back\" a failover standby \
                 would take over without reading back what the active consumer wrote (with \
                 transactions, the default mode, failover is safe)",
            ),
            (_, SubscriptionType::Shared | SubscriptionType::KeyShared) => Some(
                "use \"exclusive\" or, with transactions, \"failover\": shared and key_shared \
                 split a partition over consumers, so no single writer owns its progress",
            ),
        };
        if let Some(why) = refused {
            return Err((
                "subscription_type".into(),
                format!(
                    "{:?} does not go with guarantee = \"exactly-once\", which needs each source \
                     partition read by one consumer at a time: {why}",
                    subscription_type.as_str()
                ),
            ));
        }
        Ok(())
    }
}
