//! `#[transform]` as a guest crate uses it. The generated `Guest` impl is compiled here (natively)
//! but only exported on wasm32, so these tests drive the same glue it calls: `run_init`,
//! `run_batch` and `into_error!`.

use std::fmt;

use sluice_flat::{FieldView, ResultView, SourceView, decode_results, encode, source_kind};
use sluice_sdk::__private::{into_error, run_batch, run_init};
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

/// A flat batch as the host encodes it: one record per value, each with key `k`, header
/// `h: v`, event time 1, publish time 2, from one Pulsar topic.
fn batch(values: &[&str]) -> Vec<u8> {
    let mut buffer = Vec::new();
    let sources = [SourceView {
        kind: source_kind::PULSAR,
        topic: "persistent://public/default/in",
    }];
    encode::batch_header(&mut buffer, values.len(), &sources);
    for value in values {
        encode::record(
            &mut buffer,
            0,
            "1:2:-1:0",
            Some(b"k"),
            Some(value.as_bytes()),
            Some(1),
            Some(2),
            1,
        );
        encode::header(&mut buffer, "h", b"v");
    }
    buffer
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
fn batch_gives_one_result_per_record_in_order_and_forwards_what_it_leaves_unchanged() {
    run_init(vec![("mode".into(), "copy".into())], setup).unwrap();
    let mut seen = Vec::new();
    let results = run_batch(batch(&["a", "b"]), |msg, out| {
        assert_eq!(msg.source().kind, SourceKind::Pulsar);
        assert_eq!(msg.source().topic, "persistent://public/default/in");
        assert_eq!(msg.source().message_id, "1:2:-1:0");
        assert_eq!(msg.event_time_ms(), Some(1));
        assert_eq!(msg.header("h"), Some(&b"v"[..]));
        assert_eq!(msg.headers().len(), 1);
        assert!(out.is_empty(), "each record gets a fresh writer");
        seen.push(msg.value().unwrap().to_vec());
        on_message(msg, out)
    });
    assert_eq!(seen, [b"a".to_vec(), b"b".to_vec()]);
    let results = decode_results(&results).unwrap();
    assert_eq!(results.len(), 2);
    let ResultView::Outputs(outputs) = results.iter().nth(1).unwrap() else {
        panic!("outputs expected");
    };
    assert_eq!(outputs.len(), 2);
    // Unchanged key, value and headers travel back as references to the input.
    assert_eq!(outputs[0].key, FieldView::FromInput);
    assert_eq!(outputs[0].value, FieldView::FromInput);
    assert!(outputs[0].input_headers);
    assert!(outputs[0].headers.is_empty());
    assert_eq!(outputs[0].timestamp_ms, None);
    assert_eq!(outputs[0].topic, None);
    assert_eq!(outputs[1].topic, Some("copies"));
}

#[test]
fn changed_fields_travel_as_bytes() {
    let results = run_batch(batch(&["a"]), |msg, out| {
        out.write(
            msg.into_output()
                .with_value("new")
                .without_key()
                .with_header("added", "1"),
        );
        Ok(())
    });
    let results = decode_results(&results).unwrap();
    let ResultView::Outputs(outputs) = results.iter().next().unwrap() else {
        panic!("outputs expected");
    };
    assert_eq!(outputs[0].key, FieldView::Absent);
    assert_eq!(outputs[0].value, FieldView::Inline(b"new"));
    assert!(
        outputs[0].input_headers,
        "the input's headers, then the added one"
    );
    assert_eq!(
        outputs[0].headers.iter().collect::<Vec<_>>(),
        [("added", &b"1"[..])]
    );
}

fn error_of(mode: &str, value: &str) -> (&'static str, String) {
    sluice_sdk::testing::with_config([("mode", mode)], || {
        let results = run_batch(batch(&[value]), on_message);
        let results = decode_results(&results).unwrap();
        match results.iter().next().unwrap() {
            ResultView::Skip(reason) => ("skip", reason.to_owned()),
            ResultView::DeadLetter(reason) => ("dead-letter", reason.to_owned()),
            ResultView::Fatal(reason) => ("fatal", reason.to_owned()),
            ResultView::Outputs(_) => panic!("an error expected"),
        }
    })
}

#[test]
fn errors_map_to_the_result_tags_and_discard_outputs() {
    assert_eq!(error_of("skip", "1"), ("skip", "not interesting".into()));
    assert_eq!(error_of("fatal", "1"), ("fatal", "broken".into()));
    assert_eq!(
        error_of("number", "x"),
        ("dead-letter", "invalid digit found in string".into())
    );
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
