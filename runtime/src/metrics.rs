//! Prometheus metrics of the whole runtime, served as text on the admin API's `/metrics`:
//! the pipelines' and transforms' series (defined by the pipeline crate, next to the code
//! that counts them) and the runtime's own, the live version and deploys of each transform.
//!
//! Labels are low-cardinality on purpose: pipeline, transform name, failure kind, and the
//! digest of the live version only (one series per transform).

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sluice_pipeline::{PipelineStats, StatsFamilies};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransformLabels {
    pipeline: String,
    transform: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    pipeline: String,
    transform: String,
    digest: String,
}

/// Every metric family of the runtime.
pub struct Metrics {
    registry: Registry,
    stats: StatsFamilies,
    deploys: Family<TransformLabels, Counter>,
    versions: Family<VersionLabels, Gauge>,
    /// The digest each transform's version gauge is set for, to clear it on a swap.
    live_digests: Mutex<Vec<VersionLabels>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sluice");
        let stats = StatsFamilies::default();
        stats.register(&mut registry);
        let deploys = Family::<TransformLabels, Counter>::default();
        registry.register(
            "deploys",
            "Versions deployed through the admin API",
            deploys.clone(),
        );
        let versions = Family::<VersionLabels, Gauge>::default();
        registry.register(
            "transform_version_info",
            "The live version of each transform (value 1)",
            versions.clone(),
        );
        Self {
            registry,
            stats,
            deploys,
            versions,
            live_digests: Mutex::default(),
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The counters of pipeline `name`, registered here.
    pub fn pipeline(&self, name: &str) -> PipelineStats {
        self.stats.pipeline(name)
    }

    /// A version went live (at start or by a deploy).
    pub fn version_live(&self, pipeline: &str, transform: &str, digest: &str, deployed: bool) {
        let labels = VersionLabels {
            pipeline: pipeline.to_owned(),
            transform: transform.to_owned(),
            digest: digest.to_owned(),
        };
        let mut live = self.live_digests.lock().expect("metrics lock poisoned");
        live.retain(|old| {
            let same_transform = old.pipeline == pipeline && old.transform == transform;
            if same_transform {
                self.versions.remove(old);
            }
            !same_transform
        });
        self.versions.get_or_create(&labels).set(1);
        live.push(labels);
        if deployed {
            self.deploys
                .get_or_create(&TransformLabels {
                    pipeline: pipeline.to_owned(),
                    transform: transform.to_owned(),
                })
                .inc();
        }
    }

    /// Everything in the Prometheus (OpenMetrics) text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}
