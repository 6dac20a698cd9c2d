//! The changelog topic of keyed state (docs/state.md): compacted, one partition per writer
//! scope; record key = namespace and key (length-prefixed), value = the bytes, a tombstone
//! for a delete. Written by the scope's transactional producer (`transactional.rs`), in the
//! transaction of the outputs the changes belong to; read here, `read_committed` to the end
//! of the scope's partition, when the scope opens.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sluice_record::Bytes;

use super::offsets::{METADATA_TIMEOUT, STALL_TIMEOUT};
use crate::sink::SinkError;

/// Reads `topic`/`partition` from its start to its end (as it was when the read began), with
/// `consumer` (`read_committed`): the live entries.
pub(super) async fn read(
    consumer: &ClientConfig,
    topic: &str,
    partition: i32,
) -> Result<Vec<(Bytes, Bytes)>, SinkError> {
    let consumer = consumer.clone();
    let name = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        read_blocking(&consumer, &name, partition).map_err(|source| SinkError::Checkpoints {
            topic: name.clone(),
            partition,
            source: source.into(),
        })
    })
    .await
    .expect("reading the changelog panicked")
}

fn read_blocking(
    consumer: &ClientConfig,
    topic: &str,
    partition: i32,
) -> Result<Vec<(Bytes, Bytes)>, KafkaError> {
    let client: BaseConsumer = consumer.create()?;
    let (low, end) = client.fetch_watermarks(topic, partition, METADATA_TIMEOUT)?;
    let mut live: HashMap<Bytes, Bytes> = HashMap::new();
    if low >= end {
        return Ok(Vec::new());
    }
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, Offset::Offset(low))?;
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
            // The end of what is committed (an aborted transaction's records are skipped, its
            // markers are never delivered): done.
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            Some(Err(error)) => return Err(error),
            Some(Ok(message)) => {
                last_progress = Instant::now();
                if message.offset() >= end {
                    break;
                }
                if let Some(key) = message.key() {
                    let key = Bytes::copy_from_slice(key);
                    match message.payload() {
                        Some(value) => live.insert(key, Bytes::copy_from_slice(value)),
                        None => live.remove(&key),
                    };
                }
                if message.offset() + 1 >= end {
                    break;
                }
            }
        }
    }
    Ok(live.into_iter().collect())
}
