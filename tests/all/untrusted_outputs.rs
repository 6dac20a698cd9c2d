//! A guest's outputs are untrusted input (issue 22): one bad record must never stop, stall or
//! poison a pipeline. The `bad-outputs` guest (raw `wit-bindgen`, `tests/guests/bad-outputs`)
//! returns every kind of output the host refuses, and huge texts, among good records.
//!
//! Here without brokers: an in-memory source and sink around the real guest, the sink refusing
//! a record at delivery, the drain given up while the sink is stuck, and the `sluice` binary's
//! answers to a transform whose `init` fails. `untrusted_outputs_on_brokers.rs` runs the same
//! stream through `sluice run` on the real brokers.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use sluice_connectors::memory::{MemorySink, MemorySource};
use sluice_engine::{Limits, TransformSpec};
use sluice_pipeline::PipelineStats;
use sluice_pipeline::{
    Guarantee, Pipeline, PipelineControl, PipelineError, PipelineParts, PipelineSettings,
};
use sluice_record::OutputRecord;
use sluice_record::text::MAX_GUEST_TEXT_BYTES;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::support::config::write_offline_config;
use crate::support::process::{error_line, sluice, sluice_exec};

/// How long a test waits for something that should happen at once before it fails.
const WAIT: Duration = Duration::from_secs(120);

/// 20 MiB: the size of the huge texts the issue names.
pub(crate) const HUGE: usize = 20 * 1024 * 1024;

/// One bad record of the stream: the marker the guest acts on, and what the host must make
/// of it.
pub(crate) struct BadCase {
    pub(crate) marker: String,
    /// `sluice.error.kind` of its dead-letter copy; `None` when it is not dead-lettered.
    pub(crate) kind: Option<&'static str>,
    /// Text the reason must contain (the field, the limit).
    pub(crate) reason: &'static [&'static str],
}

impl BadCase {
    /// Checks the kind and the reason of this case's dead-letter copy: the expected kind, the
    /// field and the limit named, the reason bounded.
    pub(crate) fn assert_dead_lettered_as(&self, kind: &str, reason: &str) {
        assert_eq!(Some(kind), self.kind, "{}: {reason}", self.marker);
        for part in self.reason {
            assert!(
                reason.contains(part),
                "{}: {part:?} in {reason}",
                self.marker
            );
        }
        assert!(reason.len() <= MAX_GUEST_TEXT_BYTES, "{}", self.marker);
    }
}

