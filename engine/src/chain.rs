//! A pipeline's transforms applied in order: the outputs of one are the inputs of the next.

use std::sync::{Arc, Mutex};

use sluice_record::{InputRecord, OutputRecord};

use super::capabilities::Capabilities;
use super::component;
use super::engine::TransformEngine;
use super::error::Error;
use super::instance::{StageResult, TransformInstance};
use super::observer::{TransformObserver, unobserved};
use super::outcome::{RecordOutcome, TransformId};
use super::spec::TransformSpec;
use super::state::{BatchOverlay, BatchState, StateChange};

/// Loaded, initialised transforms with one live instance each, reused across batches.
///
/// Calls are blocking: run them on a dedicated thread (or `spawn_blocking`), never directly
/// on an async task (WASI's sync bindings enter a Tokio runtime of their own).
pub struct TransformChain {
    stages: Vec<TransformInstance>,
    /// The capabilities granted to each stage, in order.
    capabilities: Vec<Capabilities>,
    /// Who counts what each stage does, in order.
    observers: Vec<Arc<dyn TransformObserver>>,
    /// Replays must give the same outputs (exactly-once): see [`TransformChain::make_deterministic`].
    deterministic: bool,
}

/// One transform loaded, validated, instantiated and initialised, ready to replace the live
/// version of a chain's stage ([`TransformChain::replace`]).
pub struct LoadedTransform {
    instance: TransformInstance,
    capabilities: Capabilities,
}

impl LoadedTransform {
    /// Loads (through the compiled cache) and starts `spec` with its granted capabilities;
    /// fails naming the transform whose component, capabilities or config is bad.
    pub fn load(engine: &TransformEngine, spec: &TransformSpec) -> Result<Self, Error> {
        let grants = spec.capabilities.resolve(&spec.name)?;
        let loaded = component::load(engine, &spec.component, &spec.limits)?;
        let instance = TransformInstance::start(engine, spec, loaded, grants)?;
        tracing::info!(
            transform = %instance.id(),
            path = %spec.component.display(),
            capabilities = %spec.capabilities.summary(),
            "transform loaded"
        );
        Ok(Self {
            instance,
            capabilities: spec.capabilities.clone(),
        })
    }

    pub fn id(&self) -> &TransformId {
        self.instance.id()
    }
}

/// A record on its way through the chain: the input of the next stage, plus the topic an
/// earlier stage chose (kept unless a later stage chooses another).
struct Staged {
    record: InputRecord,
    topic: Option<String>,
}

impl TransformChain {
    /// Loads (through the compiled cache), validates, instantiates and initialises every
    /// transform with its granted capabilities; fails naming the transform whose component,
    /// capabilities or config is bad. An empty `specs` makes a passthrough chain.
    pub fn new(engine: &TransformEngine, specs: &[TransformSpec]) -> Result<Self, Error> {
        let loaded = specs
            .iter()
            .map(|spec| LoadedTransform::load(engine, spec))
            .collect::<Result<Vec<_>, Error>>()?;
        let (stages, capabilities) = loaded
            .into_iter()
            .map(|loaded| (loaded.instance, loaded.capabilities))
            .unzip();
        Ok(Self {
            stages,
            capabilities,
            observers: unobserved(specs.len()),
            deterministic: false,
        })
    }

    /// Makes every stage, and every version swapped in later, give the same outputs when a
    /// record is transformed again: transforms that import clocks or random get them pinned
    /// to each record whenever they read them. Returns the names of those.
    pub fn make_deterministic(&mut self) -> Result<Vec<String>, Error> {
        self.deterministic = true;
        let mut pinned = Vec::new();
        for stage in &mut self.stages {
            stage.set_deterministic()?;
            if stage.is_pinned() {
                pinned.push(stage.id().name.clone());
            }
        }
        Ok(pinned)
    }

    /// Reports each stage to `observers` (one per stage, in order) from now on.
    pub fn observe(&mut self, observers: Vec<Arc<dyn TransformObserver>>) {
        debug_assert_eq!(observers.len(), self.stages.len());
        self.observers = observers;
    }

    /// Puts `loaded` live in place of stage `index` from the next batch on; returns the
    /// version it replaced.
    pub fn replace(&mut self, index: usize, loaded: LoadedTransform) -> TransformId {
        let previous = self.stages[index].id().clone();
        let mut instance = loaded.instance;
        if self.deterministic
            && let Err(error) = instance.set_deterministic()
        {
            // The instance is made again on its first call; a failure there stops the pipeline.
            tracing::warn!(transform = %instance.id(), error = %error, "cannot pin clocks and random yet");
        }
        self.stages[index] = instance;
        self.capabilities[index] = loaded.capabilities;
        previous
    }

