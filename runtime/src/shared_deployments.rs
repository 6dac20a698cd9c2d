//! One deploy reaches every instance (`[admin] deployments = "kafka"`, docs/scale-out.md): a
//! pipeline's deployed versions live in its deployments topic, a compacted Kafka topic that
//! every instance of the pipeline reads at start and then follows. Entries:
//!
//! | key | value |
//! |---|---|
//! | `component/<digest>` | the component's bytes (at most [`MAX_ENTRY_BYTES`]) |
//! | `history/<transform>` | the transform's version history (JSON), its `current` the live version |
//! | `instance/<id>` | what an instance runs: `{"instance", "admin", "transforms": {name: digest}, "at_ms"}`, at start, after each swap and every 15 s; a tombstone when it stops |
//!
//! A deploy writes the components the topic lacks, then the history; each instance (the one that took the
//! deploy too) stores them in its component store and swaps the version in when it reads the
//! history, with the guarantees of a local deploy (between two batches: every record
//! transformed by exactly one version). The local store stays a mirror of the topic, so a
//! restart runs the latest version even before the topic is read again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use serde_json::{Value, json};
use sluice_connectors::kafka::{
    DeploymentLog, DeploymentLogError, DeploymentReader, KafkaSinkConfig, LogEntry,
};
use sluice_pipeline::PipelineControl;

pub use sluice_connectors::kafka::MAX_ENTRY_BYTES;

use crate::component_store::{ComponentStore, History, StoreError};

const COMPONENT: &str = "component/";
const HISTORY: &str = "history/";
const INSTANCE: &str = "instance/";
/// An instance not heard of for this long (eight missed heartbeats) is taken for gone: a
/// killed one cannot withdraw itself.
pub const GONE_AFTER_MS: i64 = 120_000;

