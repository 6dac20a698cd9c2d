//! The example components (`examples/`) through `sluice exec`, checked line by line.

use std::path::Path;

use sluice_engine::exec::{ExecSummary, exec};
use sluice_engine::{Limits, TransformChain, TransformSpec};
use sluice_tests::{JSON_FILTER, PASSTHROUGH, REDACT, ROUTER, engine};

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
