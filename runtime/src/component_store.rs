//! Deployed transform versions, stored under the state dir so they survive restarts:
//!
//! ```text
//! <state_dir>/components/<sha256 hex>.wasm                 content-addressed components
//! <state_dir>/deployments/<pipeline>/<transform>.json      versions, oldest first, and the live one
//! ```
//! Files are written to a temporary name and renamed, so a crash never leaves half a file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use sluice_engine::TransformSpec;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state dir {path:?}: {action}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{path:?} is not a valid deployment record")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("version {digest} of transform {transform:?} is not in the state dir")]
    MissingVersion { transform: String, digest: String },
}

/// One deployed version of a transform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// `sha256:<hex>` of the component bytes.
    pub digest: String,
    pub deployed_at_ms: i64,
}

/// Every version a transform has had through the admin API, oldest first (the config's
/// component first), and the live one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    pub versions: Vec<Version>,
    pub current: String,
}

impl History {
    /// Makes `digest` current, adding it as the newest version unless it is one already.
    pub fn go_live(&mut self, digest: &str) {
        if !self.versions.iter().any(|v| v.digest == digest) {
            self.versions.push(Version {
                digest: digest.to_owned(),
                deployed_at_ms: sluice_record::now_ms(),
            });
        }
        self.current = digest.to_owned();
    }

    /// The version listed before the current one: what a rollback goes back to.
    pub fn before_current(&self) -> Option<&str> {
        let at = self
            .versions
            .iter()
            .position(|v| v.digest == self.current)?;
        at.checked_sub(1).map(|i| self.versions[i].digest.as_str())
    }
}

pub struct ComponentStore {
    dir: PathBuf,
}

impl ComponentStore {
    /// Opens (creating) the store under `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Self, StoreError> {
        for sub in ["components", "deployments"] {
            let path = state_dir.join(sub);
            std::fs::create_dir_all(&path).map_err(|source| StoreError::Io {
                path,
                action: "cannot create",
                source,
            })?;
        }
        Ok(Self {
            dir: state_dir.to_owned(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the component of `digest` (`sha256:<hex>`) is, or would be, stored.
    pub fn component_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.dir.join("components").join(format!("{hex}.wasm"))
    }

    /// Stores `bytes`; returns their digest and path.
    pub fn put(&self, bytes: &[u8]) -> Result<(String, PathBuf), StoreError> {
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
        let path = self.component_path(&digest);
        if !path.exists() {
            write_atomically(&path, bytes)?;
        }
        Ok((digest, path))
    }

    /// Stores the component file at `source` (the config's original version).
    pub fn put_file(&self, source: &Path) -> Result<(String, PathBuf), StoreError> {
        let bytes = std::fs::read(source).map_err(|error| StoreError::Io {
            path: source.to_owned(),
            action: "cannot read",
            source: error,
        })?;
        self.put(&bytes)
    }

    fn history_path(&self, pipeline: &str, transform: &str) -> PathBuf {
        self.dir
            .join("deployments")
            .join(file_name(pipeline))
            .join(format!("{}.json", file_name(transform)))
    }

    /// The versions of a transform, if it was ever deployed to.
    pub fn history(&self, pipeline: &str, transform: &str) -> Result<Option<History>, StoreError> {
        let path = self.history_path(pipeline, transform);
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StoreError::Io {
                    path,
                    action: "cannot read",
                    source,
                });
            }
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|source| StoreError::Corrupt { path, source })
    }

    pub fn save_history(
        &self,
        pipeline: &str,
        transform: &str,
        history: &History,
    ) -> Result<(), StoreError> {
        let path = self.history_path(pipeline, transform);
        let text = serde_json::to_vec_pretty(history).expect("a history always serializes");
        write_atomically(&path, &text)
    }

    /// `specs` with each deployed transform's component replaced by its live version: a
    /// restarted runtime runs what was deployed last, not the config's original.
    pub fn live_specs(
        &self,
        pipeline: &str,
        mut specs: Vec<TransformSpec>,
    ) -> Result<Vec<TransformSpec>, StoreError> {
        for spec in &mut specs {
            if let Some(history) = self.history(pipeline, &spec.name)? {
                let path = self.component_path(&history.current);
                if !path.exists() {
                    return Err(StoreError::MissingVersion {
                        transform: spec.name.clone(),
                        digest: history.current,
                    });
                }
                if history.versions.len() > 1 || path != spec.component {
                    tracing::info!(
                        pipeline,
                        transform = %spec.name,
                        version = %history.current,
                        "running the deployed version of the transform (from the state dir)"
                    );
                }
                spec.component = path;
            }
        }
        Ok(specs)
    }
}

/// A name safe as one path component (pipeline and transform names are user text).
fn file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let io = |action: &'static str| {
        let path = path.to_owned();
        move |source| StoreError::Io {
            path,
            action,
            source,
        }
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io("cannot create the directory of"))?;
    }
    let temporary = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&temporary, bytes).map_err(io("cannot write"))?;
    std::fs::rename(&temporary, path).map_err(io("cannot rename into place"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_goes_live_and_rolls_back_to_the_version_before() {
        let mut history = History {
            versions: vec![Version {
                digest: "sha256:a".into(),
                deployed_at_ms: 1,
            }],
            current: "sha256:a".into(),
        };
        assert_eq!(history.before_current(), None);
        history.go_live("sha256:b");
        assert_eq!(history.current, "sha256:b");
        assert_eq!(history.before_current(), Some("sha256:a"));
        history.go_live("sha256:a");
        assert_eq!(
            history.versions.len(),
            2,
            "an old version is not added again"
        );
        assert_eq!(history.before_current(), None);
    }

    #[test]
    fn store_is_content_addressed_and_keeps_histories() {
        let dir = tempfile::tempdir().unwrap();
        let store = ComponentStore::open(dir.path()).unwrap();
        let (digest, path) = store.put(b"abc").unwrap();
        assert_eq!(
            digest,
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"abc");
        assert_eq!(store.put(b"abc").unwrap().1, path);
        assert_eq!(store.history("p/1", "t").unwrap(), None);
        let history = History {
            versions: vec![],
            current: digest.clone(),
        };
        store.save_history("p/1", "t", &history).unwrap();
        assert_eq!(store.history("p/1", "t").unwrap(), Some(history));
    }
}
