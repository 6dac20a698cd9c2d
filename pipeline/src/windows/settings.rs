//! `[[pipeline.windows]]`: one window stage of a pipeline (docs/windows.md).

use serde::Deserialize;

/// How records are grouped into windows of event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WindowKind {
    /// Back-to-back windows of `size_ms`: `[n·size, (n+1)·size)`.
    Tumbling,
    /// Windows of `size_ms` starting every `advance_ms` (a record is in `size / advance` of them).
    Hopping,
    /// One window per record, `[t − size_ms, t]`, holding the key's records in that span.
    Sliding,
    /// Per key, records less than `gap_ms` apart share a window `[first, last + gap)`.
    Session,
}

/// The built-in aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BuiltinAggregate {
    Count,
    Sum,
    Min,
    Max,
    Mean,
    Latest,
    Collect,
}

impl BuiltinAggregate {
    /// Whether it reads a number from each record's value.
    pub fn is_numeric(self) -> bool {
        matches!(self, Self::Sum | Self::Min | Self::Max | Self::Mean)
    }
}

/// What a late record becomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LatePolicy {
    /// Dropped, and counted (`window_records_late`).
    #[default]
    Drop,
    /// Its source record goes to the dead-letter topic (kind `late`), and is counted.
    DeadLetter,
}

/// One `[[pipeline.windows]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSettings {
    /// Names the stage: its state namespace (`w:<name>`), its metric label and the
    /// `sluice-window` header of its results.
    pub name: String,
    pub kind: WindowKind,
    /// Tumbling, hopping, sliding: the window's length.
    #[serde(default)]
    pub size_ms: Option<u64>,
    /// Hopping: how far apart window starts are.
    #[serde(default)]
    pub advance_ms: Option<u64>,
    /// Session: the inactivity that ends a session.
    #[serde(default)]
    pub gap_ms: Option<u64>,
    /// How long past a window's end its records are still taken, in event time.
    #[serde(default)]
    pub lateness_ms: u64,
    pub aggregate: BuiltinAggregate,
    /// Sum, min, max, mean: a JSON pointer (RFC 6901, e.g. `/amount`) to the number in a
    /// JSON value; unset, the whole value is the number, as a decimal string.
    #[serde(default)]
    pub field: Option<String>,
    #[serde(default)]
    pub late: LatePolicy,
    /// Where results go; default: the sink's topic.
    #[serde(default)]
    pub topic: Option<String>,
}

/// A key of the table and what is wrong with it.
pub type Invalid = (String, String);

impl WindowSettings {
    /// Checks the keys the kind and the aggregate need, and only those.
    pub fn validate(&self) -> Result<(), Invalid> {
        let fail = |key: &str, message: &str| Err((key.to_owned(), message.to_owned()));
        if self.name.is_empty() {
            return fail("name", "must not be empty");
        }
        let positive = |key: &str, value: Option<u64>| match value {
            None => fail(
                key,
                &format!("is required with kind = {:?}", self.kind_name()),
            ),
            Some(0) => fail(key, "must be at least 1"),
            Some(_) => Ok(()),
        };
        let absent = |key: &str, value: Option<u64>| match value {
            Some(_) => fail(
                key,
                &format!("does not apply to kind = {:?}", self.kind_name()),
            ),
            None => Ok(()),
        };
        match self.kind {
            WindowKind::Tumbling | WindowKind::Sliding => {
                positive("size_ms", self.size_ms)?;
                absent("advance_ms", self.advance_ms)?;
                absent("gap_ms", self.gap_ms)?;
            }
            WindowKind::Hopping => {
                positive("size_ms", self.size_ms)?;
                positive("advance_ms", self.advance_ms)?;
                absent("gap_ms", self.gap_ms)?;
                if self.advance_ms > self.size_ms {
                    return fail("advance_ms", "must not exceed size_ms");
                }
            }
            WindowKind::Session => {
                positive("gap_ms", self.gap_ms)?;
                absent("size_ms", self.size_ms)?;
                absent("advance_ms", self.advance_ms)?;
            }
        }
        match &self.field {
            Some(_) if !self.aggregate.is_numeric() => {
                fail("field", "applies only to aggregate = sum, min, max or mean")
            }
            Some(pointer) if !pointer.starts_with('/') => fail(
                "field",
                "must be a JSON pointer such as \"/amount\" (starting with '/')",
            ),
            _ => Ok(()),
        }
    }

    fn kind_name(&self) -> &'static str {
        match self.kind {
            WindowKind::Tumbling => "tumbling",
            WindowKind::Hopping => "hopping",
            WindowKind::Sliding => "sliding",
            WindowKind::Session => "session",
        }
    }

    /// The stage's state namespace.
    pub fn namespace(&self) -> String {
        format!("w:{}", self.name)
    }
}
