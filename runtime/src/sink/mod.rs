//! Where records go: Kafka, through librdkafka's idempotent producer.

mod dead_letter;
mod kafka;
mod read_back;

pub use dead_letter::{DeadLetter, dead_letter_record};
pub use kafka::{KafkaSink, PendingDelivery, SinkError, TopicStatus};
pub use read_back::{ReadBack, WrittenOutput, read_back};

/// Header that carries the source message id on every record Sluice writes (DESIGN §5).
pub const SOURCE_ID_HEADER: &str = "sluice.source.id";
/// Header naming the pipeline that wrote a record.
pub const PIPELINE_HEADER: &str = "sluice.pipeline";
/// Header with a record's index among the outputs of its source record (0-based; the
/// dead-letter copy counts as an output). With the source id and the pipeline it identifies
/// every record Sluice writes, which is what exactly-once and consumers deduplicate on.
pub const OUTPUT_INDEX_HEADER: &str = "sluice.output.index";
