//! `[pipeline.sink.tls]` and `[pipeline.sink.sasl]`: how the sink proves who it is to Kafka
//! and checks who Kafka is, as first-class settings rather than free-form librdkafka
//! properties, so mistakes (a missing file, a certificate without its key, an unknown
//! mechanism) are refused at load with the key that holds them.

use std::path::{Path, PathBuf};

use rdkafka::ClientConfig;
use serde::Deserialize;

use crate::config::{Invalid, Secret, non_empty};
use crate::credentials::{check_pem_file, read_secret_file};

/// `[pipeline.sink.tls]`: TLS to the brokers. Present (even empty) means TLS, verified
/// against the system's CAs unless `ca_file` names others.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaTlsConfig {
    /// PEM file of the CA certificates the brokers' certificates must chain up to.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (with `key_file`).
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file` (unencrypted PKCS#8 or PKCS#1).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Check that the broker's certificate names the host connected to. On by default; off
    /// only for brokers whose certificates name something else.
    #[serde(default = "crate::config::default_true")]
    pub verify_hostname: bool,
}

/// `[pipeline.sink.sasl]`: who the sink is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSaslConfig {
    pub mechanism: SaslMechanism,
    pub username: String,
    /// The password inline (`"${KAFKA_PASSWORD}"` takes it from the environment) …
    #[serde(default)]
    pub password: Option<Secret>,
    /// … or from a file (its content, surrounding whitespace trimmed), read at load.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

/// SASL mechanisms librdkafka as built here speaks (GSSAPI would need Cyrus SASL; OAUTHBEARER
/// with OIDC would need libcurl, neither of which the bundled build links).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// librdkafka properties the `tls` and `sasl` sections own: setting them in `properties` too
/// would leave two answers to one question.
const OWNED_PREFIXES: [&str; 3] = ["security.protocol", "ssl.", "sasl."];

/// Makes relative file paths relative to the config file's directory and reads
/// `password_file` into `password`: the password is read once, at load.
pub(super) fn resolve(
    tls: Option<&mut KafkaTlsConfig>,
    sasl: Option<&mut KafkaSaslConfig>,
    base_dir: &Path,
) -> Result<(), Invalid> {
    if let Some(tls) = tls {
        for path in [&mut tls.ca_file, &mut tls.cert_file, &mut tls.key_file]
            .into_iter()
            .flatten()
        {
            if path.is_relative() {
                *path = base_dir.join(&*path);
            }
        }
    }
    if let Some(sasl) = sasl {
        match (&sasl.password, &mut sasl.password_file) {
            (Some(_), Some(_)) => {
                return Err((
                    "sasl.password_file".into(),
                    "set either password or password_file, not both".into(),
                ));
            }
            (None, None) => {
                return Err((
                    "sasl.password".into(),
                    "missing: set password (e.g. \"${KAFKA_PASSWORD}\") or password_file".into(),
                ));
            }
            (None, Some(path)) => {
                if path.is_relative() {
                    *path = base_dir.join(&*path);
                }
                sasl.password = Some(read_secret_file("sasl.password_file", path)?);
            }
            (Some(_), None) => {}
        }
    }
    Ok(())
}

/// Checks the sections (after [`resolve`]); keys are relative to the sink section.
pub(super) fn validate(
    tls: Option<&KafkaTlsConfig>,
    sasl: Option<&KafkaSaslConfig>,
    properties: &std::collections::BTreeMap<String, Secret>,
) -> Result<(), Invalid> {
    if tls.is_some() || sasl.is_some() {
        for key in properties.keys() {
            if OWNED_PREFIXES.iter().any(|prefix| key.starts_with(prefix)) {
                return Err((
                    format!("properties.{key:?}"),
                    "must not be set together with the tls or sasl section, which set it".into(),
                ));
            }
        }
    }
    if let Some(tls) = tls {
        if let Some(ca) = &tls.ca_file {
            check_pem_file("tls.ca_file", ca)?;
        }
        match (&tls.cert_file, &tls.key_file) {
            (Some(cert), Some(key)) => {
                check_pem_file("tls.cert_file", cert)?;
                check_pem_file("tls.key_file", key)?;
            }
            (Some(_), None) => {
                return Err((
                    "tls.key_file".into(),
                    "missing: a client certificate (cert_file) needs its private key".into(),
                ));
            }
            (None, Some(_)) => {
                return Err((
                    "tls.cert_file".into(),
                    "missing: a private key (key_file) needs its client certificate".into(),
                ));
            }
            (None, None) => {}
        }
    }
    if let Some(sasl) = sasl {
        non_empty("sasl.username", &sasl.username)?;
        match &sasl.password {
            Some(password) if !password.expose().is_empty() => {}
            _ => return Err(("sasl.password".into(), "must not be empty".into())),
        }
    }
    Ok(())
}

/// Sets the connection's security on a librdkafka config (producer or consumer alike).
pub(super) fn apply(
    tls: Option<&KafkaTlsConfig>,
    sasl: Option<&KafkaSaslConfig>,
    client: &mut ClientConfig,
) {
    let protocol = match (tls.is_some(), sasl.is_some()) {
        (false, false) => return,
        (true, false) => "ssl",
        (false, true) => "sasl_plaintext",
        (true, true) => "sasl_ssl",
    };
    client.set("security.protocol", protocol);
    if let Some(tls) = tls {
        let path = |p: &PathBuf| p.to_string_lossy().into_owned();
        if let Some(ca) = &tls.ca_file {
            client.set("ssl.ca.location", path(ca));
        }
        if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
            client.set("ssl.certificate.location", path(cert));
            client.set("ssl.key.location", path(key));
        }
        client.set(
            "ssl.endpoint.identification.algorithm",
            if tls.verify_hostname { "https" } else { "none" },
        );
    }
    if let Some(sasl) = sasl {
        client.set("sasl.mechanisms", sasl.mechanism.as_str());
        client.set("sasl.username", &sasl.username);
        if let Some(password) = &sasl.password {
            client.set("sasl.password", password.expose());
        }
    }
}
