//! Apache Kafka, as the sink: its config section, librdkafka's idempotent producer
//! (`sink.rs`), the consumer that reads back what a pipeline wrote (`read_back.rs`), and
//! exactly-once on Kafka transactions: a transactional producer per writer scope
//! (`transactional.rs`) and the offsets topic of checkpoints (`offsets.rs`); and the deployments
//! topic that instances of one pipeline share their transform versions through
//! (`deployment_log.rs`).

mod changelog;
mod config;
mod delivery_ledger;
mod deployment_log;
mod offsets;
mod read_back;
mod refusal;
mod security;
mod sink;
mod transactional;

pub use config::{KafkaSinkConfig, SinkKind, check_topic_name};
pub use delivery_ledger::ReportedDelivery;
pub use deployment_log::{
    DeploymentLog, DeploymentLogError, DeploymentReader, LogEntry, MAX_ENTRY_BYTES,
};
pub use security::{KafkaSaslConfig, KafkaTlsConfig, SaslMechanism};
pub use sink::{KafkaSink, PendingDelivery};
pub use transactional::{KafkaWriter, TransactionalContext};
