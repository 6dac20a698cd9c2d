//! JSON records: parse a record's value, find a field by a dotted path, compare it as text.
//!
//! Enabled by the `json` feature, which brings in [`serde_json`] (re-exported here) with
//! `preserve_order`, so objects re-serialize with their fields in input order.
//!
//! ```
//! use sluice_sdk::json::{DottedPath, text_of, value_of};
//! use sluice_sdk::{Message, Result};
//!
//! fn tier(msg: &Message) -> Result<Option<String>> {
//!     let path = DottedPath::parse("field", "customer.tier")?;
//!     let document = value_of(msg)?; // dead-letters a record that is not JSON
//!     Ok(path.lookup(&document).map(|value| text_of(value).into_owned()))
//! }
//!
//! let msg = Message::from_value(r#"{"customer": {"tier": "gold"}}"#);
//! assert_eq!(tier(&msg).unwrap().as_deref(), Some("gold"));
//! ```

use std::borrow::Cow;
use std::fmt;

pub use serde_json;
use serde_json::Value;

use crate::{Error, Message, Result};

/// The record's value as JSON, or a dead-letter error saying why not
/// (`value is not JSON: record has no value`, `value is not JSON: {parser error}`).
pub fn value_of(msg: &Message) -> Result<Value> {
    let bytes = msg
        .value()
        .ok_or_else(|| Error::dead_letter("value is not JSON: record has no value"))?;
    serde_json::from_slice(bytes)
        .map_err(|error| Error::dead_letter(format!("value is not JSON: {error}")))
}

/// A path into nested JSON objects, such as `customer.tier`: non-empty field names joined by
/// dots. It borrows the configured text, so parsing it for every record costs nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DottedPath<'a> {
    path: &'a str,
}

impl<'a> DottedPath<'a> {
    /// Checks the value of config key `config_key`; an empty segment (`a..b`, `.a`, empty text)
    /// is a fatal error that refuses the configuration.
    pub fn parse(config_key: &str, path: &'a str) -> Result<Self> {
        if path.split('.').any(str::is_empty) {
            return Err(Error::fatal(format!(
                "invalid config {config_key:?}: {path:?} is not a dotted path such as \"customer.tier\""
            )));
        }
        Ok(Self { path })
    }

    /// The field names, outermost first.
    pub fn segments(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        self.path.split('.')
    }

    /// The path as configured, e.g. `customer.tier`.
    pub fn as_str(&self) -> &'a str {
        self.path
    }

    /// The value at this path inside nested objects; `None` if a field is missing or something
    /// on the way is not an object.
    pub fn lookup<'v>(&self, document: &'v Value) -> Option<&'v Value> {
        self.segments()
            .try_fold(document, |value, segment| value.get(segment))
    }
}

impl fmt::Display for DottedPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.path)
    }
}

/// A JSON string's content, or the compact JSON text of any other value (`true`, `42`, `null`,
/// `[1,2]`).
pub fn text_of(value: &Value) -> Cow<'_, str> {
    match value {
        Value::String(text) => Cow::Borrowed(text),
        other => Cow::Owned(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ErrorKind;

    #[test]
    fn value_of_parses_the_record_value() {
        let msg = Message::from_value(r#"{"b": 1, "a": [true]}"#);
        let value = value_of(&msg).unwrap();
        assert_eq!(value, json!({"b": 1, "a": [true]}));
        assert_eq!(
            value.to_string(),
            r#"{"b":1,"a":[true]}"#,
            "field order kept"
        );
    }

    #[test]
    fn value_of_dead_letters_what_is_not_json() {
        let error = value_of(&Message::new()).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::DeadLetter);
        assert_eq!(error.message(), "value is not JSON: record has no value");

        let error = value_of(&Message::from_value("{oops")).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::DeadLetter);
        assert_eq!(
            error.message(),
            "value is not JSON: key must be a string at line 1 column 2"
        );
    }

    #[test]
    fn parse_refuses_empty_segments_as_fatal() {
        for bad in ["", ".", "a..b", ".a", "a."] {
            let error = DottedPath::parse("field", bad).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Fatal);
            assert_eq!(
                error.message(),
                format!(
                    "invalid config \"field\": {bad:?} is not a dotted path such as \"customer.tier\""
                )
            );
        }
        let path = DottedPath::parse("field", "customer.tier").unwrap();
        assert_eq!(path.segments().collect::<Vec<_>>(), ["customer", "tier"]);
        assert_eq!(path.as_str(), "customer.tier");
        assert_eq!(path.to_string(), "customer.tier");
    }

    #[test]
    fn lookup_follows_nested_objects_only() {
        let document = json!({"customer": {"tier": "gold", "7": 1}, "list": ["x"], "s": "text"});
        let at = |path| DottedPath::parse("field", path).unwrap().lookup(&document);
        assert_eq!(at("customer.tier"), Some(&json!("gold")));
        assert_eq!(at("customer"), Some(&json!({"tier": "gold", "7": 1})));
        assert_eq!(at("customer.7"), Some(&json!(1)));
        assert_eq!(at("customer.zone"), None);
        assert_eq!(at("customer.tier.x"), None);
        assert_eq!(at("list.0"), None, "array elements are not fields");
        assert_eq!(at("s.len"), None);
        let array = json!(["gold"]);
        assert_eq!(DottedPath::parse("f", "0").unwrap().lookup(&array), None);
    }

    #[test]
    fn text_of_gives_string_content_or_compact_json() {
        assert!(matches!(text_of(&json!("gold")), Cow::Borrowed("gold")));
        assert_eq!(text_of(&json!("a \"q\"")), "a \"q\"");
        assert_eq!(text_of(&json!(true)), "true");
        assert_eq!(text_of(&json!(42)), "42");
        assert_eq!(text_of(&json!(42.5)), "42.5");
        assert_eq!(text_of(&json!(null)), "null");
        assert_eq!(text_of(&json!([1, 2])), "[1,2]");
        assert_eq!(text_of(&json!({"a": "b"})), r#"{"a":"b"}"#);
    }
}
