//! The offsets topic of exactly-once on Kafka transactions (docs/delivery-guarantees.md): where
//! each transaction writes its checkpoint next to its outputs, and what a writer reads when it
//! opens.
//!
//! One compacted topic per pipeline (`sluice-offsets.<pipeline>` unless configured), one
//! partition per writer scope (the scope's source partition number; 0 for a source that is one
//! stream), created when missing. A partition only ever holds its scope's records, so after the
//! scope's `init_transactions` nothing is open there and a `read_committed` read reaches its
//! end. Records (values are JSON):
//!
//! | key | value | written |
//! |---|---|---|
//! | `<transactional.id>` | `{"v":1,"source":…,"through":{"ledger":…,"entry":…,"batch":…},"also":[…]}` | ordered sources (Pulsar): every transaction; compaction keeps the last |
//! | `<transactional.id>/ids/<seq>` | `{"v":1,"source":…,"seq":…,"ids":[…]}` | unordered sources (Pub/Sub): every transaction, up to 10,000 ids a record |
//! | `<transactional.id>/ids/<seq>` | tombstone | once the records after it hold the ids window |
//!
//! The reader reads a partition's tail, backwards in doubling steps, until it has the latest
//! position, or the ids window, or the whole partition: compaction bounds what is kept, and
//! the tail read bounds what is read whatever the state of compaction.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::sink::SinkError;
use crate::source::Position;
use crate::transactions::{Checkpoint, Resume, WriterScope};

/// Most message ids in one record of the offsets topic (about 250 KB of JSON).
const IDS_PER_RECORD: usize = 10_000;
/// Records read from a partition's end by the first step of a tail read.
const FIRST_TAIL: i64 = 256;
/// How long a tail read may go without receiving anything before it gives up.
pub(super) const STALL_TIMEOUT: Duration = Duration::from_secs(30);
pub(super) const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// The format of the values; a newer one is refused rather than misread.
const FORMAT: u32 = 1;

/// The value of a checkpoint record.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    v: u32,
    source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    through: Option<Position>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    also: Vec<Position>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ids: Vec<String>,
}

/// A record to produce to the scope's partition: key, and value (`None`: a tombstone).
pub(super) type OffsetsRecord = (String, Option<Vec<u8>>);

/// The ids records of an unordered scope that are still needed: their sequence numbers and id
/// counts, oldest first. What the writer tombstones once the ids window is covered without
/// them.
#[derive(Debug, Default)]
pub(super) struct IdsRing {
    window: usize,
    live: VecDeque<(u64, usize)>,
    ids: usize,
    next_seq: u64,
}

impl IdsRing {
    /// The records `checkpoint` becomes: for an ordered source one record with the position,
    /// for an unordered one its ids (in records of at most 10,000) and tombstones for the
    /// records no longer needed to cover the ids window.
    pub(super) fn records(
        &mut self,
        scope: &WriterScope,
        checkpoint: &Checkpoint,
    ) -> Vec<OffsetsRecord> {
        let encode = |stored: &Stored| serde_json::to_vec(stored).expect("a checkpoint encodes");
        match checkpoint {
            Checkpoint::Ordered {
                source,
                through,
                also,
            } => {
                let stored = Stored {
                    v: FORMAT,
                    source: source.clone(),
                    through: *through,
                    also: also.clone(),
                    seq: None,
                    ids: Vec::new(),
                };
                vec![(scope.transactional_id.clone(), Some(encode(&stored)))]
            }
            Checkpoint::Unordered { source, ids } => {
                let mut records = Vec::new();
                for chunk in ids.chunks(IDS_PER_RECORD) {
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    let stored = Stored {
                        v: FORMAT,
                        source: source.clone(),
                        through: None,
                        also: Vec::new(),
                        seq: Some(seq),
                        ids: chunk.to_vec(),
                    };
                    records.push((ids_key(scope, seq), Some(encode(&stored))));
                    self.live.push_back((seq, chunk.len()));
                    self.ids += chunk.len();
                }
                while let Some(&(seq, count)) = self.live.front() {
                    if self.ids - count < self.window {
                        break;
                    }
                    self.live.pop_front();
                    self.ids -= count;
                    records.push((ids_key(scope, seq), None));
                }
                records
            }
        }
    }
}