    /// Whether a transform of the chain keeps keyed state (docs/state.md).
    pub fn uses_state(&self) -> bool {
        self.stages.iter().any(TransformInstance::uses_state)
    }

    /// The transforms, in order.
    pub fn transforms(&self) -> Vec<TransformId> {
        self.stages.iter().map(|stage| stage.id().clone()).collect()
    }

    /// What each transform was granted, in order, for status and logs: the transform and
    /// a one-line summary ([`Capabilities::summary`]: `none`, or e.g. `env TZ; read-only dirs
    /// /etc/ssl/certs`).
    pub fn grants(&self) -> Vec<(TransformId, String)> {
        self.stages
            .iter()
            .zip(&self.capabilities)
            .map(|(stage, capabilities)| (stage.id().clone(), capabilities.summary()))
            .collect()
    }

    /// [`TransformChain::run_batch`] with keyed state: the transforms read `state` and change
    /// it through the WIT `state` interface. Returns, with the outcomes, the state changes
    /// each record made, in order (none for a record that failed: its changes are dropped).
    pub fn run_batch_with_state(
        &mut self,
        records: &[InputRecord],
        state: BatchState,
    ) -> (Vec<RecordOutcome>, Vec<Vec<StateChange>>) {
        let overlay = Arc::new(Mutex::new(BatchOverlay::new(state)));
        for stage in &mut self.stages {
            stage.lend_state(Some(overlay.clone()));
        }
        let outcomes = self.run_batch(records);
        for stage in &mut self.stages {
            stage.lend_state(None);
        }
        let overlay = Arc::try_unwrap(overlay)
            .ok()
            .expect("the stages gave the batch state back")
            .into_inner()
            .expect("batch state lock poisoned");
        let mut changes = overlay.into_changes();
        let changes = (records.iter().zip(&outcomes))
            .map(|(record, outcome)| match outcome {
                RecordOutcome::Outputs(_) => changes
                    .remove(&record.source.message_id)
                    .unwrap_or_default(),
                _ => Vec::new(),
            })
            .collect();
        (outcomes, changes)
    }

    /// Transforms a batch: exactly one outcome per input, in order. Any guest behaviour
    /// (trap, timeout, runaway memory, bad results) becomes an outcome, never a panic.
    ///
    /// A record's outputs get the input's event time (else publish time) when no transform
    /// set a timestamp. If any stage fails a record, that failure is the record's outcome
    /// and its other intermediate outputs are dropped.
    pub fn run_batch(&mut self, records: &[InputRecord]) -> Vec<RecordOutcome> {
        // Without transforms every record passes as it came: no staging, its bytes shared.
        if self.stages.is_empty() {
            return records
                .iter()
                .map(|record| RecordOutcome::Outputs(vec![OutputRecord::passthrough(record)]))
                .collect();
        }
        let last = self.stages.len() - 1;
        let mut outcomes: Vec<Option<RecordOutcome>> = vec![None; records.len()];
        // What each source record feeds the next stage (between stages only) ...
        let mut pending: Vec<Vec<Staged>> = (0..records.len()).map(|_| Vec::new()).collect();
        // ... and what the last stage made of it.
        let mut finished: Vec<Vec<OutputRecord>> = (0..records.len()).map(|_| Vec::new()).collect();
        for (index, (stage, observer)) in self.stages.iter_mut().zip(&self.observers).enumerate() {
            // The first stage reads the source records themselves (no copy: the caller keeps
            // them for dead letters); a later one the records every source record fed it,
            // flattened, remembering whose.
            let mut owners = Vec::new();
            let mut staged_inputs = Vec::new();
            let mut topics = Vec::new();
            let inputs: &[InputRecord] = if index == 0 {
                owners.extend(0..records.len());
                topics.resize(records.len(), None);
                records
            } else {
                for (owner, staged) in pending.iter_mut().enumerate() {
                    for Staged { record, topic } in staged.drain(..) {
                        owners.push(owner);
                        staged_inputs.push(record);
                        topics.push(topic);
                    }
                }
                &staged_inputs
            };
            if inputs.is_empty() {
                break;
            }
            let recycles_before = stage.recycles();
            let results: Vec<StageResult> = stage.run(inputs);
            debug_assert_eq!(results.len(), inputs.len());
            observer.records_in(inputs.len() as u64);
            observer.recycled(stage.recycles() - recycles_before);
            for (((owner, input), topic), result) in
                owners.into_iter().zip(inputs).zip(topics).zip(results)
            {
                if outcomes[owner].is_some() {
                    continue;
                }
                match result {
                    Ok(outputs) if index == last => {
                        observer.records_out(outputs.len() as u64);
                        finished[owner].extend(
                            outputs
                                .into_iter()
                                .map(|output| final_output(output, input, &topic)),
                        );
                    }
                    Ok(outputs) => {
                        observer.records_out(outputs.len() as u64);
                        pending[owner].extend(
                            outputs
                                .into_iter()
                                .map(|output| next_input(output, input, &topic)),
                        );
                    }
                    Err(outcome) => {
                        if let Some(kind) = outcome.failure_kind() {
                            observer.failed(kind);
                        }
                        pending[owner].clear();
                        finished[owner].clear();
                        outcomes[owner] = Some(outcome);
                    }
                }
            }
        }
        outcomes
            .into_iter()
            .zip(finished)
            .map(|(outcome, outputs)| outcome.unwrap_or(RecordOutcome::Outputs(outputs)))
            .collect()
    }
}

