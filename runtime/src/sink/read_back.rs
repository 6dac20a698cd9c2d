//! Reading back what a pipeline already wrote, for exactly-once without Kafka transactions
//! (DESIGN §6): every output carries its identity in headers (pipeline, source message id,
//! output index); on start the pipeline reads the tail of each partition it may write to and
//! skips the outputs found there when the source delivers their records again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::{OUTPUT_INDEX_HEADER, PIPELINE_HEADER, SOURCE_ID_HEADER, SinkError};
use crate::config::SinkConfig;

/// How long the read-back may go without receiving anything before it gives up.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// One output found in Kafka: the source message it came from and its index among that
/// record's outputs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WrittenOutput {
    pub source_id: String,
    pub index: u32,
}

/// What a read-back found.
#[derive(Debug, Default)]
pub struct ReadBack {
    /// Outputs of the pipeline, in partition order.
    pub outputs: Vec<WrittenOutput>,
    /// Records read, the pipeline's and others'.
    pub records_read: u64,
    pub partitions: usize,
}

/// Reads the last `window` records of every partition of `topics` (those that exist) and
/// returns the outputs `pipeline` wrote there.
pub async fn read_back(
    config: &SinkConfig,
    pipeline: &str,
    topics: Vec<String>,
    window: usize,
) -> Result<ReadBack, SinkError> {
    let client_config = consumer_config(config);
    let brokers = config.brokers.clone();
    let pipeline = pipeline.to_owned();
    tokio::task::spawn_blocking(move || {
        read_back_blocking(&client_config, &brokers, &pipeline, &topics, window)
    })
    .await
    .expect("read-back panicked")
}

/// The consumer shares the producer's connection settings (security, client id) but none of
/// its producer-only properties.
fn consumer_config(config: &SinkConfig) -> ClientConfig {
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
    client
}

fn read_back_blocking(
    client_config: &ClientConfig,
    brokers: &str,
    pipeline: &str,
    topics: &[String],
    window: usize,
) -> Result<ReadBack, SinkError> {
    let unreachable = |source| SinkError::Unreachable {
        brokers: brokers.to_owned(),
        source,
    };
    let consumer: BaseConsumer = client_config.create().map_err(SinkError::Config)?;
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
                    .map_err(SinkError::Config)?;
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
    consumer.assign(&assignment).map_err(SinkError::Config)?;
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
                let positions = consumer.position().map_err(SinkError::Config)?;
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
        if let Some(output) = message.headers().and_then(|h| identity_of(h, pipeline)) {
            read.outputs.push(output);
        }
    }
    Ok(read)
}

/// The identity headers of a record written by `pipeline`.
fn identity_of(headers: &impl Headers, pipeline: &str) -> Option<WrittenOutput> {
    let mut written_by = None;
    let mut source_id = None;
    let mut index = None;
    for header in headers.iter() {
        let value = header.value.and_then(|v| std::str::from_utf8(v).ok());
        match header.key {
            PIPELINE_HEADER => written_by = value,
            SOURCE_ID_HEADER => source_id = value,
            OUTPUT_INDEX_HEADER => index = value.and_then(|v| v.parse().ok()),
            _ => {}
        }
    }
    if written_by? != pipeline {
        return None;
    }
    Some(WrittenOutput {
        source_id: source_id?.to_owned(),
        index: index?,
    })
}