fn ids_key(scope: &WriterScope, seq: u64) -> String {
    format!("{}/ids/{seq}", scope.transactional_id)
}

/// The consumer that reads checkpoints: `read_committed` (what aborted transactions wrote is
/// skipped), with the producer's connection settings.
pub(super) fn consumer_config(mut client: ClientConfig) -> ClientConfig {
    client
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true");
    client
}

/// Makes sure `topic` exists, compacted, with more than `partition` partitions.
pub(super) async fn ensure_partition(
    admin: &AdminClient<DefaultClientContext>,
    consumer: &ClientConfig,
    brokers: &str,
    topic: &str,
    partition: i32,
) -> Result<(), SinkError> {
    let wanted = partition + 1;
    let options = AdminOptions::new().operation_timeout(Some(METADATA_TIMEOUT));
    let create_error = |source: KafkaError| SinkError::CreateTopic {
        topic: topic.to_owned(),
        source: source.into(),
    };
    for _ in 0..3 {
        let partitions = partition_count(consumer, brokers, topic).await?;
        let result = match partitions {
            Some(count) if count >= wanted => return Ok(()),
            Some(count) => {
                let more = NewPartitions::new(topic, wanted as usize);
                let results = admin
                    .create_partitions([&more], &options)
                    .await
                    .map_err(create_error)?;
                tracing::info!(
                    topic,
                    from = count,
                    to = wanted,
                    "added partitions to the offsets topic"
                );
                results.into_iter().next()
            }
            None => {
                // The broker's default replication factor; compacted: the latest checkpoint
                // of each scope is kept for good.
                let new = NewTopic::new(topic, wanted, TopicReplication::Fixed(-1))
                    .set("cleanup.policy", "compact");
                let results = admin
                    .create_topics([&new], &options)
                    .await
                    .map_err(create_error)?;
                tracing::info!(
                    topic,
                    partitions = wanted,
                    "created the offsets topic (compacted)"
                );
                results.into_iter().next()
            }
        };
        match result {
            Some(Ok(_)) => return Ok(()),
            // Another instance got there first: look again.
            Some(Err((
                _,
                RDKafkaErrorCode::TopicAlreadyExists | RDKafkaErrorCode::InvalidPartitions,
            ))) => {}
            Some(Err((_, code))) => return Err(create_error(KafkaError::AdminOp(code))),
            None => return Ok(()),
        }
    }
    Err(create_error(KafkaError::AdminOp(
        RDKafkaErrorCode::InvalidPartitions,
    )))
}

/// The partitions of `topic`, or `None` when it does not exist.
async fn partition_count(
    consumer: &ClientConfig,
    brokers: &str,
    topic: &str,
) -> Result<Option<i32>, SinkError> {
    let consumer = consumer.clone();
    let name = topic.to_owned();
    let brokers = brokers.to_owned();
    tokio::task::spawn_blocking(move || {
        let client: BaseConsumer = consumer.create().map_err(super::config::config_error)?;
        let metadata = client
            .fetch_metadata(Some(&name), METADATA_TIMEOUT)
            .map_err(|source| SinkError::Unreachable {
                brokers,
                source: source.into(),
            })?;
        Ok(metadata
            .topics()
            .iter()
            .find(|t| t.name() == name && t.error().is_none() && !t.partitions().is_empty())
            .map(|t| t.partitions().len() as i32))
    })
    .await
    .expect("metadata lookup panicked")
}

/// Reads what `scope` committed last (called once its writer fenced every older one), and the
/// ids ring to continue from.
pub(super) async fn read_resume(
    consumer: &ClientConfig,
    scope: &WriterScope,
) -> Result<(Resume, IdsRing), SinkError> {
    let consumer = consumer.clone();
    let scope = scope.clone();
    tokio::task::spawn_blocking(move || read_resume_blocking(&consumer, &scope))
        .await
        .expect("reading checkpoints panicked")
}