#[derive(Debug, thiserror::Error)]
pub enum SharedDeploymentsError {
    #[error(transparent)]
    Log(#[from] DeploymentLogError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an entry of the deployments topic changed.
pub enum Applied {
    /// A transform's history: its `current` should be live.
    History { transform: String, history: History },
    /// Anything else (a component stored, an instance seen).
    Other,
}

/// The deployments topic of one pipeline, as this instance uses it.
pub struct SharedDeployments {
    pipeline: String,
    log: DeploymentLog,
    /// This instance's id in the topic, and its admin API address (shown by `sluice status`).
    instance: String,
    admin: String,
    instances: Mutex<BTreeMap<String, Value>>,
    /// The digests whose components the topic holds.
    components: Mutex<BTreeSet<String>>,
}

impl SharedDeployments {
    /// Opens the topic of `pipeline` on its `sink` cluster and reads it to the end into
    /// `store`, so the pipeline starts with the versions deployed last. Returns the reader to
    /// follow the topic with.
    pub async fn open(
        pipeline: &str,
        sink: &KafkaSinkConfig,
        topic: &str,
        admin: &str,
        store: &ComponentStore,
    ) -> Result<(Self, DeploymentReader), SharedDeploymentsError> {
        let (log, mut reader) = DeploymentLog::open(sink, topic).await?;
        let shared = Self {
            pipeline: pipeline.to_owned(),
            log,
            instance: instance_id(),
            admin: admin.to_owned(),
            instances: Mutex::default(),
            components: Mutex::default(),
        };
        let backlog = reader.catch_up().await?;
        let count = backlog.len();
        for entry in backlog {
            shared.apply(store, entry)?;
        }
        tracing::info!(pipeline, topic, entries = count, instance = %shared.instance, "read the deployments topic");
        Ok((shared, reader))
    }

    pub fn pipeline(&self) -> &str {
        &self.pipeline
    }

    /// Stores what `entry` says into `store` (components, histories) or into the instances.
    pub fn apply(
        &self,
        store: &ComponentStore,
        entry: LogEntry,
    ) -> Result<Applied, SharedDeploymentsError> {
        if let Some(digest) = entry.key.strip_prefix(COMPONENT) {
            if let Some(bytes) = &entry.value {
                store.put(bytes)?;
                self.components
                    .lock()
                    .expect("components lock poisoned")
                    .insert(digest.to_owned());
            }
        } else if let Some(transform) = entry.key.strip_prefix(HISTORY) {
            let Some(value) = &entry.value else {
                return Ok(Applied::Other);
            };
            match serde_json::from_slice::<History>(value) {
                Ok(history) => {
                    store.save_history(&self.pipeline, transform, &history)?;
                    return Ok(Applied::History {
                        transform: transform.to_owned(),
                        history,
                    });
                }
                Err(error) => {
                    tracing::warn!(pipeline = %self.pipeline, transform, %error, "ignoring a history entry that is not valid");
                }
            }
        } else if let Some(instance) = entry.key.strip_prefix(INSTANCE) {
            let mut instances = self.instances.lock().expect("instances lock poisoned");
            match entry
                .value
                .and_then(|v| serde_json::from_slice::<Value>(&v).ok())
            {
                Some(value) => instances.insert(instance.to_owned(), value),
                None => instances.remove(instance),
            };
        }
        Ok(Applied::Other)
    }

    /// Publishes a new live version of `transform`: the components of its history that the
    /// topic lacks (the config's original, before the first deploy, is only in this
    /// instance's store; every instance must be able to roll back to it), then its history.
    pub async fn publish_version(
        &self,
        store: &ComponentStore,
        transform: &str,
        history: &History,
    ) -> Result<(), SharedDeploymentsError> {
        for version in &history.versions {
            let known = self
                .components
                .lock()
                .expect("components lock poisoned")
                .contains(&version.digest);
            if known {
                continue;
            }
            let path = store.component_path(&version.digest);
            let bytes = std::fs::read(&path).map_err(|source| StoreError::Io {
                path,
                action: "cannot read",
                source,
            })?;
            self.log
                .publish(&format!("{COMPONENT}{}", version.digest), Some(&bytes))
                .await?;
            self.components
                .lock()
                .expect("components lock poisoned")
                .insert(version.digest.clone());
        }
        let value = serde_json::to_vec(history).expect("a history always serializes");
        self.log
            .publish(&format!("{HISTORY}{transform}"), Some(&value))
            .await?;
        Ok(())
    }

    /// Publishes what this instance runs now.
    pub async fn publish_instance(&self, control: &PipelineControl) {
        let transforms: BTreeMap<String, String> = control
            .transforms()
            .into_iter()
            .map(|id| (id.name, id.digest))
            .collect();
        let value = json!({
            "instance": self.instance,
            "admin": self.admin,
            "transforms": transforms,
            "at_ms": sluice_record::now_ms(),
        });
        let bytes = serde_json::to_vec(&value).expect("JSON serializes");
        if let Err(error) = self
            .log
            .publish(&format!("{INSTANCE}{}", self.instance), Some(&bytes))
            .await
        {
            tracing::warn!(pipeline = %self.pipeline, error = %sluice_pipeline::error_chain(&error), "could not publish this instance's versions");
        }
    }

    /// Removes this instance from the topic (a clean stop). Bounded to a second: a stop must
    /// end within its drain bound, and with Kafka away the entry just ages out of `status`.
    pub async fn withdraw_instance(&self) {
        let key = format!("{INSTANCE}{}", self.instance);
        let withdraw = self.log.publish(&key, None);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), withdraw).await;
    }

    /// Every instance of the pipeline that published itself within [`GONE_AFTER_MS`], as it
    /// last did (live instances publish every 15 s; a killed one stops).
    pub fn instances(&self) -> Vec<Value> {
        let since = sluice_record::now_ms() - GONE_AFTER_MS;
        self.instances
            .lock()
            .expect("instances lock poisoned")
            .values()
            .filter(|i| i["at_ms"].as_i64().is_some_and(|at| at >= since))
            .cloned()
            .collect()
    }
}

/// This process among the pipeline's instances: the host name (a pod's name on Kubernetes)
/// and the process id.
fn instance_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "sluice".to_owned());
    format!("{host}/{}", std::process::id())
}
