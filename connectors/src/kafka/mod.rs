//! Apache Kafka, as the sink: its config section, librdkafka's idempotent producer
//! (`sink.rs`), the consumer that reads back what a pipeline wrote (`read_back.rs`), and
//! exactly-once on Kafka transactions: a transactional producer per writer scope
//! (`transactional.rs`) and the offsets topic of checkpoints (`offsets.rs`).

mod config;
mod offsets;
mod read_back;
mod sink;
mod transactional;

pub use config::{KafkaSinkConfig, SinkKind, check_topic_name};
pub use sink::{KafkaSink, PendingDelivery};
pub use transactional::{KafkaWriter, TransactionalContext};
