//! A guest's outputs are untrusted input (issue 22), on the real brokers: the `bad-outputs`
//! guest (raw `wit-bindgen`) through `sluice run` (the binary), Pulsar → Kafka. Every kind of
//! bad output the host knows, and huge texts, among good records; a fatal reason of 20 MiB;
//! a SIGTERM while Kafka is stuck. `untrusted_outputs.rs` has the same stream without brokers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use prometheus_parse::{Scrape, Value as MetricValue};
use sluice_tests::kafka::{KafkaRecord, create_kafka_topic_with_config, wait_for_leaders};
use sluice_tests::pulsar::{PulsarRecord, publish_to_pulsar};

use crate::support::assertions::{assert_per_key_order, report_counts, seq_of};
use crate::support::brokers::{
    BrokerPause, BrokerUse, Brokers, Topics, brokers_and_topics, brokers_and_topics_for,
};
use crate::support::config::{pipeline_toml, write_config};
use crate::support::http::{AdminApi, free_loopback_address};
use crate::support::process::SluiceProcess;
use crate::support::read::{read_all, read_at_least, read_until_seqs};
use crate::untrusted_outputs::{BadCase, HUGE, KEYS, bad_cases, stream};

/// The longest log line Sluice writes because of a guest (docs/sandbox.md, "Guest text is
/// bounded"): one bounded guest text and the line around it.
const MAX_LOG_LINE_BYTES: usize = 8 * 1024;

/// The bad-outputs guest, its batches allowed 10 s: a 20 MiB panic message or log line takes
/// the unoptimised test build more than the default second to pass through. `limits` adds
/// entries to its `limits` table.
fn bad_outputs_transform(limits: &str) -> String {
    format!(
        "[[pipeline.transform]]\ncomponent = {:?}\nlimits = {{ batch_timeout_ms = 10000{limits} }}\n",
        sluice_tests::BAD_OUTPUTS
    )
}

/// Value limits set in the transform's config (unset by default: the record size bounds
/// values), below the sizes the cases of [`configured_limit_cases`] return and above those of
/// `bad_cases`' `too-large` ones.
const VALUE_LIMITS: &str = ", max_value_bytes = 7340032, max_header_value_bytes = 3145728";

/// Outputs past the limits of [`VALUE_LIMITS`].
fn configured_limit_cases() -> Vec<BadCase> {
    vec![
        BadCase {
            marker: "value:8000000".into(),
            kind: Some("invalid-output"),
            reason: &["value: 8000000 bytes", "max_value_bytes = 7340032"],
        },
        BadCase {
            marker: "header-value:4194304".into(),
            kind: Some("invalid-output"),
            reason: &[
                "value (\"big\"): 4194304 bytes",
                "max_header_value_bytes = 3145728",
            ],
        },
    ]
}

/// The Pulsar records of `stream`: key, value, and the properties a dead-letter copy must
/// carry back (`seq`, `origin`).
fn pulsar_records(stream: &[(u64, String, String)]) -> Vec<PulsarRecord> {
    stream
        .iter()
        .map(|(seq, key, value)| PulsarRecord {
            key: Some(key.clone()),
            value: value.clone().into_bytes(),
            properties: vec![
                ("seq".into(), seq.to_string()),
                ("origin".into(), format!("source-{seq}")),
            ],
            event_time_ms: None,
        })
        .collect()
}

/// Kafka topics whose own config makes them refuse what passes elsewhere, and the bad records
/// routed to them: a compacted topic (a keyless output), a topic that takes timestamps of
/// the last day only (an output stamped in 1970), a topic of 2,000-byte messages (an output of
/// 5,000 bytes: the checks pass it, the broker refuses it in the delivery report).
async fn topics_with_their_own_rules(brokers: &Brokers, topics: &Topics) -> Vec<BadCase> {
    let compacted = format!("{}-compacted", topics.output);
    let last_day = format!("{}-last-day", topics.output);
    let small = format!("{}-small", topics.output);
    for (topic, config) in [
        (&compacted, ("cleanup.policy", "compact")),
        (&last_day, ("message.timestamp.before.max.ms", "86400000")),
        (&small, ("max.message.bytes", "2000")),
    ] {
        create_kafka_topic_with_config(&brokers.kafka, topic, 1, &[config])
            .await
            .unwrap();
    }
    let case = |marker: String, kind, reason| BadCase {
        marker,
        kind: Some(kind),
        reason,
    };
    vec![
        case(
            format!("topic:{compacted};key-none"),
            "invalid-output",
            &["key: missing", "cleanup.policy=compact"],
        ),
        case(
            format!("topic:{last_day};timestamp:1000"),
            "invalid-output",
            &["timestamp", "message.timestamp.before.max.ms = 86400000"],
        ),
        case(
            format!("topic:{small};value:5000"),
            "too-large",
            &["refused a record", "as too large"],
        ),
    ]
}

