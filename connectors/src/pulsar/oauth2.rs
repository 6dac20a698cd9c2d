//! `[pipeline.source.auth.oauth2]`: OAuth2 client credentials, as Pulsar's own clients do
//! them: the `pulsar` crate (feature `auth-oauth2`) finds the token endpoint in the issuer's
//! OpenID discovery document, trades the client id and secret of a credentials file for an
//! access token and presents it as a token, fetching a new one before it expires.
//!
//! The crate's HTTP client (reqwest 0.12 with rustls) trusts only the Mozilla roots it is
//! built with, so an `https` issuer needs a publicly trusted certificate.

use std::path::{Component, Path, PathBuf};

use pulsar::authentication::Authentication;
use pulsar::authentication::oauth2::{OAuth2Authentication, OAuth2Params};
use serde::Deserialize;

use crate::config::Invalid;
use crate::credentials::read_credential_setting;

/// `[pipeline.source.auth.oauth2]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PulsarOAuth2Config {
    /// The identity provider: `<issuer_url>/.well-known/openid-configuration` names its token
    /// endpoint.
    pub issuer_url: String,
    /// JSON with `client_id` and `client_secret` (the key file identity providers hand out
    /// for a service account), read at load and by the client when it authenticates.
    pub credentials_file: PathBuf,
    /// Sent as the token request's `audience` (what the token is for; e.g. the Pulsar
    /// cluster's URN with StreamNative Cloud).
    #[serde(default)]
    pub audience: Option<String>,
    /// Sent as the token request's `scope`.
    #[serde(default)]
    pub scope: Option<String>,
}

/// What of the credentials file is checked at load (the secret is only checked for presence).
#[derive(Deserialize)]
struct ClientCredentials {
    client_id: String,
    client_secret: String,
}

impl PulsarOAuth2Config {
    /// Makes a relative `credentials_file` relative to the config file's directory, without
    /// `.` and `..` components: the crate gets it as a `file://` URL, which drops them, so the
    /// file it opens is this lexical form (symlinks stay unresolved: a rotated Kubernetes
    /// secret is read through its link at every token request).
    pub(super) fn resolve(&mut self, base_dir: &Path) {
        let joined = base_dir.join(&self.credentials_file);
        self.credentials_file =
            joined
                .components()
                .fold(PathBuf::new(), |mut lexical, component| {
                    match component {
                        Component::ParentDir => {
                            lexical.pop();
                        }
                        Component::CurDir => {}
                        other => lexical.push(other),
                    }
                    lexical
                });
    }

    /// Checks the issuer URL and the credentials file; keys are relative to the source.
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        let issuer = url::Url::parse(&self.issuer_url).map_err(|error| {
            (
                "auth.oauth2.issuer_url".to_owned(),
                format!("{:?} is not a URL: {error}", self.issuer_url),
            )
        })?;
        if !matches!(issuer.scheme(), "http" | "https") {
            return Err((
                "auth.oauth2.issuer_url".into(),
                format!("{:?} must be an http(s) URL", self.issuer_url),
            ));
        }
        let key = "auth.oauth2.credentials_file";
        let path = &self.credentials_file;
        let shown = path.display();
        let bytes = read_credential_setting(key, path)?;
        // serde_json's message names a line and column, never the text there.
        let credentials: ClientCredentials = serde_json::from_slice(&bytes).map_err(|error| {
            (
                key.to_owned(),
                format!(
                    "{shown} is not a JSON object with string fields client_id and \
                     client_secret: {error}"
                ),
            )
        })?;
        for (field, value) in [
            ("client_id", &credentials.client_id),
            ("client_secret", &credentials.client_secret),
        ] {
            if value.trim().is_empty() {
                return Err((key.into(), format!("{shown}: {field} is empty")));
            }
        }
        // The crate takes a `file://` URL and opens its path undecoded: a path that a URL
        // would percent-encode would name another file.
        match url::Url::parse(&self.credentials_url()) {
            Ok(url) if Path::new(url.path()) == path => Ok(()),
            _ => Err((
                key.into(),
                format!(
                    "{shown}: the path must be absolute and hold no character a URL encodes \
                     (space, #, ?, non-ASCII)"
                ),
            )),
        }
    }

    /// The credentials file as the crate wants it. A `file:` URL, not the content as a
    /// `data:` URL: the crate logs its parameters, URL included.
    fn credentials_url(&self) -> String {
        format!("file://{}", self.credentials_file.display())
    }

    /// The crate's client credentials authentication for these settings.
    pub(super) fn authentication(&self) -> Box<dyn Authentication> {
        OAuth2Authentication::client_credentials(OAuth2Params {
            issuer_url: self.issuer_url.clone(),
            credentials_url: self.credentials_url(),
            audience: self.audience.clone(),
            scope: self.scope.clone(),
        })
    }

    /// Why the broker connection was refused, if the OAuth2 side says why: a fresh token
    /// requested the way the client does it (discovery, then the token endpoint). `None`
    /// when a token is issued (the broker refused it, or something else failed).
    pub(super) async fn refusal(&self) -> Option<String> {
        let mut authentication = self.authentication();
        let failure = match authentication.initialize().await {
            Ok(()) => authentication.auth_data().await.err()?,
            Err(error) => error,
        };
        Some(format!(
            "OAuth2 client credentials of {} refused by the issuer {}: {failure}",
            self.credentials_file.display(),
            self.issuer_url
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, credentials: &str) -> PulsarOAuth2Config {
        let file = dir.join("oauth2.json");
        std::fs::write(&file, credentials).unwrap();
        PulsarOAuth2Config {
            issuer_url: "http://127.0.0.1:1".into(),
            credentials_file: file,
            audience: None,
            scope: None,
        }
    }

    #[test]
    fn a_credentials_file_without_a_secret_is_an_error_that_shows_none_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let valid = config(
            dir.path(),
            r#"{"client_id":"sluice","client_secret":"s3cr3t-value"}"#,
        );
        valid.validate().unwrap();

        let missing = config(dir.path(), r#"{"client_id":"s3cr3t-looking-id"}"#);
        let (key, message) = missing.validate().unwrap_err();
        assert_eq!(key, "auth.oauth2.credentials_file");
        assert!(message.contains("oauth2.json"), "{message}");
        assert!(!message.contains("s3cr3t"), "{message}");

        let not_json = config(dir.path(), "client_secret=s3cr3t-value\n");
        let (_, message) = not_json.validate().unwrap_err();
        assert!(!message.contains("s3cr3t"), "{message}");
    }

    #[test]
    fn a_credentials_path_through_parent_directories_is_resolved_before_it_becomes_a_url() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tests")).unwrap();
        let mut config = config(dir.path(), r#"{"client_id":"a","client_secret":"b"}"#);
        config.credentials_file = "tests/../oauth2.json".into();
        config.resolve(dir.path());
        assert_eq!(config.credentials_file, dir.path().join("oauth2.json"));
        config.validate().unwrap();
    }

    #[test]
    fn an_issuer_that_is_not_an_http_url_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path(), r#"{"client_id":"a","client_secret":"b"}"#);
        config.issuer_url = "ftp://issuer".into();
        assert_eq!(config.validate().unwrap_err().0, "auth.oauth2.issuer_url");
    }
}
