//! A sink that keeps every record it is sent, per topic, and delivers at once. Taken down
//! ([`MemorySink::set_down`]), it refuses sends and connections as an unreachable Kafka does,
//! so a test can play an outage and watch the pipeline reconnect and replay. Losing delivery
//! reports ([`MemorySink::lose_delivery_reports`]), it keeps what it is sent but reports a
//! failure, as a Kafka that failed after writing does: what exactly-once must not write twice.
//! Stuck ([`MemorySink::set_stuck`]), it takes records but never reports their delivery, as a
//! Kafka that stopped answering does until librdkafka's timeout. It may refuse single records
//! at delivery ([`MemorySink::refuse_deliveries_of`]), as a broker refusing a record does, and
//! take records up to the [`SinkLimits`] a test gives it ([`MemorySink::with_limits`]).
//! Its transactional writers (`transactions.rs`) follow Kafka's rules: records become visible
//! at commit, and a newer writer of a scope fences the older ones.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use sluice_record::OutputRecord;
use sluice_record::identity;
use sluice_record::validation::SinkLimits;

use super::transactions::{MemoryWriter, Transactions};
use crate::sink::{ConnectSink, OversizedPolicy, ReadBack, Sink, SinkError, TopicStatus};
use crate::transactions::{ChangelogRecord, Resume, WriterScope};

/// An in-memory sink; clones (and every connection) share the same records.
#[derive(Clone)]
pub struct MemorySink {
    shared: Arc<Shared>,
}

struct Shared {
    default_topic: String,
    dead_letter_topic: Option<String>,
    written: Mutex<BTreeMap<String, Vec<OutputRecord>>>,
    down: AtomicBool,
    lose_reports: AtomicBool,
    stuck: AtomicBool,
    limits: SinkLimits,
    /// Records refused at delivery (the broker's refusal of one record).
    refuse: Mutex<Option<Refusal>>,
    transactions: Mutex<Transactions>,
}

/// Which records a memory sink refuses at delivery.
type Refusal = Box<dyn Fn(&OutputRecord) -> bool + Send + Sync>;

impl MemorySink {
    /// A sink writing to `topic` by default, with an optional dead-letter topic. Any other
    /// topic exists too.
    pub fn new(topic: &str, dead_letter_topic: Option<&str>) -> Self {
        Self::with_limits(topic, dead_letter_topic, SinkLimits::default())
    }

    /// Like [`MemorySink::new`], every topic taking what `limits` allow.
    pub fn with_limits(topic: &str, dead_letter_topic: Option<&str>, limits: SinkLimits) -> Self {
        Self {
            shared: Arc::new(Shared {
                default_topic: topic.to_owned(),
                dead_letter_topic: dead_letter_topic.map(str::to_owned),
                written: Mutex::default(),
                down: AtomicBool::new(false),
                lose_reports: AtomicBool::new(false),
                stuck: AtomicBool::new(false),
                limits,
                refuse: Mutex::default(),
                transactions: Mutex::default(),
            }),
        }
    }

    /// Takes records but never reports their delivery (or reports again).
    pub fn set_stuck(&self, stuck: bool) {
        self.shared.stuck.store(stuck, Ordering::SeqCst);
    }

    /// Refuses at delivery, as a broker refusing one record does, every record `refuse`
    /// picks (they are not kept).
    pub fn refuse_deliveries_of(
        &self,
        refuse: impl Fn(&OutputRecord) -> bool + Send + Sync + 'static,
    ) {
        *self.shared.refuse.lock().expect("memory sink lock") = Some(Box::new(refuse));
    }

    /// What was written to `topic`, in order.
    pub fn written(&self, topic: &str) -> Vec<OutputRecord> {
        self.written_map().get(topic).cloned().unwrap_or_default()
    }

    /// Takes the sink down (sends and connections fail as with an unreachable broker) or
    /// brings it back.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// Keeps what is sent but reports every delivery (and every commit) as failed, or stops
    /// doing so.
    pub fn lose_delivery_reports(&self, lose: bool) {
        self.shared.lose_reports.store(lose, Ordering::SeqCst);
    }

    pub(super) fn loses_reports(&self) -> bool {
        self.shared.lose_reports.load(Ordering::SeqCst)
    }

    fn written_map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<OutputRecord>>> {
        self.shared.written.lock().expect("memory sink lock")
    }

