//! Routes each JSON record to a Kafka topic named by one of its fields.
//!
//! Config: `field` (dotted path into the JSON object, e.g. `region` or `order.country`),
//! `prefix` (default empty) and `default_topic` (for records without the field; without it
//! they go to the pipeline's sink topic). The topic is `prefix` + the field's value (a string's
//! content, the compact JSON text of anything else). The record itself is unchanged. Records
//! that are not JSON, or whose topic name would be invalid, are dead-lettered.

use sluice_sdk::json::serde_json::Value;
use sluice_sdk::json::{DottedPath, text_of, value_of};
use sluice_sdk::{Config, Error, Message, Result, Writer, log, transform};

/// Longest topic name Kafka accepts.
const MAX_TOPIC_LEN: usize = 249;

/// The parsed `field`, `prefix` and `default_topic` settings.
struct Route<'a> {
    path: DottedPath<'a>,
    prefix: &'a str,
    default_topic: Option<&'a str>,
}

impl<'a> Route<'a> {
    fn from_config(config: &'a Config) -> Result<Self> {
        let path = DottedPath::parse("field", config.require("field")?)?;
        let prefix = config.get("prefix").unwrap_or_default();
        // Checked here because a bad prefix would dead-letter every record.
        if !prefix.bytes().all(is_topic_byte) || prefix.len() >= MAX_TOPIC_LEN {
            return Err(Error::fatal(format!(
                r#"invalid config "prefix": {prefix:?} cannot start a topic name ({TOPIC_RULE})"#
            )));
        }
        let default_topic = config.get("default_topic");
        if let Some(topic) = default_topic {
            check_topic(topic).map_err(|error| {
                Error::fatal(format!(r#"invalid config "default_topic": {error}"#))
            })?;
        }
        Ok(Self {
            path,
            prefix,
            default_topic,
        })
    }

    /// The topic for `document`: `None` means the pipeline's sink topic.
    fn topic_for(&self, document: &Value) -> Result<Option<String>> {
        let Some(value) = self.path.lookup(document) else {
            return Ok(self.default_topic.map(str::to_owned));
        };
        let topic = format!("{}{}", self.prefix, text_of(value));
        check_topic(&topic)?;
        Ok(Some(topic))
    }
}

/// Refuses a configuration that could not route anything; logs the one it accepts.
fn setup(config: &Config) -> Result<()> {
    let route = Route::from_config(config)?;
    let fallback = route.default_topic.unwrap_or("the sink topic");
    log::info(format!(
        "routing to {:?} + the value of {:?}; records without it go to {fallback}",
        route.prefix,
        route.path.as_str(),
    ));
    Ok(())
}

/// Writes the record unchanged, routed by its field.
#[transform(init = setup)]
fn on_message(msg: Message, out: &mut Writer) -> Result<()> {
    let config = sluice_sdk::config();
    let route = Route::from_config(&config)?;
    match route.topic_for(&value_of(&msg)?)? {
        Some(topic) => out.write_to(topic, msg),
        None => out.write(msg),
    }
    Ok(())
}

const TOPIC_RULE: &str = "a topic name is 1 to 249 characters of [A-Za-z0-9._-]";

fn is_topic_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-')
}

/// A dead-letter error unless `topic` is a valid Kafka topic name.
fn check_topic(topic: &str) -> Result<()> {
    if (1..=MAX_TOPIC_LEN).contains(&topic.len()) && topic.bytes().all(is_topic_byte) {
        Ok(())
    } else {
        Err(Error::dead_letter(format!(
            "invalid topic {topic:?}: {TOPIC_RULE}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use sluice_sdk::testing::with_config;
    use sluice_sdk::{Config, ErrorKind, Message, Output, Result, Writer};

    fn run(config: &[(&str, &str)], value: &str) -> Result<Output> {
        with_config(config.iter().copied(), || {
            let mut out = Writer::default();
            let msg = Message::from_value(value)
                .with_key("k")
                .with_header("h", "1");
            super::on_message(msg, &mut out)?;
            assert_eq!(out.len(), 1, "one output per record");
            Ok(out.into_outputs().remove(0))
        })
    }

    fn topic(config: &[(&str, &str)], value: &str) -> Option<String> {
        run(config, value).unwrap().topic().map(str::to_owned)
    }

    #[test]
    fn routes_by_field_value_with_prefix() {
        let value = r#"{"order": {"country": "fr"}}"#;
        let output = run(&[("field", "order.country"), ("prefix", "orders-")], value).unwrap();
        assert_eq!(output.topic(), Some("orders-fr"));
        assert_eq!(output.value(), Some(value.as_bytes()), "value unchanged");
        assert_eq!(output.key(), Some(&b"k"[..]));
        assert_eq!(output.header("h"), Some(&b"1"[..]));
        assert_eq!(output.timestamp_ms(), None);
    }

    #[test]
    fn numbers_and_bools_route_by_their_json_text() {
        let config = [("field", "shard"), ("prefix", "s.")];
        assert_eq!(topic(&config, r#"{"shard": 7}"#).as_deref(), Some("s.7"));
        assert_eq!(
            topic(&config, r#"{"shard": true}"#).as_deref(),
            Some("s.true")
        );
        assert_eq!(
            topic(&[("field", "shard")], r#"{"shard": "x_1"}"#).as_deref(),
            Some("x_1")
        );
    }

    #[test]
    fn missing_field_goes_to_the_default_topic_or_the_sink() {
        assert_eq!(
            topic(
                &[("field", "region"), ("default_topic", "unrouted")],
                r#"{"a": 1}"#
            )
            .as_deref(),
            Some("unrouted")
        );
        assert_eq!(
            topic(&[("field", "region"), ("prefix", "p-")], r#"[1]"#),
            None
        );
    }

    #[test]
    fn invalid_topic_names_are_dead_lettered() {
        for value in [
            r#"{"region": "eu west"}"#,
            r#"{"region": ""}"#,
            r#"{"region": "caf\u00e9"}"#,
            r#"{"region": {"a": 1}}"#,
        ] {
            let error = run(&[("field", "region")], value).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::DeadLetter);
            assert!(error.message().starts_with("invalid topic"), "{error}");
        }
        let long = format!(r#"{{"region": "{}"}}"#, "a".repeat(249));
        assert!(run(&[("field", "region")], &long).is_ok());
        let error = run(&[("field", "region"), ("prefix", "b")], &long).unwrap_err();
        assert!(error.message().starts_with("invalid topic"), "{error}");
    }

    #[test]
    fn dead_letters_records_that_are_not_json() {
        let error = run(&[("field", "region")], "{oops").unwrap_err();
        assert_eq!(error.kind(), ErrorKind::DeadLetter);
        assert!(error.message().starts_with("value is not JSON"), "{error}");
    }

    #[test]
    fn init_checks_the_config() {
        let setup =
            |pairs: &[(&str, &str)]| super::setup(&Config::from_pairs(pairs.iter().copied()));
        assert_eq!(
            setup(&[]).unwrap_err().message(),
            r#"missing config key "field""#
        );
        assert!(setup(&[("field", "region")]).is_ok());
        assert!(setup(&[("field", "region"), ("prefix", "bad prefix")]).is_err());
        let error = setup(&[("field", "region"), ("default_topic", "no/slash")]).unwrap_err();
        assert!(
            error
                .message()
                .starts_with(r#"invalid config "default_topic""#),
            "{error}"
        );
    }
}