fn read_resume_blocking(
    consumer: &ClientConfig,
    scope: &WriterScope,
) -> Result<(Resume, IdsRing), SinkError> {
    let failed = |source: KafkaError| SinkError::Checkpoints {
        topic: scope.offsets_topic.clone(),
        partition: scope.offsets_partition,
        source: source.into(),
    };
    let client: BaseConsumer = consumer.create().map_err(super::config::config_error)?;
    let (low, end) = client
        .fetch_watermarks(
            &scope.offsets_topic,
            scope.offsets_partition,
            METADATA_TIMEOUT,
        )
        .map_err(failed)?;
    let mut tail = FIRST_TAIL;
    loop {
        let start = low.max(end - tail);
        let records = read_from(&client, scope, start, end).map_err(failed)?;
        let found = Found::new(scope, &records);
        if found.enough(scope) || start == low {
            return found.into_resume(scope);
        }
        tail *= 2;
    }
}

/// Every record of the scope's partition from `start` to `end` (not past it): key and value.
fn read_from(
    client: &BaseConsumer,
    scope: &WriterScope,
    start: i64,
    end: i64,
) -> Result<Vec<OffsetsRecord>, KafkaError> {
    let mut records = Vec::new();
    let topic = &scope.offsets_topic;
    read_range(
        client,
        topic,
        scope.offsets_partition,
        start,
        end,
        |message| {
            let key = message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned());
            if let Some(key) = key {
                records.push((key, message.payload().map(<[u8]>::to_vec)));
            }
        },
    )?;
    Ok(records)
}

/// Hands `each` every record of `topic`/`partition` from `start` to `end` (not past it, nor
/// past the end of what is committed: an aborted transaction's records are skipped and its
/// markers never delivered, with `read_committed`); fails after [`STALL_TIMEOUT`] without one.
pub(super) fn read_range(
    client: &BaseConsumer,
    topic: &str,
    partition: i32,
    start: i64,
    end: i64,
    mut each: impl FnMut(&BorrowedMessage<'_>),
) -> Result<(), KafkaError> {
    if start >= end {
        return Ok(());
    }
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, Offset::Offset(start))?;
    client.assign(&assignment)?;
    let mut last_progress = Instant::now();
    loop {
        if last_progress.elapsed() > STALL_TIMEOUT {
            return Err(KafkaError::MessageConsumption(
                RDKafkaErrorCode::RequestTimedOut,
            ));
        }
        match client.poll(Duration::from_millis(200)) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(_))) => return Ok(()),
            Some(Err(error)) => return Err(error),
            Some(Ok(message)) => {
                last_progress = Instant::now();
                if message.offset() >= end {
                    return Ok(());
                }
                each(&message);
                if message.offset() + 1 >= end {
                    return Ok(());
                }
            }
        }
    }
}

/// What a tail read found for a scope.
#[derive(Default)]
struct Found {
    /// The latest position record's value.
    position: Option<Vec<u8>>,
    /// Live ids records by sequence number.
    ids: BTreeMap<u64, Vec<u8>>,
}

impl Found {
    /// Sorts the records of the tail (oldest first) out: later records of a key replace
    /// earlier ones, tombstones remove them.
    fn new(scope: &WriterScope, records: &[OffsetsRecord]) -> Self {
        let ids_prefix = format!("{}/ids/", scope.transactional_id);
        let mut found = Found::default();
        let mut dead = HashSet::new();
        for (key, value) in records {
            if *key == scope.transactional_id {
                if value.is_some() {
                    found.position = value.clone();
                }
            } else if let Some(seq) = key
                .strip_prefix(&ids_prefix)
                .and_then(|s| s.parse::<u64>().ok())
            {
                match value {
                    Some(value) if !dead.contains(&seq) => {
                        found.ids.insert(seq, value.clone());
                    }
                    Some(_) => {}
                    None => {
                        dead.insert(seq);
                        found.ids.remove(&seq);
                    }
                }
            }
        }
        found
    }

    /// Whether the tail read went back far enough.
    fn enough(&self, scope: &WriterScope) -> bool {
        if self.position.is_some() {
            return true;
        }
        // Each ids record holds at least one id: counting records is a lower bound.
        self.ids.len() >= scope.ids_window.max(1)
            || self
                .decoded_ids()
                .is_ok_and(|ids| ids >= scope.ids_window.max(1))
    }

    fn decoded_ids(&self) -> Result<usize, serde_json::Error> {
        self.ids
            .values()
            .map(|value| serde_json::from_slice::<Stored>(value).map(|s| s.ids.len()))
            .sum()
    }

