//! Exactly-once on Kafka transactions, the pipeline's side (docs/delivery-guarantees.md):
//! writer scopes, skipping what is committed, when to commit, and what a fence means.
//!
//! - **Writer scopes.** One per source partition ([`Placement::partition`]): a Pulsar
//!   partition, or the whole source when it is one stream (a non-partitioned topic, a Pub/Sub
//!   subscription). Its `transactional.id` is `<prefix><pipeline>` for a source of one stream
//!   and `<prefix><pipeline>.partition-<N>` for partition N, and its checkpoints go to
//!   partition N (or 0) of the offsets topic.
//! - **Several sources** (`[[pipeline.sources]]`): the scopes of source 0 are named as above,
//!   so a pipeline that gains sources keeps its first source's checkpoints. Those of source
//!   S > 0 add `.source-S` to the `transactional.id` (before any `.partition-N`) and to the
//!   offsets topic's name: the partitions of two sources never share an id or an offsets
//!   partition ([`Placement::source`]).
//! - **Opening a scope** (for the first record of its partition, and again after a Kafka
//!   failure) fences every older writer of it and reads its checkpoint. A record the
//!   checkpoint covers (at or before its position; for a source without an order, among its
//!   recently committed ids) is acked without its outputs being written again.
//! - **Commits** by size and time, never per record: a transaction commits once it holds
//!   `max_records_per_transaction` source records or is `commit_interval` old (checked after
//!   every batch and on a timer), with its checkpoint. Its records are acked once it committed.
//! - **The checkpoint of an ordered source.** Transform lanes may finish records out of source
//!   order, so a checkpoint says "done through P" for the longest written prefix of what the
//!   source delivered, plus the positions written after it. The [`Tracker`] keeps what the
//!   source delivered, in order, until a commit covers it.
//! - **Fenced** (another instance opened the scope). With a source that hands partitions over
//!   (a Pulsar failover subscription) the scope's records in flight are relinquished, neither
//!   written nor acked, and the source subscribes to the partition again: this instance stands
//!   by for it. Otherwise another instance replaced this one: the pipeline stops at once, and
//!   the process exits non-zero.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::channel::oneshot;
use futures::future::Shared;
use sluice_connectors::sink::{Sink, SinkError};
use sluice_connectors::source::{ConnectSource, Placement, Position, SourceObserver};
use sluice_connectors::transactions::{
    ChangelogRecord, Checkpoint, Resume, TransactionalWriter, WriterScope,
};
use sluice_record::{InputRecord, OutputRecord};

use crate::error::PipelineError;
use crate::outcome_writer::{Settle, Settled, settled};
use crate::settings::PipelineSettings;
use crate::stats::PipelineStats;

/// A test hook, read by the runtime only: `K:MS` pauses the pipeline for MS milliseconds
/// before the K-th commit it attempts, once that transaction's outputs reached the broker
/// (uncommitted), after logging a line with [`PAUSE_HOOK_MARKER`]. A test that waits for the
/// line and then SIGSTOPs the process stops it with a transaction open.
pub const PAUSE_HOOK: &str = "SLUICE_TEST_PAUSE_BEFORE_COMMIT";
/// What the pause hook's log line says.
pub const PAUSE_HOOK_MARKER: &str = "test hook: pausing with a transaction open";

use crate::state::{Changelog, ScopeKey, StateStore, scope_key};

/// What becomes of a transformed record.
pub(crate) enum Admission {
    /// Write its outputs in its scope's open transaction.
    Write,
    /// A commit already covers it: ack it without writing.
    Done,
    /// Its partition was taken over by another instance: let it go.
    Relinquish,
}

/// The writer scopes of a pipeline and their open transactions.
pub(crate) struct Transactions<S: Sink> {
    pipeline: String,
    prefix: String,
    offsets_topic: String,
    commit_interval: Duration,
    max_records: usize,
    ids_window: usize,
    /// The pipeline's source(s): whether the source of a scope hands partitions over between
    /// instances, so that a fence means one moved.
    source: Arc<dyn ConnectSource>,
    scopes: HashMap<ScopeKey, Scope<S::Writer>>,
    tracker: Arc<Mutex<Tracker>>,
    hook: Option<PauseHook>,
    commits_attempted: u64,
    stats: Arc<PipelineStats>,
    /// Keyed state, when a transform keeps some: restored as a scope opens, dropped with a
    /// transaction that cannot commit.
    state: Option<Arc<StateStore>>,
    changelog: Changelog,
}

