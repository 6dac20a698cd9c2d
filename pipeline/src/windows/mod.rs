//! Host-managed windows and aggregates (docs/windows.md): the outputs of the transform chain
//! go through every `[[pipeline.windows]]` stage, which groups them by key into windows of
//! event time and writes one result record per window once the watermark closes it.
//!
//! - `settings.rs`: the `[[pipeline.windows]]` table and its checks;
//! - `aggregate.rs`: the built-in aggregates (count, sum, min, max, mean, latest, collect);
//! - `stage.rs`: one stage over one writer scope's state: assigners (tumbling, hopping,
//!   sliding, session), watermark, lateness, closing.
//!
//! **Determinism.** A stage runs in the sink stage, per writer scope (source partition), in
//! the order the sink stage writes records, which with one transform lane is the scope's
//! source order: a record transformed again after a crash meets the state the last commit
//! left and gives the same results. More lanes would let the order depend on how they
//! interleave, so a pipeline with windows runs one lane (config check).

mod aggregate;
mod settings;
mod stage;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use sluice_record::OutputRecord;

pub use settings::{BuiltinAggregate, Invalid, LatePolicy, WindowKind, WindowSettings};
pub use stage::{WINDOW_END_HEADER, WINDOW_HEADER, WINDOW_START_HEADER};

use crate::state::ScopeState;
use stage::{CloseIndex, Taken, WindowStage};

/// The window stages of a pipeline, and (STAND-IN until the state branch lands) the state of
/// each writer scope, in memory only.
pub(crate) struct Windows {
    stages: Vec<WindowStage>,
    scopes: HashMap<Option<u32>, ScopeWindows>,
}

/// One writer scope's state and, per stage, its close index (derived from the state: drop it
/// whenever the state is restored).
#[derive(Default)]
struct ScopeWindows {
    state: ScopeState,
    indexes: Vec<Option<CloseIndex>>,
}

/// What the windows made of one source record's outputs.
#[derive(Debug, Default)]
pub(crate) struct Windowed {
    /// The results of the windows they closed, in stage order.
    pub(crate) results: Vec<OutputRecord>,
    /// The stages that found an output late.
    pub(crate) late_in: Vec<String>,
    /// Why the source record goes to the dead-letter topic: a stage with `late =
    /// "dead-letter"` found an output late.
    pub(crate) dead_letter: Option<String>,
}

impl Windows {
    /// The stages of `settings`; `None` without any.
    pub(crate) fn new(settings: &[WindowSettings]) -> Option<Self> {
        (!settings.is_empty()).then(|| Self {
            stages: settings.iter().cloned().map(WindowStage::new).collect(),
            scopes: HashMap::new(),
        })
    }

    /// Takes the outputs of a record of source partition `partition` into every stage.
    pub(crate) fn take(&mut self, partition: Option<u32>, outputs: &[OutputRecord]) -> Windowed {
        let scope = self.scopes.entry(partition).or_default();
        scope.indexes.resize_with(self.stages.len(), || None);
        let mut windowed = Windowed::default();
        for (stage, index) in self.stages.iter().zip(&mut scope.indexes) {
            for output in outputs {
                let taken = stage.take(&mut scope.state, index, output, &mut windowed.results);
                if taken == Taken::Late {
                    windowed.late_in.push(stage.settings.name.clone());
                    if stage.settings.late == LatePolicy::DeadLetter {
                        windowed.dead_letter.get_or_insert_with(|| {
                            format!(
                                "late for window {:?}: every window of its event time {} closed",
                                stage.settings.name,
                                (output.timestamp_ms)
                                    .map_or_else(|| "(none)".to_owned(), |t| t.to_string())
                            )
                        });
                    }
                }
            }
        }
        windowed
    }
}
