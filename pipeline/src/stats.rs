//! The counters of a pipeline and of its transforms: defined here, next to the code that
//! counts, and registered by whoever serves them (the runtime's `/metrics`).
//!
//! Each counter is counted in one place: `received` by the source's read loop (once per
//! record the source handed out, so records replayed after a sink outage are not counted
//! again), `produced`, `filtered`, `skipped`, `deduplicated` and the dead-lettered ones by the
//! outcome writer, `transactions` by the commits of exactly-once on transactions, `acked` and `latency` by the ack stage, the batch histograms by the lanes,
//! `restarts` by the restart policy, the transform counters by the engine through
//! [`TransformStats`]. Labels stay low-cardinality: pipeline, transform name, failure kind.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};
use sluice_connectors::source::{Placement, SourceObserver};
use sluice_engine::TransformObserver;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PipelineLabel {
    pipeline: String,
}

/// A pipeline and one of its sources (its index in `[[pipeline.sources]]`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    pipeline: String,
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    pipeline: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WindowLabels {
    pipeline: String,
    window: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransformLabels {
    pipeline: String,
    transform: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransformKindLabels {
    pipeline: String,
    transform: String,
    kind: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn batch_size_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 12))
}

fn seconds_histogram() -> Histogram {
    // 100 µs … ~13 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

/// Restores take from milliseconds (a few keys) to minutes (millions).
fn restore_seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 18))
}

/// Every family of pipeline and transform series; pipelines take their handles from here.
/// Metrics are handles: clones share their values.
#[derive(Debug, Clone)]
pub struct StatsFamilies {
    received: Family<PipelineLabel, Counter>,
    received_by_source: Family<SourceLabels, Counter>,
    group_by_missing: Family<PipelineLabel, Counter>,
    produced: Family<PipelineLabel, Counter>,
    filtered: Family<PipelineLabel, Counter>,
    skipped: Family<PipelineLabel, Counter>,
    deduplicated: Family<PipelineLabel, Counter>,
    transactions: Family<PipelineLabel, Counter>,
    commit_seconds: HistogramFamily<PipelineLabel>,
    state_restore_seconds: HistogramFamily<PipelineLabel>,
    state_restored_keys: Family<PipelineLabel, Counter>,
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
    window_late: Family<WindowLabels, Counter>,
}

impl Default for StatsFamilies {
    fn default() -> Self {
        Self {
            received: Family::default(),
            received_by_source: Family::default(),
            group_by_missing: Family::default(),
            produced: Family::default(),
            filtered: Family::default(),
            skipped: Family::default(),
            deduplicated: Family::default(),
            transactions: Family::default(),
            commit_seconds: Family::new_with_constructor(seconds_histogram as fn() -> Histogram),
            state_restore_seconds: Family::new_with_constructor(
                restore_seconds_histogram as fn() -> Histogram,
            ),
            state_restored_keys: Family::default(),
            acked: Family::default(),
            dead_lettered: Family::default(),
            restarts: Family::default(),
            in_flight: Family::default(),
            batch_size: Family::new_with_constructor(batch_size_histogram as fn() -> Histogram),
            batch_seconds: Family::new_with_constructor(seconds_histogram as fn() -> Histogram),
            latency: Family::new_with_constructor(seconds_histogram as fn() -> Histogram),
            transform_in: Family::default(),
            transform_out: Family::default(),
            transform_failures: Family::default(),
            recycles: Family::default(),
            window_late: Family::default(),
        }
    }
}

