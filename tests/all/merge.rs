//! Merge (docs/group-by-and-merge.md): a Pulsar topic and a Pub/Sub subscription read by one
//! pipeline (`[[pipeline.sources]]`) into one Kafka topic, against the real brokers. Nothing
//! is lost at-least-once; exactly-once, through SIGKILLs of the runtime, every output is in
//! Kafka once, and each source's writers and checkpoints stay apart (source 1's offsets
//! topic is its own).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use sluice_connectors::memory::{MemorySink, MemorySource};
use sluice_connectors::source::{ConnectSource, MergedSource};
use sluice_engine::{Limits, TransformSpec};
use sluice_pipeline::{Guarantee, Pipeline, PipelineControl, PipelineParts, PipelineStats};
use sluice_tests::kafka::KafkaRecord;
use sluice_tests::pubsub::{PubSubRecord, publish_to_pubsub};
use sluice_tests::pulsar::{PulsarRecord, publish_to_pulsar};

use crate::exactly_once::{
    Chaos, OutputCheck, check_outputs, copies_of, crash_loop, fan_out_output_count,
    fan_out_transform, guarantee_settings, print_check,
};
use crate::pipeline::memory_settings;
use crate::support::assertions::{assert_none_missing, assert_per_key_order, report_counts};
use crate::support::brokers::{BrokerUse, Brokers, PROJECT, Topics, pubsub_setup};
use crate::support::config::{Pull, sink_toml, write_config};
use crate::support::process::InProcessPipeline;
use crate::support::read::{read_all, read_at_least, topic_size};

/// Records `seqs` for Pulsar over 20 keys `p<n>`, each with its `seq` in a property.
fn pulsar_records(seqs: std::ops::Range<u64>) -> Vec<PulsarRecord> {
    seqs.map(|seq| PulsarRecord {
        key: Some(format!("p{}", seq % 20)),
        value: format!(r#"{{"seq":{seq}}}"#).into_bytes(),
        properties: vec![("seq".into(), seq.to_string())],
        event_time_ms: None,
    })
    .collect()
}

/// Messages `seqs` for Pub/Sub over 20 ordering keys `s<n>` (apart from Pulsar's, so per-key
/// order is checked per source), each with its `seq` attribute.
fn pubsub_messages(seqs: std::ops::Range<u64>) -> Vec<PubSubRecord> {
    seqs.map(|seq| PubSubRecord {
        ordering_key: format!("s{}", seq % 20),
        data: format!(r#"{{"seq":{seq}}}"#).into_bytes(),
        attributes: vec![("seq".into(), seq.to_string())],
    })
    .collect()
}

/// The `[[pipeline.sources]]` entry of the test's Pulsar topic.
fn pulsar_source(brokers: &Brokers, topics: &Topics, pulsar_topic: &str) -> String {
    format!(
        r#"[[pipeline.sources]]
kind = "pulsar"
url = "{}"
topic = "{pulsar_topic}"
subscription = "{}"
"#,
        brokers.pulsar, topics.subscription
    )
}

/// The `[[pipeline.sources]]` entry of the test's Pub/Sub subscription.
fn pubsub_source(emulator: &str, topics: &Topics, pull: Pull) -> String {
    format!(
        r#"[[pipeline.sources]]
kind = "gcp_pubsub"
project = "{PROJECT}"
subscription = "{}"
endpoint = "http://{emulator}"
pull = "{}"
"#,
        topics.subscription,
        pull.toml()
    )
}

/// The test's Pulsar topic: beside the Pub/Sub topic `topics.source`.
fn pulsar_topic_of(topics: &Topics) -> String {
    format!(
        "persistent://public/default/{}",
        topics.output.replace("-out", "-pulsar")
    )
}

/// A pipeline `eo` over `sources` (in that order) with `settings` and `transforms`.
fn merged_toml(
    brokers: &Brokers,
    topics: &Topics,
    settings: &str,
    sources: &[String],
    transforms: &str,
) -> String {
    format!(
        "[[pipeline]]\nname = \"eo\"\nmax_in_flight = 2000\n{settings}\n\n{}\n{transforms}\n{}",
        sources.join("\n"),
        sink_toml(brokers, topics, "")
    )
}

/// Acceptance: 3,000 Pulsar records and 3,000 Pub/Sub messages through one pipeline (two
/// lanes, no transform) into one Kafka topic: none lost, per-key order kept for each source's
/// keys, and each source's records counted under its own index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pulsar_and_a_pubsub_source_merge_into_one_topic_losing_nothing() {
    let Some((brokers, emulator, topics)) = pubsub_setup("merge-alo", BrokerUse::Shared).await
    else {
        return;
    };
    let per_source = 3_000;
    let pulsar_topic = pulsar_topic_of(&topics);
    publish_to_pulsar(
        &brokers.pulsar,
        &pulsar_topic,
        &pulsar_records(0..per_source),
    )
    .await
    .unwrap();
    publish_to_pubsub(
        &emulator,
        PROJECT,
        &topics.source,
        &pubsub_messages(per_source..2 * per_source),
    )
    .await
    .unwrap();
    let sources = [
        pulsar_source(&brokers, &topics, &pulsar_topic),
        pubsub_source(&emulator, &topics, Pull::Streaming),
    ];
    let toml = merged_toml(&brokers, &topics, "parallelism = 2", &sources, "");
    let pipeline = InProcessPipeline::start(&toml).await;
    let output = read_at_least(&brokers, &topics.output, 2 * per_source as usize).await;
    let by_source = pipeline.stats.received_by_source();
    pipeline.stop().await;
    // Counted per source, by its index: Pulsar (0), then Pub/Sub (1); at least all of each
    // (a redelivery is received again).
    assert_eq!(by_source.len(), 2, "{by_source:?}");
    assert!(
        by_source.iter().all(|received| *received >= per_source),
        "{by_source:?}"
    );

    let expected: BTreeSet<u64> = (0..2 * per_source).collect();
    let arrived = report_counts("merge, at-least-once", &output, &expected);
    assert_none_missing(&arrived, &expected);
    assert_per_key_order(&output);
    let from = |prefix: &str| {
        (output.iter())
            .filter(|r| r.key_str().is_some_and(|k| k.starts_with(prefix)))
            .count()
    };
    eprintln!(
        "merge, at-least-once: {} records from Pulsar, {} from Pub/Sub",
        from("p"),
        from("s")
    );
    assert!(from("p") >= per_source as usize && from("s") >= per_source as usize);
    assert!(read_all(&brokers, &[&topics.dead_letter]).await.is_empty());
}

/// Acceptance: a Pub/Sub subscription (source 0, unary pull) and a Pulsar topic (source 1),
/// exactly-once through the fan-out guest, the runtime SIGKILLed 5 times mid-stream: every
/// output of every record of both sources is in Kafka once (`read_committed`), none
/// missing, per-key order kept; the Pulsar source's checkpoints went to its own offsets topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_sources_exactly_once_through_kills_of_the_runtime() {
    let Some((brokers, emulator, topics)) = pubsub_setup("merge-eo", BrokerUse::Exclusive).await
    else {
        return;
    };
    let per_source = 5_000;
    let kills = 5;
    let pulsar_topic = pulsar_topic_of(&topics);
    publish_to_pubsub(
        &emulator,
        PROJECT,
        &topics.source,
        &pubsub_messages(0..per_source),
    )
    .await
    .unwrap();
    publish_to_pulsar(
        &brokers.pulsar,
        &pulsar_topic,
        &pulsar_records(per_source..2 * per_source),
    )
    .await
    .unwrap();
    let sources = [
        pubsub_source(&emulator, &topics, Pull::Unary),
        pulsar_source(&brokers, &topics, &pulsar_topic),
    ];
    let settings = format!(
        "{}\nparallelism = 2",
        guarantee_settings("exactly-once", &topics)
    );
    let toml = merged_toml(&brokers, &topics, &settings, &sources, &fan_out_transform());
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "sluice.toml", &toml);
    let count = 2 * per_source;
    let expected = fan_out_output_count(count);

    crash_loop(&config, &brokers, &topics, kills, |_| Chaos::None, expected).await;

    let output: Vec<KafkaRecord> = read_all(&brokers, &[&topics.output]).await;
    let check: OutputCheck = check_outputs(&output, count, copies_of);
    print_check("merge, exactly-once", &check);
    assert_eq!(check.missing, 0, "no output missing");
    assert_eq!(check.duplicates, 0, "no output twice");
    assert_eq!(check.records, expected);
    // Source 1 (Pulsar) checkpoints in `<offsets topic>.source-1`, source 0 in the offsets
    // topic itself: their partitions 0 would otherwise collide.
    let offsets = format!("{}-offsets", topics.output);
    let (own, pulsars) = (
        topic_size(&brokers, &offsets).await,
        topic_size(&brokers, &format!("{offsets}.source-1")).await,
    );
    eprintln!("checkpoint records: source 0 (Pub/Sub) {own}, source 1 (Pulsar) {pulsars}");
    assert!(
        own > 0 && pulsars > 0,
        "each source checkpoints in its own topic"
    );
}

