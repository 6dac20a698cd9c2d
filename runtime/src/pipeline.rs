//! One pipeline: source → transform chain → Kafka sink, over bounded channels.
//!
//! ```text
//! source task ──records──▶ transform thread ──outcomes──▶ sink task ──settlements──▶ ack task
//!     ▲                                                                                 │
//!     └──────────────────────── ack (after every output is in Kafka) ◀───────────────────┘
//! ```
//! A record is acked only after every output it produced (or its dead-letter copy) is
//! acknowledged by Kafka, and acks go out in source order, so a filtered record is acked only
//! once every earlier record is settled. The source's in-flight budget bounds memory end to end.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesOrdered;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{OversizedPolicy, PipelineConfig};
use crate::record::{Header, InputRecord, OutputRecord};
use crate::sink::{
    DeadLetter, KafkaSink, PendingDelivery, SOURCE_ID_HEADER, SinkError, TopicStatus,
    dead_letter_record,
};
use crate::source::{self, AckHandle, SourceError, SourceMessage};
use crate::transform::{self, RecordOutcome, TransformChain, TransformEngine};

/// How often a running pipeline logs its counters.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("pipeline {pipeline:?}: cannot load its transforms")]
    Transform {
        pipeline: String,
        #[source]
        source: transform::Error,
    },
    #[error("pipeline {pipeline:?}: Kafka sink failed")]
    Sink {
        pipeline: String,
        #[source]
        source: SinkError,
    },
    #[error("pipeline {pipeline:?}: source failed")]
    Source {
        pipeline: String,
        #[source]
        source: SourceError,
    },
    #[error(
        "pipeline {pipeline:?}: transform {transform} stopped the pipeline at message {message_id}: {reason}"
    )]
    Fatal {
        pipeline: String,
        transform: String,
        message_id: String,
        reason: String,
    },
    #[error(
        "pipeline {pipeline:?}: message {message_id} must be dead-lettered ({kind}: {reason}) but the sink has no dead_letter_topic"
    )]
    NoDeadLetterTopic {
        pipeline: String,
        message_id: String,
        kind: String,
        reason: String,
    },
    #[error("pipeline {pipeline:?}: the transform thread died")]
    TransformThread { pipeline: String },
}

impl PipelineError {
    /// Whether the failure is in the user's hands (config, components, missing topics).
    pub fn is_user_input_error(&self) -> bool {
        match self {
            PipelineError::Transform { source, .. } => source.is_user_input_error(),
            PipelineError::Sink { source, .. } => source.is_user_input_error(),
            _ => false,
        }
    }

    /// Whether a broker failed (unreachable, refused, restarted) rather than the pipeline's
    /// setup or a transform: running it again may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            PipelineError::Sink { source, .. } => source.is_transient(),
            PipelineError::Source { .. } => true,
            _ => false,
        }
    }
}

/// Counters of one pipeline, shared with whoever reports them.
#[derive(Debug, Default)]
pub struct PipelineStats {
    pub received: AtomicU64,
    pub produced: AtomicU64,
    pub filtered: AtomicU64,
    pub skipped: AtomicU64,
    pub acked: AtomicU64,
    /// Dead-lettered records per failure class (`sluice.error.kind`): `dead-letter`, `trap`,
    /// `timeout`, `out-of-memory`, `stack-overflow`, `output-limit`, `unknown-topic`.
    dead_lettered_by_kind: Mutex<BTreeMap<String, u64>>,
}

impl PipelineStats {
    fn bump(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }

    fn count_dead_letter(&self, kind: &str) {
        let mut by_kind = self
            .dead_lettered_by_kind
            .lock()
            .expect("counter lock poisoned");
        *by_kind.entry(kind.to_owned()).or_default() += 1;
    }

    /// Dead-lettered records per failure class.
    pub fn dead_lettered_by_kind(&self) -> BTreeMap<String, u64> {
        self.dead_lettered_by_kind
            .lock()
            .expect("counter lock poisoned")
            .clone()
    }

    /// A one-line summary for logs.
    pub fn summary(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let dead_lettered_by_kind = self.dead_lettered_by_kind();
        let by_kind: Vec<String> = dead_lettered_by_kind
            .iter()
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        format!(
            "received={} produced={} filtered={} skipped={} dead_lettered={}{} acked={}",
            get(&self.received),
            get(&self.produced),
            get(&self.filtered),
            get(&self.skipped),
            dead_lettered_by_kind.values().sum::<u64>(),
            if by_kind.is_empty() {
                String::new()
            } else {
                format!(" ({})", by_kind.join(" "))
            },
            get(&self.acked)
        )
    }
}