/// Every line of the log at `path` within [`MAX_LOG_LINE_BYTES`]; returns the longest line's
/// length and how many lines show a cut.
fn assert_log_lines_bounded(path: &Path) -> (usize, usize) {
    let log = std::fs::read(path).unwrap();
    let log = String::from_utf8_lossy(&log);
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    let cut = log.lines().filter(|l| l.contains("bytes cut]")).count();
    if let Some(line) = log.lines().find(|l| l.len() > MAX_LOG_LINE_BYTES) {
        panic!(
            "a log line of {} bytes, more than {MAX_LOG_LINE_BYTES}: {}…",
            line.len(),
            line.chars().take(300).collect::<String>()
        );
    }
    (longest, cut)
}

/// Acceptance (issue 22): `sluice run`, the bad-outputs guest between Pulsar and Kafka. Each
/// bad record is in the dead-letter topic once, with its kind, a reason naming the field and
/// the limit, and the original source record (key, value, properties as headers); every good
/// record is delivered once, per-key order kept; the process stays up and drains on SIGTERM;
/// no log line exceeds the documented bound although the guest logs, prints, panics and
/// dead-letters with 20 MiB texts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_run_dead_letters_every_bad_output_and_delivers_every_good_record_in_order() {
    let Some((brokers, topics)) = brokers_and_topics("untrusted", 3).await else {
        return;
    };
    let mut cases = bad_cases(true);
    cases.extend(configured_limit_cases());
    cases.extend(topics_with_their_own_rules(&brokers, &topics).await);
    let stream = stream(&cases);
    let dir = tempfile::tempdir().unwrap();
    let transform = bad_outputs_transform(VALUE_LIMITS);
    let toml = pipeline_toml(&brokers, &topics, &transform, "");
    let config = write_config(dir.path(), "untrusted.toml", &toml);
    let log = dir.path().join("sluice.log");
    let mut runtime = SluiceProcess::run_logging_to(&config, &log);
    publish_to_pulsar(&brokers.pulsar, &topics.source, &pulsar_records(&stream))
        .await
        .unwrap();

    let by_marker: BTreeMap<&str, &BadCase> =
        cases.iter().map(|c| (c.marker.as_str(), c)).collect();
    let bad: BTreeMap<u64, &BadCase> = stream
        .iter()
        .filter_map(|(seq, _, value)| by_marker.get(value.as_str()).map(|c| (*seq, *c)))
        .collect();
    let good: BTreeSet<u64> = stream
        .iter()
        .map(|(seq, _, _)| *seq)
        .filter(|seq| !bad.contains_key(seq))
        .collect();
    let dead_lettered: BTreeSet<u64> = bad
        .iter()
        .filter(|(_, case)| case.kind.is_some())
        .map(|(seq, _)| *seq)
        .collect();
    read_until_seqs(&brokers, &topics.output, &good).await;
    read_until_seqs(&brokers, &topics.dead_letter, &dead_lettered).await;
    assert!(
        runtime.exit_status().is_none(),
        "sluice stays up:\n{}",
        String::from_utf8_lossy(&std::fs::read(&log).unwrap())
    );
    runtime.terminate_and_wait_success();

    let dead = read_all(&brokers, &[&topics.dead_letter]).await;
    let originals: BTreeMap<u64, &(u64, String, String)> =
        stream.iter().map(|record| (record.0, record)).collect();
    for record in &dead {
        let seq = seq_of(record);
        let kind = record.header("sluice.error.kind").unwrap();
        let reason = record.header("sluice.error").unwrap();
        let case = bad.get(&seq).unwrap_or_else(|| {
            panic!("record {seq} dead-lettered, yet it is good: {kind}: {reason}")
        });
        eprintln!(
            "{:>44} → {kind:<14} {}",
            short(&case.marker, 44),
            short(reason, 110)
        );
        case.assert_dead_lettered_as(kind, reason);
        assert_carries_the_original(record, originals[&seq]);
    }
    assert_eq!(
        dead.iter().map(seq_of).collect::<BTreeSet<_>>(),
        dead_lettered,
        "every bad record dead-lettered (the skipped one not)"
    );
    assert_eq!(dead.len(), dead_lettered.len(), "each once");

    let output = read_all(&brokers, &[&topics.output]).await;
    let delivered = report_counts("good records", &output, &good);
    assert_eq!(delivered, good, "every good record delivered, no bad one");
    assert_eq!(output.len(), good.len(), "each once");
    assert_per_key_order(&output);
    let (longest, cut) = assert_log_lines_bounded(&log);
    eprintln!(
        "{} records ({} keys): {} dead-lettered, {} delivered, 1 skipped; log: longest line {longest} \
         bytes (bound {MAX_LOG_LINE_BYTES}), {cut} lines with a cut guest text",
        stream.len(),
        KEYS,
        dead.len(),
        output.len()
    );
}

