//! What one transformed record becomes in the sink: its outputs, or its dead-letter copy, each
//! stamped with its identity (pipeline, source message id, output index). With exactly-once
//! read back, outputs the sink already has are not sent again; with transactions, outputs go
//! into their scope's transaction, and a record a commit already covers is not written again.
//!
//! Outputs are untrusted: before any is sent, each is checked against what the sink takes
//! ([`OutcomeWriter::unwritable`]; docs/sandbox.md, "What a guest returns"). A record the sink
//! refuses — at that check, when handed to the client, or in its delivery report — is
//! dead-lettered, and the other records go on. With transactions the first two happen inside
//! the record's transaction (its dead-letter copy commits with it); a refusal in a delivery
//! report dooms the whole transaction instead, and the pipeline stops with
//! [`SinkError::RefusedInTransaction`] (docs/delivery-guarantees.md).

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use sluice_connectors::sink::{OversizedPolicy, Sink, SinkError, TopicStatus};
use sluice_connectors::source::Placement;
use sluice_connectors::transactions::ChangelogRecord;
use sluice_engine::{RecordOutcome, StateChange};
use sluice_record::dead_letter::{DeadLetter, Destination, dead_letter_record};
use sluice_record::identity;
use sluice_record::validation::{self, Violation};
use sluice_record::{InputRecord, OutputRecord};

use crate::error::{PipelineError, error_chain};
use crate::exactly_once::{self, Admission, ExactlyOnce, ReadBack};
use crate::state::{Changelog, StateLog, scope_key};
use crate::stats::PipelineStats;
use crate::windows::Windows;

/// How a record ends once its outputs are in the sink for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    /// Ack it.
    Done,
    /// Its partition moved to another instance: let it go unacked.
    Relinquish,
}

/// The deliveries of one record, inline for the usual one output: no allocation per record.
pub(crate) type Deliveries<D> = smallvec::SmallVec<[D; 1]>;

/// Resolves once a record can be settled (or its outputs failed).
pub(crate) type Settle = BoxFuture<'static, Result<Settled, SinkError>>;

/// A settlement that is already known.
pub(crate) fn settled(settled: Settled) -> Settle {
    Box::pin(std::future::ready(Ok(settled)))
}

/// Writes the outcomes of transformed records to the sink.
pub(crate) struct OutcomeWriter<S: Sink> {
    pub(crate) pipeline: String,
    pub(crate) sink: Arc<S>,
    pub(crate) stats: Arc<PipelineStats>,
    /// Exactly-once only: in the read-back mode the outputs the sink has, or is being sent,
    /// and the topics outputs may go to (only those are read back); with transactions, the
    /// writer scopes.
    pub(crate) exactly_once: Option<ExactlyOnce<S>>,
    /// The deliveries of the record being written (outside transactions).
    pub(crate) deliveries: Deliveries<S::Delivery>,
    /// Stamps every output with its identity (the pipeline's name made once).
    pub(crate) stamper: identity::Stamper,
    /// `[[pipeline.windows]]`: the outputs go through them, and their results are written
    /// instead (docs/windows.md).
    pub(crate) windows: Option<Arc<Mutex<Windows>>>,
    /// What the window stages changed in the state for the record being written.
    pub(crate) window_changes: Vec<StateChange>,
    /// Keyed state outside transactions: the changelog its changes are delivered to.
    pub(crate) state_log: Option<StateLog>,
}

/// What a record's ack waits for.
pub(crate) enum Awaited<D> {
    /// Outside transactions: the deliveries of what was sent for it (a refusal in one of
    /// them is dead-lettered by the stages, [`OutcomeWriter::refused_delivery`]).
    Deliveries(Deliveries<D>),
    /// With transactions: the commit of its transaction, or a settlement already known.
    Settle(Settle),
}

/// What was sent for one record.
pub(crate) struct Written<D> {
    /// What its ack waits for.
    pub(crate) awaited: Awaited<D>,
    /// The output index a dead-letter copy takes if the sink refuses a delivery: one past
    /// every output (stable across replays, so exactly-once finds it).
    pub(crate) next_index: u32,
    /// The deliveries are of its dead-letter copy: a refusal of it cannot be dead-lettered.
    pub(crate) dead_lettered: bool,
}

impl<D> Written<D> {
    fn settled(how: Settled) -> Self {
        Self {
            awaited: Awaited::Settle(settled(how)),
            next_index: 0,
            dead_lettered: false,
        }
    }
}

