//! Keys JSON events by one of their fields and gives them the event time another field holds,
//! so the host's windows (`[[pipeline.windows]]` in `sluice.toml`, docs/windows.md) count
//! them per key per minute. The counting is the host's: this guest only says what the key and
//! the time are.
//!
//! Config: `key_field` (dotted path, default `user`) and `time_field` (dotted path to epoch
//! milliseconds, default `ts`). A record whose value is not JSON, or lacks either field, is
//! dead-lettered; one without a numeric time too.

use sluice_sdk::json::serde_json::Value;
use sluice_sdk::json::{DottedPath, text_of, value_of};
use sluice_sdk::{Config, Error, Message, Result, Writer, transform};

/// The parsed `key_field` and `time_field` settings.
struct Fields<'a> {
    key: DottedPath<'a>,
    time: DottedPath<'a>,
}

impl<'a> Fields<'a> {
    fn from_config(config: &'a Config) -> Result<Self> {
        Ok(Self {
            key: DottedPath::parse("key_field", config.get("key_field").unwrap_or("user"))?,
            time: DottedPath::parse("time_field", config.get("time_field").unwrap_or("ts"))?,
        })
    }

    fn find<'v>(path: &DottedPath<'_>, document: &'v Value) -> Result<&'v Value> {
        path.lookup(document)
            .ok_or_else(|| Error::dead_letter(format!("no field {:?}", path.as_str())))
    }
}

fn setup(config: &Config) -> Result<()> {
    Fields::from_config(config).map(drop)
}

/// Writes the record with its key and event time taken from its JSON value.
#[transform(init = setup)]
fn on_message(msg: Message, out: &mut Writer) -> Result<()> {
    let config = sluice_sdk::config();
    let fields = Fields::from_config(&config)?;
    let document = value_of(&msg)?;
    let key = text_of(Fields::find(&fields.key, &document)?).into_owned();
    let time = Fields::find(&fields.time, &document)?
        .as_i64()
        .ok_or_else(|| Error::dead_letter(format!("{:?} is not epoch ms", fields.time.as_str())))?;
    out.write(msg.into_output().with_key(key).with_timestamp_ms(time));
    Ok(())
}

#[cfg(test)]
mod tests {
    use sluice_sdk::testing::with_config;
    use sluice_sdk::{ErrorKind, Message, Result, Writer};

    fn run(value: &str) -> Result<Writer> {
        with_config([("key_field", "user.id")], || {
            let mut out = Writer::default();
            super::on_message(Message::from_value(value), &mut out).map(|()| out)
        })
    }

    #[test]
    fn keys_and_times_the_event_from_its_fields() {
        let out = run(r#"{"user":{"id":"ada"},"ts":1700000000123}"#).unwrap();
        let [output] = out.outputs() else {
            panic!("one output expected: {:?}", out.outputs());
        };
        assert_eq!(output.key(), Some(&b"ada"[..]));
        assert_eq!(output.timestamp_ms(), Some(1_700_000_000_123));
    }

    #[test]
    fn dead_letters_events_without_a_key_or_a_time() {
        for value in [
            r#"{"ts":1}"#,
            r#"{"user":{"id":"a"}}"#,
            r#"{"user":{"id":"a"},"ts":"x"}"#,
            "x",
        ] {
            let error = run(value).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::DeadLetter, "{value}");
        }
    }
}
