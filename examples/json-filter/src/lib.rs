//! Keeps JSON records whose field equals a configured value and drops the others.
//!
//! Config: `field` (dotted path into the JSON object, e.g. `customer.tier`) and `equals`. A JSON
//! string matches by its content, any other JSON value by its compact text (`true`, `42`,
//! `null`). Records that are not JSON are dead-lettered.

use sluice_sdk::json::serde_json::Value;
use sluice_sdk::json::{DottedPath, text_of, value_of};
use sluice_sdk::{Config, Message, Result, Writer, log, transform};

/// The parsed `field` and `equals` settings.
struct Filter<'a> {
    path: DottedPath<'a>,
    equals: &'a str,
}

impl<'a> Filter<'a> {
    fn from_config(config: &'a Config) -> Result<Self> {
        let field = config.require("field")?;
        let equals = config.require("equals")?;
        Ok(Self {
            path: DottedPath::parse("field", field)?,
            equals,
        })
    }

    fn matches(&self, document: &Value) -> bool {
        self.path
            .lookup(document)
            .is_some_and(|value| text_of(value) == self.equals)
    }
}

/// Refuses a configuration that could not filter anything; logs the one it accepts.
fn setup(config: &Config) -> Result<()> {
    let filter = Filter::from_config(config)?;
    log::info(format!(
        "keeping records whose {:?} is {:?}",
        filter.path.as_str(),
        filter.equals
    ));
    Ok(())
}

/// Writes the record unchanged if its field matches; writes nothing otherwise.
#[transform(init = setup)]
fn on_message(msg: Message, out: &mut Writer) -> Result<()> {
    let config = sluice_sdk::config();
    let filter = Filter::from_config(&config)?;
    if filter.matches(&value_of(&msg)?) {
        out.write(msg);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use sluice_sdk::testing::with_config;
    use sluice_sdk::{Config, ErrorKind, Message, Result, Writer};

    fn run(field: &str, equals: &str, msg: Message) -> Result<Writer> {
        with_config([("field", field), ("equals", equals)], || {
            let mut out = Writer::default();
            super::on_message(msg, &mut out).map(|()| out)
        })
    }

    fn json(text: &str) -> Message {
        Message::from_value(text)
            .with_key("k")
            .with_header("h", "1")
    }

    #[test]
    fn keeps_a_matching_record_unchanged() {
        let value = r#"{"customer":{"tier":"gold"},"n":1}"#;
        let out = run("customer.tier", "gold", json(value)).unwrap();
        let [output] = out.outputs() else {
            panic!("expected one output, got {:?}", out.outputs());
        };
        assert_eq!(output.value(), Some(value.as_bytes()));
        assert_eq!(output.key(), Some(&b"k"[..]));
        assert_eq!(output.header("h"), Some(&b"1"[..]));
        assert_eq!(output.topic(), None);
    }

    #[test]
    fn drops_records_that_do_not_match_or_lack_the_field() {
        for value in [
            r#"{"customer":{"tier":"silver"}}"#,
            r#"{"customer":{}}"#,
            r#"{"customer":"gold"}"#,
            r#"["gold"]"#,
            "42",
        ] {
            let out = run("customer.tier", "gold", json(value)).unwrap();
            assert!(out.is_empty(), "{value} should be filtered out");
        }
    }

    #[test]
    fn non_strings_compare_by_compact_json_text() {
        let cases = [
            (r#"{"vip": true}"#, "true", true),
            (r#"{"vip": 42}"#, "42", true),
            (r#"{"vip": 42.5}"#, "42.5", true),
            (r#"{"vip": null}"#, "null", true),
            (r#"{"vip": [1, 2]}"#, "[1,2]", true),
            (r#"{"vip": "true"}"#, "true", true),
            (r#"{"vip": 42}"#, "\"42\"", false),
            (r#"{"vip": false}"#, "true", false),
        ];
        for (value, equals, kept) in cases {
            let out = run("vip", equals, json(value)).unwrap();
            assert_eq!(out.len(), usize::from(kept), "{value} equals {equals}");
        }
    }

    #[test]
    fn dead_letters_records_that_are_not_json() {
        let error = run("a", "b", json("{not json")).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::DeadLetter);
        assert!(error.message().starts_with("value is not JSON"), "{error}");

        let error = run("a", "b", Message::new()).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::DeadLetter);
        assert_eq!(error.message(), "value is not JSON: record has no value");
    }

    #[test]
    fn init_requires_field_and_equals() {
        let missing = super::setup(&Config::from_pairs([("field", "a")])).unwrap_err();
        assert_eq!(missing.message(), r#"missing config key "equals""#);
        let missing = super::setup(&Config::from_pairs([("equals", "a")])).unwrap_err();
        assert_eq!(missing.message(), r#"missing config key "field""#);
        let bad_path = super::setup(&Config::from_pairs([("field", "a..b"), ("equals", "x")]));
        assert!(bad_path.unwrap_err().message().contains("dotted path"));
        assert!(super::setup(&Config::from_pairs([("field", "a.b"), ("equals", "x")])).is_ok());
    }
}