/// What was sent for one record, its deliveries aside (they gather in
/// [`OutcomeWriter::deliveries`], or in the transaction).
#[derive(Debug, Clone, Copy)]
struct Sent {
    /// Anything at all (exactly-once may find everything written already).
    any: bool,
    next_index: u32,
    dead_lettered: bool,
}

impl Sent {
    const NOTHING: Sent = Sent {
        any: false,
        next_index: 0,
        dead_lettered: false,
    };
}

impl<S: Sink> OutcomeWriter<S> {
    /// Produces the outputs of `record` (or its dead-letter copy) and returns what its ack
    /// waits for.
    pub(crate) async fn write(
        &mut self,
        record: &InputRecord,
        placement: &Placement,
        outcome: RecordOutcome,
        changes: &[StateChange],
    ) -> Result<Written<S::Delivery>, PipelineError> {
        if let Some(ExactlyOnce::Transactions(transactions)) = &mut self.exactly_once {
            match transactions.admit(&self.sink, record, placement).await? {
                Admission::Write => {}
                Admission::Relinquish => return Ok(Written::settled(Settled::Relinquish)),
                Admission::Done if !matches!(outcome, RecordOutcome::Fatal { .. }) => {
                    let outputs = match &outcome {
                        RecordOutcome::Outputs(outputs) => outputs.len(),
                        RecordOutcome::DeadLetter { .. } => 1,
                        _ => 0,
                    };
                    self.stats.deduplicated.inc_by(outputs as u64);
                    return Ok(Written::settled(Settled::Done));
                }
                Admission::Done => {}
            }
        }
        self.deliveries.clear();
        let mut sent = self.write_outcome(record, placement, outcome).await;
        let window_changes = std::mem::take(&mut self.window_changes);
        if let (Some(ExactlyOnce::Transactions(transactions)), Ok(_)) =
            (&mut self.exactly_once, &sent)
        {
            for changes in [changes, &window_changes] {
                if let Err(error) = transactions.send_changelog(placement, changes).await {
                    sent = Err(PipelineError::sink(&self.pipeline, error));
                    break;
                }
            }
        }
        let changed = !changes.is_empty() || !window_changes.is_empty();
        match &mut self.exactly_once {
            Some(ExactlyOnce::Transactions(transactions)) => match sent {
                // Its state changes are in the transaction too: its ack waits for the commit
                // even without outputs.
                Ok(sent) => Ok(Written {
                    awaited: Awaited::Settle(transactions.finish(
                        record,
                        placement,
                        sent.any || changed,
                    )),
                    next_index: sent.next_index,
                    dead_lettered: sent.dead_lettered,
                }),
                Err(PipelineError::Sink {
                    source: SinkError::Fenced { .. },
                    ..
                }) => {
                    transactions.fenced_while_writing(placement)?;
                    Ok(Written::settled(Settled::Relinquish))
                }
                Err(error) => Err(error),
            },
            _ => {
                let sent = sent?;
                self.log_changes(placement, [changes, &window_changes])
                    .await?;
                Ok(Written {
                    awaited: Awaited::Deliveries(std::mem::take(&mut self.deliveries)),
                    next_index: sent.next_index,
                    dead_lettered: sent.dead_lettered,
                })
            }
        }
    }

    /// The sink refused the delivery of output `index` of `record` (`error`; outside
    /// transactions, where a delivery report concerns one record): the deliveries of the
    /// record's dead-letter copy, as that output.
    pub(crate) async fn refused_delivery(
        &mut self,
        record: &InputRecord,
        placement: &Placement,
        index: u32,
        error: SinkError,
    ) -> Result<Deliveries<S::Delivery>, PipelineError> {
        debug_assert!(
            !matches!(self.exactly_once, Some(ExactlyOnce::Transactions(_))),
            "a transaction's deliveries are settled by its commit"
        );
        self.deliveries.clear();
        self.refused(record, placement, index, error).await?;
        Ok(std::mem::take(&mut self.deliveries))
    }

    /// Opens the scope of `record` and restores its keyed state (transactions only), before
    /// the lanes transform its first record.
    pub(crate) async fn open_state(
        &mut self,
        record: &InputRecord,
        placement: &Placement,
    ) -> Result<(), PipelineError> {
        match (&mut self.exactly_once, &self.state_log) {
            (Some(ExactlyOnce::Transactions(transactions)), _) => {
                transactions.open_state(&self.sink, record, placement).await
            }
            (_, Some(log)) if !log.store.holds(scope_key(placement)) => {
                let (pipeline, stats) = (&self.pipeline, &self.stats);
                (log.changelog)
                    .restore(
                        &*self.sink,
                        &log.store,
                        scope_key(placement),
                        None,
                        pipeline,
                        stats,
                    )
                    .await
            }
            _ => Ok(()),
        }
    }

