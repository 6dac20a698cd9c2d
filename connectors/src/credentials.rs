//! Files that hold credentials (certificates, keys, passwords, tokens), checked at load so a
//! missing or malformed one is an error naming the key and the file, not a refused connection
//! later. A file's content never appears in an error.

use std::path::Path;

use crate::config::{Invalid, Secret};

/// Reads a secret (a password, a token) from `path`, trimming surrounding whitespace (files
/// usually end with a newline the secret does not contain).
pub fn read_secret_file(key: &str, path: &Path) -> Result<Secret, Invalid> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        (
            key.into(),
            format!("cannot read {}: {error}", path.display()),
        )
    })?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err((key.into(), format!("{} is empty", path.display())));
    }
    Ok(Secret::new(secret))
}

/// Checks that `path` is a readable PEM file (certificates or a key).
pub fn check_pem_file(key: &str, path: &Path) -> Result<(), Invalid> {
    let bytes = std::fs::read(path).map_err(|error| {
        (
            key.into(),
            format!("cannot read {}: {error}", path.display()),
        )
    })?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err((
            key.into(),
            format!("{} is not a PEM file (no -----BEGIN line)", path.display()),
        ));
    }
    Ok(())
}