/// A pipeline whose transforms are loaded and whose sink is connected, ready to run.
pub struct Pipeline {
    config: PipelineConfig,
    chain: TransformChain,
    sink: Arc<KafkaSink>,
    stats: Arc<PipelineStats>,
}

/// Records of one transform call, with their outcomes.
struct TransformedBatch {
    records: Vec<InputRecord>,
    acks: Vec<AckHandle>,
    outcomes: Vec<RecordOutcome>,
}

/// The deliveries one source record is waiting for before it can be acked.
struct Settlement {
    deliveries: Vec<PendingDelivery>,
    ack: AckHandle,
}

impl Pipeline {
    /// Loads and initialises the transforms and connects the sink; the source connects in
    /// [`Pipeline::run`]. Fails fast on bad components and missing topics.
    pub async fn prepare(
        config: PipelineConfig,
        engine: &TransformEngine,
    ) -> Result<Self, PipelineError> {
        Self::prepare_with_stats(config, engine, Arc::default()).await
    }

    /// Like [`Pipeline::prepare`], counting into `stats` (kept across restarts).
    pub async fn prepare_with_stats(
        config: PipelineConfig,
        engine: &TransformEngine,
        stats: Arc<PipelineStats>,
    ) -> Result<Self, PipelineError> {
        let pipeline = config.name.clone();
        let specs = config.transform_specs();
        let engine = engine.clone();
        let chain = tokio::task::spawn_blocking(move || TransformChain::new(&engine, &specs))
            .await
            .map_err(|_| PipelineError::TransformThread {
                pipeline: pipeline.clone(),
            })?
            .map_err(|source| PipelineError::Transform {
                pipeline: pipeline.clone(),
                source,
            })?;
        let sink =
            KafkaSink::connect(&config.sink)
                .await
                .map_err(|source| PipelineError::Sink {
                    pipeline: pipeline.clone(),
                    source,
                })?;
        Ok(Self {
            config,
            chain,
            sink: Arc::new(sink),
            stats,
        })
    }

    pub fn stats(&self) -> Arc<PipelineStats> {
        self.stats.clone()
    }

    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    /// Runs until `stop` is cancelled (then drains in-flight records) or a stage fails.
    pub async fn run(self, stop: CancellationToken) -> Result<(), PipelineError> {
        let Pipeline {
            config,
            chain,
            sink,
            stats,
        } = self;
        let name = config.name.clone();
        // Any stage failing stops the others; records in flight stay unacked and come back.
        let halt = stop.child_token();
        let source = source::start(&config.source, config.max_in_flight, halt.clone())
            .await
            .map_err(|source| PipelineError::Source {
                pipeline: name.clone(),
                source,
            })?;
        let transforms: Vec<String> = chain.transforms().iter().map(ToString::to_string).collect();
        tracing::info!(pipeline = %name, transforms = %transforms.join(" → "), "pipeline running");

        let (outcomes_tx, outcomes_rx) =
            mpsc::channel(config.max_in_flight / config.batch_size + 1);
        let (settle_tx, settle_rx) = mpsc::channel(config.max_in_flight);
        let transform_thread = spawn_transform_thread(
            &name,
            chain,
            source.messages,
            outcomes_tx,
            config.batch_size,
        );
        let sink_stage = tokio::spawn(sink_stage(
            name.clone(),
            sink.clone(),
            outcomes_rx,
            settle_tx,
            stats.clone(),
            halt.clone(),
        ));
        let ack_stage = tokio::spawn(ack_stage(
            name.clone(),
            settle_rx,
            stats.clone(),
            halt.clone(),
        ));
        let progress = tokio::spawn(report_progress(name.clone(), stats.clone(), halt.clone()));

        let sink_result = sink_stage.await.expect("sink stage panicked");
        let ack_result = ack_stage.await.expect("ack stage panicked");
        let source_result = source.task.await.expect("source task panicked");
        halt.cancel();
        progress.abort();
        let thread_ok = transform_thread.join().is_ok();
        if let Err(error) = sink.flush(Duration::from_secs(10)).await {
            tracing::warn!(pipeline = %name, error = %error, "flush at shutdown failed");
        }
        tracing::info!(pipeline = %name, "pipeline stopped: {}", stats.summary());
        sink_result?;
        ack_result?;
        source_result.map_err(|source| PipelineError::Source {
            pipeline: name.clone(),
            source,
        })?;
        if !thread_ok {
            return Err(PipelineError::TransformThread { pipeline: name });
        }
        Ok(())
    }
}

