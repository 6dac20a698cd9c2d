//! Exactly-once on transactions (issue 16) without brokers: the memory sink's transactional
//! writers follow Kafka's rules (records visible at commit, with the checkpoint; a newer writer
//! of a scope fences the older), so the pipeline's side is tested here: commits by size and
//! time, acks only after the commit, nothing written twice after a lost commit answer, and a
//! fenced instance that stops without writing or acking anything more. The same against Kafka
//! and Pulsar: `exactly_once.rs`.

use std::time::Duration;

use sluice_connectors::memory::{MemorySink, MemorySource};
use sluice_pipeline::{Guarantee, PipelineError, PipelineSettings};

use crate::pipeline::{MemoryPipeline, memory_settings, replay_after_lost_delivery_reports};

/// Transactions of at most `max_records` source records, committed after `interval_ms`.
fn transactions(parallelism: usize, max_records: usize, interval_ms: u64) -> PipelineSettings {
    let mut settings = memory_settings(parallelism, Guarantee::ExactlyOnce);
    settings.exactly_once.max_records_per_transaction = max_records;
    settings.exactly_once.commit_interval = Duration::from_millis(interval_ms);
    settings
}

fn sink() -> MemorySink {
    MemorySink::new("out", Some("dlq"))
}

/// Commits by size (10 records) and by time (the last, partial transaction), never per record;
/// a record is acked only once its transaction committed, so the source never has more acked
/// than the sink shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_commit_by_size_and_time_and_records_are_acked_after_the_commit() {
    let pipeline =
        MemoryPipeline::start_on(MemorySource::new(), sink(), transactions(2, 10, 300)).await;
    pipeline.push(0..95);
    let mut samples = 0;
    while pipeline.source.acked().len() < 95 {
        let acked = pipeline.source.acked().len();
        let (_, visible) = pipeline.written();
        assert!(
            acked <= visible,
            "{acked} acked while the sink shows {visible}"
        );
        samples += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(
            samples < 10_000,
            "not all acked: {}",
            pipeline.stats.summary()
        );
    }
    let (distinct, written) = pipeline.written();
    assert_eq!((distinct.len(), written), (95, 95));
    // A transaction commits once it holds 10 records, checked after each batch (of up to 16).
    let committed = pipeline.stats.transactions.get();
    assert!(
        (95 / (10 + 16)..=95 / 2).contains(&committed),
        "by size and time, not per record: {committed} transactions"
    );
    pipeline.stop().await;
}

/// The sink commits but the answer is lost: the pipeline opens a new writer (which fences the
/// old one), reads the checkpoint, and does not write again what the lost answer committed.
async fn a_lost_commit_answer_writes_nothing_twice(source: MemorySource) {
    let pipeline = MemoryPipeline::start_on(source, sink(), transactions(2, 8, 50)).await;
    replay_after_lost_delivery_reports(&pipeline).await;
    assert!(
        pipeline.stats.deduplicated.get() >= 1,
        "the checkpoint covered what the lost answer committed: {}",
        pipeline.stats.summary()
    );
    pipeline.stop().await;
}

/// An ordered source (Pulsar-like): the checkpoint is a position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_commit_answer_writes_nothing_twice_with_positions() {
    a_lost_commit_answer_writes_nothing_twice(MemorySource::new()).await;
}

/// A source without an order (Pub/Sub-like): the checkpoint is the committed message ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_commit_answer_writes_nothing_twice_with_message_ids() {
    a_lost_commit_answer_writes_nothing_twice(MemorySource::unordered()).await;
}

/// Zombie fencing in memory: a second instance of the pipeline starts on the same source
/// (which hands it what the first held, as a broker does to a successor) and the same sink.
/// Its writer fences the first one's, whose next commit fails: the first stops with a fenced
/// error and writes nothing more; what it held unsettled comes again (as a broker's ack
/// deadline brings it back), and every record is in the sink once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_instance_fences_the_older_which_stops_and_nothing_is_written_twice() {
    let source = MemorySource::unordered();
    let settings = transactions(1, 5, 50);
    let first = MemoryPipeline::start_on(source.clone(), sink(), settings.clone()).await;
    first.push(0..40);
    first.wait_for_acks(40).await;
    let second = MemoryPipeline::start_on(source.clone(), first.sink.clone(), settings).await;
    let mut pushed = 40;
    while !first.task.is_finished() {
        assert!(pushed < 2_000, "the first instance was never fenced");
        second.push(pushed..pushed + 10);
        pushed += 10;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    source.redeliver_unsettled();
    second.wait_for_acks(pushed as usize).await;
    let error = first
        .task
        .await
        .unwrap()
        .expect_err("the first instance stops");
    assert!(
        matches!(error, PipelineError::Fenced { .. }),
        "fenced, not another failure: {error}"
    );
    assert!(
        error.to_string().contains("fenced by a newer instance"),
        "{error}"
    );
    let (distinct, written) = second.written();
    assert_eq!(distinct.len(), pushed as usize, "none lost");
    assert_eq!(written, pushed as usize, "none written twice");
    second.stop().await;
}
