//! Where records go: Kafka, through librdkafka's idempotent producer.

mod dead_letter;
mod kafka;

pub use dead_letter::{DeadLetter, dead_letter_record};
pub use kafka::{KafkaSink, PendingDelivery, SinkError, TopicStatus};

/// Header that carries the source message id on every record Sluice writes (DESIGN §5).
pub const SOURCE_ID_HEADER: &str = "sluice.source.id";
