//! Kafka transactions for exactly-once (docs/delivery-guarantees.md): one transactional
//! producer per writer scope, whose stable `transactional.id` fences any older producer of the
//! scope. Each transaction carries outputs and the scope's checkpoint (`offsets.rs`).
//!
//! Fencing: once a newer producer of the id ran `init_transactions`, the broker refuses this
//! one's produce and commit requests (`PRODUCER_FENCED` / `INVALID_PRODUCER_EPOCH`, which
//! librdkafka raises as the fatal error `_FENCED`). That becomes [`SinkError::Fenced`]; the
//! producer is never used again. librdkafka's own log lines about it are kept at debug: the
//! pipeline says once, clearly, what happened.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use sluice_record::OutputRecord;

use super::offsets::{self, IdsRing};
use super::sink::{PendingDelivery, produce};
use crate::sink::SinkError;
use crate::transactions::{ChangelogRecord, Checkpoint, Resume, TransactionalWriter, WriterScope};

/// How long `init_transactions` may take (it waits for the previous owner's open transaction
/// to be aborted or completed).
const INIT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a commit may take, its flush of the transaction's records included.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a failed send waits for the delivery reports of the transaction's earlier
/// records, to tell whether one of them was refused (which is what then failed the send).
const REPORTS_AFTER_FAILED_SEND: Duration = Duration::from_secs(5);

/// A transactional producer's client context: librdkafka's log lines and errors go to
/// tracing, except those about this producer being fenced, which the pipeline reports itself.
pub struct TransactionalContext {
    transactional_id: String,
}

fn about_fencing(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    text.contains("fenced") || text.contains("producer_epoch") || text.contains("old epoch")
}

impl ClientContext for TransactionalContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        let id = &self.transactional_id;
        match level {
            _ if about_fencing(log_message) => {
                tracing::debug!(target: "librdkafka", transactional_id = %id, fac, "{log_message}");
            }
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", transactional_id = %id, fac, "{log_message}");
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", transactional_id = %id, fac, "{log_message}");
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", transactional_id = %id, fac, "{log_message}");
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "librdkafka", transactional_id = %id, fac, "{log_message}");
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let id = &self.transactional_id;
        if is_fencing_code(error.rdkafka_error_code()) || about_fencing(reason) {
            tracing::debug!(target: "librdkafka", transactional_id = %id, %error, reason);
        } else {
            tracing::warn!(target: "librdkafka", transactional_id = %id, %error, reason);
        }
    }
}

fn is_fencing_code(code: Option<RDKafkaErrorCode>) -> bool {
    matches!(
        code,
        Some(
            RDKafkaErrorCode::Fenced
                | RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
        )
    )
}

/// The transactional producer of one scope.
pub struct KafkaWriter {
    scope: WriterScope,
    producer: FutureProducer<TransactionalContext>,
    /// Where outputs without a topic of their own go.
    default_topic: Arc<str>,
    in_transaction: bool,
    /// The delivery reports of the open transaction's outputs: a refused one dooms the
    /// transaction ([`SinkError::RefusedInTransaction`]).
    deliveries: Vec<PendingDelivery>,
    ring: IdsRing,
}

/// What opening a writer needs from the sink.
pub(super) struct Opening<'a> {
    pub(super) producer: ClientConfig,
    pub(super) consumer: &'a ClientConfig,
    pub(super) default_topic: &'a str,
}

impl KafkaWriter {
    /// Creates the scope's producer, fences the older ones (`init_transactions`), and reads
    /// the scope's checkpoint.
    pub(super) async fn open(
        opening: Opening<'_>,
        scope: &WriterScope,
    ) -> Result<(Self, Resume), SinkError> {
        let mut settings = opening.producer;
        settings.set("transactional.id", &scope.transactional_id);
        let context = TransactionalContext {
            transactional_id: scope.transactional_id.clone(),
        };
        let producer: FutureProducer<TransactionalContext> = settings
            .create_with_context(context)
            .map_err(super::config::config_error)?;
        let initializing = producer.clone();
        let started = std::time::Instant::now();
        tokio::task::spawn_blocking(move || initializing.init_transactions(INIT_TIMEOUT))
            .await
            .expect("init_transactions panicked")
            .map_err(|error| transaction_error(&scope.transactional_id, &producer, error))?;
        let fenced_ms = started.elapsed().as_millis() as u64;
        let (resume, ring) = offsets::read_resume(opening.consumer, scope).await?;
        tracing::info!(
            transactional_id = %scope.transactional_id,
            offsets = %format!("{}/{}", scope.offsets_topic, scope.offsets_partition),
            init_ms = fenced_ms,
            read_ms = started.elapsed().as_millis() as u64 - fenced_ms,
            "transactional writer open: older writers of this id are fenced"
        );
        let writer = Self {
            scope: scope.clone(),
            producer,
            default_topic: Arc::from(opening.default_topic),
            in_transaction: false,
            deliveries: Vec::new(),
            ring,
        };
        Ok((writer, resume))
    }

    fn begin(&mut self) -> Result<(), SinkError> {
        if !self.in_transaction {
            self.producer
                .begin_transaction()
                .map_err(|error| self.error(error))?;
            self.in_transaction = true;
        }
        Ok(())
    }

    fn error(&self, error: KafkaError) -> SinkError {
        transaction_error(&self.scope.transactional_id, &self.producer, error)
    }

    /// Waits (at most `bound`) for the delivery reports of the open transaction's outputs:
    /// the first refusal of a record among them, if any.
    async fn refused_delivery(&mut self, bound: Duration) -> Option<SinkError> {
        let reports = futures::future::join_all(std::mem::take(&mut self.deliveries));
        let reports = tokio::time::timeout(bound, reports).await.ok()?;
        (reports.into_iter())
            .filter_map(Result::err)
            .find(SinkError::is_record_refusal)
    }