/// An output of one stage as the input of the next: it keeps the source, the publish time
/// and (unless it set its own) the event time and the topic chosen so far. Its bytes and the
/// source's strings are moved or shared, never copied.
fn next_input(output: OutputRecord, input: &InputRecord, topic: &Option<String>) -> Staged {
    Staged {
        record: InputRecord {
            key: output.key,
            value: output.value,
            headers: output.headers,
            event_time_ms: output.timestamp_ms.or(input.event_time_ms),
            publish_time_ms: input.publish_time_ms,
            source: input.source.clone(),
        },
        topic: output.topic.or_else(|| topic.clone()),
    }
}

/// An output of the last stage as the chain's output: the timestamp it set, else its input's
/// event time, else publish time; the topic it chose, else the one chosen so far.
fn final_output(output: OutputRecord, input: &InputRecord, topic: &Option<String>) -> OutputRecord {
    OutputRecord {
        timestamp_ms: output.timestamp_ms.or_else(|| input.default_timestamp_ms()),
        topic: output.topic.or_else(|| topic.clone()),
        ..output
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_record::{Bytes, Header, SourceInfo, SourceKind};

    fn record(
        value: &str,
        event_time_ms: Option<i64>,
        publish_time_ms: Option<i64>,
    ) -> InputRecord {
        InputRecord {
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            headers: vec![Header::new("h", "1")],
            event_time_ms,
            publish_time_ms,
            source: SourceInfo {
                kind: SourceKind::Other,
                topic: "t".into(),
                message_id: "1".into(),
                schema_version: None,
            },
        }
    }

    #[test]
    fn an_empty_chain_passes_records_through_with_their_default_timestamp() {
        let engine = TransformEngine::new(None).unwrap();
        let mut chain = TransformChain::new(&engine, &[]).unwrap();
        assert!(chain.transforms().is_empty());
        assert!(chain.grants().is_empty());
        let records = [
            record("a", Some(5), Some(9)),
            record("b", None, Some(9)),
            record("c", None, None),
        ];
        let outcomes = chain.run_batch(&records);
        let expected: Vec<_> = records
            .iter()
            .map(|r| RecordOutcome::Outputs(vec![OutputRecord::passthrough(r)]))
            .collect();
        assert_eq!(outcomes, expected);
        let RecordOutcome::Outputs(outputs) = &outcomes[1] else {
            unreachable!()
        };
        assert_eq!(outputs[0].timestamp_ms, Some(9));
    }

    #[test]
    fn stage_outputs_keep_time_and_topic_unless_they_set_their_own() {
        let input = record("a", None, Some(9));
        let first = next_input(
            OutputRecord {
                key: None,
                value: Some(Bytes::from_static(b"x")),
                headers: vec![],
                timestamp_ms: None,
                topic: Some("routed".into()),
            },
            &input,
            &None,
        );
        assert_eq!(first.record.event_time_ms, None);
        assert_eq!(first.record.publish_time_ms, Some(9));
        assert_eq!(first.topic.as_deref(), Some("routed"));
        let unset = || OutputRecord {
            key: None,
            value: None,
            headers: vec![],
            timestamp_ms: None,
            topic: None,
        };
        let output = final_output(
            OutputRecord {
                timestamp_ms: Some(3),
                ..unset()
            },
            &first.record,
            &first.topic,
        );
        assert_eq!(output.timestamp_ms, Some(3));
        assert_eq!(output.topic.as_deref(), Some("routed"));
        let output = final_output(unset(), &first.record, &first.topic);
        assert_eq!(output.timestamp_ms, Some(9));
        assert_eq!(output.topic.as_deref(), Some("routed"));
    }
}
