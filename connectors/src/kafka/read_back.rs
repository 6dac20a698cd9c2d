//! Reading back what a pipeline already wrote, for exactly-once without Kafka transactions
//! (docs/delivery-guarantees.md): every output carries its identity in headers (pipeline,
//! source message id, output index); the pipeline reads the tail of each partition it may
//! write to and skips the outputs found there when the source delivers their records again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use sluice_record::identity;

use super::config::{KafkaSinkConfig, config_error};
use crate::sink::{ReadBack, SinkError};

/// How long the read-back may go without receiving anything before it gives up.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads the last `window` records of every partition of `topics` (those that exist) and
/// returns the outputs `pipeline` wrote there.
pub(super) async fn read_back(
    config: &KafkaSinkConfig,
    pipeline: &str,
    topics: Vec<String>,
    window: usize,
) -> Result<ReadBack, SinkError> {
    let settings = consumer_config(config);
    let brokers = config.brokers.clone();
    let pipeline = pipeline.to_owned();
    tokio::task::spawn_blocking(move || {
        read_back_blocking(&settings, &brokers, &pipeline, &topics, window)
    })
    .await
    .expect("read-back panicked")
}

/// The consumer shares the producer's connection settings (security, client id) but none of
/// its producer-only properties.
pub(super) fn consumer_config(config: &KafkaSinkConfig) -> ClientConfig {
    const SHARED_PREFIXES: [&str; 6] = [
        "security.",
        "sasl.",
        "ssl.",
        "client.",
        "socket.",
        "broker.",
    ];
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", "sluice-read-back")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true");
    for (key, value) in &config.properties {
        if SHARED_PREFIXES.iter().any(|prefix| key.starts_with(prefix)) {
            client.set(key, value.expose());
        }
    }
    config.apply_security(&mut client);
    client
}

fn read_back_blocking(
    settings: &ClientConfig,
    brokers: &str,
    pipeline: &str,
    topics: &[String],
    window: usize,
) -> Result<ReadBack, SinkError> {
    let unreachable = |source: KafkaError| SinkError::Unreachable {
        brokers: brokers.to_owned(),
        source: source.into(),
    };
    let consumer: BaseConsumer = settings.create().map_err(config_error)?;
    let mut assignment = TopicPartitionList::new();
    // Per partition, the offset just past the last record that existed when we looked.
    let mut ends: HashMap<(String, i32), i64> = HashMap::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), METADATA_TIMEOUT)
            .map_err(unreachable)?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        for partition in partitions {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition, METADATA_TIMEOUT)
                .map_err(unreachable)?;
            let start = low.max(high - window as i64);
            if start < high {
                assignment
                    .add_partition_offset(topic, partition, Offset::Offset(start))
                    .map_err(config_error)?;
                ends.insert((topic.clone(), partition), high);
            }
        }
    }
    let mut read = ReadBack {
        partitions: ends.len(),
        ..ReadBack::default()
    };
    if ends.is_empty() {
        return Ok(read);
    }
    consumer.assign(&assignment).map_err(config_error)?;
    let mut last_progress = Instant::now();
    while !ends.is_empty() {
        if last_progress.elapsed() > STALL_TIMEOUT {
            let (topic, _) = ends.keys().next().expect("not empty").clone();
            return Err(SinkError::ReadBackStalled {
                topic,
                partitions: ends.len(),
            });
        }
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        last_progress = Instant::now();
        let message = match message {
            Ok(message) => message,
            // The error names the partition but not the topic: ask for the positions.
            Err(KafkaError::PartitionEOF(_)) => {
                let positions = consumer.position().map_err(config_error)?;
                ends.retain(|(topic, partition), end| {
                    match positions
                        .find_partition(topic, *partition)
                        .map(|p| p.offset())
                    {
                        Some(Offset::Offset(position)) => position < *end,
                        _ => true,
                    }
                });
                continue;
            }
            Err(source) => return Err(unreachable(source)),
        };
        read.records_read += 1;
        let key = (message.topic().to_owned(), message.partition());
        if ends
            .get(&key)
            .is_some_and(|end| message.offset() + 1 >= *end)
        {
            ends.remove(&key);
        }
        let written = message.headers().and_then(|headers| {
            identity::written_by(headers.iter().map(|h| (h.key, h.value)), pipeline)
        });
        read.outputs.extend(written);
    }
    Ok(read)
}
