//! Pulsar → WASM transforms → Kafka against the real brokers started by `scripts/brokers.sh`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use sluice_tests::pulsar::{PulsarRecord, publish_to_pulsar};

use crate::support::assertions::{
    assert_no_duplicates, assert_per_key_order, assert_stall_and_recovery_logged, distinct_seqs,
    report_counts, seq_of,
};
use crate::support::brokers::{BrokerUse, brokers_and_topics, brokers_and_topics_for, outage_of};
use crate::support::config::{
    DELIVERIES_FAIL_AFTER_10_S, pipeline_toml, transform_entry, write_config,
};
use crate::support::process::{InProcessPipeline, SluiceProcess};
use crate::support::read::{read_all, read_at_least, read_until_seqs};

/// Orders for `count` sequence numbers over 20 keys; every 500th has a value that is not JSON.
fn orders(count: u64) -> Vec<PulsarRecord> {
    orders_in(0..count)
}

/// [`orders`] with sequence numbers `seqs`.
fn orders_in(seqs: std::ops::Range<u64>) -> Vec<PulsarRecord> {
    seqs.map(|seq| {
            let key = format!("customer-{}", seq % 20);
            let value = if seq % 500 == 499 {
                format!("not json {seq}")
            } else {
                format!(
                    r#"{{"seq":{seq},"customer":"{key}","email":"user{seq}@example.com","region":"{}","total":{}}}"#,
                    ["eu", "us", "apac"][(seq % 3) as usize],
                    seq * 3
                )
            };
            PulsarRecord {
                key: Some(key),
                value: value.into_bytes(),
                properties: vec![("origin".into(), "web".into()), ("seq".into(), seq.to_string())],
                event_time_ms: Some(1_700_000_000_000 + seq),
            }
        })
        .collect()
}

fn is_poison(seq: u64) -> bool {
    seq % 500 == 499
}

/// Acceptance: 10,000 keyed records with properties → redact guest → Kafka; none missing, none
/// twice, per-key order kept, keys / headers / timestamps mapped, non-JSON records dead-lettered
/// with headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_records_arrive_transformed_in_order() {
    let Some((brokers, topics)) = brokers_and_topics("e2e", 3).await else {
        return;
    };
    let transforms = transform_entry(sluice_tests::REDACT, r#"fields = "email""#);
    let toml = pipeline_toml(&brokers, &topics, &transforms, "");
    let pipeline = InProcessPipeline::start(&toml).await;

    let input = orders(10_000);
    publish_to_pulsar(&brokers.pulsar, &topics.source, &input)
        .await
        .unwrap();
    let good: BTreeSet<u64> = (0..10_000).filter(|s| !is_poison(*s)).collect();
    let poison: BTreeSet<u64> = (0..10_000).filter(|s| is_poison(*s)).collect();
    let output = read_until_seqs(&brokers, &topics.output, &good).await;
    let dead = read_until_seqs(&brokers, &topics.dead_letter, &poison).await;

    pipeline.stop().await;

    assert_eq!(distinct_seqs(&output), good, "every good record arrives");
    assert_per_key_order(&output);
    // Nothing failed, so nothing was redelivered: every record is in Kafka once.
    let everything = read_all(&brokers, &[&topics.output, &topics.dead_letter]).await;
    assert_no_duplicates(&everything);
    assert_eq!(everything.len(), 10_000);
    for record in &output {
        let seq = seq_of(record);
        assert_eq!(
            record.key_str(),
            Some(format!("customer-{}", seq % 20).as_str())
        );
        assert_eq!(record.header("origin"), Some("web"));
        assert_eq!(record.header("seq"), Some(seq.to_string().as_str()));
        assert_eq!(record.header("sluice-redacted"), Some("1"));
        assert!(
            record
                .header("sluice.source.id")
                .is_some_and(|id| id.split(':').count() == 4)
        );
        assert_eq!(record.timestamp_ms, Some(1_700_000_000_000 + seq as i64));
        let value: serde_json::Value =
            serde_json::from_slice(record.value.as_ref().unwrap()).unwrap();
        assert_eq!(value["email"], "***", "email is redacted");
        assert_eq!(value["total"], seq * 3, "other fields are kept");
    }
    assert_eq!(
        distinct_seqs(&dead),
        poison,
        "every non-JSON record is dead-lettered"
    );
    for record in &dead {
        assert_eq!(record.header("sluice.error.kind"), Some("dead-letter"));
        assert!(
            record
                .header("sluice.error")
                .unwrap()
                .starts_with("value is not JSON")
        );
        assert!(
            record
                .header("sluice.transform")
                .unwrap()
                .starts_with("redact@sha256:")
        );
        assert!(record.header("sluice.source.id").is_some());
        assert_eq!(
            record.value_str(),
            Some(format!("not json {}", seq_of(record)).as_str())
        );
    }
}

