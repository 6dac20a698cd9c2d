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
use std::sync::Arc;

use sluice_engine::StateChange;
use sluice_record::OutputRecord;

pub use settings::{BuiltinAggregate, Invalid, LatePolicy, WindowKind, WindowSettings};
pub use stage::{WINDOW_END_HEADER, WINDOW_HEADER, WINDOW_START_HEADER};

use crate::state::{ScopeKey, ScopeState, StateStore};
use stage::{CloseIndex, Taken, WindowStage};

/// The window stages of a pipeline. Their state is the writer scopes' keyed state (namespace
/// `w:<name>`, docs/state.md): with exactly-once on transactions it commits with the results
/// and is restored with the scope.
pub(crate) struct Windows {
    stages: Vec<WindowStage>,
    store: Arc<StateStore>,
    indexes: HashMap<ScopeKey, ScopeIndexes>,
}

/// One writer scope's close index per stage, derived from the scope's state of one epoch (a
/// restored state has a new one: the indexes are built again from it).
struct ScopeIndexes {
    epoch: u64,
    stages: Vec<Option<CloseIndex>>,
}

impl ScopeIndexes {
    /// No index built yet for the state of `epoch`.
    fn new(epoch: u64) -> Self {
        Self {
            epoch,
            stages: Vec::new(),
        }
    }
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
    /// What the stages changed in the scope's state, for its changelog.
    pub(crate) changes: Vec<StateChange>,
}

impl Windows {
    /// The stages of `settings`, keeping their state in `store`; `None` without any.
    pub(crate) fn new(settings: &[WindowSettings], store: Arc<StateStore>) -> Option<Self> {
        (!settings.is_empty()).then(|| Self {
            stages: settings.iter().cloned().map(WindowStage::new).collect(),
            store,
            indexes: HashMap::new(),
        })
    }

    /// Takes the outputs of a record of writer scope `scope` into every stage.
    pub(crate) fn take(&mut self, scope: ScopeKey, outputs: &[OutputRecord]) -> Windowed {
        let Self {
            stages,
            store,
            indexes,
        } = self;
        let (mut windowed, changes) = store.update(scope, |state, epoch| {
            let indexes = indexes
                .entry(scope)
                .or_insert_with(|| ScopeIndexes::new(epoch));
            if indexes.epoch != epoch {
                *indexes = ScopeIndexes::new(epoch);
            }
            indexes.stages.resize_with(stages.len(), || None);
            let mut windowed = Windowed::default();
            for (stage, index) in stages.iter().zip(&mut indexes.stages) {
                Self::take_into(stage, state, index, outputs, &mut windowed);
            }
            windowed
        });
        windowed.changes = changes;
        windowed
    }

    /// Takes `outputs` into one stage.
    fn take_into(
        stage: &WindowStage,
        state: &mut ScopeState,
        index: &mut Option<CloseIndex>,
        outputs: &[OutputRecord],
        windowed: &mut Windowed,
    ) {
        for output in outputs {
            let taken = stage.take(state, index, output, &mut windowed.results);
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
}
