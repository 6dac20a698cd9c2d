//! Files that hold credentials (certificates, keys, passwords, tokens), checked at load so a
//! missing or malformed one is an error naming the key and the file, not a refused connection
//! later. A file's content never appears in an error.

use std::io::Read;
use std::path::Path;

use crate::config::{Invalid, Secret};

/// The most a credential file may hold. Certificate chains and keys are a few KiB; the bound
/// keeps a config naming `/dev/zero` or a huge file from exhausting memory at load.
pub const MAX_CREDENTIAL_FILE_BYTES: u64 = 1024 * 1024;

/// Reads a credential file whole, refusing one larger than [`MAX_CREDENTIAL_FILE_BYTES`]; the
/// error names the file and says what is wrong.
pub fn read_credential_file(path: &Path) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let file =
        std::fs::File::open(path).map_err(|error| format!("cannot read {shown}: {error}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_CREDENTIAL_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| format!("cannot read {shown}: {error}"))?;
    if bytes.len() as u64 > MAX_CREDENTIAL_FILE_BYTES {
        return Err(format!(
            "{shown} is larger than {MAX_CREDENTIAL_FILE_BYTES} bytes: not a credential file"
        ));
    }
    Ok(bytes)
}

/// [`read_credential_file`] for the config setting `key`, its error keyed by it.
pub fn read_credential_setting(key: &str, path: &Path) -> Result<Vec<u8>, Invalid> {
    read_credential_file(path).map_err(|message| (key.to_owned(), message))
}

/// Reads a secret (a password, a token) from `path`, trimming surrounding whitespace (files
/// usually end with a newline the secret does not contain).
pub fn read_secret_file(key: &str, path: &Path) -> Result<Secret, Invalid> {
    let bytes = read_credential_setting(key, path)?;
    let text = String::from_utf8(bytes).map_err(|_| {
        (
            key.to_owned(),
            format!("{} is not UTF-8 text", path.display()),
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
    let bytes = read_credential_setting(key, path)?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err((
            key.into(),
            format!("{} is not a PEM file (no -----BEGIN line)", path.display()),
        ));
    }
    Ok(())
}
