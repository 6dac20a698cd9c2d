//! The pipeline on its own (issue 15): an in-memory source and sink (`connectors/src/memory/`)
//! around real transform components, no brokers; and `records_received` counting each source
//! record once when a sink outage makes the pipeline replay what it held, in memory and across
//! a real Kafka outage.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use sluice_connectors::memory::{MemorySink, MemorySource};
use sluice_engine::{Limits, TransformSpec};
use sluice_pipeline::{
    ExactlyOnceMode, Guarantee, Pipeline, PipelineControl, PipelineError, PipelineParts,
    PipelineSettings, PipelineStats,
};
use sluice_record::identity;
use sluice_tests::pulsar::{PulsarRecord, publish_to_pulsar};
use sluice_tests::timeouts;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::support::brokers::{BrokerOutage, BrokerUse, brokers_and_topics_for};
use crate::support::config::{DELIVERIES_FAIL_AFTER_10_S, pipeline_toml, transform_entry};
use crate::support::process::InProcessPipeline;
use crate::support::read::{read_at_least, read_until_seqs};

/// A pipeline from a [`MemorySource`] through the `examples/passthrough` component into a
/// [`MemorySink`], running on its own task.
pub(crate) struct MemoryPipeline {
    pub(crate) source: MemorySource,
    pub(crate) sink: MemorySink,
    pub(crate) stats: Arc<PipelineStats>,
    stop: CancellationToken,
    pub(crate) task: JoinHandle<Result<(), PipelineError>>,
}

/// The settings of a memory pipeline: small budgets, `parallelism` lanes.
pub(crate) fn memory_settings(parallelism: usize, guarantee: Guarantee) -> PipelineSettings {
    PipelineSettings {
        parallelism,
        guarantee,
        max_in_flight: 64,
        batch_size: 16,
        ..PipelineSettings::new("memory")
    }
}

impl MemoryPipeline {
    async fn start(parallelism: usize) -> Self {
        Self::start_with(parallelism, Guarantee::AtLeastOnce).await
    }

    async fn start_with(parallelism: usize, guarantee: Guarantee) -> Self {
        let settings = memory_settings(parallelism, guarantee);
        let sink = MemorySink::new("out", Some("dlq"));
        Self::start_on(MemorySource::new(), sink, settings).await
    }

    /// A pipeline with `settings` from `source` into `sink` (which other pipelines may share).
    pub(crate) async fn start_on(
        source: MemorySource,
        sink: MemorySink,
        settings: PipelineSettings,
    ) -> Self {
        let stats = Arc::new(PipelineStats::standalone("memory"));
        let parts = PipelineParts {
            settings,
            source: Arc::new(source.clone()),
            transforms: vec![TransformSpec {
                name: "passthrough".into(),
                component: sluice_tests::component(sluice_tests::PASSTHROUGH),
                config: BTreeMap::new(),
                limits: Limits::default(),
                capabilities: Default::default(),
            }],
            sink: sink.clone(),
        };
        let control = PipelineControl::new("memory", stats.clone());
        let pipeline = Pipeline::prepare(parts, sluice_tests::engine(), control)
            .await
            .unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(pipeline.run(stop.clone()));
        Self {
            source,
            sink,
            stats,
            stop,
            task,
        }
    }

    /// Pushes records `from..to` over 5 keys, the sequence number as the value.
    pub(crate) fn push(&self, seqs: std::ops::Range<u64>) {
        for seq in seqs {
            let key = format!("key-{}", seq % 5);
            self.source
                .push(Some(key.as_bytes()), seq.to_string().as_bytes());
        }
    }