/// A dead-letter copy carries its source record: key, value and properties (as headers).
fn assert_carries_the_original(copy: &KafkaRecord, (seq, key, value): &(u64, String, String)) {
    assert_eq!(copy.key_str(), Some(key.as_str()), "key of {seq}");
    assert_eq!(copy.value_str(), Some(value.as_str()), "value of {seq}");
    assert_eq!(
        copy.header("origin"),
        Some(format!("source-{seq}").as_str())
    );
    // The source's headers and Sluice's own, none of the guest's (100,000 headers, a
    // header of 8 MiB).
    for (name, _) in &copy.header_list {
        assert!(
            ["seq", "origin"].contains(&name.as_str()) || name.starts_with("sluice."),
            "header {} in the copy of {seq}",
            short(name, 40)
        );
    }
    assert_eq!(
        copy.header("sluice.error.dropped"),
        None,
        "nothing left out of {seq}"
    );
}

fn short(text: &str, chars: usize) -> String {
    let cut: String = text.chars().take(chars).collect();
    if cut.len() < text.len() {
        format!("{cut}…")
    } else {
        cut
    }
}

/// Acceptance (issue 22): a `fatal` reason of 20 MiB stops the pipeline (the record is not
/// acked) with an error line cut to the bound, and no log line longer than the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_reason_of_twenty_mib_stops_sluice_run_with_bounded_log_lines() {
    let Some((brokers, topics)) = brokers_and_topics("untrusted-fatal", 1).await else {
        return;
    };
    let stream: Vec<(u64, String, String)> = (0..30)
        .map(|seq| {
            let value = if seq == 20 {
                format!("fatal:{HUGE}")
            } else {
                format!("{{\"seq\":{seq}}}")
            };
            (seq, format!("k{}", seq % KEYS), value)
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let toml = pipeline_toml(&brokers, &topics, &bad_outputs_transform(""), "");
    let config = write_config(dir.path(), "fatal.toml", &toml);
    let log = dir.path().join("sluice.log");
    let mut runtime = SluiceProcess::run_logging_to(&config, &log);
    publish_to_pulsar(&brokers.pulsar, &topics.source, &pulsar_records(&stream))
        .await
        .unwrap();

    let deadline = std::time::Instant::now() + sluice_tests::timeouts::PIPELINE_FAILURE;
    let status = loop {
        if let Some(status) = runtime.exit_status() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sluice did not stop on the fatal error"
        );
        tokio::time::sleep(sluice_tests::timeouts::RECHECK).await;
    };
    let text = String::from_utf8_lossy(&std::fs::read(&log).unwrap()).into_owned();
    assert_eq!(status.code(), Some(1), "{}", short(&text, 2000));
    let fatal = text
        .lines()
        .find(|l| l.contains("fff"))
        .expect("the fatal reason is logged");
    assert!(fatal.contains("bytes cut]"), "{}", short(fatal, 300));
    let (longest, cut) = assert_log_lines_bounded(&log);
    let before: BTreeSet<u64> = (0..20).collect();
    let output = read_all(&brokers, &[&topics.output]).await;
    let delivered: BTreeSet<u64> = output.iter().map(seq_of).collect();
    assert!(
        !delivered.contains(&20),
        "the record that failed is not delivered"
    );
    eprintln!(
        "fatal reason of {HUGE} bytes: exit code {:?}, {} of the {} records before it delivered; \
         log: longest line {longest} bytes (bound {MAX_LOG_LINE_BYTES}), {cut} lines with a cut \
         guest text",
        status.code(),
        delivered.intersection(&before).count(),
        before.len()
    );
}

