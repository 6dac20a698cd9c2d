//! Group-by (docs/group-by-and-merge.md): records re-keyed before the transforms, against the
//! real brokers. The source keys are few and the new keys many, so each new key gathers
//! records of several source keys: with four lanes, the records of each new key must still
//! reach Kafka in source order, on one partition, none lost and none doubled.

use std::collections::BTreeSet;

use sluice_connectors::memory::{MemorySink, MemorySource};
use sluice_pipeline::{GroupBy, Guarantee};
use sluice_record::Header;
use sluice_tests::kafka::KafkaRecord;
use sluice_tests::pulsar::{PulsarRecord, publish_to_pulsar};

use crate::exactly_once::{
    check_outputs, copies_of, fan_out_output_count, fan_out_transform, guarantee_settings,
    print_check,
};
use crate::pipeline::{MemoryPipeline, memory_settings};
use crate::support::assertions::{
    assert_no_duplicates, assert_none_missing, assert_per_key_order, report_counts, seq_of,
};
use crate::support::brokers::brokers_and_topics;
use crate::support::config::{pulsar_pipeline_toml, sink_toml, transform_entry};
use crate::support::process::InProcessPipeline;
use crate::support::read::{read_all, read_at_least};

const NEW_KEYS: u64 = 97;

/// Records over 5 source keys; the new key (`customer`, c0…c96) is in the JSON value and in
/// a header, and spans every source key.
fn records(count: u64) -> Vec<PulsarRecord> {
    (0..count)
        .map(|seq| {
            let customer = format!("c{}", seq % NEW_KEYS);
            PulsarRecord {
                key: Some(format!("region-{}", seq % 5)),
                value: format!(r#"{{"seq":{seq},"customer":{{"id":"{customer}"}}}}"#).into_bytes(),
                properties: vec![
                    ("seq".into(), seq.to_string()),
                    ("customer".into(), customer),
                ],
                event_time_ms: None,
            }
        })
        .collect()
}

/// Every output carries the new key that its record's `seq` names.
fn assert_rekeyed(output: &[KafkaRecord]) {
    for record in output {
        let expected = format!("c{}", seq_of(record) % NEW_KEYS);
        assert_eq!(record.key_str(), Some(expected.as_str()), "{record:?}");
    }
}

/// Runs `count` records through a four-lane pipeline with `group_by`, `guarantee` (as
/// `guarantee_settings` takes it) and `transform` until `outputs` are in Kafka; returns them,
/// `None` when skipped.
async fn run(
    test: &str,
    group_by: &str,
    guarantee: &str,
    transform: &str,
    (count, outputs): (u64, usize),
) -> Option<Vec<KafkaRecord>> {
    let (brokers, topics) = brokers_and_topics(test, 4).await?;
    publish_to_pulsar(&brokers.pulsar, &topics.source, &records(count))
        .await
        .unwrap();
    let settings = format!(
        "parallelism = 4\nbatch_size = 16\nmax_in_flight = 2000\ngroup_by = {group_by}\n{}",
        guarantee_settings(guarantee, &topics)
    );
    let rest = format!("{transform}\n{}", sink_toml(&brokers, &topics, ""));
    let toml = pulsar_pipeline_toml("eo", &settings, "", &brokers, &topics, &rest);
    let pipeline = InProcessPipeline::start(&toml).await;
    let output = read_at_least(&brokers, &topics.output, outputs).await;
    pipeline.stop().await;
    assert!(read_all(&brokers, &[&topics.dead_letter]).await.is_empty());
    Some(output)
}

/// Acceptance: 5,000 records re-keyed by a JSON field (`/customer/id`), four lanes of the
/// CPU-varying guest (so lanes finish out of step), at-least-once: every record once, under
/// its new key, on one partition per new key, in source order per new key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_by_a_json_field_keeps_per_new_key_order_over_four_lanes() {
    let count = 5_000;
    let busy = transform_entry(sluice_tests::FAN_OUT_WORK, r#"busy = "value""#);
    let Some(output) = run(
        "group-by-json",
        r#"{ json = "/customer/id" }"#,
        "at-least-once",
        &busy,
        (count, count as usize),
    )
    .await
    else {
        return;
    };
    let expected: BTreeSet<u64> = (0..count).collect();
    let arrived = report_counts("group-by json, 4 lanes", &output, &expected);
    assert_none_missing(&arrived, &expected);
    assert_no_duplicates(&output);
    assert_rekeyed(&output);
    assert_per_key_order(&output);
}

/// Acceptance: the same with a header (`customer`) and exactly-once (the fan-out guest: 1 to
/// 3 outputs per record): every output once (`read_committed`), in source order per new key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_by_a_header_keeps_per_new_key_order_exactly_once() {
    let count = 3_000;
    let Some(output) = run(
        "group-by-header",
        r#"{ header = "customer" }"#,
        "exactly-once",
        &fan_out_transform(),
        (count, fan_out_output_count(count)),
    )
    .await
    else {
        return;
    };
    let check = check_outputs(&output, count, copies_of);
    print_check("group-by header, exactly-once", &check);
    assert_eq!((check.missing, check.duplicates), (0, 0));
    assert_eq!(check.records, fan_out_output_count(count));
    assert_rekeyed(&output);
}

/// Without brokers, one lane: the dispatcher re-keys also when there is one lane; a record
/// without the header keeps its source key and is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_by_with_one_lane_rekeys_and_counts_records_without_the_header() {
    let mut settings = memory_settings(1, Guarantee::AtLeastOnce);
    settings.group_by = Some(GroupBy::Header("customer".into()));
    let source = MemorySource::new();
    let pipeline =
        MemoryPipeline::start_on(source.clone(), MemorySink::new("out", None), settings).await;
    for seq in 0..100u64 {
        let headers = match seq % 10 {
            9 => Vec::new(),
            _ => vec![Header::new("customer", format!("c{}", seq % 7))],
        };
        source.push_with_headers(Some(b"old"), seq.to_string().as_bytes(), headers);
    }
    pipeline.wait_for_acks(100).await;
    let written = pipeline.sink.written("out");
    for output in &written {
        let seq: u64 = String::from_utf8_lossy(output.value.as_deref().unwrap())
            .parse()
            .unwrap();
        let expected = match seq % 10 {
            9 => "old".to_owned(),
            _ => format!("c{}", seq % 7),
        };
        assert_eq!(
            output.key.as_deref(),
            Some(expected.as_bytes()),
            "seq {seq}"
        );
    }
    assert_eq!(written.len(), 100);
    assert_eq!(pipeline.stats.group_by_missing.get(), 10);
    pipeline.stop().await;
}