/// Acceptance: the router guest's records land in their topics (branching), created on demand;
/// a record whose route is not a valid topic is dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_branches_records_into_topics() {
    let Some((brokers, topics)) = brokers_and_topics("route", 1).await else {
        return;
    };
    let prefix = format!("{}-", topics.output);
    let config = format!(r#"field = "region", prefix = {prefix:?}"#);
    let transforms = transform_entry(sluice_tests::ROUTER, &config);
    let toml = pipeline_toml(&brokers, &topics, &transforms, "create_topics = true\n");
    let pipeline = InProcessPipeline::start(&toml).await;

    let mut input = orders(300);
    input[7].value = br#"{"seq":7,"region":"no such/region"}"#.to_vec();
    publish_to_pulsar(&brokers.pulsar, &topics.source, &input)
        .await
        .unwrap();

    let mut per_region = BTreeMap::new();
    for (i, region) in ["eu", "us", "apac"].into_iter().enumerate() {
        let expected: BTreeSet<u64> = (0..300)
            .filter(|s| s % 3 == i as u64 && !is_poison(*s) && *s != 7)
            .collect();
        let records = read_until_seqs(&brokers, &format!("{prefix}{region}"), &expected).await;
        assert_eq!(distinct_seqs(&records), expected, "region {region}");
        per_region.insert(region, records.len());
    }
    let dead = read_until_seqs(&brokers, &topics.dead_letter, &BTreeSet::from([7])).await;
    pipeline.stop().await;
    eprintln!("routed per region: {per_region:?}");
    let bad = dead.iter().find(|r| seq_of(r) == 7).unwrap();
    assert_eq!(bad.header("sluice.error.kind"), Some("dead-letter"));
    assert!(
        bad.header("sluice.error")
            .unwrap()
            .starts_with("invalid topic")
    );
}

/// Acceptance: a guest that traps on one record → that record is dead-lettered (kind `trap`),
/// every other record is delivered, the host keeps running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_record_is_dead_lettered_and_the_rest_delivered() {
    let Some((brokers, topics)) = brokers_and_topics("trap", 2).await else {
        return;
    };
    let transforms = transform_entry(sluice_tests::FAULT_ON_MARKER, "");
    let toml = pipeline_toml(&brokers, &topics, &transforms, "");
    let pipeline = InProcessPipeline::start(&toml).await;

    let input: Vec<PulsarRecord> = (0..200u64)
        .map(|seq| PulsarRecord {
            key: Some(format!("k{}", seq % 5)),
            value: if seq == 100 {
                b"panic".to_vec()
            } else {
                format!("{{\"seq\":{seq}}}").into_bytes()
            },
            properties: vec![("seq".into(), seq.to_string())],
            event_time_ms: None,
        })
        .collect();
    publish_to_pulsar(&brokers.pulsar, &topics.source, &input)
        .await
        .unwrap();
    let expected: BTreeSet<u64> = (0..200).filter(|s| *s != 100).collect();
    let output = read_until_seqs(&brokers, &topics.output, &expected).await;
    let dead = read_until_seqs(&brokers, &topics.dead_letter, &BTreeSet::from([100])).await;
    assert!(pipeline.is_running(), "the pipeline survives the trap");
    pipeline.stop().await;

    assert_eq!(distinct_seqs(&output), expected);
    assert_no_duplicates(&read_all(&brokers, &[&topics.output]).await);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].header("sluice.error.kind"), Some("trap"));
    assert!(
        dead[0]
            .header("sluice.transform")
            .unwrap()
            .starts_with("fault-on-marker@sha256:")
            || dead[0]
                .header("sluice.transform")
                .unwrap()
                .starts_with("fault_on_marker@sha256:")
    );
    assert_eq!(dead[0].value_str(), Some("panic"));
}

