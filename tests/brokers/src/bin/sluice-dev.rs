//! Development helper for the demo (`scripts/demo.sh`): publish sample orders to Pulsar and
//! print what arrived in Kafka.

use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};
use sluice_test_brokers::kafka::read_kafka_topics;
use sluice_test_brokers::pulsar::{PulsarRecord, publish_to_pulsar};

#[derive(Parser)]
#[command(about = "Publish sample records to Pulsar and read Kafka topics back (demo helper)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Publish sample orders (JSON with email, phone, region; one is not JSON) to a Pulsar topic.
    PublishOrders {
        #[arg(
            long,
            env = "SLUICE_PULSAR_URL",
            default_value = "pulsar://127.0.0.1:6650"
        )]
        url: String,
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 9)]
        count: u64,
    },
    /// Print the records of Kafka topics, waiting until `--count` records were read in total.
    Read {
        #[arg(long, env = "SLUICE_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
        brokers: String,
        #[arg(long = "topic", required = true)]
        topics: Vec<String>,
        #[arg(long)]
        count: usize,
        #[arg(long, default_value_t = 60)]
        timeout_secs: u64,
    },
}

fn sample_orders(count: u64) -> Vec<PulsarRecord> {
    let regions = ["eu", "us", "apac"];
    (0..count)
        .map(|i| {
            let value = if i == count / 2 {
                "this order is not JSON".to_owned()
            } else {
                format!(
                    r#"{{"order":{i},"customer":{{"name":"Customer {i}","email":"c{i}@example.com","phone":"+1-555-01{i:02}"}},"region":"{}","total":{}.50}}"#,
                    regions[(i % 3) as usize],
                    10 + i * 7
                )
            };
            PulsarRecord {
                key: Some(format!("customer-{}", i % 4)),
                value: value.into_bytes(),
                properties: vec![("source-app".into(), "shop-web".into())],
                event_time_ms: Some(1_763_700_000_000 + i * 1000),
            }
        })
        .collect()
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::PublishOrders { url, topic, count } => {
            publish_to_pulsar(&url, &topic, &sample_orders(count)).await?;
            println!("published {count} orders to {topic}");
        }
        Cmd::Read {
            brokers,
            topics,
            count,
            timeout_secs,
        } => {
            let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
            let timeout = Duration::from_secs(timeout_secs);
            let records = read_kafka_topics(&brokers, &topics, timeout, |r| r.len() >= count)?;
            for r in &records {
                let mut headers: Vec<String> = r
                    .headers
                    .iter()
                    .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(v)))
                    .collect();
                headers.sort();
                println!(
                    "{} [p{} @{}] key={} value={}\n    headers: {}",
                    r.topic,
                    r.partition,
                    r.offset,
                    r.key_str().unwrap_or("-"),
                    r.value_str().unwrap_or("<binary>"),
                    headers.join(", ")
                );
            }
            println!(
                "read {} records from {} topics",
                records.len(),
                topics.len()
            );
            anyhow::ensure!(
                records.len() >= count,
                "expected {count} records, read {}",
                records.len()
            );
        }
    }
    Ok(())
}
