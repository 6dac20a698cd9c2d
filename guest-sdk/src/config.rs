//! The `config` table of the pipeline's transform entry.

use std::cell::RefCell;
use std::sync::Arc;

use crate::{Error, Result};

/// Key/value settings handed to `init`, in the order the host sent them.
///
/// Cheap to clone (the entries are shared). Read the active one anywhere with
/// [`config()`](crate::config()).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    entries: Arc<[(String, String)]>,
}

impl Config {
    /// A config from key/value pairs; for a repeated key the last value wins.
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        let entries: Vec<(String, String)> = pairs
            .into_iter()
            .map(|(key, value)| (key.into(), value.into()))
            .collect();
        Self {
            entries: entries.into(),
        }
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }

    /// The value of `key`.
    ///
    /// # Errors
    ///
    /// A [`fatal`](Error::fatal) error `missing config key "<key>"` when `key` is not set.
    pub fn require(&self, key: &str) -> Result<&str> {
        self.get(key)
            .ok_or_else(|| Error::fatal(format!("missing config key {key:?}")))
    }

    /// The value of `key` split at commas, each item trimmed, empty items dropped; empty when
    /// `key` is not set. `"a, b,,c "` gives `["a", "b", "c"]`.
    pub fn get_list(&self, key: &str) -> Vec<&str> {
        self.get(key)
            .map(|value| {
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// All entries, in the order received.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<'a> IntoIterator for &'a Config {
    type Item = (&'a str, &'a str);
    type IntoIter = Box<dyn Iterator<Item = (&'a str, &'a str)> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

thread_local! {
    // A wasm guest is single-threaded, so this is one global there; natively each test thread
    // gets its own, which keeps `testing::with_config` from racing other tests.
    static ACTIVE: RefCell<Config> = RefCell::default();
}

/// The config the host passed to `init` (empty before `init`, and in native tests unless set
/// with [`testing::with_config`](crate::testing::with_config)).
pub fn config() -> Config {
    ACTIVE.with(|active| active.borrow().clone())
}

/// Makes `config` the active one and returns the previous one.
pub(crate) fn replace_active(config: Config) -> Config {
    ACTIVE.with(|active| active.replace(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn sample() -> Config {
        Config::from_pairs([("fields", " email, phone,, ,ssn "), ("mask", "#")])
    }

    #[test]
    fn get_and_require() {
        let config = sample();
        assert_eq!(config.get("mask"), Some("#"));
        assert_eq!(config.get("absent"), None);
        assert_eq!(config.require("mask").unwrap(), "#");
        let error = config.require("field").unwrap_err();
        assert_eq!(error.message(), r#"missing config key "field""#);
        assert_eq!(error.kind(), ErrorKind::Fatal);
    }

    #[test]
    fn get_list_trims_and_drops_empty_items() {
        let config = sample();
        assert_eq!(config.get_list("fields"), ["email", "phone", "ssn"]);
        assert!(config.get_list("absent").is_empty());
        assert_eq!(config.get_list("mask"), ["#"]);
    }

    #[test]
    fn last_duplicate_wins_and_iteration_keeps_order() {
        let config = Config::from_pairs([("a", "1"), ("b", "2"), ("a", "3")]);
        assert_eq!(config.get("a"), Some("3"));
        let keys: Vec<&str> = config.iter().map(|(key, _)| key).collect();
        assert_eq!(keys, ["a", "b", "a"]);
        assert_eq!((&config).into_iter().count(), 3);
        assert_eq!(config.len(), 3);
        assert!(!config.is_empty());
    }

    #[test]
    fn active_config_is_replaced_and_returned() {
        let previous = replace_active(sample());
        assert!(previous.is_empty());
        assert_eq!(config().get("mask"), Some("#"));
        replace_active(previous);
        assert!(config().is_empty());
    }
}