    /// Outside transactions: hands the changelog records of a record's state changes to the
    /// sink, their deliveries joining the record's (its ack waits for them).
    async fn log_changes(
        &mut self,
        placement: &Placement,
        changes: [&[StateChange]; 2],
    ) -> Result<(), PipelineError> {
        let Some(log) = &self.state_log else {
            return Ok(());
        };
        let key = scope_key(placement);
        let topic = log.changelog.topic(key.0);
        for entry in changes.into_iter().flat_map(Changelog::entries) {
            let record = ChangelogRecord {
                topic: &topic,
                partition: Changelog::partition(key),
                key: &entry.key,
                value: entry.value.as_deref(),
            };
            let delivery = (self.sink.send_changelog(record).await)
                .map_err(|error| PipelineError::sink(&self.pipeline, error))?;
            self.deliveries.push(delivery);
        }
        Ok(())
    }

    /// When the next transaction is due at the latest (transactions only).
    pub(crate) fn next_commit(&self) -> Option<std::time::Instant> {
        match &self.exactly_once {
            Some(ExactlyOnce::Transactions(transactions)) => transactions.next_commit(),
            _ => None,
        }
    }

    /// Commits the transactions that are due, or all open ones with `all` (transactions only).
    pub(crate) async fn commit_due(&mut self, all: bool) -> Result<(), PipelineError> {
        match &mut self.exactly_once {
            Some(ExactlyOnce::Transactions(transactions)) => transactions.commit_due(all).await,
            _ => Ok(()),
        }
    }

    /// Writes the outputs of `record`, or its dead-letter copy.
    async fn write_outcome(
        &mut self,
        record: &InputRecord,
        placement: &Placement,
        outcome: RecordOutcome,
    ) -> Result<Sent, PipelineError> {
        let dead_letter = match outcome {
            RecordOutcome::Outputs(outputs) if outputs.is_empty() => {
                self.stats.filtered.inc();
                return Ok(Sent::NOTHING);
            }
            RecordOutcome::Outputs(outputs) if self.windows.is_some() => {
                return self.write_windowed(record, placement, outputs).await;
            }
            RecordOutcome::Outputs(outputs) => {
                let next_index = outputs.len() as u32;
                let outputs: Vec<OutputRecord> = (0..next_index)
                    .zip(outputs)
                    .map(|(index, output)| self.stamped(record, index, output))
                    .collect();
                match self.unwritable(record, &outputs).await? {
                    None => return self.send_all(record, placement, outputs).await,
                    Some(dead_letter) => dead_letter,
                }
            }
            RecordOutcome::Skip { transform, reason } => {
                self.stats.skipped.inc();
                tracing::debug!(pipeline = %self.pipeline, %transform, reason, "record skipped");
                return Ok(Sent::NOTHING);
            }
            RecordOutcome::DeadLetter {
                transform,
                kind,
                reason,
            } => DeadLetter::new(kind.as_str(), &transform.to_string(), reason),
            RecordOutcome::Fatal { transform, reason } => {
                return Err(PipelineError::Fatal {
                    pipeline: self.pipeline.clone(),
                    transform: transform.to_string(),
                    message_id: record.source.message_id.to_string(),
                    reason,
                });
            }
        };
        self.dead_letter(record, placement, 0, dead_letter).await
    }

    /// Takes the outputs of `record` into the window stages and writes the results of the
    /// windows they closed (as the record's outputs), then, if a stage with `late =
    /// "dead-letter"` found one late, the record's dead-letter copy (kind `late`).
    async fn write_windowed(
        &mut self,
        record: &InputRecord,
        placement: &Placement,
        outputs: Vec<OutputRecord>,
    ) -> Result<Sent, PipelineError> {
        let windowed = {
            let windows = self.windows.as_ref().expect("only called with windows");
            let mut windows = windows.lock().expect("windows lock poisoned");
            windows.take(scope_key(placement), &outputs)
        };
        self.window_changes = windowed.changes;
        for window in &windowed.late_in {
            self.stats.count_late(window);
        }
        let mut sent = Sent::NOTHING;
        if !windowed.results.is_empty() {
            let next_index = windowed.results.len() as u32;
            let results: Vec<OutputRecord> = (0..next_index)
                .zip(windowed.results)
                .map(|(index, result)| self.stamped(record, index, result))
                .collect();
            sent = match self.unwritable(record, &results).await? {
                None => self.send_all(record, placement, results).await?,
                Some(dead_letter) => {
                    return self.dead_letter(record, placement, 0, dead_letter).await;
                }
            };
        }
        match windowed.dead_letter {
            Some(reason) if !sent.dead_lettered => {
                let late = DeadLetter::new("late", "windows", reason);
                let copied = self
                    .dead_letter(record, placement, sent.next_index, late)
                    .await?;
                Ok(Sent {
                    any: sent.any || copied.any,
                    ..copied
                })
            }
            _ => Ok(sent),
        }
    }