fn case(marker: impl Into<String>, kind: &'static str, reason: &'static [&'static str]) -> BadCase {
    BadCase {
        marker: marker.into(),
        kind: Some(kind),
        reason,
    }
}

/// Every kind of bad output the host knows, plus huge texts. `brokers` adds what only a real
/// Kafka tells apart (a topic that does not exist).
pub(crate) fn bad_cases(brokers: bool) -> Vec<BadCase> {
    let mut cases = vec![
        case(
            format!("dead-letter:{HUGE}"),
            "dead-letter",
            &["ddd", "bytes cut]"],
        ),
        case(format!("panic:{HUGE}"), "trap", &["ppp", "bytes cut]"]),
        case(
            "topic-nul",
            "invalid-output",
            &["topic", "'\\0' is not allowed"],
        ),
        case("topic:", "invalid-output", &["topic", "empty"]),
        case("topic-len:250", "invalid-output", &["topic", "250 bytes"]),
        case("topic:.", "invalid-output", &["topic", "not allowed"]),
        case("topic:..", "invalid-output", &["topic", "not allowed"]),
        case(
            "topic:a b",
            "invalid-output",
            &["topic", "' ' is not allowed"],
        ),
        case(
            format!("timestamp:{}", i64::MIN),
            "invalid-output",
            &["timestamp", "negative"],
        ),
        case("timestamp:-1", "invalid-output", &["timestamp", "negative"]),
        case(
            // 30 days ahead of the record's publish time (about now).
            "timestamp-ahead:2592000000",
            "invalid-output",
            &["timestamp", "message.timestamp.after.max.ms"],
        ),
        case(
            "headers:100000",
            "invalid-output",
            &["headers", "max_headers = 1000"],
        ),
        case(
            "header-name:8388608",
            "invalid-output",
            &["name", "8388608 bytes", "max_header_name_bytes = 1024"],
        ),
        case(
            "key:3145728",
            "invalid-output",
            &["key", "3145728 bytes", "max_key_bytes = 65536"],
        ),
        case(
            "value:6291456",
            "too-large",
            &["record", "value 6291456", "message.max.bytes"],
        ),
        case(
            "header-value:2097152",
            "too-large",
            &["record", "headers", "message.max.bytes"],
        ),
        BadCase {
            marker: format!("skip:{HUGE}"),
            kind: None,
            reason: &[],
        },
    ];
    if brokers {
        cases.push(case(
            "topic:no-such-topic-22",
            "unknown-topic",
            &["no-such-topic-22", "does not exist"],
        ));
    }
    cases
}

/// Markers of good records that make the guest log or print huge lines on their way.
pub(crate) fn noisy_markers() -> [String; 2] {
    [format!("log:{HUGE}"), format!("print:{HUGE}")]
}

/// Keys of the stream: good records spread over them keep their order per key.
pub(crate) const KEYS: u64 = 5;

/// The stream, in order: `(seq, key, value)`; every 5th record is bad (one case each, then
/// noisy good ones), the rest are JSON `{"seq":N}`.
pub(crate) fn stream(cases: &[BadCase]) -> Vec<(u64, String, String)> {
    let mut specials: Vec<String> = cases.iter().map(|c| c.marker.clone()).collect();
    specials.extend(noisy_markers());
    let total = specials.len() as u64 * 5 + 10;
    let mut specials = specials.into_iter();
    (0..total)
        .map(|seq| {
            let key = format!("k{}", seq % KEYS);
            let special = if seq % 5 == 2 { specials.next() } else { None };
            let value = special.unwrap_or_else(|| format!("{{\"seq\":{seq}}}"));
            (seq, key, value)
        })
        .collect()
}

/// A pipeline from a [`MemorySource`] through one transform into a [`MemorySink`].
struct MemoryPipeline {
    source: MemorySource,
    sink: MemorySink,
    stats: Arc<PipelineStats>,
    stop: CancellationToken,
    give_up: CancellationToken,
    task: JoinHandle<Result<(), PipelineError>>,
}

impl MemoryPipeline {
    async fn start(component: &str, source: MemorySource, sink: MemorySink) -> Self {
        Self::start_with(component, source, sink, Guarantee::AtLeastOnce).await
    }

    async fn start_with(
        component: &str,
        source: MemorySource,
        sink: MemorySink,
        guarantee: Guarantee,
    ) -> Self {
        let settings = PipelineSettings {
            max_in_flight: 64,
            batch_size: 8,
            guarantee,
            ..PipelineSettings::new("untrusted")
        };
        let stats = Arc::new(PipelineStats::standalone("untrusted"));
        let parts = PipelineParts {
            settings,
            source: Arc::new(source.clone()),
            transforms: vec![TransformSpec {
                name: "guest".into(),
                component: sluice_tests::component(component),
                config: BTreeMap::new(),
                // A 20 MiB panic message or log line takes the unoptimised test build more
                // than the default second to pass through; this test is not about time.
                limits: Limits {
                    batch_timeout_ms: 10_000,
                    ..Limits::default()
                },
                capabilities: Default::default(),
            }],
            sink: sink.clone(),
        };
        let control = PipelineControl::new("untrusted", stats.clone());
        let pipeline = Pipeline::prepare(parts, sluice_tests::engine(), control)
            .await
            .unwrap();
        let (stop, give_up) = (CancellationToken::new(), CancellationToken::new());
        let task = tokio::spawn(pipeline.run_bounded(stop.clone(), give_up.clone()));
        Self {
            source,
            sink,
            stats,
            stop,
            give_up,
            task,
        }
    }

    async fn wait_for_acks(&self, count: usize) {
        let waited = tokio::time::timeout(WAIT, async {
            while self.source.acked().len() < count && !self.task.is_finished() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(
            waited.is_ok() && !self.task.is_finished(),
            "{} of {count} records acked, pipeline running: {}; {}",
            self.source.acked().len(),
            !self.task.is_finished(),
            self.stats.summary()
        );
    }

    async fn stop(self) -> Result<(), PipelineError> {
        self.stop.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("the pipeline stops")
            .unwrap()
    }
}

fn header<'a>(record: &'a OutputRecord, name: &str) -> Option<&'a str> {
    record
        .headers
        .iter()
        .rev()
        .find(|h| &*h.name == name)
        .and_then(|h| std::str::from_utf8(&h.value).ok())
}

/// The `seq` property of a record (every record of the stream carries one).
fn seq(record: &OutputRecord) -> u64 {
    header(record, "seq").unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_output_is_dead_lettered_and_every_good_record_delivered_in_order() {
    bad_outputs_are_dead_lettered(Guarantee::AtLeastOnce).await;
}

/// With exactly-once on transactions (the memory sink's transactional writers), the checks
/// before sending run inside the transaction: each bad record's dead-letter copy commits with
/// the transaction that holds the record, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_transactions_every_bad_output_is_dead_lettered_in_its_transaction() {
    bad_outputs_are_dead_lettered(Guarantee::ExactlyOnce).await;
}

async fn bad_outputs_are_dead_lettered(guarantee: Guarantee) {
    let cases = bad_cases(false);
    let stream = stream(&cases);
    let source = MemorySource::new();
    for (seq, key, value) in &stream {
        source.push_with_headers(
            Some(key.as_bytes()),
            value.as_bytes(),
            vec![sluice_record::Header::new("seq", seq.to_string())],
        );
    }
    let sink = MemorySink::new("out", Some("dlq"));
    let pipeline =
        MemoryPipeline::start_with(sluice_tests::BAD_OUTPUTS, source, sink, guarantee).await;
    pipeline.wait_for_acks(stream.len()).await;

    let by_marker: BTreeMap<&str, &BadCase> =
        cases.iter().map(|c| (c.marker.as_str(), c)).collect();
    let bad_seqs: BTreeMap<u64, &BadCase> = stream
        .iter()
        .filter_map(|(seq, _, value)| by_marker.get(value.as_str()).map(|c| (*seq, *c)))
        .collect();
    let dead = pipeline.sink.written("dlq");
    let mut dead_seqs = BTreeSet::new();
    for record in &dead {
        let seq = seq(record);
        let kind = header(record, "sluice.error.kind").unwrap();
        let reason = header(record, "sluice.error").unwrap();
        let case = bad_seqs.get(&seq).unwrap_or_else(|| {
            panic!(
                "record {seq} dead-lettered, yet it is good: {kind}: {}",
                short(reason)
            )
        });
        case.assert_dead_lettered_as(kind, reason);
        // The copy carries the original source record.
        assert_eq!(record.value.as_deref(), Some(case.marker.as_bytes()));
        assert!(record.key.is_some());
        dead_seqs.insert(seq);
        eprintln!("{:>28} → {kind:<14} {}", short(&case.marker), short(reason));
    }
    let expected_dead: BTreeSet<u64> = bad_seqs
        .iter()
        .filter(|(_, case)| case.kind.is_some())
        .map(|(seq, _)| *seq)
        .collect();
    assert_eq!(
        dead_seqs, expected_dead,
        "each bad record dead-lettered once"
    );

    let delivered = pipeline.sink.written("out");
    let good: Vec<u64> = stream
        .iter()
        .filter(|(seq, _, _)| !bad_seqs.contains_key(seq))
        .map(|(seq, _, _)| *seq)
        .collect();
    let delivered_seqs: Vec<u64> = delivered.iter().map(seq).collect();
    assert_eq!(
        delivered_seqs.iter().copied().collect::<BTreeSet<_>>(),
        good.iter().copied().collect::<BTreeSet<_>>(),
        "every good record delivered"
    );
    assert_eq!(delivered_seqs.len(), good.len(), "each once");
    for key in 0..KEYS {
        let of_key: Vec<u64> = delivered_seqs
            .iter()
            .copied()
            .filter(|s| s % KEYS == key)
            .collect();
        assert!(of_key.is_sorted(), "per-key order of k{key}: {of_key:?}");
    }
    if guarantee == Guarantee::ExactlyOnce {
        assert!(
            pipeline.stats.transactions.get() > 0,
            "written in transactions"
        );
    }
    eprintln!(
        "{guarantee:?}: {} bad records dead-lettered, {} good delivered in per-key order, {} \
         skipped, {} transactions: {}",
        dead.len(),
        delivered.len(),
        pipeline.stats.skipped.get(),
        pipeline.stats.transactions.get(),
        pipeline.stats.summary()
    );
    pipeline.stop().await.unwrap();
}

fn short(text: &str) -> String {
    let cut: String = text.chars().take(90).collect();
    if cut.len() < text.len() {
        format!("{cut}…")
    } else {
        cut
    }
}

/// With transactions, a refusal in a delivery report dooms the record's whole transaction
/// (Kafka aborts it), so it cannot be dead-lettered alone: the pipeline stops with an error
/// saying so, rather than write the transaction again forever; nothing of that transaction is
/// visible, and no record is acked that the sink does not show.
/// Pushes records 0..30 over three keys, each with its `seq` header; those `refused` picks
/// have the value `refuse me` (which the tests' sinks refuse), the others JSON.
fn push_refusing(source: &MemorySource, refused: impl Fn(u64) -> bool) {
    for seq in 0..30 {
        let value = if refused(seq) {
            "refuse me".to_owned()
        } else {
            format!("{{\"seq\":{seq}}}")
        };
        source.push_with_headers(
            Some(format!("k{}", seq % 3).as_bytes()),
            value.as_bytes(),
            vec![sluice_record::Header::new("seq", seq.to_string())],
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_transactions_a_refusal_at_delivery_stops_the_pipeline_with_a_clear_error() {
    let source = MemorySource::new();
    let sink = MemorySink::new("out", Some("dlq"));
    sink.refuse_deliveries_of(|record| record.value.as_deref() == Some(b"refuse me"));
    push_refusing(&source, |seq| seq == 24);
    let pipeline = MemoryPipeline::start_with(
        sluice_tests::PASSTHROUGH,
        source,
        sink,
        Guarantee::ExactlyOnce,
    )
    .await;
    let ended = tokio::time::timeout(WAIT, pipeline.task)
        .await
        .expect("the pipeline stops by itself")
        .unwrap();
    let error = ended.expect_err("a refused record in a transaction fails the pipeline");
    let chain = sluice_pipeline::error_chain(&error);
    assert!(
        chain.contains("in its delivery report") && chain.contains("refused the record"),
        "{chain}"
    );
    let (acked, visible) = (
        pipeline.source.acked().len(),
        pipeline.sink.written("out").len(),
    );
    let seqs: Vec<u64> = pipeline.sink.written("out").iter().map(seq).collect();
    assert!(!seqs.contains(&24), "the refused record is not visible");
    assert!(
        acked <= visible && visible < 30,
        "{acked} acked, {visible} visible"
    );
    assert!(pipeline.sink.written("dlq").is_empty());
    eprintln!("stopped with {acked} acked, {visible} visible: {chain}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_sink_refuses_at_delivery_is_dead_lettered_and_the_others_go_on() {
    let source = MemorySource::new();
    let sink = MemorySink::new("out", Some("dlq"));
    sink.refuse_deliveries_of(|record| {
        record.topic.as_deref() != Some("dlq") && record.value.as_deref() == Some(b"refuse me")
    });
    push_refusing(&source, |seq| seq % 10 == 4);
    let pipeline = MemoryPipeline::start(sluice_tests::PASSTHROUGH, source, sink).await;
    pipeline.wait_for_acks(30).await;
    let dead = pipeline.sink.written("dlq");
    let dead_seqs: Vec<u64> = dead.iter().map(seq).collect();
    assert_eq!(dead_seqs, [4, 14, 24]);
    for record in &dead {
        assert_eq!(header(record, "sluice.error.kind"), Some("refused"));
        assert!(
            header(record, "sluice.error")
                .unwrap()
                .contains("refused the record")
        );
        // A copy of output 0 takes index 1: one past the outputs.
        assert_eq!(header(record, "sluice.output.index"), Some("1"));
    }
    assert_eq!(pipeline.sink.written("out").len(), 27);
    assert_eq!(
        pipeline.stats.restarts.get(),
        0,
        "a refusal is not an outage"
    );
    pipeline.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_while_the_sink_is_stuck_gives_up_and_the_next_run_loses_nothing() {
    let source = MemorySource::new();
    let sink = MemorySink::new("out", Some("dlq"));
    let pipeline =
        MemoryPipeline::start(sluice_tests::PASSTHROUGH, source.clone(), sink.clone()).await;
    for seq in 0..20 {
        source.push(Some(b"k"), seq.to_string().as_bytes());
    }
    pipeline.wait_for_acks(20).await;
    sink.set_stuck(true);
    for seq in 20..50 {
        source.push(Some(b"k"), seq.to_string().as_bytes());
    }
    // Every record reached the stuck sink: none can be acked.
    tokio::time::timeout(WAIT, async {
        while sink.written("out").len() < 50 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the stuck sink takes the records");
    // What the runtime does at the drain bound: stop, then give up.
    pipeline.stop.cancel();
    pipeline.give_up.cancel();
    let result = tokio::time::timeout(WAIT, pipeline.task)
        .await
        .expect("a pipeline that gives up ends")
        .unwrap();
    let error = result.unwrap_err();
    assert_eq!(error.undrained(), Some(30), "{error}");
    assert!(
        error.to_string().contains("30 record(s) not acked"),
        "{error}"
    );
    assert_eq!(source.acked().len(), 20);

    sink.set_stuck(false);
    let again =
        MemoryPipeline::start(sluice_tests::PASSTHROUGH, source.clone(), sink.clone()).await;
    again.wait_for_acks(50).await;
    let values: BTreeSet<Vec<u8>> = sink
        .written("out")
        .into_iter()
        .filter_map(|r| r.value.map(Vec::from))
        .collect();
    assert_eq!(values.len(), 50, "nothing lost");
    again.stop().await.unwrap();
}

/// `sluice run` of the `bad-outputs` guest with `settings` lines in its transform table, against
/// brokers that do not exist (it fails before it connects).
fn run_offline_bad_outputs(settings: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let config = write_offline_config(dir.path(), sluice_tests::BAD_OUTPUTS);
    let component = format!("component = {:?}", sluice_tests::BAD_OUTPUTS);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(&component, &format!("{component}\n{settings}"));
    std::fs::write(&config, text).unwrap();
    sluice(&["run", "--config", config.to_str().unwrap()])
}

#[test]
fn a_transform_that_refuses_its_config_gets_a_hint_about_the_config_and_a_bounded_error() {
    let output = run_offline_bad_outputs(&format!(
        "config = {{ init_error_bytes = \"{}\" }}",
        50 * 1024 * 1024
    ));
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = error_line(&output);
    assert!(line.contains("refused its configuration"), "{line}");
    assert!(line.ends_with("bytes cut]"), "{}", short(&line));
    assert!(line.len() <= 2 * MAX_GUEST_TEXT_BYTES, "{}", line.len());
    let hint = stderr.lines().find(|l| l.starts_with("hint:")).unwrap();
    assert!(hint.contains("config"), "{hint}");
    assert!(!hint.contains("cargo build"), "{hint}");
    // The log (stderr) too: no line longer than docs/sandbox.md's bound of 8 KiB.
    let longest = stderr.lines().map(str::len).max().unwrap_or(0);
    assert!(longest <= 8 * 1024, "a stderr line of {longest} bytes");
    eprintln!("50 MiB init error: exit 2, longest stderr line {longest} bytes; {hint}");
}

#[test]
fn a_transform_whose_init_times_out_gets_a_hint_about_its_config_and_limit() {
    let output = run_offline_bad_outputs(
        "config = { init_loop = \"yes\" }\nlimits = { batch_timeout_ms = 200 }",
    );
    assert_eq!(output.status.code(), Some(2));
    let line = error_line(&output);
    assert!(line.contains("failed to start (timeout)"), "{line}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let hint = stderr.lines().find(|l| l.starts_with("hint:")).unwrap();
    assert!(
        hint.contains("batch_timeout_ms") && hint.contains("config"),
        "{hint}"
    );
}

#[test]
fn exec_shows_an_invalid_output_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        "{\"key\":\"a\",\"value\":\"topic-nul\"}\n{\"key\":\"a\",\"value\":\"fine\"}\n",
    )
    .unwrap();
    let lines = sluice_exec(&[
        sluice_tests::BAD_OUTPUTS,
        "--input",
        input.to_str().unwrap(),
    ]);
    assert_eq!(lines[0]["error"]["kind"], "invalid-output");
    assert!(
        lines[0]["error"]["reason"]
            .as_str()
            .unwrap()
            .contains("output 0: topic")
    );
    assert_eq!(lines[1]["value"], "fine");
}