impl StatsFamilies {
    /// Registers every family in `registry`, under the names `/metrics` shows.
    pub fn register(&self, registry: &mut Registry) {
        fn add<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: &M) {
            registry.register(name, help, metric.clone());
        }
        let r = registry;
        add(
            r,
            "records_received",
            "Records read from the source",
            &self.received,
        );
        add(
            r,
            "records_received_by_source",
            "Records read from each source of the pipeline (label source: its index in \
             [[pipeline.sources]], 0 for a pipeline of one source)",
            &self.received_by_source,
        );
        add(
            r,
            "records_group_by_key_missing",
            "Records in which the group-by found no new key (they keep their source key)",
            &self.group_by_missing,
        );
        add(
            r,
            "records_produced",
            "Outputs written to Kafka",
            &self.produced,
        );
        add(
            r,
            "records_filtered",
            "Records the transforms dropped",
            &self.filtered,
        );
        add(
            r,
            "records_skipped",
            "Records a transform skipped",
            &self.skipped,
        );
        add(
            r,
            "outputs_deduplicated",
            "Outputs not written again because Kafka already had them (exactly-once)",
            &self.deduplicated,
        );
        add(
            r,
            "transactions_committed",
            "Kafka transactions committed (exactly-once on transactions)",
            &self.transactions,
        );
        add(
            r,
            "transaction_commit_seconds",
            "How long the sink waited for a round of Kafka transaction commits",
            &self.commit_seconds,
        );
        add(
            r,
            "state_restore_seconds",
            "How long restoring a scope's keyed state from the changelog took",
            &self.state_restore_seconds,
        );
        add(
            r,
            "state_restored_keys",
            "Keys of keyed state restored from the changelog",
            &self.state_restored_keys,
        );
        add(
            r,
            "records_acked",
            "Records acked at the source",
            &self.acked,
        );
        add(
            r,
            "records_dead_lettered",
            "Records written to the dead-letter topic, by failure kind",
            &self.dead_lettered,
        );
        add(
            r,
            "pipeline_restarts",
            "Restarts after a broker failure",
            &self.restarts,
        );
        add(
            r,
            "records_in_flight",
            "Records read and not yet acked",
            &self.in_flight,
        );
        add(
            r,
            "transform_batch_size",
            "Records per transform call",
            &self.batch_size,
        );
        add(
            r,
            "transform_batch_seconds",
            "Time to transform one batch through the chain",
            &self.batch_seconds,
        );
        add(
            r,
            "end_to_end_latency_seconds",
            "From the source's publish time to the Kafka acknowledgement",
            &self.latency,
        );
        add(
            r,
            "transform_records_in",
            "Records into a transform",
            &self.transform_in,
        );
        add(
            r,
            "transform_records_out",
            "Records out of a transform",
            &self.transform_out,
        );
        add(
            r,
            "transform_failures",
            "Records a transform failed, by kind (trap, timeout, out-of-memory, …)",
            &self.transform_failures,
        );
        add(
            r,
            "transform_instance_recycles",
            "Instances re-created after a trap",
            &self.recycles,
        );
        add(
            r,
            "window_records_late",
            "Records a window stage found late (every window of their event time closed), dropped or dead-lettered",
            &self.window_late,
        );
    }

    /// The counters of pipeline `name`.
    pub fn pipeline(&self, name: &str) -> PipelineStats {
        let label = PipelineLabel {
            pipeline: name.to_owned(),
        };
        PipelineStats {
            received: self.received.get_or_create(&label).clone(),
            received_by_source: Mutex::default(),
            group_by_missing: self.group_by_missing.get_or_create(&label).clone(),
            produced: self.produced.get_or_create(&label).clone(),
            filtered: self.filtered.get_or_create(&label).clone(),
            skipped: self.skipped.get_or_create(&label).clone(),
            deduplicated: self.deduplicated.get_or_create(&label).clone(),
            transactions: self.transactions.get_or_create(&label).clone(),
            commit_seconds: self.commit_seconds.get_or_create(&label).clone(),
            state_restore_seconds: self.state_restore_seconds.get_or_create(&label).clone(),
            state_restored_keys: self.state_restored_keys.get_or_create(&label).clone(),
            acked: self.acked.get_or_create(&label).clone(),
            restarts: self.restarts.get_or_create(&label).clone(),
            in_flight: self.in_flight.get_or_create(&label).clone(),
            batch_size: self.batch_size.get_or_create(&label).clone(),
            batch_seconds: self.batch_seconds.get_or_create(&label).clone(),
            latency: self.latency.get_or_create(&label).clone(),
            pipeline: name.to_owned(),
            families: self.clone(),
            dead_lettered_by_kind: Mutex::default(),
        }
    }
}

/// Counters of one pipeline, kept across restarts, reported in logs and exported as metrics.
/// Each is the pipeline's series of a [`StatsFamilies`] family.
#[derive(Debug)]
pub struct PipelineStats {
    pub received: Counter,
    /// `received` per source ([`Placement::source`]), made as sources first deliver.
    received_by_source: Mutex<Vec<Counter>>,
    /// Records a group-by found no new key in (they keep their source key).
    pub group_by_missing: Counter,
    pub produced: Counter,
    pub filtered: Counter,
    pub skipped: Counter,
    /// Outputs not written again because Kafka had them already (exactly-once).
    pub deduplicated: Counter,
    /// Kafka transactions committed (exactly-once on transactions).
    pub transactions: Counter,
    /// How long the sink waited for each round of commits (exactly-once on transactions):
    /// it writes nothing meanwhile, so this is what exactly-once costs in throughput.
    pub commit_seconds: Histogram,
    /// How long each restore of a scope's keyed state took, and the keys restored.
    pub state_restore_seconds: Histogram,
    pub state_restored_keys: Counter,
    pub acked: Counter,
    pub restarts: Counter,
    pub in_flight: Gauge,
    pub batch_size: Histogram,
    pub batch_seconds: Histogram,
    pub latency: Histogram,
    pipeline: String,
    families: StatsFamilies,
    /// Dead-lettered records per failure class (`sluice.error.kind`): `dead-letter`, `trap`,
    /// `timeout`, `out-of-memory`, `stack-overflow`, `output-limit`, `unknown-topic`,
    /// `too-large`.
    dead_lettered_by_kind: Mutex<BTreeMap<String, u64>>,
}