    /// Sends `outputs` (stamped) in order. When the client refuses one, the outputs already
    /// queued still go out and the record goes to the dead-letter topic as the output it
    /// could not write (with transactions, in the same transaction).
    async fn send_all(
        &mut self,
        record: &InputRecord,
        placement: &Placement,
        outputs: Vec<OutputRecord>,
    ) -> Result<Sent, PipelineError> {
        let next_index = outputs.len() as u32;
        let mut any = false;
        for (index, output) in (0..next_index).zip(outputs) {
            match self.emit(record, placement, index, output).await {
                Ok(sent) => {
                    if sent {
                        self.stats.produced.inc();
                    }
                    any |= sent;
                }
                Err(error) if error.is_record_refusal() => {
                    let copied = self.refused(record, placement, index, error).await?;
                    return Ok(Sent {
                        any: any || copied.any,
                        ..copied
                    });
                }
                Err(error) => return Err(PipelineError::sink(&self.pipeline, error)),
            }
        }
        Ok(Sent {
            any,
            next_index,
            dead_lettered: false,
        })
    }

    /// The sink refused output `index` of `record` (`error`): its dead-letter copy, as that
    /// output, unless `sink.oversized` says a record too large stops the pipeline.
    async fn refused(
        &mut self,
        record: &InputRecord,
        placement: &Placement,
        index: u32,
        error: SinkError,
    ) -> Result<Sent, PipelineError> {
        let too_large = matches!(
            error,
            SinkError::Refused {
                too_large: true,
                ..
            }
        );
        if too_large && self.sink.oversized() == OversizedPolicy::Fail {
            return Err(PipelineError::sink(&self.pipeline, error));
        }
        let kind = if too_large { "too-large" } else { "refused" };
        let reason = error_chain(&error);
        self.dead_letter(
            record,
            placement,
            index,
            DeadLetter::new(kind, "sink", reason),
        )
        .await
    }

    /// `output` stamped as output `index` of `record`.
    fn stamped(&self, record: &InputRecord, index: u32, mut output: OutputRecord) -> OutputRecord {
        let policy = exactly_once::source_id_policy(self.exactly_once.as_ref());
        let source_id = &record.source.message_id;
        self.stamper.stamp(&mut output, source_id, index, policy);
        output
    }

    /// Writes `output` (stamped) as output `index` of `record`, unless the read-back finds
    /// Kafka has it already (then `false`, counted as deduplicated). With transactions it goes
    /// into the record's transaction; outside them its delivery joins the record's.
    async fn emit(
        &mut self,
        record: &InputRecord,
        placement: &Placement,
        index: u32,
        output: OutputRecord,
    ) -> Result<bool, SinkError> {
        let source_id = &record.source.message_id;
        if let Some(read_back) = self.read_back()
            && read_back.already_written(source_id, index)
        {
            self.stats.deduplicated.inc();
            return Ok(false);
        }
        match &mut self.exactly_once {
            Some(ExactlyOnce::Transactions(transactions)) => {
                transactions.send(placement, &output).await?;
            }
            Some(ExactlyOnce::ReadBack(read_back)) => {
                self.deliveries.push(self.sink.send(&output).await?);
                read_back.remember(source_id, index);
            }
            None => self.deliveries.push(self.sink.send(&output).await?),
        }
        Ok(true)
    }

