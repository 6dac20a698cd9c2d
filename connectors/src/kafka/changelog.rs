//! The changelog topic of keyed state (docs/state.md): compacted, one partition per writer
//! scope; record key = namespace and key (length-prefixed), value = the bytes, a tombstone
//! for a delete. Written by the scope's transactional producer (`transactional.rs`), in the
//! transaction of the outputs the changes belong to; read here, `read_committed` to the end
//! of the scope's partition, when the scope opens.

use std::collections::HashMap;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use sluice_record::Bytes;

use super::offsets::{METADATA_TIMEOUT, read_range};
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
    read_range(&client, topic, partition, low, end, |message| {
        if let Some(key) = message.key() {
            let key = Bytes::copy_from_slice(key);
            match message.payload() {
                Some(value) => live.insert(key, Bytes::copy_from_slice(value)),
                None => live.remove(&key),
            };
        }
    })?;
    Ok(live.into_iter().collect())
}
