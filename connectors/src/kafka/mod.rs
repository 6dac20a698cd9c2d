//! Apache Kafka, as the sink: its config section, librdkafka's idempotent producer
//! (`sink.rs`) and the consumer that reads back what a pipeline wrote (`read_back.rs`).

mod config;
mod read_back;
mod sink;

pub use config::{KafkaSinkConfig, SinkKind, check_topic_name};
pub use sink::{KafkaSink, PendingDelivery};