    /// Produces the dead-letter copy of `record` as its output `index`, built to fit the
    /// dead-letter topic.
    async fn dead_letter(
        &mut self,
        record: &InputRecord,
        placement: &Placement,
        index: u32,
        dead_letter: DeadLetter,
    ) -> Result<Sent, PipelineError> {
        let Some(topic) = self.sink.dead_letter_topic() else {
            return Err(PipelineError::NoDeadLetterTopic {
                pipeline: self.pipeline.clone(),
                message_id: record.source.message_id.to_string(),
                kind: dead_letter.kind,
                reason: dead_letter.reason,
            });
        };
        tracing::debug!(pipeline = %self.pipeline, kind = %dead_letter.kind, reason = %dead_letter.reason, "record dead-lettered");
        let to = Destination {
            topic,
            limits: self.sink.record_limits(topic),
            reserved_bytes: identity::stamp_bytes(&self.pipeline, &record.source.message_id),
            now_ms: sluice_record::now_ms(),
        };
        let copy = dead_letter_record(record, &dead_letter, &to);
        let copy = self.stamped(record, index, copy);
        let sent = self
            .emit(record, placement, index, copy)
            .await
            .map_err(|source| PipelineError::sink(&self.pipeline, source))?;
        if sent {
            self.stats.count_dead_letter(&dead_letter.kind);
        }
        Ok(Sent {
            any: sent,
            next_index: index + 1,
            dead_lettered: true,
        })
    }

    /// Why the outputs (stamped) cannot be written, checked before any is sent: an invalid
    /// topic name; a routed topic that does not exist (and was not created) or, read back,
    /// one the config does not declare; a record the topic would refuse (too large as the
    /// producer counts it, a timestamp outside its window, no key for a compacted topic).
    // `&mut self` although it only reads: the writer holds deliveries, which are `Send` but
    // not `Sync`, and the sink stage's future must be `Send`.
    async fn unwritable(
        &mut self,
        record: &InputRecord,
        outputs: &[OutputRecord],
    ) -> Result<Option<DeadLetter>, PipelineError> {
        let invalid = |index: usize, violation: Violation| {
            let kind = if violation.too_large {
                "too-large"
            } else {
                "invalid-output"
            };
            DeadLetter::new(kind, "sink", format!("output {index}: {violation}"))
        };
        let now_ms = sluice_record::now_ms();
        for (index, output) in outputs.iter().enumerate() {
            let topic = match output.topic.as_deref() {
                None => self.sink.default_topic(),
                Some(topic) => {
                    // Checked first: a name Kafka refuses must not reach its client.
                    if let Err(problem) = validation::check_topic_name(topic) {
                        return Ok(Some(invalid(index, Violation::new("topic", problem))));
                    }
                    if let Some(undeclared) = self.undeclared_or_missing(topic).await? {
                        return Ok(Some(undeclared));
                    }
                    topic
                }
            };
            let limits = self.sink.record_limits(topic);
            if let Err(violation) = validation::check_for_sink(output, &limits, now_ms) {
                if violation.too_large && self.sink.oversized() == OversizedPolicy::Fail {
                    return Err(PipelineError::sink(
                        &self.pipeline,
                        SinkError::Refused {
                            topic: topic.to_owned(),
                            too_large: true,
                            source: format!(
                                "message {}: output {index}: {violation}",
                                record.source.message_id
                            )
                            .into(),
                        },
                    ));
                }
                return Ok(Some(invalid(index, violation)));
            }
        }
        Ok(None)
    }

    /// Why an output cannot go to `topic` (not the default one): read back, it is not
    /// declared; or it does not exist (and is not created).
    async fn undeclared_or_missing(
        &mut self,
        topic: &str,
    ) -> Result<Option<DeadLetter>, PipelineError> {
        if topic == self.sink.default_topic() {
            return Ok(None);
        }
        if let Some(undeclared) = self.read_back().and_then(|r| r.undeclared(topic)) {
            return Ok(Some(undeclared));
        }
        let status = self.sink.ensure_topic(topic).await;
        match status {
            Ok(TopicStatus::Exists) => Ok(None),
            Ok(TopicStatus::Missing) => Ok(Some(DeadLetter::new(
                "unknown-topic",
                "sink",
                format!(
                    "topic {topic:?} does not exist (set sink.create_topics = true to create it)"
                ),
            ))),
            Err(error) if error.is_record_refusal() => Ok(Some(DeadLetter::new(
                "invalid-output",
                "sink",
                error_chain(&error),
            ))),
            Err(error) => Err(PipelineError::sink(&self.pipeline, error)),
        }
    }

    fn read_back(&self) -> Option<&ReadBack> {
        match &self.exactly_once {
            Some(ExactlyOnce::ReadBack(read_back)) => Some(read_back),
            _ => None,
        }
    }
}
