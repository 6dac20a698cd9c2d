//! `#[transform]` as a guest crate uses it. The generated `Guest` impl is compiled here (natively)
//! but only exported on wasm32, so these tests drive the same glue it calls: `run_init`,
//! `run_batch` and `into_error!`.

use std::fmt;

use sluice_sdk::__private::{
    InputRecord, TransformError, WitHeader, WitSourceInfo, WitSourceKind, into_error, run_batch,
    run_init,
};
use sluice_sdk::{
    Config, Error, ErrorKind, Message, Output, Result, SourceKind, Writer, transform,
};

fn setup(cfg: &Config) -> Result<()> {
    cfg.require("mode")?;
    Ok(())
}

/// Modes: "copy" writes the record twice (the second routed), "skip"/"fatal" fail on purpose,
/// anything else parses the value as a number through a converted `std::error::Error`.
#[transform(init = setup)]
fn on_message(msg: Message, out: &mut Writer) -> Result<()> {
    let config = sluice_sdk::config();
    match config.require("mode")? {
        "copy" => {
            out.write(msg.clone());
            out.write_to("copies", msg);
            Ok(())
        }
        "skip" => Err(Error::skip("not interesting")),
        "fatal" => Err(Error::fatal("broken")),
        _ => {
            out.write(Output::new().with_value("written before the error"));
            let text = std::str::from_utf8(msg.value().unwrap_or_default())?;
            let number: i64 = text.parse()?;
            out.write(Output::new().with_value(number.to_string()));
            Ok(())
        }
    }
}

/// An error type that is `Display` but not `std::error::Error`, like `anyhow::Error`.
#[derive(Debug)]
struct Printable;

impl fmt::Display for Printable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            f.write_str("outer: inner")
        } else {
            f.write_str("outer")
        }
    }
}

/// The macro accepts any printable error type, in init hooks too.
fn printable_setup(_: &Config) -> Result<(), Printable> {
    Err(Printable)
}

#[transform(init = printable_setup)]
fn always_printable(_msg: Message, _out: &mut Writer) -> Result<(), Printable> {
    Err(Printable)
}

fn input(value: &str) -> InputRecord {
    InputRecord {
        key: Some(b"k".to_vec()),
        value: Some(value.as_bytes().to_vec()),
        headers: vec![WitHeader {
            name: "h".into(),
            value: b"v".to_vec(),
        }],
        event_time_ms: Some(1),
        publish_time_ms: Some(2),
        source: WitSourceInfo {
            kind: WitSourceKind::Pulsar,
            topic: "persistent://public/default/in".into(),
            message_id: "1:2:-1:0".into(),
        },
    }
}

#[test]
fn annotated_functions_stay_callable() {
    let mut out = Writer::default();
    sluice_sdk::testing::with_config([("mode", "copy")], || {
        on_message(Message::from_value("x"), &mut out)
    })
    .unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out.outputs()[1].topic(), Some("copies"));
    assert!(always_printable(Message::new(), &mut Writer::new()).is_err());
}

#[test]
fn init_stores_the_config_and_reports_hook_errors() {
    assert_eq!(
        run_init(vec![], setup),
        Err(r#"missing config key "mode""#.to_owned())
    );
    assert!(sluice_sdk::config().is_empty());
    assert_eq!(
        run_init(vec![("mode".into(), "copy".into())], setup),
        Ok(())
    );
    assert_eq!(sluice_sdk::config().get("mode"), Some("copy"));
    assert_eq!(
        run_init(vec![], |cfg| printable_setup(cfg)
            .map_err(|e| into_error!(e))),
        Err("outer: inner".to_owned())
    );
}

#[test]
fn batch_gives_one_result_per_record_in_order() {
    run_init(vec![("mode".into(), "copy".into())], setup).unwrap();
    let mut seen = Vec::new();
    let results = run_batch(vec![input("a"), input("b")], |msg, out| {
        assert_eq!(msg.source().kind, SourceKind::Pulsar);
        assert_eq!(msg.source().message_id, "1:2:-1:0");
        assert_eq!(msg.event_time_ms(), Some(1));
        assert!(out.is_empty(), "each record gets a fresh writer");
        seen.push(msg.value().unwrap().to_vec());
        on_message(msg, out)
    });
    assert_eq!(seen, [b"a".to_vec(), b"b".to_vec()]);
    assert_eq!(results.len(), 2);
    let outputs = results[1].as_ref().unwrap();
    assert_eq!(outputs.len(), 2);
    assert_eq!(outputs[0].key.as_deref(), Some(&b"k"[..]));
    assert_eq!(outputs[0].value.as_deref(), Some(&b"b"[..]));
    assert_eq!(outputs[0].headers[0].name, "h");
    assert_eq!(outputs[0].headers[0].value, b"v");
    assert_eq!(outputs[0].timestamp_ms, None);
    assert_eq!(outputs[0].topic, None);
    assert_eq!(outputs[1].topic.as_deref(), Some("copies"));
}

fn error_of(mode: &str, value: &str) -> TransformError {
    sluice_sdk::testing::with_config([("mode", mode)], || {
        let mut results = run_batch(vec![input(value)], on_message);
        results.remove(0).unwrap_err()
    })
}

#[test]
fn errors_map_to_the_wit_variant_and_discard_outputs() {
    assert!(matches!(error_of("skip", "1"), TransformError::Skip(m) if m == "not interesting"));
    assert!(matches!(error_of("fatal", "1"), TransformError::Fatal(m) if m == "broken"));
    assert!(matches!(
        error_of("number", "x"),
        TransformError::DeadLetter(m) if m == "invalid digit found in string"
    ));
}

#[test]
fn into_error_picks_the_most_specific_conversion() {
    let sdk = Error::skip("kept");
    assert_eq!(into_error!(sdk), Error::skip("kept"));

    let io = std::io::Error::other(Error::fatal("not std").to_string());
    let converted = into_error!(io);
    assert_eq!(converted.kind(), ErrorKind::DeadLetter);
    assert_eq!(converted.message(), "not std");

    assert_eq!(into_error!(Printable), Error::dead_letter("outer: inner"));
    assert_eq!(into_error!("plain text"), Error::dead_letter("plain text"));
}
