//! The example components (`examples/`) through `sluice exec`, checked line by line.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sluice_connectors::memory::{MemorySink, MemorySource};
use sluice_pipeline::windows::{BuiltinAggregate, LatePolicy, WindowKind, WindowSettings};
use sluice_pipeline::{Pipeline, PipelineControl, PipelineParts, PipelineSettings, PipelineStats};

use sluice_engine::exec::{ExecSummary, exec};
use sluice_engine::{Limits, TransformChain, TransformSpec};
use sluice_tests::{
    JSON_FILTER, PASSTHROUGH, REDACT, ROUTER, SESSIONIZER, WINDOWED_COUNT, WINDOWED_COUNT_PY,
    engine, timeouts,
};
use tokio_util::sync::CancellationToken;

/// What `exec` printed for `input`, and the transform's `name@sha256:…` for error lines.
struct Run {
    lines: Vec<String>,
    summary: ExecSummary,
    transform: String,
}

fn run(component: &str, config: &[(&str, &str)], input: &[&str]) -> Run {
    assert!(
        !component.is_empty() && Path::new(component).is_file(),
        "example component {component:?} is missing: tests/build.rs builds examples/ (does examples/Cargo.toml exist?)"
    );
    let spec = TransformSpec {
        name: Path::new(component)
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned(),
        component: component.into(),
        config: config
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        limits: Limits::default(),
        capabilities: Default::default(),
    };
    let mut chain = TransformChain::new(engine(), &[spec]).expect("the example loads");
    let mut output = Vec::new();
    let summary =
        exec(&mut chain, input.join("\n").as_bytes(), &mut output, 100).expect("exec runs");
    Run {
        lines: String::from_utf8(output)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect(),
        summary,
        transform: chain.transforms()[0].to_string(),
    }
}

/// An error line: exact except that the reason only has to start with `reason_prefix`
/// (the rest is the JSON parser's wording).
fn assert_error_line(line: &str, input: u64, kind: &str, transform: &str, reason_prefix: &str) {
    let parsed: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(parsed["input"], input, "{line}");
    assert_eq!(parsed["error"]["kind"], kind, "{line}");
    assert_eq!(parsed["error"]["transform"], transform, "{line}");
    let reason = parsed["error"]["reason"].as_str().unwrap();
    assert!(reason.starts_with(reason_prefix), "{line}");
    assert_eq!(parsed.as_object().unwrap().len(), 2, "{line}");
}

#[test]
fn passthrough_copies_key_value_and_headers() {
    let result = run(
        PASSTHROUGH,
        &[],
        &[
            r#"{"key":"k1","value":"hello","headers":{"b":"2","a":"1"},"event_time_ms":1000}"#,
            r#"{"value_base64":"AP8=","publish_time_ms":2000}"#,
            r#"{"key":"k3"}"#,
            r#"{"key":"k4","value":{"z":1,"a":[true,null]},"event_time_ms":5,"publish_time_ms":6}"#,
        ],
    );
    assert_eq!(
        result.lines,
        [
            r#"{"input":1,"key":"k1","value":"hello","headers":{"b":"2","a":"1"},"timestamp_ms":1000,"topic":null}"#,
            r#"{"input":2,"key":null,"value_base64":"AP8=","headers":{},"timestamp_ms":2000,"topic":null}"#,
            r#"{"input":3,"key":"k3","value":null,"headers":{},"timestamp_ms":null,"topic":null}"#,
            r#"{"input":4,"key":"k4","value":"{\"z\":1,\"a\":[true,null]}","headers":{},"timestamp_ms":5,"topic":null}"#,
        ]
    );
    assert_eq!(
        result.summary,
        ExecSummary {
            inputs: 4,
            outputs: 4,
            ..ExecSummary::default()
        }
    );
}