/// One writer scope.
struct Scope<W> {
    writer: W,
    /// The source partition's name, which its checkpoints carry.
    source: String,
    /// The highest claim of the records it wrote.
    claim: u64,
    done: Done,
    open: Option<OpenTransaction>,
}

/// What the scope's commits cover.
#[derive(Clone)]
pub(crate) enum Done {
    /// An ordered source: every position at or before `through`, and `also`.
    Ordered {
        through: Option<Position>,
        also: BTreeSet<Position>,
    },
    /// A source without an order: the latest committed message ids.
    Unordered(RecentIds),
}

impl Done {
    fn new(ordered: bool, resume: Resume, window: usize) -> Self {
        if ordered {
            Done::Ordered {
                through: resume.through,
                also: resume.also,
            }
        } else {
            let mut ids = RecentIds::new(window);
            ids.extend(resume.ids);
            Done::Unordered(ids)
        }
    }

    pub(crate) fn covers(&self, record: &InputRecord, placement: &Placement) -> bool {
        match (self, placement.position) {
            (Done::Ordered { through, also }, Some(position)) => {
                through.is_some_and(|through| position <= through) || also.contains(&position)
            }
            (Done::Unordered(ids), _) => ids.contains(&record.source.message_id),
            (Done::Ordered { .. }, None) => false,
        }
    }
}

/// The latest message ids committed, at most `window` of them.
#[derive(Clone)]
pub(crate) struct RecentIds {
    window: usize,
    ids: HashSet<String>,
    order: VecDeque<String>,
}

