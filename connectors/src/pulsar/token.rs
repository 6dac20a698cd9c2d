//! Token authentication for the `pulsar` crate whose token may come from a file that is read
//! again each time the client authenticates (every connection and reconnection), so a token
//! rotated on disk (a Kubernetes secret, a sidecar's refresh) is picked up without a restart.

use std::path::PathBuf;

use pulsar::authentication::Authentication;
use pulsar::error::AuthenticationError;

use crate::config::Secret;
use crate::credentials::read_secret_file;

/// Where the token comes from.
pub(super) enum TokenAuthentication {
    Inline(Secret),
    File(PathBuf),
}

#[async_trait::async_trait]
impl Authentication for TokenAuthentication {
    fn auth_method_name(&self) -> String {
        "token".into()
    }

    async fn initialize(&mut self) -> Result<(), AuthenticationError> {
        Ok(())
    }

    async fn auth_data(&mut self) -> Result<Vec<u8>, AuthenticationError> {
        match self {
            TokenAuthentication::Inline(token) => Ok(token.expose().as_bytes().to_vec()),
            TokenAuthentication::File(path) => read_secret_file("auth.token_file", path)
                .map(|token| token.expose().as_bytes().to_vec())
                // The message names the file and the I/O cause; never the content.
                .map_err(|(_, message)| AuthenticationError::Custom(message)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rotated token file is what the next (re)connection presents, without a restart.
    #[tokio::test]
    async fn a_token_file_is_read_again_at_each_authentication() {
        let dir = std::env::temp_dir().join(format!("sluice-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "first.token.value\n").unwrap();
        let mut auth = TokenAuthentication::File(file.clone());
        assert_eq!(auth.auth_data().await.unwrap(), b"first.token.value");
        std::fs::write(&file, "rotated.token.value\n").unwrap();
        assert_eq!(auth.auth_data().await.unwrap(), b"rotated.token.value");
        std::fs::remove_file(&file).unwrap();
        let error = auth.auth_data().await.unwrap_err().to_string();
        assert!(error.contains("cannot read"), "{error}");
        assert!(!error.contains("rotated"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