/// Two in-memory sources whose message ids and positions are the same (`memory-1`, …), merged
/// exactly-once: were their writer scopes not kept apart by source, one source's checkpoints
/// would cover a later source's records, and those would be acked unwritten. Each source gets its
/// own records acked, and every record of both is written once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_sources_with_the_same_ids_keep_their_scopes_apart_exactly_once() {
    let (ordered, unordered) = (MemorySource::new(), MemorySource::unordered());
    let (second_ordered, sink) = (MemorySource::new(), MemorySink::new("out", Some("dlq")));
    let sources: Vec<Arc<dyn ConnectSource>> = vec![
        Arc::new(ordered.clone()),
        Arc::new(unordered.clone()),
        Arc::new(second_ordered.clone()),
    ];
    let stats = Arc::new(PipelineStats::standalone("memory"));
    let parts = PipelineParts {
        settings: memory_settings(2, Guarantee::ExactlyOnce),
        source: Arc::new(MergedSource::new(sources)),
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
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(pipeline.run(stop.clone()));
    let per_source = 200;
    // One source after the other, each once the one before is committed: a later source's
    // records then sit at positions (and ids) an earlier source's checkpoint already covers.
    for (index, source) in [&ordered, &unordered, &second_ordered].iter().enumerate() {
        for seq in 0..per_source {
            let key = format!("key-{}", seq % 5);
            source.push(Some(key.as_bytes()), format!("{index}/{seq}").as_bytes());
        }
        let waited = tokio::time::timeout(sluice_tests::timeouts::DELIVERY, async {
            while source.acked().len() < per_source {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "source {index}: {} acked: {}",
            source.acked().len(),
            stats.summary()
        );
    }
    stop.cancel();
    task.await.unwrap().expect("the pipeline drains and stops");
    eprintln!("merged memory sources: {}", stats.summary());

    let written = sink.written("out");
    let distinct: BTreeSet<&[u8]> = written.iter().filter_map(|o| o.value.as_deref()).collect();
    assert_eq!(
        distinct.len(),
        3 * per_source,
        "every record of every source"
    );
    assert_eq!(written.len(), 3 * per_source, "each once");
    assert_eq!(stats.deduplicated.get(), 0);
    assert_eq!(
        stats.received_by_source(),
        vec![per_source as u64; 3],
        "counted per source"
    );
}