/// The sum of the `/metrics` samples called `name` for pipeline `test`.
fn pipeline_metric(scrape: &Scrape, name: &str) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && s.labels.get("pipeline") == Some("test"))
        .map(|s| match s.value {
            MetricValue::Counter(v) | MetricValue::Gauge(v) | MetricValue::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

/// Acceptance (issue 22): SIGTERM while Kafka is stuck (SIGSTOP: connections open, nothing
/// answered) and records are in flight: `sluice run` gives up at three quarters of
/// `--drain-timeout` (default 20 s), exits 1 saying how many records were left unacked, and
/// returns within the bound (the time is printed). With Kafka back, a second run delivers every
/// record: nothing lost (duplicates, at-least-once, are counted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_kafka_is_stuck_returns_within_the_drain_bound_and_a_restart_loses_nothing() {
    let Some((brokers, topics)) =
        brokers_and_topics_for("stuck-sink", 3, BrokerUse::Exclusive).await
    else {
        return;
    };
    let records: Vec<(u64, String, String)> = (0..50)
        .map(|seq| {
            (
                seq,
                format!("k{}", seq % KEYS),
                format!("{{\"seq\":{seq}}}"),
            )
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let listen = free_loopback_address();
    let toml = format!(
        "{}\n[admin]\nlisten = \"{listen}\"\nstate_dir = {:?}\n",
        pipeline_toml(&brokers, &topics, &bad_outputs_transform(""), ""),
        dir.path().join("state")
    );
    let config = write_config(dir.path(), "stuck.toml", &toml);
    let log = dir.path().join("sluice.log");
    let mut runtime = SluiceProcess::run_logging_to(&config, &log);
    let api = AdminApi::new(listen);
    api.wait_ready(&mut runtime).await;
    publish_to_pulsar(
        &brokers.pulsar,
        &topics.source,
        &pulsar_records(&records[..20]),
    )
    .await
    .unwrap();
    read_at_least(&brokers, &topics.output, 20).await;

    let pause = BrokerPause::begin("kafka");
    publish_to_pulsar(
        &brokers.pulsar,
        &topics.source,
        &pulsar_records(&records[20..]),
    )
    .await
    .unwrap();
    // Every one of the 30 records handed to the stuck producer, none acknowledged.
    let scrape = api
        .metrics_when(|scrape| pipeline_metric(scrape, "sluice_records_in_flight") >= 30.0)
        .await;
    let in_flight = pipeline_metric(&scrape, "sluice_records_in_flight");
    let (status, took) = runtime.terminate_and_wait();
    pause.end();
    // Kafka's broker missed its heartbeats to its controller while paused: it serves the
    // topics again once it is no longer fenced. The tests after this one need it too.
    let kafka = brokers.kafka.clone();
    let output_topics = [topics.output.clone(), topics.dead_letter.clone()];
    tokio::task::spawn_blocking(move || {
        let output_topics: Vec<&str> = output_topics.iter().map(String::as_str).collect();
        wait_for_leaders(&kafka, &output_topics, sluice_tests::timeouts::ADMIN)
    })
    .await
    .unwrap()
    .unwrap();
    let text = String::from_utf8_lossy(&std::fs::read(&log).unwrap()).into_owned();
    eprintln!(
        "SIGTERM with Kafka stuck and {in_flight} records in flight: exit code {:?} after {:.1} s \
         (--drain-timeout 20 s, giving up at 15 s)",
        status.code(),
        took.as_secs_f64()
    );
    assert_eq!(status.code(), Some(1), "{text}");
    let error = text
        .lines()
        .find(|l| l.contains("record(s) were not acked"))
        .unwrap_or_else(|| panic!("no line says what was left unacked:\n{text}"));
    assert!(
        error.contains("the drain did not finish within 20 s"),
        "{error}"
    );
    eprintln!("{error}");

    let mut again = SluiceProcess::run(&config);
    let all: BTreeSet<u64> = (0..50).collect();
    read_until_seqs(&brokers, &topics.output, &all).await;
    again.terminate_and_wait_success();
    let output = read_all(&brokers, &[&topics.output]).await;
    let delivered = report_counts("after the restart", &output, &all);
    assert_eq!(delivered, all, "nothing lost");
    assert_per_key_order(&output);
}

/// Acceptance (issue 22, "declared where exactly-once requires it"): with exactly-once in the
/// read-back mode, an output routed to a topic that exists but is not declared
/// (`sink.route_topics`) is dead-lettered as `undeclared-topic`; one routed to a declared topic
/// is delivered there; an invalid output is dead-lettered as in the other mode; the good
/// records are delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_exactly_once_an_output_to_an_undeclared_topic_is_dead_lettered() {
    invalid_and_routed_outputs_with_exactly_once("read-back").await;
}

/// With exactly-once on transactions (issues 16 and 22), the checks before sending run inside
/// the transactions: each invalid output's dead-letter copy commits with its record's
/// transaction and is read (`read_committed`) once; routing needs no declaration there (a
/// transaction holds whatever it writes, nothing is read back), so an output to another
/// existing topic is delivered; the good records are delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_transactions_invalid_outputs_are_dead_lettered_inside_the_transactions() {
    invalid_and_routed_outputs_with_exactly_once("exactly-once").await;
}

/// `mode`: `read-back`, or `exactly-once` (on transactions).
async fn invalid_and_routed_outputs_with_exactly_once(mode: &str) {
    let read_back = mode == "read-back";
    let prefix = if read_back {
        "untrusted-rb"
    } else {
        "untrusted-tx"
    };
    let Some((brokers, topics)) = brokers_and_topics(prefix, 1).await else {
        return;
    };
    let declared = format!("{}-declared", topics.output);
    let undeclared = format!("{}-undeclared", topics.output);
    sluice_tests::kafka::create_kafka_topics(&brokers.kafka, &[&declared, &undeclared], 1)
        .await
        .unwrap();
    let special = |seq: u64| match seq {
        5 => Some((
            format!("topic:{undeclared}"),
            read_back.then_some("undeclared-topic"),
        )),
        10 => Some((format!("topic:{declared}"), None)),
        15 => Some(("topic-nul".to_owned(), Some("invalid-output"))),
        20 => Some((format!("timestamp:{}", i64::MIN), Some("invalid-output"))),
        _ => None,
    };
    let stream: Vec<(u64, String, String)> = (0..30)
        .map(|seq| {
            let value = special(seq).map_or_else(|| format!("{{\"seq\":{seq}}}"), |(m, _)| m);
            (seq, format!("k{}", seq % KEYS), value)
        })
        .collect();
    let rest = format!(
        "{}\n{}",
        bad_outputs_transform(""),
        crate::support::config::sink_toml(
            &brokers,
            &topics,
            &format!("route_topics = [{declared:?}]")
        )
    );
    let toml = crate::support::config::pulsar_pipeline_toml(
        "test",
        &crate::exactly_once::guarantee_settings(mode, &topics),
        "subscription_type = \"exclusive\"",
        &brokers,
        &topics,
        &rest,
    );
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "eo.toml", &toml);
    let mut runtime = SluiceProcess::run(&config);
    publish_to_pulsar(&brokers.pulsar, &topics.source, &pulsar_records(&stream))
        .await
        .unwrap();
    let good: BTreeSet<u64> = (0..30).filter(|seq| special(*seq).is_none()).collect();
    let dead_lettered: BTreeSet<u64> = if read_back {
        [5, 15, 20].into()
    } else {
        [15, 20].into()
    };
    read_until_seqs(&brokers, &topics.output, &good).await;
    read_until_seqs(&brokers, &topics.dead_letter, &dead_lettered).await;
    read_until_seqs(&brokers, &declared, &[10].into()).await;
    if !read_back {
        read_until_seqs(&brokers, &undeclared, &[5].into()).await;
    }
    assert!(runtime.exit_status().is_none(), "sluice stays up");
    runtime.terminate_and_wait_success();

    let dead = read_all(&brokers, &[&topics.dead_letter]).await;
    for record in &dead {
        let seq = seq_of(record);
        let kind = record.header("sluice.error.kind");
        let reason = record.header("sluice.error").unwrap();
        eprintln!("{seq:>3} → {kind:?}: {}", short(reason, 140));
        assert_eq!(
            kind,
            special(seq).and_then(|(_, kind)| kind),
            "{seq}: {reason}"
        );
        assert_carries_the_original(record, &stream[seq as usize]);
    }
    assert_eq!(dead.len(), dead_lettered.len(), "each bad record once");
    if read_back {
        let undeclared_copy = dead.iter().find(|r| seq_of(r) == 5).unwrap();
        assert!(
            undeclared_copy
                .header("sluice.error")
                .unwrap()
                .contains(&undeclared),
            "the reason names the topic"
        );
    }
    let output = read_all(&brokers, &[&topics.output]).await;
    assert_eq!(report_counts("exactly-once", &output, &good), good);
    assert_eq!(output.len(), good.len(), "each once");
    assert_eq!(
        read_all(&brokers, &[&undeclared]).await.len(),
        usize::from(!read_back),
        "written to the undeclared topic only on transactions, once"
    );
    eprintln!(
        "{mode}: {} dead-lettered, {} good delivered once",
        dead.len(),
        output.len()
    );
}

