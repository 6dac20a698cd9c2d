//! `[admin.tls]`: the admin API over https. The certificate and key are read and matched at
//! load, so a missing file, a file without a certificate or key, or a key that is not the
//! certificate's is an error naming the key and the file (never the file's content).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use sluice_connectors::config::Invalid;
use sluice_connectors::credentials::read_credential_setting;

/// `[admin.tls]`: serve the admin API over TLS with this certificate (chain) and key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminTlsConfig {
    /// PEM: the server certificate first, then any intermediates.
    pub cert_file: PathBuf,
    /// PEM: its unencrypted private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

impl AdminTlsConfig {
    /// Makes relative paths relative to the config file's directory.
    pub(crate) fn resolve(&mut self, base_dir: &Path) {
        for path in [&mut self.cert_file, &mut self.key_file] {
            if path.is_relative() {
                *path = base_dir.join(&*path);
            }
        }
    }

    /// Reads both files and builds the TLS server side; keys of errors are relative to
    /// `[admin]`.
    pub(crate) fn server_config(&self) -> Result<Arc<ServerConfig>, Invalid> {
        let cert_key = "admin.tls.cert_file";
        let key_key = "admin.tls.key_file";
        let cert_shown = self.cert_file.display();
        let key_shown = self.key_file.display();
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(&read_credential_setting(cert_key, &self.cert_file)?)
                .collect::<Result<_, _>>()
                .map_err(|error| {
                    (
                        cert_key.to_owned(),
                        format!("{cert_shown} is not a PEM certificate file: {error}"),
                    )
                })?;
        if certs.is_empty() {
            return Err((
                cert_key.to_owned(),
                format!("{cert_shown} holds no certificate (no BEGIN CERTIFICATE block)"),
            ));
        }
        // The key's parse error names the PEM section kind, never its bytes.
        let key = PrivateKeyDer::from_pem_slice(&read_credential_setting(key_key, &self.key_file)?)
            .map_err(|error| {
                (
                    key_key.to_owned(),
                    format!("{key_shown} holds no usable unencrypted private key: {error}"),
                )
            })?;
        // An explicit provider: the process-wide default is ambiguous when several crates
        // enable different rustls providers.
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| (cert_key.to_owned(), format!("TLS setup failed: {error}")))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|error| {
                (
                    key_key.to_owned(),
                    format!(
                        "{key_shown} does not go with the certificate of {cert_shown}: {error}"
                    ),
                )
            })?;
        Ok(Arc::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(cert: &Path, key: &Path) -> AdminTlsConfig {
        AdminTlsConfig {
            cert_file: cert.to_owned(),
            key_file: key.to_owned(),
        }
    }

    #[test]
    fn a_missing_or_empty_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.crt");
        let (key, message) = config(&missing, &missing).server_config().unwrap_err();
        assert_eq!(key, "admin.tls.cert_file");
        assert!(message.contains("missing.crt"), "{message}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not pem\n").unwrap();
        let (key, message) = config(&empty, &empty).server_config().unwrap_err();
        assert_eq!(key, "admin.tls.cert_file");
        assert!(message.contains("holds no certificate"), "{message}");
    }

    #[test]
    fn a_key_file_without_a_key_is_an_error_that_shows_none_of_it() {
        let dir = tempfile::tempdir().unwrap();
        // A syntactically valid certificate block is enough to reach the key check.
        let cert = dir.path().join("server.crt");
        std::fs::write(
            &cert,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let key = dir.path().join("server.key");
        std::fs::write(&key, "secret-looking text, not a key\n").unwrap();
        let (name, message) = config(&cert, &key).server_config().unwrap_err();
        assert_eq!(name, "admin.tls.key_file");
        assert!(message.contains("server.key"), "{message}");
        assert!(!message.contains("secret-looking"), "{message}");
    }
}