    fn into_resume(self, scope: &WriterScope) -> Result<(Resume, IdsRing), SinkError> {
        let decode = |value: &[u8]| -> Result<Stored, SinkError> {
            let stored: Stored =
                serde_json::from_slice(value).map_err(|error| SinkError::Checkpoints {
                    topic: scope.offsets_topic.clone(),
                    partition: scope.offsets_partition,
                    source: error.into(),
                })?;
            if stored.v != FORMAT {
                return Err(SinkError::Checkpoints {
                    topic: scope.offsets_topic.clone(),
                    partition: scope.offsets_partition,
                    source: format!(
                        "checkpoint format {} is not {FORMAT}: written by a newer Sluice?",
                        stored.v
                    )
                    .into(),
                });
            }
            Ok(stored)
        };
        let mut resume = Resume::default();
        let mut ring = IdsRing {
            window: scope.ids_window,
            ..IdsRing::default()
        };
        if let Some(value) = &self.position {
            let stored = decode(value)?;
            resume.source = Some(stored.source);
            resume.through = stored.through;
            resume.also = stored.also.into_iter().collect();
        }
        for (seq, value) in &self.ids {
            let stored = decode(value)?;
            resume.source = Some(stored.source);
            ring.live.push_back((*seq, stored.ids.len()));
            ring.ids += stored.ids.len();
            ring.next_seq = seq + 1;
            resume.ids.extend(stored.ids);
        }
        Ok((resume, ring))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(window: usize) -> WriterScope {
        WriterScope {
            transactional_id: "sluice.orders".into(),
            offsets_topic: "sluice-offsets.orders".into(),
            offsets_partition: 0,
            source: "projects/p/subscriptions/s".into(),
            ids_window: window,
        }
    }

    fn unordered(ids: &[&str]) -> Checkpoint {
        Checkpoint::Unordered {
            source: "projects/p/subscriptions/s".into(),
            ids: ids.iter().map(|id| (*id).to_owned()).collect(),
        }
    }

    #[test]
    fn the_ids_ring_tombstones_what_the_window_no_longer_needs_and_reads_back() {
        let scope = scope(3);
        let mut ring = IdsRing {
            window: 3,
            ..IdsRing::default()
        };
        let mut log = Vec::new();
        log.extend(ring.records(&scope, &unordered(&["a", "b"])));
        log.extend(ring.records(&scope, &unordered(&["c"])));
        assert!(
            log.iter().all(|(_, value)| value.is_some()),
            "a, b, c: the window is not over"
        );
        let third = ring.records(&scope, &unordered(&["d", "e"]));
        let keys: Vec<(&str, bool)> = third
            .iter()
            .map(|(k, v)| (k.as_str(), v.is_some()))
            .collect();
        assert_eq!(
            keys,
            [
                ("sluice.orders/ids/2", true),
                ("sluice.orders/ids/0", false)
            ],
            "c, d, e cover the window: a and b go"
        );
        log.extend(third);
        let (resume, ring) = Found::new(&scope, &log).into_resume(&scope).unwrap();
        assert_eq!(resume.ids, ["c", "d", "e"]);
        assert_eq!(ring.next_seq, 3);
        assert_eq!(ring.ids, 3);
    }

    #[test]
    fn the_latest_position_wins_and_other_scopes_are_ignored() {
        let scope = scope(10);
        let mut ring = IdsRing::default();
        let at = |entry| Position {
            ledger: 7,
            entry,
            batch: -1,
        };
        let mut log = Vec::new();
        for through in [at(1), at(5)] {
            log.extend(ring.records(
                &scope,
                &Checkpoint::Ordered {
                    source: "t-partition-0".into(),
                    through: Some(through),
                    also: vec![at(9)],
                },
            ));
        }
        log.push(("sluice.other".into(), Some(b"{}".to_vec())));
        let found = Found::new(&scope, &log);
        assert!(found.enough(&scope));
        let (resume, _) = found.into_resume(&scope).unwrap();
        assert_eq!(resume.through, Some(at(5)));
        assert_eq!(resume.also.into_iter().collect::<Vec<_>>(), [at(9)]);
        assert_eq!(resume.source.as_deref(), Some("t-partition-0"));
    }
}