    pub(crate) async fn wait_for_acks(&self, count: usize) {
        let waited = tokio::time::timeout(timeouts::DELIVERY, async {
            while self.source.acked().len() < count {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "{} of {count} records acked: {}",
            self.source.acked().len(),
            self.stats.summary()
        );
    }

    pub(crate) async fn wait_for_restart(&self) {
        tokio::time::timeout(timeouts::DELIVERY, async {
            while self.stats.restarts.get() == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the failure interrupts the pipeline");
    }

    /// The distinct values written to the output topic, and how many records it holds.
    pub(crate) fn written(&self) -> (BTreeSet<Vec<u8>>, usize) {
        let written = self.sink.written("out");
        let distinct = written
            .iter()
            .filter_map(|o| o.value.as_deref().map(<[u8]>::to_vec))
            .collect();
        (distinct, written.len())
    }

    pub(crate) async fn stop(self) {
        self.stop.cancel();
        self.task
            .await
            .unwrap()
            .expect("the pipeline drains and stops");
    }
}

/// Acceptance (issue 15): a source that lives in one folder feeds a pipeline with no broker:
/// every record is transformed, written with its identity, acked in the source, in per-key
/// order across two transform lanes, and counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_memory_source_runs_through_the_pipeline_without_brokers() {
    let pipeline = MemoryPipeline::start(2).await;
    pipeline.push(0..500);
    pipeline.wait_for_acks(500).await;

    let written = pipeline.sink.written("out");
    assert_eq!(written.len(), 500, "one output per record");
    let mut last_per_key: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
    let mut source_ids = BTreeSet::new();
    for output in &written {
        let seq: u64 = String::from_utf8_lossy(output.value.as_deref().unwrap())
            .parse()
            .unwrap();
        let key = output.key.as_deref().unwrap().to_vec();
        if let Some(last) = last_per_key.insert(key, seq) {
            assert!(last < seq, "per-key order: {seq} after {last}");
        }
        let headers = output
            .headers
            .iter()
            .map(|h| (&*h.name, Some(&h.value[..])));
        let id = identity::written_by(headers, "memory").expect("identity headers");
        assert_eq!(id.index, 0);
        source_ids.insert(id.source_id);
    }
    assert_eq!(
        source_ids.len(),
        500,
        "every output names its own source record"
    );
    assert_eq!(pipeline.stats.received.get(), 500);
    assert_eq!(pipeline.stats.acked.get(), 500);
    assert_eq!(pipeline.source.deliveries(), 500);
    pipeline.stop().await;
}

/// Acceptance (issue 15): the sink goes down mid-stream; the pipeline keeps what it holds,
/// reconnects and replays it. `records_received` counts each source record once (it is
/// counted where the source hands a record out, not where the sink writes it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_received_counts_each_record_once_across_a_sink_outage() {
    let pipeline = MemoryPipeline::start(1).await;
    pipeline.push(0..200);
    pipeline.wait_for_acks(200).await;

    pipeline.sink.set_down(true);
    pipeline.push(200..400);
    pipeline.wait_for_restart().await;
    // Long enough for a reconnect attempt to fail too.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    pipeline.sink.set_down(false);
    pipeline.wait_for_acks(400).await;

    let (distinct, written) = pipeline.written();
    assert_eq!(distinct.len(), 400, "none lost");
    assert_eq!(written, 400, "none written twice");
    assert_eq!(pipeline.stats.restarts.get(), 1, "one interruption");
    assert_eq!(
        pipeline.source.deliveries(),
        400,
        "the replay came from the pipeline, not from the source"
    );
    assert_eq!(
        pipeline.stats.received.get(),
        400,
        "each source record received once, replays included"
    );
    pipeline.stop().await;
}

/// The source's connection drops mid-stream: the pipeline starts a new source session (the
/// transforms and the sink are kept), the source delivers again what was not acked, and
/// `records_received` equals what the source delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_failure_starts_a_new_session_and_loses_nothing() {
    let pipeline = MemoryPipeline::start(1).await;
    pipeline.push(0..100);
    pipeline.wait_for_acks(100).await;
    pipeline.push(100..300);
    pipeline.source.cut_off();
    pipeline.wait_for_restart().await;
    pipeline.wait_for_acks(300).await;

    let (distinct, _) = pipeline.written();
    assert_eq!(distinct.len(), 300, "none lost");
    assert_eq!(pipeline.stats.restarts.get(), 1, "one interruption");
    assert_eq!(
        pipeline.stats.received.get(),
        pipeline.source.deliveries(),
        "received counts what the source delivered"
    );
    pipeline.stop().await;
}

/// Records 0..100 with the sink losing the delivery reports of 50..100 (it keeps the records,
/// as a Kafka that failed after writing does) until the pipeline restarts: afterwards every
/// record is in the sink once.
pub(crate) async fn replay_after_lost_delivery_reports(pipeline: &MemoryPipeline) {
    pipeline.push(0..50);
    pipeline.wait_for_acks(50).await;
    pipeline.sink.lose_delivery_reports(true);
    pipeline.push(50..100);
    pipeline.wait_for_restart().await;
    pipeline.sink.lose_delivery_reports(false);
    pipeline.wait_for_acks(100).await;

    let (distinct, written) = pipeline.written();
    assert_eq!(distinct.len(), 100, "none lost");
    assert_eq!(written, 100, "none written twice");
}

/// Exactly-once read back, in memory: the sink keeps records but loses their delivery
/// reports, so the pipeline replays them; the read-back finds them and they are not written
/// twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_does_not_write_again_what_the_sink_already_has() {
    let mut settings = memory_settings(2, Guarantee::ExactlyOnce);
    settings.exactly_once.mode = ExactlyOnceMode::ReadBack;
    let sink = MemorySink::new("out", Some("dlq"));
    let pipeline = MemoryPipeline::start_on(MemorySource::new(), sink, settings).await;
    replay_after_lost_delivery_reports(&pipeline).await;
    assert!(
        pipeline.stats.deduplicated.get() >= 1,
        "the replay found outputs the sink had: {}",
        pipeline.stats.summary()
    );
    assert_eq!(pipeline.stats.received.get(), 100);
    pipeline.stop().await;
}