    /// Kafka refused an output of the open transaction (`refusal`): aborts the transaction
    /// (Kafka would refuse its commit) and says so.
    async fn abort_refused(&mut self, refusal: SinkError) -> SinkError {
        let producer = self.producer.clone();
        let aborted =
            tokio::task::spawn_blocking(move || producer.abort_transaction(COMMIT_TIMEOUT))
                .await
                .expect("abort_transaction panicked");
        self.in_transaction = false;
        if let Err(error) = aborted {
            // The pipeline stops; a later producer of the id aborts what is left open.
            tracing::debug!(transactional_id = %self.scope.transactional_id, %error, "aborting the transaction failed");
        }
        SinkError::RefusedInTransaction {
            transactional_id: self.scope.transactional_id.clone(),
            source: Box::new(refusal),
        }
    }

    /// Produces a record of the offsets topic in the open transaction.
    async fn produce_checkpoint(&self, key: &str, value: Option<&[u8]>) -> Result<(), SinkError> {
        let record = FutureRecord::to(&self.scope.offsets_topic)
            .partition(self.scope.offsets_partition)
            .key(key.as_bytes());
        self.produce_bookkeeping(record, value).await
    }

    /// Produces a record of the pipeline's own (offsets, changelog) in the open transaction,
    /// waiting while the client's queue is full. Its delivery is the commit's: a failed one
    /// fails the commit.
    async fn produce_bookkeeping(
        &self,
        mut record: FutureRecord<'_, [u8], [u8]>,
        value: Option<&[u8]>,
    ) -> Result<(), SinkError> {
        if let Some(value) = value {
            record = record.payload(value);
        }
        loop {
            match self.producer.send_result(record) {
                Ok(_delivery) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((error, _)) => return Err(self.error(error)),
            }
        }
    }
}

/// A transaction call failed: fenced (another writer of the id opened), or a failure a new
/// producer may not have.
fn transaction_error<C: ClientContext>(
    transactional_id: &str,
    producer: &FutureProducer<C>,
    error: KafkaError,
) -> SinkError {
    let fatal = producer.client().fatal_error().map(|(code, _)| code);
    if is_fencing_code(error.rdkafka_error_code()) || is_fencing_code(fatal) {
        return SinkError::Fenced {
            transactional_id: transactional_id.to_owned(),
        };
    }
    SinkError::Transaction {
        transactional_id: transactional_id.to_owned(),
        source: error.into(),
    }
}

impl TransactionalWriter for KafkaWriter {
    fn transactional_id(&self) -> &str {
        &self.scope.transactional_id
    }

    async fn send(&mut self, record: &OutputRecord) -> Result<(), SinkError> {
        self.begin()?;
        match produce(&self.producer, &self.default_topic, record).await {
            // Checked at the commit: a refused delivery fails the transaction.
            Ok(delivery) => {
                self.deliveries.push(delivery);
                Ok(())
            }
            Err(SinkError::Produce { source, .. })
                if self.producer.client().fatal_error().is_some() =>
            {
                let fatal = self.producer.client().fatal_error().map(|(code, _)| code);
                if is_fencing_code(fatal) {
                    Err(SinkError::Fenced {
                        transactional_id: self.scope.transactional_id.clone(),
                    })
                } else {
                    Err(SinkError::Transaction {
                        transactional_id: self.scope.transactional_id.clone(),
                        source,
                    })
                }
            }
            // Refused when handed to the client: the pipeline dead-letters the record.
            Err(error) if error.is_record_refusal() => Err(error),
            Err(error) => match self.refused_delivery(REPORTS_AFTER_FAILED_SEND).await {
                // An earlier output's refusal doomed the transaction (librdkafka refuses to
                // produce in it from then on).
                Some(refusal) => Err(self.abort_refused(refusal).await),
                None => Err(error),
            },
        }
    }

    async fn send_changelog(&mut self, change: ChangelogRecord<'_>) -> Result<(), SinkError> {
        self.begin()?;
        let record = FutureRecord::to(change.topic)
            .partition(change.partition)
            .key(change.key);
        self.produce_bookkeeping(record, change.value).await
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.flush(COMMIT_TIMEOUT))
            .await
            .expect("flush panicked")
            .map_err(|error| self.error(error))
    }

    async fn commit(&mut self, checkpoint: &Checkpoint) -> Result<(), SinkError> {
        // The checkpoint goes out first, so that adding the offsets partition to the
        // transaction and producing to it overlap the outputs' last round trip instead of
        // following it. A refusal found below aborts the checkpoint with the outputs, and
        // explains a failed checkpoint produce (librdkafka refuses to produce in a
        // transaction an earlier refusal doomed).
        self.begin()?;
        let mut checkpointed = Ok(());
        for (key, value) in self.ring.records(&self.scope, checkpoint) {
            checkpointed = self.produce_checkpoint(&key, value.as_deref()).await;
            if checkpointed.is_err() {
                break;
            }
        }
        if let Some(refusal) = self.refused_delivery(COMMIT_TIMEOUT).await {
            return Err(self.abort_refused(refusal).await);
        }
        checkpointed?;
        let producer = self.producer.clone();
        let committed =
            tokio::task::spawn_blocking(move || producer.commit_transaction(COMMIT_TIMEOUT))
                .await
                .expect("commit_transaction panicked");
        // Committed, or failed: either way a new transaction begins next. After a failure the
        // pipeline makes a new producer (whose init aborts whatever this one left open).
        self.in_transaction = false;
        committed.map_err(|error| self.error(error))
    }
}