#[test]
fn json_filter_keeps_matches_drops_others_and_dead_letters_non_json() {
    let result = run(
        JSON_FILTER,
        &[("field", "customer.tier"), ("equals", "gold")],
        &[
            r#"{"key":"a","value":{"customer":{"tier":"gold"},"n":1},"headers":{"h":"1"}}"#,
            r#"{"key":"b","value":{"customer":{"tier":"silver"}}}"#,
            r#"{"key":"c","value":{"customer":{}}}"#,
            r#"{"key":"d","value":"not json"}"#,
            r#"{"key":"e","value":"{\"customer\": {\"tier\": \"gold\"}}"}"#,
        ],
    );
    assert_eq!(result.lines.len(), 3, "{:#?}", result.lines);
    assert_eq!(
        result.lines[0],
        r#"{"input":1,"key":"a","value":"{\"customer\":{\"tier\":\"gold\"},\"n\":1}","headers":{"h":"1"},"timestamp_ms":null,"topic":null}"#
    );
    assert_error_line(
        &result.lines[1],
        4,
        "dead-letter",
        &result.transform,
        "value is not JSON",
    );
    // A match is written unchanged: the original spacing stays.
    assert_eq!(
        result.lines[2],
        r#"{"input":5,"key":"e","value":"{\"customer\": {\"tier\": \"gold\"}}","headers":{},"timestamp_ms":null,"topic":null}"#
    );
    assert_eq!(
        result.summary,
        ExecSummary {
            inputs: 5,
            outputs: 2,
            dead_lettered: 1,
            ..ExecSummary::default()
        }
    );
}

#[test]
fn json_filter_compares_non_strings_by_their_json_text() {
    let result = run(
        JSON_FILTER,
        &[("field", "vip"), ("equals", "true")],
        &[
            r#"{"value":{"vip":true}}"#,
            r#"{"value":{"vip":"true"}}"#,
            r#"{"value":{"vip":false}}"#,
        ],
    );
    assert_eq!(
        result.lines,
        [
            r#"{"input":1,"key":null,"value":"{\"vip\":true}","headers":{},"timestamp_ms":null,"topic":null}"#,
            r#"{"input":2,"key":null,"value":"{\"vip\":\"true\"}","headers":{},"timestamp_ms":null,"topic":null}"#,
        ]
    );
}

#[test]
fn redact_masks_fields_at_any_depth_and_counts_them() {
    let result = run(
        REDACT,
        &[("fields", "email,phone")],
        &[
            r#"{"key":"u1","value":{"z":1,"email":"a@b.c","user":{"phone":123,"name":"Ann"},"contacts":[{"email":null},{"x":{"phone":[1]}}],"a":true},"headers":{"h":"1"},"event_time_ms":7}"#,
            r#"{"key":"u2","value":"{ \"b\" : 1 }"}"#,
            r#"{"key":"u3","value":"nope"}"#,
        ],
    );
    assert_eq!(result.lines.len(), 3, "{:#?}", result.lines);
    assert_eq!(
        result.lines[0],
        r#"{"input":1,"key":"u1","value":"{\"z\":1,\"email\":\"***\",\"user\":{\"phone\":\"***\",\"name\":\"Ann\"},\"contacts\":[{\"email\":\"***\"},{\"x\":{\"phone\":\"***\"}}],\"a\":true}","headers":{"h":"1","sluice-redacted":"4"},"timestamp_ms":7,"topic":null}"#
    );
    assert_eq!(
        result.lines[1],
        r#"{"input":2,"key":"u2","value":"{\"b\":1}","headers":{"sluice-redacted":"0"},"timestamp_ms":null,"topic":null}"#
    );
    assert_error_line(
        &result.lines[2],
        3,
        "dead-letter",
        &result.transform,
        "value is not JSON",
    );
}

