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
