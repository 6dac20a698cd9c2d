//! What a pipeline is told, apart from where its records come from and go: its name, its
//! delivery guarantee and the sizes that bound its memory and parallelism.

use std::fmt;

use serde::Deserialize;

/// Delivery guarantee of a pipeline (docs/delivery-guarantees.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Guarantee {
    #[default]
    AtLeastOnce,
    ExactlyOnce,
}

impl fmt::Display for Guarantee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Guarantee::AtLeastOnce => "at-least-once",
            Guarantee::ExactlyOnce => "exactly-once",
        })
    }
}

/// Most lanes a pipeline may run: each holds its own instances of every transform.
pub const MAX_PARALLELISM: usize = 64;

/// A pipeline's settings (the `[[pipeline]]` keys besides its source, transforms and sink).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineSettings {
    pub name: String,
    pub guarantee: Guarantee,
    /// Most source records held between the source read and the source ack.
    pub max_in_flight: usize,
    /// Most records handed to a transform in one call.
    pub batch_size: usize,
    /// Transform lanes (records spread by key).
    pub parallelism: usize,
    /// Exactly-once: records of each output partition read back, and source ids remembered.
    pub dedup_window: usize,
}

impl PipelineSettings {
    /// The defaults of the config file, for pipeline `name`.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            guarantee: Guarantee::AtLeastOnce,
            max_in_flight: 10_000,
            batch_size: 256,
            parallelism: 1,
            dedup_window: 100_000,
        }
    }
}