#[test]
fn redact_uses_the_configured_mask() {
    let result = run(
        REDACT,
        &[("fields", "secret"), ("mask", "#")],
        &[r#"{"value":{"secret":{"a":1},"b":2}}"#],
    );
    assert_eq!(
        result.lines,
        [
            r##"{"input":1,"key":null,"value":"{\"secret\":\"#\",\"b\":2}","headers":{"sluice-redacted":"1"},"timestamp_ms":null,"topic":null}"##
        ]
    );
}

#[test]
fn router_routes_by_field_with_prefix_and_default_topic() {
    let result = run(
        ROUTER,
        &[
            ("field", "order.country"),
            ("prefix", "orders-"),
            ("default_topic", "orders-unknown"),
        ],
        &[
            r#"{"key":"1","value":{"order":{"country":"de"}}}"#,
            r#"{"key":"2","value":{"order":{"country":42}}}"#,
            r#"{"key":"3","value":{"order":{}}}"#,
            r#"{"key":"4","value":{"order":{"country":"a b"}}}"#,
            r#"{"key":"5","value":"nope"}"#,
        ],
    );
    assert_eq!(result.lines.len(), 5, "{:#?}", result.lines);
    assert_eq!(
        result.lines[..3],
        [
            r#"{"input":1,"key":"1","value":"{\"order\":{\"country\":\"de\"}}","headers":{},"timestamp_ms":null,"topic":"orders-de"}"#,
            r#"{"input":2,"key":"2","value":"{\"order\":{\"country\":42}}","headers":{},"timestamp_ms":null,"topic":"orders-42"}"#,
            r#"{"input":3,"key":"3","value":"{\"order\":{}}","headers":{},"timestamp_ms":null,"topic":"orders-unknown"}"#,
        ]
    );
    assert_error_line(
        &result.lines[3],
        4,
        "dead-letter",
        &result.transform,
        "invalid topic \"orders-a b\"",
    );
    assert_error_line(
        &result.lines[4],
        5,
        "dead-letter",
        &result.transform,
        "value is not JSON",
    );
}

#[test]
fn router_without_default_topic_leaves_the_sink_topic() {
    let result = run(
        ROUTER,
        &[("field", "region")],
        &[r#"{"value":{"other":1}}"#, r#"{"value":{"region":"eu"}}"#],
    );
    assert_eq!(
        result.lines,
        [
            r#"{"input":1,"key":null,"value":"{\"other\":1}","headers":{},"timestamp_ms":null,"topic":null}"#,
            r#"{"input":2,"key":null,"value":"{\"region\":\"eu\"}","headers":{},"timestamp_ms":null,"topic":"eu"}"#,
        ]
    );
}

#[test]
fn examples_refuse_a_missing_config_key_at_init() {
    for (component, missing) in [
        (JSON_FILTER, "field"),
        (REDACT, "fields"),
        (ROUTER, "field"),
    ] {
        let spec = TransformSpec {
            name: "example".into(),
            component: component.into(),
            config: Default::default(),
            limits: Limits::default(),
            capabilities: Default::default(),
        };
        let error = TransformChain::new(engine(), &[spec])
            .err()
            .expect("init must refuse");
        assert!(error.is_user_input_error(), "{error:?}");
        assert!(error.to_string().contains(missing), "{component}: {error}");
    }
}

/// A window stage of `kind` with `aggregate`, no lateness, results to the sink's topic.
fn window(kind: WindowKind, aggregate: BuiltinAggregate) -> WindowSettings {
    WindowSettings {
        name: "w".into(),
        kind,
        size_ms: None,
        advance_ms: None,
        gap_ms: None,
        lateness_ms: 0,
        aggregate,
        field: None,
        late: LatePolicy::Drop,
        topic: None,
    }
}

/// Runs `events` (JSON values, keyless) through `component` and `windows` in the host's own
/// pipeline (memory source and sink, no brokers); the results as `(key, start, end, value)`.
async fn through_windows(
    component: &str,
    windows: WindowSettings,
    events: &[&str],
) -> Vec<(String, i64, i64, String)> {
    let (source, sink) = (MemorySource::new(), MemorySink::new("out", Some("dlq")));
    let settings = PipelineSettings {
        windows: vec![windows],
        ..PipelineSettings::new("windows-example")
    };
    let stats = Arc::new(PipelineStats::standalone("windows-example"));
    let parts = PipelineParts {
        settings,
        source: Arc::new(source.clone()),
        transforms: vec![TransformSpec {
            name: "guest".into(),
            component: sluice_tests::component(component),
            config: BTreeMap::new(),
            limits: Limits::default(),
            capabilities: Default::default(),
        }],
        sink: sink.clone(),
    };
    let control = PipelineControl::new("windows-example", stats.clone());
    let pipeline = Pipeline::prepare(parts, engine(), control).await.unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(pipeline.run(stop.clone()));
    for event in events {
        source.push(None, event.as_bytes());
    }
    let acked = tokio::time::timeout(timeouts::DELIVERY, async {
        while source.acked().len() < events.len() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(acked.is_ok(), "{}", stats.summary());
    stop.cancel();
    task.await.unwrap().expect("the pipeline stops");
    let header = |record: &sluice_record::OutputRecord, name: &str| -> i64 {
        let header = record.headers.iter().find(|h| &*h.name == name).unwrap();
        std::str::from_utf8(&header.value).unwrap().parse().unwrap()
    };
    sink.written("out")
        .iter()
        .map(|record| {
            let text = |bytes: &Option<sluice_record::Bytes>| {
                String::from_utf8(bytes.as_deref().unwrap_or_default().to_vec()).unwrap()
            };
            (
                text(&record.key),
                header(record, "sluice-window-start"),
                header(record, "sluice-window-end"),
                text(&record.value),
            )
        })
        .collect()
}

fn result(key: &str, start: i64, end: i64, value: &str) -> (String, i64, i64, String) {
    (key.into(), start, end, value.into())
}

/// `examples/windowed-count` and its Python twin, with the 1-minute tumbling count of their
/// `sluice.toml`: clicks per user per minute, once a later click closes the minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windowed_count_counts_clicks_per_user_per_minute_in_rust_and_python() {
    let clicks = [
        r#"{"user":"ada","ts":0}"#,
        r#"{"user":"ada","ts":10000}"#,
        r#"{"user":"bob","ts":30000}"#,
        r#"{"user":"ada","ts":59999}"#,
        r#"{"user":"ada","ts":61000}"#,
        r#"{"user":"bob","ts":200000}"#,
    ];
    let mut minutes = window(WindowKind::Tumbling, BuiltinAggregate::Count);
    minutes.size_ms = Some(60_000);
    let expected = [
        result("ada", 0, 60_000, "3"),
        result("bob", 0, 60_000, "1"),
        result("ada", 60_000, 120_000, "1"),
    ];
    for component in [WINDOWED_COUNT, WINDOWED_COUNT_PY] {
        let results = through_windows(component, minutes.clone(), &clicks).await;
        assert_eq!(results, expected, "{component}");
    }
}

/// `examples/sessionizer` with the session window of its `sluice.toml` (`collect`): one
/// record per visit, the pages in order, once 30 minutes pass without a view.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessionizer_writes_each_visit_with_its_pages_in_order() {
    let views = [
        r#"{"user":"ada","page":"/","ts":0}"#,
        r#"{"user":"ada","page":"/docs","ts":60000}"#,
        r#"{"user":"bob","page":"/x","ts":100000}"#,
        r#"{"user":"ada","page":"/y","ts":2000000}"#,
        r#"{"user":"bob","page":"/z","ts":10000000}"#,
    ];
    let mut visits = window(WindowKind::Session, BuiltinAggregate::Collect);
    visits.gap_ms = Some(1_800_000);
    let results = through_windows(SESSIONIZER, visits, &views).await;
    assert_eq!(
        results,
        [
            result("ada", 0, 1_860_000, r#"["/","/docs"]"#),
            result("bob", 100_000, 1_900_000, r#"["/x"]"#),
            result("ada", 2_000_000, 3_800_000, r#"["/y"]"#),
        ]
    );
}