/// WASM calls are synchronous and CPU-bound: they run on a thread of their own, batching
/// whatever is queued, so a busy guest never stalls the async reactor.
fn spawn_transform_thread(
    pipeline: &str,
    mut chain: TransformChain,
    mut messages: mpsc::Receiver<SourceMessage>,
    outcomes: mpsc::Sender<TransformedBatch>,
    batch_size: usize,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name(format!("transform-{pipeline}"))
        .spawn(move || {
            while let Some(first) = messages.blocking_recv() {
                let mut batch = vec![first];
                while batch.len() < batch_size {
                    match messages.try_recv() {
                        Ok(message) => batch.push(message),
                        Err(_) => break,
                    }
                }
                let (records, acks): (Vec<_>, Vec<_>) =
                    batch.into_iter().map(|m| (m.record, m.ack)).unzip();
                let outcomes_of_batch = chain.run_batch(&records);
                debug_assert_eq!(outcomes_of_batch.len(), records.len());
                let batch = TransformedBatch {
                    records,
                    acks,
                    outcomes: outcomes_of_batch,
                };
                if outcomes.blocking_send(batch).is_err() {
                    break;
                }
            }
        })
        .expect("cannot spawn the transform thread")
}

/// Produces the outputs (or dead-letter copies) of each record and passes the pending
/// deliveries, with the record's ack handle, to the ack stage.
async fn sink_stage(
    pipeline: String,
    sink: Arc<KafkaSink>,
    mut batches: mpsc::Receiver<TransformedBatch>,
    settlements: mpsc::Sender<Settlement>,
    stats: Arc<PipelineStats>,
    halt: CancellationToken,
) -> Result<(), PipelineError> {
    let result = async {
        while let Some(batch) = batches.recv().await {
            for ((record, ack), outcome) in batch.records.iter().zip(batch.acks).zip(batch.outcomes)
            {
                let deliveries = produce_outcome(&pipeline, &sink, record, outcome, &stats).await?;
                if settlements
                    .send(Settlement { deliveries, ack })
                    .await
                    .is_err()
                {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
    .await;
    if result.is_err() {
        halt.cancel();
    }
    result
}

async fn produce_outcome(
    pipeline: &str,
    sink: &KafkaSink,
    record: &InputRecord,
    outcome: RecordOutcome,
    stats: &PipelineStats,
) -> Result<Vec<PendingDelivery>, PipelineError> {
    let sink_error = |source| PipelineError::Sink {
        pipeline: pipeline.to_owned(),
        source,
    };
    PipelineStats::bump(&stats.received, 1);
    let dead_letter = match outcome {
        RecordOutcome::Outputs(outputs) if outputs.is_empty() => {
            PipelineStats::bump(&stats.filtered, 1);
            return Ok(Vec::new());
        }
        RecordOutcome::Outputs(outputs) => match unknown_topic(sink, &outputs).await {
            Ok(None) => {
                let mut deliveries = Vec::with_capacity(outputs.len());
                let mut too_large = None;
                for output in outputs {
                    let output = with_source_id(output, record);
                    match sink.send(&output).await {
                        Ok(delivery) => deliveries.push(delivery),
                        Err(error @ SinkError::TooLarge { .. })
                            if sink.oversized() == OversizedPolicy::DeadLetter =>
                        {
                            too_large = Some(error);
                            break;
                        }
                        Err(error) => return Err(sink_error(error)),
                    }
                }
                PipelineStats::bump(&stats.produced, deliveries.len() as u64);
                let Some(error) = too_large else {
                    return Ok(deliveries);
                };
                // Outputs already queued still go out; the record itself goes to the DLQ.
                let mut with_dead_letter = produce_dead_letter(
                    pipeline,
                    sink,
                    record,
                    too_large_dead_letter(&error),
                    stats,
                )
                .await?;
                deliveries.append(&mut with_dead_letter);
                return Ok(deliveries);
            }
            Ok(Some(topic)) => DeadLetter {
                kind: "unknown-topic".into(),
                transform: "sink".into(),
                reason: format!(
                    "topic {topic:?} does not exist (set sink.create_topics = true to create it)"
                ),
                drop_value: false,
            },
            Err(error) => return Err(sink_error(error)),
        },
        RecordOutcome::Skip { transform, reason } => {
            PipelineStats::bump(&stats.skipped, 1);
            tracing::debug!(pipeline, %transform, reason, "record skipped");
            return Ok(Vec::new());
        }
        RecordOutcome::DeadLetter {
            transform,
            kind,
            reason,
        } => DeadLetter {
            kind: kind.as_str().to_owned(),
            transform: transform.to_string(),
            reason,
            drop_value: false,
        },
        RecordOutcome::Fatal { transform, reason } => {
            return Err(PipelineError::Fatal {
                pipeline: pipeline.to_owned(),
                transform: transform.to_string(),
                message_id: record.source.message_id.clone(),
                reason,
            });
        }
    };
    produce_dead_letter(pipeline, sink, record, dead_letter, stats).await
}

/// Why a record whose output Kafka cannot take goes to the dead-letter topic.
fn too_large_dead_letter(error: &SinkError) -> DeadLetter {
    DeadLetter {
        kind: "too-large".into(),
        transform: "sink".into(),
        reason: format!("{error}; the value is left out of this dead-letter copy"),
        drop_value: true,
    }
}

/// Produces the dead-letter copy of `record`.
async fn produce_dead_letter(
    pipeline: &str,
    sink: &KafkaSink,
    record: &InputRecord,
    dead_letter: DeadLetter,
    stats: &PipelineStats,
) -> Result<Vec<PendingDelivery>, PipelineError> {
    let sink_error = |source| PipelineError::Sink {
        pipeline: pipeline.to_owned(),
        source,
    };
    let Some(topic) = sink.dead_letter_topic() else {
        return Err(PipelineError::NoDeadLetterTopic {
            pipeline: pipeline.to_owned(),
            message_id: record.source.message_id.clone(),
            kind: dead_letter.kind,
            reason: dead_letter.reason,
        });
    };
    tracing::debug!(pipeline, kind = %dead_letter.kind, reason = %dead_letter.reason, "record dead-lettered");
    let copy = dead_letter_record(record, &dead_letter, topic);
    let delivery = sink.send(&copy).await.map_err(sink_error)?;
    stats.count_dead_letter(&dead_letter.kind);
    Ok(vec![delivery])
}

/// The first routed topic of `outputs` that does not exist (and was not created).
async fn unknown_topic(
    sink: &KafkaSink,
    outputs: &[OutputRecord],
) -> Result<Option<String>, SinkError> {
    for topic in outputs.iter().filter_map(|o| o.topic.as_deref()) {
        if topic != sink.default_topic() && sink.ensure_topic(topic).await? == TopicStatus::Missing
        {
            return Ok(Some(topic.to_owned()));
        }
    }
    Ok(None)
}

/// Every record written carries the source message id (DESIGN §5), unless a transform set it.
fn with_source_id(mut output: OutputRecord, record: &InputRecord) -> OutputRecord {
    if !output.headers.iter().any(|h| h.name == SOURCE_ID_HEADER) {
        output.headers.push(Header::new(
            SOURCE_ID_HEADER,
            record.source.message_id.as_bytes(),
        ));
    }
    output
}

/// Waits for each record's deliveries, in source order, and acks it at the source.
async fn ack_stage(
    pipeline: String,
    mut settlements: mpsc::Receiver<Settlement>,
    stats: Arc<PipelineStats>,
    halt: CancellationToken,
) -> Result<(), PipelineError> {
    let mut pending = FuturesOrdered::new();
    let mut open = true;
    while open || !pending.is_empty() {
        tokio::select! {
            settlement = settlements.recv(), if open => match settlement {
                Some(Settlement { deliveries, ack }) => pending.push_back(async move {
                    for delivery in deliveries {
                        delivery.wait().await?;
                    }
                    Ok::<_, SinkError>(ack)
                }),
                None => open = false,
            },
            Some(settled) = pending.next(), if !pending.is_empty() => match settled {
                Ok(ack) => {
                    ack.ack();
                    PipelineStats::bump(&stats.acked, 1);
                }
                Err(source) => {
                    halt.cancel();
                    return Err(PipelineError::Sink { pipeline, source });
                }
            },
        }
    }
    Ok(())
}

async fn report_progress(pipeline: String, stats: Arc<PipelineStats>, halt: CancellationToken) {
    let mut interval = tokio::time::interval(PROGRESS_INTERVAL);
    interval.tick().await;
    let mut last = String::new();
    loop {
        tokio::select! {
            _ = halt.cancelled() => return,
            _ = interval.tick() => {
                // Only when something moved: an idle pipeline stays quiet.
                let summary = stats.summary();
                if summary != last {
                    tracing::info!(pipeline = %pipeline, "progress: {summary}");
                    last = summary;
                }
            }
        }
    }
}