/// Acceptance: the runtime as a child process, SIGKILLed mid-stream and restarted: zero records
/// lost. Duplicates are allowed at-least-once; they are counted and printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_nothing() {
    let Some((brokers, topics)) = brokers_and_topics("kill", 3).await else {
        return;
    };
    let transforms = transform_entry(sluice_tests::REDACT, r#"fields = "email""#);
    let toml = pipeline_toml(&brokers, &topics, &transforms, "");
    let dir = tempfile::tempdir().unwrap();
    let config_path = write_config(dir.path(), "kill.toml", &toml);

    let input = orders(10_000);
    publish_to_pulsar(&brokers.pulsar, &topics.source, &input)
        .await
        .unwrap();
    let good: BTreeSet<u64> = (0..10_000).filter(|s| !is_poison(*s)).collect();

    let mut first = SluiceProcess::run(&config_path);
    let partial = read_at_least(&brokers, &topics.output, 2_000).await;
    first.kill();
    eprintln!("SIGKILL after {} records were in Kafka", partial.len());
    assert!(partial.len() < good.len(), "the kill happened mid-stream");

    let mut second = SluiceProcess::run(&config_path);
    read_until_seqs(&brokers, &topics.output, &good).await;
    second.terminate_and_wait_success();
    let output = read_all(&brokers, &[&topics.output]).await;

    let distinct = report_counts("after restart", &output, &good);
    assert_eq!(distinct, good, "no record lost across SIGKILL");
    assert_per_key_order(&output);
}

/// Acceptance (issue 3's outage, on the Pulsar source): Kafka stopped (SIGTERM) for 20 s
/// mid-stream, then restarted, with deliveries failing after 10 s → zero lost, order kept per key; memory bounded while it is down (reading stops at
/// the in-flight limit); the stall, the interruption and the restart are logged; the runtime
/// stays up and still drains and exits 0 on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_outage_of_twenty_seconds_loses_nothing() {
    let Some((brokers, topics)) = brokers_and_topics_for("outage", 3, BrokerUse::Exclusive).await
    else {
        return;
    };
    let transforms = transform_entry(sluice_tests::REDACT, r#"fields = "email""#);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "outage.toml",
        &pipeline_toml(&brokers, &topics, &transforms, DELIVERIES_FAIL_AFTER_10_S),
    );
    publish_to_pulsar(&brokers.pulsar, &topics.source, &orders(10_000))
        .await
        .unwrap();
    let good: BTreeSet<u64> = (0..20_000).filter(|s| !is_poison(*s)).collect();

    let log = dir.path().join("sluice.log");
    let mut runtime = SluiceProcess::run_logging_to(&config, &log);
    let before = read_at_least(&brokers, &topics.output, 2_000).await.len();
    // More records while Kafka is down, so that reading stops at the in-flight limit however
    // far the pipeline got before Kafka went (it may have delivered all the first 10,000).
    let (memory, ()) = tokio::join!(outage_of("kafka", 20, &mut runtime, &log), async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let more = orders_in(10_000..20_000);
        (publish_to_pulsar(&brokers.pulsar, &topics.source, &more).await).unwrap();
    });
    read_until_seqs(&brokers, &topics.output, &good).await;
    runtime.terminate_and_wait_success();
    let output = read_all(&brokers, &[&topics.output]).await;

    let distinct = report_counts(&memory.describe(before), &output, &good);
    assert_eq!(distinct, good, "no record lost across the outage");
    assert_per_key_order(&output);
    assert!(memory.max_while_down <= memory.at_stop + 64);
    assert_stall_and_recovery_logged(&std::fs::read_to_string(&log).unwrap());
}
