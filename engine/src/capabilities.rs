//! What a transform may reach beyond its inputs: nothing, unless its pipeline config grants
//! it explicitly (docs/sandbox.md).
//!
//! ```toml
//! [[pipeline.transform]]
//! component = "tz.wasm"
//! capabilities = { env = ["TZ", "LANG"], read_dirs = ["/etc/ssl/certs"] }
//! ```
//!
//! The network is never granted and stdin is always empty.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::Error;

/// Capabilities granted to one transform. The default grants nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Capabilities {
    /// Environment variables the guest sees, with their values in the host's environment
    /// when the transform is loaded. A variable unset on the host stays unset.
    pub env: Vec<String>,
    /// Host directories the guest may read (not write), at the same absolute path.
    pub read_dirs: Vec<PathBuf>,
}

impl Capabilities {
    /// Whether nothing is granted.
    pub fn is_empty(&self) -> bool {
        self.env.is_empty() && self.read_dirs.is_empty()
    }

    /// One line for humans: `none` or `env TZ, LANG; read-only dirs /etc/ssl/certs`.
    pub fn summary(&self) -> String {
        if self.is_empty() {
            return "none".to_owned();
        }
        let mut parts = Vec::new();
        if !self.env.is_empty() {
            parts.push(format!("env {}", self.env.join(", ")));
        }
        if !self.read_dirs.is_empty() {
            let dirs: Vec<String> = self
                .read_dirs
                .iter()
                .map(|dir| dir.display().to_string())
                .collect();
            parts.push(format!("read-only dirs {}", dirs.join(", ")));
        }
        parts.join("; ")
    }

    /// Checks the grants and takes the granted variables' values from the host environment.
    /// Fails (a user error) on a variable name that cannot be one, or a directory that is
    /// not absolute, not UTF-8 or not a directory.
    pub(crate) fn resolve(&self, transform: &str) -> Result<Grants, Error> {
        let refuse = |message: String| Error::Capability {
            transform: transform.to_owned(),
            message,
        };
        let mut env = Vec::new();
        for name in &self.env {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                return Err(refuse(format!(
                    "env: {name:?} is not an environment variable name"
                )));
            }
            match std::env::var(name) {
                Ok(value) => env.push((name.clone(), value)),
                Err(std::env::VarError::NotPresent) => tracing::warn!(
                    transform,
                    variable = %name,
                    "granted environment variable is not set on the host; the guest will not see it"
                ),
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(refuse(format!(
                        "env: the host's value of {name} is not UTF-8"
                    )));
                }
            }
        }
        let mut read_dirs = Vec::new();
        for dir in &self.read_dirs {
            read_dirs.push(check_dir(dir).map_err(refuse)?);
        }
        Ok(Grants { env, read_dirs })
    }
}

fn check_dir(dir: &Path) -> Result<(PathBuf, String), String> {
    if !dir.is_absolute() {
        return Err(format!(
            "read_dirs: {} is not an absolute path",
            dir.display()
        ));
    }
    let Some(guest_path) = dir.to_str() else {
        return Err(format!("read_dirs: {} is not UTF-8", dir.display()));
    };
    if !dir.is_dir() {
        return Err(format!(
            "read_dirs: {} is not a directory on this host",
            dir.display()
        ));
    }
    Ok((dir.to_owned(), guest_path.to_owned()))
}

/// Capabilities as given to each new instance: variables with their values, directories
/// with their guest path.
#[derive(Debug, Clone, Default)]
pub(crate) struct Grants {
    pub(crate) env: Vec<(String, String)>,
    pub(crate) read_dirs: Vec<(PathBuf, String)>,
}

/// A WASI import that reaches beyond the sandbox, with what the host gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SensitiveImport {
    /// The imported interface, e.g. `wasi:filesystem/preopens@0.2.6`.
    pub interface: String,
    /// What a call gets, e.g. `filesystem: no directories unless granted with read_dirs`.
    pub access: &'static str,
}

/// Whether `import` (an interface name) reaches the filesystem, network, environment or
/// stdin, and what the host gives it.
pub(crate) fn sensitive(import: &str) -> Option<SensitiveImport> {
    let access = if import.starts_with("wasi:filesystem/") {
        "filesystem: no directories unless granted with `read_dirs` (read-only)"
    } else if import.starts_with("wasi:sockets/") {
        "network: always denied"
    } else if import.starts_with("wasi:cli/environment") {
        "environment: no variables unless granted with `env`; no arguments"
    } else if import.starts_with("wasi:cli/stdin") {
        "stdin: always empty"
    } else {
        return None;
    };
    Some(SensitiveImport {
        interface: import.to_owned(),
        access,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_grant_nothing_and_unknown_fields_are_refused() {
        let none: Capabilities = serde_json::from_str("{}").unwrap();
        assert!(none.is_empty());
        assert_eq!(none.summary(), "none");
        let some: Capabilities =
            serde_json::from_str(r#"{"env": ["TZ", "LANG"], "read_dirs": ["/etc/ssl/certs"]}"#)
                .unwrap();
        assert_eq!(
            some.summary(),
            "env TZ, LANG; read-only dirs /etc/ssl/certs"
        );
        let error = serde_json::from_str::<Capabilities>(r#"{"network": true}"#).unwrap_err();
        assert!(
            error.to_string().contains("unknown field `network`"),
            "{error}"
        );
    }

    #[test]
    fn resolving_checks_names_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        let granted = Capabilities {
            env: vec!["PATH".into(), "SLUICE_SURELY_UNSET_VARIABLE".into()],
            read_dirs: vec![dir.path().to_owned()],
        }
        .resolve("t")
        .unwrap();
        // An unset variable is left out, not granted empty.
        assert_eq!(
            granted
                .env
                .iter()
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>(),
            ["PATH"]
        );
        assert_eq!(granted.read_dirs[0].1, dir.path().to_str().unwrap());

        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        for (capabilities, expected) in [
            (
                Capabilities {
                    env: vec!["A=B".into()],
                    ..Capabilities::default()
                },
                "\"A=B\" is not an environment variable name",
            ),
            (
                Capabilities {
                    read_dirs: vec!["relative/dir".into()],
                    ..Capabilities::default()
                },
                "relative/dir is not an absolute path",
            ),
            (
                Capabilities {
                    read_dirs: vec![file.clone()],
                    ..Capabilities::default()
                },
                "is not a directory on this host",
            ),
        ] {
            let error = capabilities.resolve("t").unwrap_err();
            assert!(error.is_user_input_error());
            let message = error.to_string();
            assert!(message.contains(expected), "{message}");
            assert!(message.contains("\"t\""), "{message}");
        }
    }

    #[test]
    fn sensitive_imports_are_recognised() {
        assert!(sensitive("wasi:filesystem/preopens@0.2.6").is_some());
        assert!(sensitive("wasi:sockets/tcp@0.2.0").is_some());
        assert!(sensitive("wasi:cli/environment@0.2.0").is_some());
        assert!(sensitive("wasi:cli/stdout@0.2.0").is_none());
        assert!(sensitive("sluice:transform/host@0.1.0").is_none());
    }
}