/// Acceptance (issue 16 with 22): on transactions, Kafka refusing an output in its delivery
/// report (a topic of 2,000-byte messages: the pre-send checks pass the 5,000-byte output,
/// the broker refuses it) aborts the transaction and stops `sluice run` with one error naming
/// the transactional id and the refusal; nothing of the aborted transaction is visible to a
/// `read_committed` reader. Once the topic takes the output, a restart delivers every record
/// exactly once: nothing was acked that was not committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_transactions_a_refusal_at_delivery_aborts_stops_and_a_restart_loses_nothing() {
    let Some((brokers, topics)) = brokers_and_topics("untrusted-refused", 1).await else {
        return;
    };
    let small = format!("{}-small", topics.output);
    create_kafka_topic_with_config(&brokers.kafka, &small, 1, &[("max.message.bytes", "2000")])
        .await
        .unwrap();
    const REFUSED: u64 = 12;
    let stream: Vec<(u64, String, String)> = (0..30)
        .map(|seq| {
            let value = if seq == REFUSED {
                format!("topic:{small};value:5000")
            } else {
                format!("{{\"seq\":{seq}}}")
            };
            (seq, format!("k{}", seq % KEYS), value)
        })
        .collect();
    let toml = crate::support::config::pulsar_pipeline_toml(
        "test",
        &crate::exactly_once::guarantee_settings("exactly-once", &topics),
        "subscription_type = \"exclusive\"",
        &brokers,
        &topics,
        &format!(
            "{}\n{}",
            bad_outputs_transform(""),
            crate::support::config::sink_toml(&brokers, &topics, "")
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "eo.toml", &toml);
    let log = dir.path().join("first.log");
    let mut runtime = SluiceProcess::run_logging_to(&config, &log);
    publish_to_pulsar(&brokers.pulsar, &topics.source, &pulsar_records(&stream))
        .await
        .unwrap();
    let status = runtime
        .wait_for_exit(sluice_tests::timeouts::DELIVERY)
        .expect("sluice run stops on the refusal");
    let text = String::from_utf8_lossy(&std::fs::read(&log).unwrap()).into_owned();
    assert!(!status.success(), "exits non-zero:\n{text}");
    let error = (text.lines())
        .find(|line| line.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error: line:\n{text}"));
    eprintln!("first run: {status}; {}", short(error, 400));
    let transactional_id = format!("{}.test", topics.output);
    for expected in [transactional_id.as_str(), "delivery report", "too large"] {
        assert!(error.contains(expected), "{expected:?} in {error}");
    }
    let committed = read_all(&brokers, &[&topics.output]).await;
    assert!(
        read_all(&brokers, &[&small]).await.is_empty(),
        "the refused output is not visible"
    );
    let seqs: Vec<u64> = committed.iter().map(seq_of).collect();
    assert_eq!(
        seqs.iter().collect::<BTreeSet<_>>().len(),
        seqs.len(),
        "each committed output once"
    );
    assert!(
        !seqs.contains(&REFUSED),
        "nothing of the aborted transaction"
    );

    sluice_tests::kafka::alter_kafka_topic_config(
        &brokers.kafka,
        &small,
        &[("max.message.bytes", "100000")],
    )
    .await
    .unwrap();
    let mut runtime = SluiceProcess::run_logging_to(&config, &dir.path().join("second.log"));
    let good: BTreeSet<u64> = (0..30).filter(|seq| *seq != REFUSED).collect();
    read_until_seqs(&brokers, &topics.output, &good).await;
    read_until_seqs(&brokers, &small, &[REFUSED].into()).await;
    runtime.terminate_and_wait_success();
    let output = read_all(&brokers, &[&topics.output]).await;
    assert_eq!(report_counts("after the restart", &output, &good), good);
    assert_eq!(output.len(), good.len(), "each once");
    assert_per_key_order(&output);
    assert_eq!(
        read_all(&brokers, &[&small]).await.len(),
        1,
        "the big one once"
    );
    assert!(
        read_all(&brokers, &[&topics.dead_letter]).await.is_empty(),
        "nothing dead-lettered"
    );
    eprintln!(
        "{} committed before the refusal, {} after the restart, the refused output once",
        committed.len(),
        output.len() - committed.len()
    );
}
