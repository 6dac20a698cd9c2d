//! Masks named fields of JSON records, at any depth, and says how many it masked.
//!
//! Config: `fields` (comma-separated field names, matched in nested objects and inside arrays)
//! and `mask` (default `***`). Every matching field's value, whatever its JSON type, becomes the
//! mask string. The output keeps the key and headers, carries the compact re-serialized JSON
//! (field order kept) and adds header `sluice-redacted` with the count. Records that are not
//! JSON are dead-lettered.

use sluice_sdk::json::serde_json::{self, Value};
use sluice_sdk::json::value_of;
use sluice_sdk::{Config, Error, Message, Result, Writer, log, transform};

/// Header carrying how many fields were masked, as decimal text.
const REDACTED_HEADER: &str = "sluice-redacted";

const DEFAULT_MASK: &str = "***";

/// The parsed `fields` and `mask` settings.
struct Redaction<'a> {
    fields: Vec<&'a str>,
    mask: &'a str,
}

impl<'a> Redaction<'a> {
    fn from_config(config: &'a Config) -> Result<Self> {
        config.require("fields")?;
        let fields = config.get_list("fields");
        if fields.is_empty() {
            return Err(Error::fatal(
                r#"invalid config "fields": expected comma-separated field names"#,
            ));
        }
        Ok(Self {
            fields,
            mask: config.get("mask").unwrap_or(DEFAULT_MASK),
        })
    }

    /// Masks matching fields in `value` and below; returns how many were masked. A masked
    /// value is replaced whole, so fields inside it are not counted again.
    fn apply(&self, value: &mut Value) -> usize {
        match value {
            Value::Object(object) => object
                .iter_mut()
                .map(|(name, field)| {
                    if self.fields.contains(&name.as_str()) {
                        *field = Value::String(self.mask.to_owned());
                        1
                    } else {
                        self.apply(field)
                    }
                })
                .sum(),
            Value::Array(items) => items.iter_mut().map(|item| self.apply(item)).sum(),
            _ => 0,
        }
    }
}

/// Refuses a configuration without field names; logs the one it accepts.
fn setup(config: &Config) -> Result<()> {
    let redaction = Redaction::from_config(config)?;
    log::info(format!(
        "masking fields {:?} with {:?}",
        redaction.fields, redaction.mask
    ));
    Ok(())
}

/// Writes the record with its matching fields masked.
#[transform(init = setup)]
fn on_message(msg: Message, out: &mut Writer) -> Result<()> {
    let config = sluice_sdk::config();
    let redaction = Redaction::from_config(&config)?;
    let mut document = value_of(&msg)?;
    let masked = redaction.apply(&mut document);
    let value = serde_json::to_vec(&document)?;
    out.write(
        msg.into_output()
            .with_value(value)
            .with_header(REDACTED_HEADER, masked.to_string()),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use sluice_sdk::testing::with_config;
    use sluice_sdk::{Config, ErrorKind, Header, Message, Output, Result, Writer};

    fn run(config: &[(&str, &str)], msg: Message) -> Result<Output> {
        with_config(config.iter().copied(), || {
            let mut out = Writer::default();
            super::on_message(msg, &mut out)?;
            assert_eq!(out.len(), 1, "one output per record");
            Ok(out.into_outputs().remove(0))
        })
    }

    fn text(output: &Output) -> &str {
        std::str::from_utf8(output.value().unwrap()).unwrap()
    }

    #[test]
    fn masks_fields_at_any_depth_and_keeps_order() {
        let value = r#"{"z": 1, "email": "a@b.c", "user": {"phone": 123, "name": "Ann"},
            "contacts": [{"email": null}, {"other": {"phone": [1, 2]}}], "a": true}"#;
        let msg = Message::from_value(value)
            .with_key("k")
            .with_header("h", "1");
        let output = run(&[("fields", "email, phone")], msg).unwrap();
        assert_eq!(
            text(&output),
            r#"{"z":1,"email":"***","user":{"phone":"***","name":"Ann"},"contacts":[{"email":"***"},{"other":{"phone":"***"}}],"a":true}"#
        );
        assert_eq!(output.key(), Some(&b"k"[..]));
        assert_eq!(
            output.headers(),
            &[Header::new("h", "1"), Header::new("sluice-redacted", "4")]
        );
        assert_eq!(output.topic(), None);
        assert_eq!(output.timestamp_ms(), None);
    }

    #[test]
    fn masked_objects_count_once() {
        let msg = Message::from_value(r#"{"card": {"card": "x", "cvv": 1}}"#);
        let output = run(&[("fields", "card,cvv"), ("mask", "#")], msg).unwrap();
        assert_eq!(text(&output), r##"{"card":"#"}"##);
        assert_eq!(output.header("sluice-redacted"), Some(&b"1"[..]));
    }

    #[test]
    fn untouched_records_say_zero_and_are_compacted() {
        let msg = Message::from_value("{ \"b\" : 1 ,\n \"a\" : [ ] }");
        let output = run(&[("fields", "email")], msg).unwrap();
        assert_eq!(text(&output), r#"{"b":1,"a":[]}"#);
        assert_eq!(output.header("sluice-redacted"), Some(&b"0"[..]));
    }

    #[test]
    fn dead_letters_records_that_are_not_json() {
        let error = run(&[("fields", "email")], Message::from_value("nope")).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::DeadLetter);
        assert!(error.message().starts_with("value is not JSON"), "{error}");

        let error = run(&[("fields", "email")], Message::new()).unwrap_err();
        assert_eq!(error.message(), "value is not JSON: record has no value");
    }

    #[test]
    fn init_requires_field_names() {
        let missing = super::setup(&Config::from_pairs([("mask", "#")])).unwrap_err();
        assert_eq!(missing.message(), r#"missing config key "fields""#);
        let empty = super::setup(&Config::from_pairs([("fields", " , ")])).unwrap_err();
        assert!(empty.message().starts_with(r#"invalid config "fields""#));
        assert!(super::setup(&Config::from_pairs([("fields", "ssn")])).is_ok());
    }
}
