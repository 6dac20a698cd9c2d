//! Prometheus metrics of the whole runtime, served as text on the admin API's `/metrics`.
//!
//! Labels are low-cardinality on purpose: pipeline, transform name, failure kind, and the
//! digest of the live version only (one series per transform).

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Metric;
use prometheus_client::registry::Registry;

use crate::pipeline::PipelineStats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PipelineLabel {
    pipeline: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct KindLabels {
    pipeline: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransformLabels {
    pipeline: String,
    transform: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TransformKindLabels {
    pipeline: String,
    transform: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    pipeline: String,
    transform: String,
    digest: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn batch_size_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 12))
}

fn seconds_histogram() -> Histogram {
    // 100 µs … ~13 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

/// Every metric family; pipelines and transforms take their handles from here.
pub struct Metrics {
    registry: Registry,
    received: Family<PipelineLabel, Counter>,
    produced: Family<PipelineLabel, Counter>,
    filtered: Family<PipelineLabel, Counter>,
    skipped: Family<PipelineLabel, Counter>,
    deduplicated: Family<PipelineLabel, Counter>,
    acked: Family<PipelineLabel, Counter>,
    dead_lettered: Family<KindLabels, Counter>,
    restarts: Family<PipelineLabel, Counter>,
    in_flight: Family<PipelineLabel, Gauge>,
    batch_size: HistogramFamily<PipelineLabel>,
    batch_seconds: HistogramFamily<PipelineLabel>,
    latency: HistogramFamily<PipelineLabel>,
    transform_in: Family<TransformLabels, Counter>,
    transform_out: Family<TransformLabels, Counter>,
    transform_failures: Family<TransformKindLabels, Counter>,
    recycles: Family<TransformLabels, Counter>,
    deploys: Family<TransformLabels, Counter>,
    versions: Family<VersionLabels, Gauge>,
    /// The digest each transform's version gauge is set for, to clear it on a swap.
    live_digests: Mutex<Vec<VersionLabels>>,
}

/// Registers `metric` under `name` and returns it (metrics are handles: clones share values).
fn registered<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sluice");
        let r = &mut registry;
        Self {
            received: registered(
                r,
                "records_received",
                "Records read from the source",
                Family::default(),
            ),
            produced: registered(
                r,
                "records_produced",
                "Outputs written to Kafka",
                Family::default(),
            ),
            filtered: registered(
                r,
                "records_filtered",
                "Records the transforms dropped",
                Family::default(),
            ),
            skipped: registered(
                r,
                "records_skipped",
                "Records a transform skipped",
                Family::default(),
            ),
            deduplicated: registered(
                r,
                "outputs_deduplicated",
                "Outputs not written again because Kafka already had them (exactly-once)",
                Family::default(),
            ),
            acked: registered(
                r,
                "records_acked",
                "Records acked at the source",
                Family::default(),
            ),
            dead_lettered: registered(
                r,
                "records_dead_lettered",
                "Records written to the dead-letter topic, by failure kind",
                Family::default(),
            ),
            restarts: registered(
                r,
                "pipeline_restarts",
                "Restarts after a broker failure",
                Family::default(),
            ),
            in_flight: registered(
                r,
                "records_in_flight",
                "Records read and not yet acked",
                Family::default(),
            ),
            batch_size: registered(
                r,
                "transform_batch_size",
                "Records per transform call",
                Family::new_with_constructor(batch_size_histogram as fn() -> Histogram),
            ),
            batch_seconds: registered(
                r,
                "transform_batch_seconds",
                "Time to transform one batch through the chain",
                Family::new_with_constructor(seconds_histogram as fn() -> Histogram),
            ),
            latency: registered(
                r,
                "end_to_end_latency_seconds",
                "From the source's publish time to the Kafka acknowledgement",
                Family::new_with_constructor(seconds_histogram as fn() -> Histogram),
            ),
            transform_in: registered(
                r,
                "transform_records_in",
                "Records into a transform",
                Family::default(),
            ),
            transform_out: registered(
                r,
                "transform_records_out",
                "Records out of a transform",
                Family::default(),
            ),
            transform_failures: registered(
                r,
                "transform_failures",
                "Records a transform failed, by kind (trap, timeout, out-of-memory, …)",
                Family::default(),
            ),
            recycles: registered(
                r,
                "transform_instance_recycles",
                "Instances re-created after a trap",
                Family::default(),
            ),
            deploys: registered(
                r,
                "deploys",
                "Versions deployed through the admin API",
                Family::default(),
            ),
            versions: registered(
                r,
                "transform_version_info",
                "The live version of each transform (value 1)",
                Family::default(),
            ),
            live_digests: Mutex::default(),
            registry,
        }
    }
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The counters of pipeline `name`.
    pub fn pipeline(self: &Arc<Self>, name: &str) -> PipelineStats {
        let label = PipelineLabel {
            pipeline: name.to_owned(),
        };
        PipelineStats {
            received: self.received.get_or_create(&label).clone(),
            produced: self.produced.get_or_create(&label).clone(),
            filtered: self.filtered.get_or_create(&label).clone(),
            skipped: self.skipped.get_or_create(&label).clone(),
            deduplicated: self.deduplicated.get_or_create(&label).clone(),
            acked: self.acked.get_or_create(&label).clone(),
            restarts: self.restarts.get_or_create(&label).clone(),
            in_flight: self.in_flight.get_or_create(&label).clone(),
            batch_size: self.batch_size.get_or_create(&label).clone(),
            batch_seconds: self.batch_seconds.get_or_create(&label).clone(),
            latency: self.latency.get_or_create(&label).clone(),
            pipeline: name.to_owned(),
            metrics: self.clone(),
            dead_lettered_by_kind: Mutex::default(),
        }
    }

    pub(crate) fn dead_lettered(&self, pipeline: &str, kind: &str) -> Counter {
        self.dead_lettered
            .get_or_create(&KindLabels {
                pipeline: pipeline.to_owned(),
                kind: kind.to_owned(),
            })
            .clone()
    }

    /// The counters of one transform of a pipeline.
    pub fn transform(self: &Arc<Self>, pipeline: &str, transform: &str) -> TransformMetrics {
        let labels = TransformLabels {
            pipeline: pipeline.to_owned(),
            transform: transform.to_owned(),
        };
        TransformMetrics {
            records_in: self.transform_in.get_or_create(&labels).clone(),
            records_out: self.transform_out.get_or_create(&labels).clone(),
            recycles: self.recycles.get_or_create(&labels).clone(),
            pipeline: pipeline.to_owned(),
            transform: transform.to_owned(),
            metrics: Some(self.clone()),
        }
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

/// Counters of one transform; the default counts into nothing registered (tests, `exec`).
#[derive(Debug, Clone, Default)]
pub struct TransformMetrics {
    pub(crate) records_in: Counter,
    pub(crate) records_out: Counter,
    pub(crate) recycles: Counter,
    pipeline: String,
    transform: String,
    metrics: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl TransformMetrics {
    /// A record this transform failed, by kind.
    pub(crate) fn failed(&self, kind: &str) {
        if let Some(metrics) = &self.metrics {
            metrics
                .transform_failures
                .get_or_create(&TransformKindLabels {
                    pipeline: self.pipeline.clone(),
                    transform: self.transform.clone(),
                    kind: kind.to_owned(),
                })
                .inc();
        }
    }
}