    pub(super) fn transactions(&self) -> std::sync::MutexGuard<'_, Transactions> {
        self.shared.transactions.lock().expect("memory sink lock")
    }

    /// Makes `record` visible in its topic.
    pub(super) fn append(&self, record: &OutputRecord) {
        let topic = record
            .topic
            .clone()
            .unwrap_or_else(|| self.shared.default_topic.clone());
        self.written_map()
            .entry(topic)
            .or_default()
            .push(record.clone());
    }

    /// Whether the delivery of `record` is refused ([`MemorySink::refuse_deliveries_of`]).
    pub(super) fn refuses(&self, record: &OutputRecord) -> bool {
        (self.shared.refuse.lock().expect("memory sink lock"))
            .as_ref()
            .is_some_and(|refuse| refuse(record))
    }

    pub(super) fn refuse_if_down(&self) -> Result<(), SinkError> {
        if self.shared.down.load(Ordering::SeqCst) {
            return Err(SinkError::Unreachable {
                brokers: "memory".into(),
                source: "the memory sink is down".into(),
            });
        }
        Ok(())
    }
}

impl Sink for MemorySink {
    type Delivery = BoxFuture<'static, Result<(), SinkError>>;
    type Writer = MemoryWriter;

    fn default_topic(&self) -> &str {
        &self.shared.default_topic
    }

    fn dead_letter_topic(&self) -> Option<&str> {
        self.shared.dead_letter_topic.as_deref()
    }

    fn declared_topics(&self) -> Vec<String> {
        let mut topics = vec![self.shared.default_topic.clone()];
        topics.extend(self.shared.dead_letter_topic.clone());
        topics
    }

    fn oversized(&self) -> OversizedPolicy {
        OversizedPolicy::DeadLetter
    }

    fn record_limits(&self, _topic: &str) -> SinkLimits {
        self.shared.limits
    }

    async fn ensure_topic(&self, _topic: &str) -> Result<TopicStatus, SinkError> {
        Ok(TopicStatus::Exists)
    }

    async fn send_changelog(
        &self,
        _record: ChangelogRecord<'_>,
    ) -> Result<Self::Delivery, SinkError> {
        self.refuse_if_down()?;
        Ok(Box::pin(std::future::ready(Ok(()))))
    }

    async fn send(&self, record: &OutputRecord) -> Result<Self::Delivery, SinkError> {
        self.refuse_if_down()?;
        let topic = record
            .topic
            .clone()
            .unwrap_or_else(|| self.shared.default_topic.clone());
        if self.refuses(record) {
            return Ok(Box::pin(std::future::ready(Err(SinkError::Refused {
                topic,
                too_large: false,
                source: "the memory sink refused the record".into(),
            }))));
        }
        self.append(record);
        if self.shared.stuck.load(Ordering::SeqCst) {
            return Ok(Box::pin(std::future::pending()));
        }
        if self.loses_reports() {
            return Ok(Box::pin(std::future::ready(Err(SinkError::Delivery {
                topic,
                source: "the memory sink lost the delivery report".into(),
            }))));
        }
        Ok(Box::pin(std::future::ready(Ok(()))))
    }

    async fn read_back(&self, pipeline: &str, window: usize) -> Result<ReadBack, SinkError> {
        self.refuse_if_down()?;
        let topics = self.declared_topics();
        let written = self.written_map();
        let mut read = ReadBack::default();
        for records in topics.iter().filter_map(|topic| written.get(topic)) {
            read.partitions += 1;
            for record in &records[records.len().saturating_sub(window)..] {
                read.records_read += 1;
                let headers = record
                    .headers
                    .iter()
                    .map(|h| (&*h.name, Some(&h.value[..])));
                read.outputs.extend(identity::written_by(headers, pipeline));
            }
        }
        Ok(read)
    }

    async fn open_writer(&self, scope: &WriterScope) -> Result<(MemoryWriter, Resume), SinkError> {
        self.refuse_if_down()?;
        let (epoch, resume) = self.transactions().open(scope);
        let writer = MemoryWriter::new(self.clone(), scope.transactional_id.clone(), epoch);
        Ok((writer, resume))
    }
}

impl ConnectSink for MemorySink {
    type Sink = MemorySink;

    async fn connect(&self) -> Result<MemorySink, SinkError> {
        self.refuse_if_down()?;
        Ok(self.clone())
    }
}