/// Acceptance (issue 15): Pulsar → Kafka with Kafka stopped for 20 s mid-stream, deliveries
/// failing after 10 s (librdkafka would otherwise ride the outage out in its own retries), so
/// the pipeline keeps what it holds and replays it to a new producer. `records_received` still
/// equals what Pulsar delivered, once per record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_received_counts_each_record_once_across_a_kafka_outage() {
    let Some((brokers, topics)) =
        brokers_and_topics_for("received-once", 3, BrokerUse::Exclusive).await
    else {
        return;
    };
    let transforms = transform_entry(sluice_tests::PASSTHROUGH, "");
    let pipeline = InProcessPipeline::start(&pipeline_toml(
        &brokers,
        &topics,
        &transforms,
        DELIVERIES_FAIL_AFTER_10_S,
    ))
    .await;
    const TOTAL: u64 = 5_000;
    let records: Vec<PulsarRecord> = (0..TOTAL)
        .map(|seq| PulsarRecord {
            key: Some(format!("key-{}", seq % 10)),
            value: format!("value {seq}").into_bytes(),
            properties: vec![("seq".into(), seq.to_string())],
            event_time_ms: None,
        })
        .collect();
    // Most records are published while Kafka is down, so the outage always finds records to
    // deliver (published all at once, a fast run had delivered every one before it began).
    let (before, during) = records.split_at(1_000);
    publish_to_pulsar(&brokers.pulsar, &topics.source, before)
        .await
        .unwrap();
    read_at_least(&brokers, &topics.output, 500).await;

    let outage = BrokerOutage::begin("kafka");
    publish_to_pulsar(&brokers.pulsar, &topics.source, during)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(20)).await;
    outage.end();
    let all: BTreeSet<u64> = (0..TOTAL).collect();
    read_until_seqs(&brokers, &topics.output, &all).await;
    tokio::time::timeout(timeouts::DELIVERY, async {
        while pipeline.stats.acked.get() < TOTAL {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("every record acked after the outage");

    assert!(
        pipeline.stats.restarts.get() >= 1,
        "the outage interrupted the pipeline: {}",
        pipeline.stats.summary()
    );
    assert_eq!(
        pipeline.stats.received.get(),
        TOTAL,
        "each Pulsar record received once, replays after the outage included"
    );
    pipeline.stop().await;
}

/// Acceptance (issue 15): the runtime application runs in-process (what `sluice run` runs,
/// without the binary): with an admin API on an ephemeral port and a pipeline whose component
/// is missing, it fails at load with a user-input error naming the file, before any broker is
/// contacted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_runs_in_process_and_refuses_a_missing_component() {
    let state = tempfile::tempdir().unwrap();
    let toml = format!(
        r#"
[admin]
listen = "127.0.0.1:0"
state_dir = {state:?}

[[pipeline]]
name = "in-process"

[pipeline.source]
kind = "pulsar"
url = "pulsar://127.0.0.1:1"
topic = "persistent://public/default/in-process"
subscription = "in-process"

[[pipeline.transform]]
component = "/nonexistent/missing-guest.wasm"

[pipeline.sink]
kind = "kafka"
brokers = "127.0.0.1:1"
topic = "in-process-out"
"#,
        state = state.path()
    );
    let config = sluice_runtime::config::Config::parse(
        &toml,
        std::path::Path::new("in-process.toml"),
        std::path::Path::new("."),
    )
    .unwrap();
    let stop = CancellationToken::new();
    let error = sluice_runtime::run(config, sluice_tests::engine().clone(), stop)
        .await
        .expect_err("a missing component stops the start");
    assert!(error.is_user_input_error(), "{error:?}");
    let chain = format!("{:#}", anyhow::Error::new(error));
    assert!(chain.contains("missing-guest.wasm"), "{chain}");
}
