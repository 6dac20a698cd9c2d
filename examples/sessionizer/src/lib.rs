//! A sessionizer: turns JSON page views into records keyed by user whose value is the page and
//! whose event time is the view's, so the host's session windows (`sluice.toml`, a `session`
//! window with `collect`; docs/windows.md) write one record per visit: the pages a user saw,
//! in order, until 30 minutes without a view.
//!
//! Config: `user_field` (default `user`), `page_field` (default `page`), `time_field` (epoch
//! ms, default `ts`), all dotted paths. A view lacking one of them is dead-lettered.

use sluice_sdk::json::serde_json::Value;
use sluice_sdk::json::{DottedPath, text_of, value_of};
use sluice_sdk::{Config, Error, Message, Result, Writer, transform};

/// The parsed field settings.
struct Fields<'a> {
    user: DottedPath<'a>,
    page: DottedPath<'a>,
    time: DottedPath<'a>,
}

impl<'a> Fields<'a> {
    fn from_config(config: &'a Config) -> Result<Self> {
        let path = |key: &'static str, default: &'static str| {
            DottedPath::parse(key, config.get(key).unwrap_or(default))
        };
        Ok(Self {
            user: path("user_field", "user")?,
            page: path("page_field", "page")?,
            time: path("time_field", "ts")?,
        })
    }
}

fn find<'v>(path: &DottedPath<'_>, document: &'v Value) -> Result<&'v Value> {
    path.lookup(document)
        .ok_or_else(|| Error::dead_letter(format!("no field {:?}", path.as_str())))
}

fn setup(config: &Config) -> Result<()> {
    Fields::from_config(config).map(drop)
}

/// Writes `user → page` at the view's event time.
#[transform(init = setup)]
fn on_message(msg: Message, out: &mut Writer) -> Result<()> {
    let config = sluice_sdk::config();
    let fields = Fields::from_config(&config)?;
    let view = value_of(&msg)?;
    let user = text_of(find(&fields.user, &view)?).into_owned();
    let page = text_of(find(&fields.page, &view)?).into_owned();
    let time = find(&fields.time, &view)?
        .as_i64()
        .ok_or_else(|| Error::dead_letter(format!("{:?} is not epoch ms", fields.time.as_str())))?;
    out.write(
        msg.into_output()
            .with_key(user)
            .with_value(page)
            .with_timestamp_ms(time),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use sluice_sdk::testing::with_config;
    use sluice_sdk::{ErrorKind, Message, Result, Writer};

    fn run(value: &str) -> Result<Writer> {
        with_config([("page_field", "url")], || {
            let mut out = Writer::default();
            super::on_message(Message::from_value(value), &mut out).map(|()| out)
        })
    }

    #[test]
    fn a_view_becomes_user_to_page_at_its_time() {
        let out = run(r#"{"user":"ada","url":"/home","ts":42}"#).unwrap();
        let [output] = out.outputs() else {
            panic!("one output expected: {:?}", out.outputs());
        };
        assert_eq!(output.key(), Some(&b"ada"[..]));
        assert_eq!(output.value(), Some(&b"/home"[..]));
        assert_eq!(output.timestamp_ms(), Some(42));
    }

    #[test]
    fn a_view_without_its_fields_is_dead_lettered() {
        let error = run(r#"{"user":"ada","ts":42}"#).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::DeadLetter);
    }
}