impl RecentIds {
    fn new(window: usize) -> Self {
        Self {
            window,
            ids: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    fn extend(&mut self, ids: impl IntoIterator<Item = String>) {
        for id in ids {
            if self.ids.insert(id.clone()) {
                self.order.push_back(id);
            }
        }
        while self.order.len() > self.window {
            if let Some(oldest) = self.order.pop_front() {
                self.ids.remove(&oldest);
            }
        }
    }
}

/// The scope's transaction in progress.
struct OpenTransaction {
    /// Source records whose outputs it holds.
    records: usize,
    /// When it commits at the latest.
    deadline: Instant,
    /// Their message ids (sources without an order).
    ids: Vec<String>,
    outcome: oneshot::Sender<Settled>,
    receipt: Shared<oneshot::Receiver<Settled>>,
}

impl OpenTransaction {
    fn new(deadline: Instant) -> Self {
        let (outcome, receipt) = oneshot::channel();
        Self {
            records: 0,
            deadline,
            ids: Vec::new(),
            outcome,
            receipt: receipt.shared(),
        }
    }
}

/// The pause of the test hook.
struct PauseHook {
    commit: u64,
    pause: Duration,
}

impl PauseHook {
    fn from_env() -> Option<Self> {
        let value = std::env::var(PAUSE_HOOK).ok()?;
        let parsed = value
            .split_once(':')
            .and_then(|(k, ms)| Some((k.parse().ok()?, ms.parse().ok()?)));
        let Some((commit, ms)) = parsed else {
            tracing::warn!("{PAUSE_HOOK}={value:?} is not K:MS; ignored");
            return None;
        };
        Some(Self {
            commit,
            pause: Duration::from_millis(ms),
        })
    }
}

impl<S: Sink> Transactions<S> {
    pub(crate) fn new(
        settings: &PipelineSettings,
        source: Arc<dyn ConnectSource>,
        tracker: Arc<Mutex<Tracker>>,
        stats: Arc<PipelineStats>,
    ) -> Self {
        let transactions = &settings.exactly_once;
        Self {
            pipeline: settings.name.clone(),
            prefix: transactions.transactional_id_prefix.clone(),
            offsets_topic: settings.offsets_topic(),
            commit_interval: transactions.commit_interval,
            max_records: transactions.max_records_per_transaction,
            ids_window: settings.dedup_window,
            source,
            scopes: HashMap::new(),
            tracker,
            hook: PauseHook::from_env(),
            commits_attempted: 0,
            stats,
            state: None,
            changelog: Changelog::new(settings.changelog_topic()),
        }
    }

    /// Keeps the transforms' keyed state in `store`, durable in the changelog.
    pub(crate) fn keep_state(&mut self, store: Arc<StateStore>) {
        self.state = Some(store);
    }

    /// Makes sure the scope of `record` is open and its state restored: called before the
    /// scope's first record is transformed.
    pub(crate) async fn open_state(
        &mut self,
        sink: &S,
        record: &InputRecord,
        placement: &Placement,
    ) -> Result<(), PipelineError> {
        let key = scope_key(placement);
        if !self.scopes.contains_key(&key) {
            return self.open(sink, record, placement).await;
        }
        match &self.state {
            Some(store) if !store.holds(key) => self.restore(sink, key).await,
            _ => Ok(()),
        }
    }

    /// Reads the scope's changelog partition, `read_committed`, to its end (its writer is
    /// open, so no older writer of it can add to it any more) into the state store.
    async fn restore(&mut self, sink: &S, key: ScopeKey) -> Result<(), PipelineError> {
        let Some(store) = self.state.clone() else {
            return Ok(());
        };
        let covered = self.scopes.get(&key).map(|scope| scope.done.clone());
        (self.changelog)
            .restore(sink, &store, key, covered, &self.pipeline, &self.stats)
            .await
    }

    /// Writes the state changes of a record admitted for writing in its scope's transaction.
    pub(crate) async fn send_changelog(
        &mut self,
        placement: &Placement,
        changes: &[sluice_engine::StateChange],
    ) -> Result<(), SinkError> {
        if changes.is_empty() {
            return Ok(());
        }
        let interval = self.commit_interval;
        let key = scope_key(placement);
        let topic = self.changelog.topic(key.0);
        let scope = (self.scopes.get_mut(&key))
            .expect("a record is written only once admitted, to an open scope");
        scope
            .open
            .get_or_insert_with(|| OpenTransaction::new(Instant::now() + interval));
        for entry in Changelog::entries(changes) {
            let record = ChangelogRecord {
                topic: &topic,
                partition: Changelog::partition(key),
                key: &entry.key,
                value: entry.value.as_deref(),
            };
            scope.writer.send_changelog(record).await?;
        }
        Ok(())
    }

    fn tracker(&self) -> MutexGuard<'_, Tracker> {
        self.tracker.lock().expect("tracker lock poisoned")
    }

    fn transactional_id(&self, (source, partition): ScopeKey) -> String {
        let source = match source {
            0 => String::new(),
            index => format!(".source-{index}"),
        };
        match partition {
            None => format!("{}{}{source}", self.prefix, self.pipeline),
            Some(partition) => format!(
                "{}{}{source}.partition-{partition}",
                self.prefix, self.pipeline
            ),
        }
    }

    /// The offsets topic of the scopes of `source`: the pipeline's for source 0, and its name
    /// with `.source-S` for source S.
    fn offsets_topic(&self, source: u32) -> String {
        match source {
            0 => self.offsets_topic.clone(),
            index => format!("{}.source-{index}", self.offsets_topic),
        }
    }

    /// Decides what becomes of `record`, opening its scope first if needed.
    pub(crate) async fn admit(
        &mut self,
        sink: &S,
        record: &InputRecord,
        placement: &Placement,
    ) -> Result<Admission, PipelineError> {
        let key = scope_key(placement);
        if self.tracker().is_given_up(key, placement.claim) {
            return Ok(Admission::Relinquish);
        }
        if !self.scopes.contains_key(&key) {
            self.open(sink, record, placement).await?;
        }
        let scope = self.scopes.get_mut(&key).expect("the scope is open");
        scope.claim = scope.claim.max(placement.claim);
        if scope.done.covers(record, placement) {
            self.tracker().written(placement);
            return Ok(Admission::Done);
        }
        Ok(Admission::Write)
    }

    /// Opens the scope of `record`'s partition: fences its older writers, reads its
    /// checkpoint.
    async fn open(
        &mut self,
        sink: &S,
        record: &InputRecord,
        placement: &Placement,
    ) -> Result<(), PipelineError> {
        let key = scope_key(placement);
        let scope = WriterScope {
            transactional_id: self.transactional_id(key),
            offsets_topic: self.offsets_topic(placement.source),
            offsets_partition: placement.partition.unwrap_or(0) as i32,
            source: record.source.topic.to_string(),
            ids_window: self.ids_window,
        };
        let (writer, mut resume) = sink
            .open_writer(&scope)
            .await
            .map_err(|source| PipelineError::sink(&self.pipeline, source))?;
        if let Some(other) = resume.source.as_ref().filter(|s| **s != scope.source) {
            tracing::warn!(
                pipeline = %self.pipeline,
                transactional_id = %scope.transactional_id,
                checkpoint_source = %other,
                source = %scope.source,
                "the offsets topic holds checkpoints of another source for this writer; \
                 they are ignored, and the source's own position decides where reading resumes"
            );
            resume = Resume::default();
        }
        tracing::info!(
            pipeline = %self.pipeline,
            transactional_id = %scope.transactional_id,
            source = %scope.source,
            committed_through = %resume.through.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            committed_ids = resume.ids.len(),
            "writer open; what it committed before is not written again"
        );
        let done = Done::new(placement.position.is_some(), resume, self.ids_window);
        self.scopes.insert(
            key,
            Scope {
                writer,
                source: scope.source,
                claim: placement.claim,
                done,
                open: None,
            },
        );
        self.restore(sink, key).await
    }

    /// Sends an output of a record admitted for writing, in its scope's transaction.
    pub(crate) async fn send(
        &mut self,
        placement: &Placement,
        output: &OutputRecord,
    ) -> Result<(), SinkError> {
        let interval = self.commit_interval;
        let scope = (self.scopes.get_mut(&scope_key(placement)))
            .expect("a record is written only once admitted, to an open scope");
        scope
            .open
            .get_or_insert_with(|| OpenTransaction::new(Instant::now() + interval));
        scope.writer.send(output).await
    }

    /// All outputs of `record` are sent (none when `sent` is false): what its ack waits for.
    pub(crate) fn finish(
        &mut self,
        record: &InputRecord,
        placement: &Placement,
        sent: bool,
    ) -> Settle {
        self.tracker().written(placement);
        let open = (self.scopes.get_mut(&scope_key(placement)))
            .and_then(|scope| scope.open.as_mut())
            .filter(|_| sent);
        let Some(open) = open else {
            // Nothing to commit: a record without outputs is acked in its turn.
            return settled(Settled::Done);
        };
        open.records += 1;
        if placement.position.is_none() {
            open.ids.push(record.source.message_id.to_string());
        }
        let receipt = open.receipt.clone();
        Box::pin(async move {
            receipt.await.map_err(|_| SinkError::Canceled {
                topic: "(a transaction that ended without a commit)".into(),
            })
        })
    }

    /// A newer writer fenced the scope of `placement` while one of its records was written:
    /// `Ok` when this instance stands by for the partition (the record is relinquished).
    pub(crate) fn fenced_while_writing(
        &mut self,
        placement: &Placement,
    ) -> Result<(), PipelineError> {
        self.fenced(scope_key(placement))
    }

    /// When the next transaction is due at the latest.
    pub(crate) fn next_commit(&self) -> Option<Instant> {
        (self.scopes.values())
            .filter_map(|scope| scope.open.as_ref().map(|open| open.deadline))
            .min()
    }

    /// Commits every transaction that is full or old enough (every open one with `all`),
    /// concurrently, each with its scope's checkpoint.
    pub(crate) async fn commit_due(&mut self, all: bool) -> Result<(), PipelineError> {
        let now = Instant::now();
        let max_records = self.max_records;
        let due: Vec<ScopeKey> = (self.scopes.iter())
            .filter(|(_, scope)| {
                scope
                    .open
                    .as_ref()
                    .is_some_and(|open| all || open.records >= max_records || open.deadline <= now)
            })
            .map(|(key, _)| *key)
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        let checkpoints: HashMap<ScopeKey, Checkpoint> = due
            .iter()
            .map(|key| (*key, self.checkpoint(*key)))
            .collect();
        self.pause_if_hooked(&due).await;
        let commits = (self.scopes.iter_mut()).filter_map(|(key, scope)| {
            let checkpoint = checkpoints.get(key)?;
            Some(async move { (*key, scope.writer.commit(checkpoint).await) })
        });
        let started = Instant::now();
        let results = futures::future::join_all(commits).await;
        (self.stats.commit_seconds).observe(started.elapsed().as_secs_f64());
        let mut failure = None;
        for (key, result) in results {
            let outcome = match result {
                Ok(()) => {
                    self.committed(key, &checkpoints[&key]);
                    Ok(())
                }
                Err(SinkError::Fenced { .. }) => self.fenced(key),
                Err(error) => Err(PipelineError::sink(&self.pipeline, error)),
            };
            if let Err(error) = outcome {
                failure.get_or_insert(error);
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// What the scope's open transaction commits about the source.
    fn checkpoint(&self, key: ScopeKey) -> Checkpoint {
        let scope = &self.scopes[&key];
        let source = scope.source.clone();
        match &scope.done {
            Done::Ordered { through, also } => {
                let (through, also) = self.tracker().watermark(key, *through, also);
                Checkpoint::Ordered {
                    source,
                    through,
                    also,
                }
            }
            Done::Unordered(_) => Checkpoint::Unordered {
                source,
                ids: (scope.open.as_ref()).map_or_else(Vec::new, |open| open.ids.clone()),
            },
        }
    }

    /// The scope's transaction committed with `checkpoint`: its records may be acked.
    fn committed(&mut self, key: ScopeKey, checkpoint: &Checkpoint) {
        let scope = self
            .scopes
            .get_mut(&key)
            .expect("a committed scope is open");
        if let Some(open) = scope.open.take() {
            // The records' settlements may be gone (the stages stopped): nothing to tell then.
            let _ = open.outcome.send(Settled::Done);
        }
        match (&mut scope.done, checkpoint) {
            (
                Done::Ordered { through, also },
                Checkpoint::Ordered {
                    through: committed,
                    also: committed_also,
                    ..
                },
            ) => {
                *through = *committed;
                *also = committed_also.iter().copied().collect();
                if let Some(committed) = committed {
                    self.tracker
                        .lock()
                        .expect("tracker lock poisoned")
                        .forget_through(key, *committed);
                }
            }
            (Done::Unordered(recent), Checkpoint::Unordered { ids, .. }) => {
                recent.extend(ids.iter().cloned());
            }
            _ => unreachable!("a scope's checkpoints are of its kind"),
        }
        self.stats.transactions.inc();
    }

    /// Another instance opened the scope of `key`. With a source that hands partitions over,
    /// the scope's records are relinquished and `Ok` returned; otherwise the pipeline must
    /// stop.
    fn fenced(&mut self, key: ScopeKey) -> Result<(), PipelineError> {
        let scope = self.scopes.remove(&key).expect("a fenced scope is open");
        if let Some(store) = &self.state {
            store.drop_scope(key);
        }
        let transactional_id = scope.writer.transactional_id().to_owned();
        if !self.source.hands_over_partitions_of(key.0) {
            // The process says it once, on its `error:` line (PipelineError::Fenced).
            tracing::debug!(
                pipeline = %self.pipeline,
                transactional_id = %transactional_id,
                "fenced by a newer instance of pipeline {:?} (transactional.id {transactional_id:?}): \
                 stopping; nothing more is written or acked",
                self.pipeline
            );
            return Err(PipelineError::Fenced {
                pipeline: self.pipeline.clone(),
                transactional_id,
            });
        }
        tracing::warn!(
            pipeline = %self.pipeline,
            transactional_id = %transactional_id,
            source = %scope.source,
            "another instance took {} over (it fenced transactional.id {transactional_id:?}): \
             its records in flight here are dropped unacked, and this instance stands by for it",
            scope.source
        );
        if let Some(open) = scope.open {
            let _ = open.outcome.send(Settled::Relinquish);
        }
        self.tracker().give_up(key, scope.claim);
        Ok(())
    }

    /// Kafka failed and the sink was renewed: the writers go (new ones are opened, fencing
    /// them, when their partitions' records come again), and nothing sent is written any more.
    pub(crate) fn sink_renewed(&mut self) {
        self.scopes.clear();
        // The open transactions' state changes died with them: restored again as the scopes
        // open.
        if let Some(store) = &self.state {
            store.clear();
        }
        self.tracker().unwrite_all();
    }

    /// The test hook: pauses before the commit it names, with that transaction's outputs on
    /// the broker.
    async fn pause_if_hooked(&mut self, due: &[ScopeKey]) {
        let first = self.commits_attempted + 1;
        self.commits_attempted += due.len() as u64;
        let Some(hook) = &self.hook else { return };
        if !(first..=self.commits_attempted).contains(&hook.commit) {
            return;
        }
        let key = due[(hook.commit - first) as usize];
        let (commit, pause) = (hook.commit, hook.pause);
        let scope = self.scopes.get_mut(&key).expect("a due scope is open");
        let _ = scope.writer.flush().await;
        let records = scope.open.as_ref().map_or(0, |open| open.records);
        tracing::warn!(
            pipeline = %self.pipeline,
            transactional_id = %scope.writer.transactional_id(),
            commit,
            records,
            pause_ms = pause.as_millis() as u64,
            "{PAUSE_HOOK_MARKER} ({PAUSE_HOOK}): its outputs are on the broker, uncommitted"
        );
        tokio::time::sleep(pause).await;
    }
}

/// What the source delivered from each ordered partition that no commit covers yet, in source
/// order, and which of it is written: where a checkpoint may say "done through". Shared by the
/// source's read loop (which registers what it hands out, [`TrackingObserver`]) and the sink
/// stage.
#[derive(Default)]
pub(crate) struct Tracker {
    partitions: HashMap<ScopeKey, BTreeMap<Position, Delivered>>,
    /// Per partition, the highest claim given up: what its subscriptions up to that one
    /// delivered is not this instance's to write.
    given_up: HashMap<ScopeKey, u64>,
}

/// A message the source delivered.
struct Delivered {
    claim: u64,
    written: bool,
}

impl Tracker {
    /// A new source session: its messages are all new, and all claims too.
    pub(crate) fn reset(&mut self) {
        self.partitions.clear();
        self.given_up.clear();
    }

    fn received(&mut self, placement: &Placement) {
        let Some(position) = placement.position else {
            return;
        };
        if self.is_given_up(scope_key(placement), placement.claim) {
            return;
        }
        let delivered = Delivered {
            claim: placement.claim,
            written: false,
        };
        (self.partitions.entry(scope_key(placement)).or_default()).insert(position, delivered);
    }

    fn written(&mut self, placement: &Placement) {
        let delivered = (self.partitions.get_mut(&scope_key(placement)))
            .zip(placement.position)
            .and_then(|(partition, position)| partition.get_mut(&position));
        if let Some(delivered) = delivered {
            delivered.written = true;
        }
    }

    fn is_given_up(&self, key: ScopeKey, claim: u64) -> bool {
        self.given_up
            .get(&key)
            .is_some_and(|given_up| claim <= *given_up)
    }

    fn give_up(&mut self, key: ScopeKey, claim: u64) {
        let given_up = self.given_up.entry(key).or_default();
        *given_up = (*given_up).max(claim);
        if let Some(partition) = self.partitions.get_mut(&key) {
            partition.retain(|_, delivered| delivered.claim > claim);
        }
    }

    /// What a checkpoint of partition `key` may say, from what the last one said: done
    /// through the end of the written prefix of what the source delivered, and also the
    /// positions written after a gap.
    fn watermark(
        &self,
        key: ScopeKey,
        mut through: Option<Position>,
        also: &BTreeSet<Position>,
    ) -> (Option<Position>, Vec<Position>) {
        let mut also = also.clone();
        let mut gap = false;
        for (position, delivered) in self.partitions.get(&key).into_iter().flatten() {
            if !delivered.written {
                gap = true;
            } else if gap {
                also.insert(*position);
            } else {
                through = through.max(Some(*position));
            }
        }
        let also = (also.into_iter())
            .filter(|position| through.is_none_or(|through| *position > through))
            .collect();
        (through, also)
    }

    /// A commit covers everything of partition `key` through `through`.
    fn forget_through(&mut self, key: ScopeKey, through: Position) {
        if let Some(partition) = self.partitions.get_mut(&key) {
            *partition = partition.split_off(&Position {
                batch: through.batch.saturating_add(1),
                ..through
            });
        }
    }

    /// Kafka failed: what was written is not (the open transactions died with the producers).
    fn unwrite_all(&mut self) {
        for delivered in self.partitions.values_mut().flat_map(BTreeMap::values_mut) {
            delivered.written = false;
        }
    }
}

/// The source's observer with transactions: counts what the source hands out, as
/// [`PipelineStats`] does, and registers its positions in the [`Tracker`], in source order.
pub(crate) struct TrackingObserver {
    pub(crate) stats: Arc<PipelineStats>,
    pub(crate) tracker: Arc<Mutex<Tracker>>,
}

impl SourceObserver for TrackingObserver {
    fn received(&self, placement: &Placement) {
        self.stats.received(placement);
        (self.tracker.lock().expect("tracker lock poisoned")).received(placement);
    }

    fn in_flight(&self, count: usize) {
        self.stats.in_flight(count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(entry: u64) -> Placement {
        Placement {
            source: 0,
            partition: Some(1),
            claim: 1,
            position: Some(Position {
                ledger: 3,
                entry,
                batch: -1,
            }),
        }
    }

    fn position(placement: Placement) -> Position {
        placement.position.unwrap()
    }

    #[test]
    fn a_checkpoint_covers_the_written_prefix_and_what_is_written_past_a_gap() {
        let mut tracker = Tracker::default();
        for entry in 1..=5 {
            tracker.received(&at(entry));
        }
        for entry in [1, 2, 4] {
            tracker.written(&at(entry));
        }
        let (through, also) = tracker.watermark((0, Some(1)), None, &BTreeSet::new());
        assert_eq!(through, Some(position(at(2))));
        assert_eq!(also, [position(at(4))]);

        tracker.forget_through((0, Some(1)), position(at(2)));
        tracker.written(&at(3));
        let earlier_also = BTreeSet::from([position(at(4))]);
        let (through, also) = tracker.watermark((0, Some(1)), through, &earlier_also);
        assert_eq!(through, Some(position(at(4))), "the gap closed");
        assert!(also.is_empty());
    }

    #[test]
    fn a_given_up_claim_is_forgotten_and_not_tracked_again() {
        let mut tracker = Tracker::default();
        tracker.received(&at(1));
        tracker.give_up((0, Some(1)), 1);
        tracker.received(&at(2));
        assert!(tracker.is_given_up((0, Some(1)), 1));
        assert!(
            !tracker.is_given_up((0, Some(1)), 2),
            "a newer claim is this instance's again"
        );
        assert!(
            !tracker.is_given_up((0, Some(2)), 1),
            "other partitions are not concerned"
        );
        let (through, also) = tracker.watermark((0, Some(1)), None, &BTreeSet::new());
        assert_eq!((through, also.len()), (None, 0));
    }

    #[test]
    fn recent_ids_keep_the_latest_window() {
        let mut ids = RecentIds::new(2);
        ids.extend(["a", "b", "c"].map(String::from));
        assert!(!ids.contains("a"));
        assert!(ids.contains("b") && ids.contains("c"));
    }
}
