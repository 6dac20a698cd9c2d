//! Shared shapes of connector config sections: secrets, maps of scalars, and how a bad value
//! is reported. Each connector's own section lives in its folder (`pulsar/config.rs`, …); the
//! runtime's config file (runtime/src/config.rs) puts them together.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, de};

/// A string that may hold a credential (`sasl.password`, a token): `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The real value, for the one place that needs it (the Kafka client config).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Scalar::deserialize(deserializer).map(|s| Secret(s.0))
    }
}

/// A TOML scalar (string, integer, float or boolean) read as text: users write
/// `"linger.ms" = 5` as often as `"linger.ms" = "5"`.
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// A table of scalars, as strings.
pub fn string_map<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let map = BTreeMap::<String, Scalar>::deserialize(deserializer)?;
    Ok(map.into_iter().map(|(k, v)| (k, v.0)).collect())
}

/// A table of scalars kept as secrets.
pub fn secret_map<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, Secret>, D::Error> {
    BTreeMap::<String, Secret>::deserialize(deserializer)
}

/// A value the config refuses: its key path (relative to the section that checked it) and why.
pub type Invalid = (String, String);

/// What a pipeline's delivery guarantee asks of its source and sink, which check their
/// sections against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guaranteeing {
    AtLeastOnce,
    /// Exactly-once in `mode`.
    ExactlyOnce(ExactlyOnceMode),
}

/// How exactly-once is kept (docs/delivery-guarantees.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExactlyOnceMode {
    /// Kafka transactions: outputs and the source checkpoint commit together, and each
    /// writer's `transactional.id` fences the instances it replaced.
    #[default]
    Transactions,
    /// For brokers without transactions: outputs carry their identity, and the pipeline reads
    /// back what it wrote after every restart and skips it.
    ReadBack,
}

impl ExactlyOnceMode {
    /// The name as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            ExactlyOnceMode::Transactions => "transactions",
            ExactlyOnceMode::ReadBack => "read-back",
        }
    }
}

/// Serde default of settings that are on unless turned off (e.g. `verify_hostname`).
pub(crate) fn default_true() -> bool {
    true
}

/// Refuses an empty (or blank) `value` at `key`.
pub fn non_empty(key: &str, value: &str) -> Result<(), Invalid> {
    if value.trim().is_empty() {
        return Err((key.into(), "must not be empty".into()));
    }
    Ok(())
}

/// Prefixes the key of an [`Invalid`] with the section it is in (`sink` + `topic` →
/// `sink.topic`).
pub fn within(section: &str) -> impl Fn(Invalid) -> Invalid + '_ {
    move |(key, message)| (format!("{section}.{key}"), message)
}