impl PipelineStats {
    /// Counters of their own, registered nowhere: a pipeline run by a test or a tool.
    pub fn standalone(name: &str) -> Self {
        StatsFamilies::default().pipeline(name)
    }

    /// The pipeline's name, as its series are labelled.
    pub fn pipeline(&self) -> &str {
        &self.pipeline
    }

    /// The counters of transform `transform` of this pipeline, for its chain to report to.
    pub fn transform(&self, transform: &str) -> Arc<TransformStats> {
        let labels = TransformLabels {
            pipeline: self.pipeline.clone(),
            transform: transform.to_owned(),
        };
        Arc::new(TransformStats {
            records_in: self.families.transform_in.get_or_create(&labels).clone(),
            records_out: self.families.transform_out.get_or_create(&labels).clone(),
            recycles: self.families.recycles.get_or_create(&labels).clone(),
            failures: self.families.transform_failures.clone(),
            labels,
        })
    }

    /// A record came late to window stage `window` (docs/windows.md).
    pub(crate) fn count_late(&self, window: &str) {
        let labels = WindowLabels {
            pipeline: self.pipeline.clone(),
            window: window.to_owned(),
        };
        self.families.window_late.get_or_create(&labels).inc();
    }

    pub(crate) fn count_dead_letter(&self, kind: &str) {
        self.families
            .dead_lettered
            .get_or_create(&KindLabels {
                pipeline: self.pipeline.clone(),
                kind: kind.to_owned(),
            })
            .inc();
        let mut by_kind = self
            .dead_lettered_by_kind
            .lock()
            .expect("counter lock poisoned");
        *by_kind.entry(kind.to_owned()).or_default() += 1;
    }

    /// Dead-lettered records per failure class.
    pub fn dead_lettered_by_kind(&self) -> BTreeMap<String, u64> {
        self.dead_lettered_by_kind
            .lock()
            .expect("counter lock poisoned")
            .clone()
    }

    pub fn dead_lettered(&self) -> u64 {
        self.dead_lettered_by_kind().values().sum()
    }

    /// Records received from each source, by [`Placement::source`] (one entry per source
    /// that delivered at least once, and those before it).
    pub fn received_by_source(&self) -> Vec<u64> {
        let counters = self
            .received_by_source
            .lock()
            .expect("counter lock poisoned");
        counters.iter().map(Counter::get).collect()
    }

    fn count_received(&self, placement: &Placement) {
        self.received.inc();
        let source = placement.source as usize;
        let mut counters = self
            .received_by_source
            .lock()
            .expect("counter lock poisoned");
        while counters.len() <= source {
            let labels = SourceLabels {
                pipeline: self.pipeline.clone(),
                source: counters.len().to_string(),
            };
            let counter = self
                .families
                .received_by_source
                .get_or_create(&labels)
                .clone();
            counters.push(counter);
        }
        counters[source].inc();
    }

    /// A one-line summary for logs.
    pub fn summary(&self) -> String {
        let dead_lettered_by_kind = self.dead_lettered_by_kind();
        let by_kind: Vec<String> = dead_lettered_by_kind
            .iter()
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        format!(
            "received={} produced={} filtered={} skipped={} dead_lettered={}{} deduplicated={} acked={}",
            self.received.get(),
            self.produced.get(),
            self.filtered.get(),
            self.skipped.get(),
            dead_lettered_by_kind.values().sum::<u64>(),
            if by_kind.is_empty() {
                String::new()
            } else {
                format!(" ({})", by_kind.join(" "))
            },
            self.deduplicated.get(),
            self.acked.get()
        ) + &match self.transactions.get() {
            0 => String::new(),
            committed => format!(" transactions={committed}"),
        } + &match self.received_by_source() {
            by_source if by_source.len() > 1 => format!(" received_by_source={by_source:?}"),
            _ => String::new(),
        }
    }
}

/// The source counts what it hands out: `received` once per record, whatever happens to it
/// afterwards.
impl SourceObserver for PipelineStats {
    fn received(&self, placement: &Placement) {
        self.count_received(placement);
    }

    fn in_flight(&self, count: usize) {
        self.in_flight.set(count as i64);
    }
}

/// Counters of one transform of a pipeline, as its chain reports them.
#[derive(Debug)]
pub struct TransformStats {
    records_in: Counter,
    records_out: Counter,
    recycles: Counter,
    failures: Family<TransformKindLabels, Counter>,
    labels: TransformLabels,
}

impl TransformObserver for TransformStats {
    fn records_in(&self, count: u64) {
        self.records_in.inc_by(count);
    }

    fn records_out(&self, count: u64) {
        self.records_out.inc_by(count);
    }

    fn recycled(&self, count: u64) {
        self.recycles.inc_by(count);
    }

    fn failed(&self, kind: &str) {
        self.failures
            .get_or_create(&TransformKindLabels {
                pipeline: self.labels.pipeline.clone(),
                transform: self.labels.transform.clone(),
                kind: kind.to_owned(),
            })
            .inc();
    }
}
