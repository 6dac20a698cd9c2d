//! What a pipeline is told, apart from where its records come from and go: its name, its
//! delivery guarantee and the sizes that bound its memory and parallelism.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::group_by::GroupBy;
pub use sluice_connectors::config::{ExactlyOnceMode, Guaranteeing};

use crate::windows::WindowSettings;

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
    /// Exactly-once: how many recent source messages the pipeline recognises when they come
    /// again. Read back: records of each output partition read back, and source ids
    /// remembered. Transactions: committed message ids kept for sources without an order.
    pub dedup_window: usize,
    /// How exactly-once is kept (with `guarantee = "exactly-once"`).
    pub exactly_once: ExactlyOnceSettings,
    /// Group-by: where each record's new key comes from, before the lanes (`None`: records
    /// keep their source key).
    pub group_by: Option<GroupBy>,
    /// `[[pipeline.windows]]`: window stages after the transform chain (docs/windows.md).
    pub windows: Vec<WindowSettings>,
}

/// `exactly_once = { … }` of a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExactlyOnceSettings {
    pub mode: ExactlyOnceMode,
    /// The compacted topic of checkpoints; `None`: `sluice-offsets.<pipeline>`.
    pub offsets_topic: Option<String>,
    /// The compacted changelog topic of keyed state; `None`: `<pipeline>.changelog`.
    pub changelog_topic: Option<String>,
    /// What each writer's `transactional.id` starts with.
    pub transactional_id_prefix: String,
    /// A transaction commits once it is this old…
    pub commit_interval: Duration,
    /// …or holds this many source records, whichever comes first.
    pub max_records_per_transaction: usize,
}

impl Default for ExactlyOnceSettings {
    fn default() -> Self {
        Self {
            mode: ExactlyOnceMode::Transactions,
            offsets_topic: None,
            changelog_topic: None,
            transactional_id_prefix: "sluice.".to_owned(),
            commit_interval: Duration::from_millis(100),
            max_records_per_transaction: 10_000,
        }
    }
}

impl PipelineSettings {
    /// The exactly-once mode in force, if the guarantee is exactly-once.
    pub fn exactly_once_mode(&self) -> Option<ExactlyOnceMode> {
        (self.guarantee == Guarantee::ExactlyOnce).then_some(self.exactly_once.mode)
    }

    /// What the guarantee asks of the source and the sink.
    pub fn guaranteeing(&self) -> Guaranteeing {
        match self.exactly_once_mode() {
            Some(mode) => Guaranteeing::ExactlyOnce(mode),
            None => Guaranteeing::AtLeastOnce,
        }
    }

    /// The offsets topic of exactly-once on transactions.
    pub fn offsets_topic(&self) -> String {
        self.exactly_once
            .offsets_topic
            .clone()
            .unwrap_or_else(|| format!("sluice-offsets.{}", self.name))
    }

    /// The changelog topic of keyed state (docs/state.md).
    pub fn changelog_topic(&self) -> String {
        (self.exactly_once.changelog_topic.clone())
            .unwrap_or_else(|| format!("{}.changelog", self.name))
    }

    /// The defaults of the config file, for pipeline `name`.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            guarantee: Guarantee::AtLeastOnce,
            max_in_flight: 10_000,
            batch_size: 256,
            parallelism: 1,
            dedup_window: 100_000,
            exactly_once: ExactlyOnceSettings::default(),
            group_by: None,
            windows: Vec::new(),
        }
    }
}
