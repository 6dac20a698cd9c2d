//! `credentials_file`: a service-account key file, checked at load (a missing file, a file
//! that is not JSON or not a service-account key is an error naming the file, never showing its
//! content) and turned into the credentials Google's clients take. Without it the source uses
//! Application Default Credentials as Google's clients do (`GOOGLE_APPLICATION_CREDENTIALS`,
//! gcloud's user credentials, the metadata server); with an emulator endpoint, none.

use std::path::Path;

use google_cloud_auth::credentials::service_account;
use serde_json::Value;

use crate::credentials::read_credential_file;

/// The service-account key in `path`, checked; the error says what is wrong with the file.
pub(crate) fn service_account_key(path: &Path) -> Result<Value, String> {
    let shown = path.display();
    let bytes = read_credential_file(path)?;
    let key: Value = serde_json::from_slice(&bytes).map_err(|error| {
        format!(
            "{shown} is not a JSON key file (line {}, column {})",
            error.line(),
            error.column()
        )
    })?;
    match key.get("type").and_then(Value::as_str) {
        Some("service_account") => {}
        Some(other) => {
            return Err(format!(
                "{shown} holds {other:?} credentials, not a service-account key (other kinds \
                 of credentials: leave credentials_file out and set GOOGLE_APPLICATION_CREDENTIALS)"
            ));
        }
        None => {
            return Err(format!(
                "{shown} has no \"type\": not a service-account key"
            ));
        }
    }
    for field in ["client_email", "private_key"] {
        if key
            .get(field)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(format!(
                "{shown} has no {field:?}: not a complete service-account key"
            ));
        }
    }
    // Building parses the key as the client will (no network): a malformed one fails here.
    service_account::Builder::new(key.clone())
        .build()
        .map_err(|error| format!("{shown} is not a usable service-account key: {error}"))?;
    Ok(key)
}
