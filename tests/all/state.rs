//! Keyed state (docs/state.md): the `state` interface against a real guest (quotas, traps,
//! components that do not import it), and durable state through SIGKILLs of the runtime on
//! the real brokers, exactly once.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_engine::{
    BatchState, FailureKind, Limits, RecordOutcome, RecordStateContext, StateBackend, StateChange,
    StateQuotaPolicy, StateScope, StateUsage, TransformChain, key_group, state_key,
};
use sluice_record::{Bytes, Header, InputRecord, SourceInfo, SourceKind};
use sluice_tests::kafka::create_kafka_topics;
use sluice_tests::pulsar::{PulsarRecord, publish_to_pulsar};
use sluice_tests::{KEYED_COUNT, KEYED_COUNT_JS, KEYED_COUNT_PY, PASSTHROUGH, engine};

use crate::exactly_once::{Chaos, crash_loop, pulsar_config_transforming, pulsar_records};
use crate::support::assertions::header_u64;
use crate::support::brokers::{BrokerUse, brokers_and_topics_for};
use crate::support::config::{
    named_transform_entry, pulsar_pipeline_toml, sink_toml, transform_entry, write_config,
};
use crate::support::process::SluiceProcess;
use crate::support::read::{read_all, read_at_least};
use crate::transform::spec;

/// A backend for engine-level tests: committed state in a map, changes applied by the test.
#[derive(Default)]
struct MapBackend {
    entries: Mutex<HashMap<(String, Bytes), Bytes>>,
}

impl MapBackend {
    fn apply(&self, changes: &[StateChange]) {
        let mut entries = self.entries.lock().unwrap();
        for change in changes {
            let id = (change.namespace.to_string(), change.key.clone());
            match &change.value {
                Some(value) => entries.insert(id, value.clone()),
                None => entries.remove(&id),
            };
        }
    }
}

impl StateBackend for MapBackend {
    fn get(&self, _scope: StateScope, namespace: &str, key: &[u8]) -> Option<Bytes> {
        let id = (namespace.to_owned(), Bytes::copy_from_slice(key));
        self.entries.lock().unwrap().get(&id).cloned()
    }

    fn usage(&self, _scope: StateScope, namespace: &str, group: &[u8]) -> StateUsage {
        let entries = self.entries.lock().unwrap();
        let mut usage = StateUsage::default();
        for ((_, key), value) in entries.iter().filter(|((space, _), _)| space == namespace) {
            let bytes = (key.len() + value.len()) as u64;
            usage.namespace_bytes += bytes;
            if key_group(key) == group {
                usage.group_bytes += bytes;
            }
        }
        usage
    }
}

fn keyed(seq: usize, key: &str) -> InputRecord {
    InputRecord {
        key: Some(Bytes::copy_from_slice(key.as_bytes())),
        value: Some(Bytes::from_static(b"v")),
        headers: vec![Header::new("seq", seq.to_string())],
        event_time_ms: None,
        publish_time_ms: None,
        source: SourceInfo {
            kind: SourceKind::Other,
            topic: "test".into(),
            message_id: seq.to_string().into(),
            schema_version: None,
        },
    }
}

/// Runs `records` through `chain` in batches of `batch`, with the state of `backend`
/// (every record writable, one scope); returns the outcomes.
fn run_with_state(
    chain: &mut TransformChain,
    backend: &Arc<MapBackend>,
    records: &[InputRecord],
    batch: usize,
) -> Vec<RecordOutcome> {
    let mut outcomes = Vec::new();
    for records in records.chunks(batch) {
        let contexts = (records.iter())
            .map(|record| {
                let context = RecordStateContext {
                    scope: 0,
                    writable: true,
                };
                (record.source.message_id.clone(), context)
            })
            .collect();
        let lent = BatchState {
            backend: backend.clone(),
            contexts,
        };
        let (batch_outcomes, changes) = chain.run_batch_with_state(records, lent);
        for changes in &changes {
            backend.apply(changes);
        }
        outcomes.extend(batch_outcomes);
    }
    outcomes
}

fn count_of(outcome: &RecordOutcome) -> Option<u64> {
    match outcome {
        RecordOutcome::Outputs(outputs) => {
            let header = outputs[0].headers.iter().find(|h| &*h.name == "count")?;
            std::str::from_utf8(&header.value).ok()?.parse().ok()
        }
        _ => None,
    }
}

/// A running count per key through the `state` interface, across batches: each record sees
/// what the earlier records of its key stored, in the batch and before it — the same guest in
/// Rust, Python and JavaScript (each SDK's `msg.state` over the host's import).
#[test]
fn a_guest_counts_per_key_in_keyed_state_in_each_language() {
    for (language, component) in [
        ("rust", KEYED_COUNT),
        ("python", KEYED_COUNT_PY),
        ("js", KEYED_COUNT_JS),
    ] {
        let mut chain = TransformChain::new(
            engine(),
            &[spec("count", component, &[], Limits::default())],
        )
        .unwrap();
        assert!(chain.uses_state(), "{language}");
        let records: Vec<_> = (0..300)
            .map(|seq| keyed(seq, &format!("k{}", seq % 7)))
            .collect();
        let backend = Arc::new(MapBackend::default());
        let outcomes = run_with_state(&mut chain, &backend, &records, 64);
        for (seq, outcome) in outcomes.iter().enumerate() {
            assert_eq!(
                count_of(outcome),
                Some((seq / 7 + 1) as u64),
                "{language}: record {seq}: {outcome:?}"
            );
        }
        // The committed state holds one count per key, as the Rust SDK encodes it.
        let entries = backend.entries.lock().unwrap();
        let seven = state_key(b"k0", b"count");
        let stored = entries.get(&("t:count".to_owned(), seven)).cloned();
        assert_eq!(
            stored.as_deref(),
            Some(&(300u64 / 7 + 1).to_le_bytes()[..]),
            "{language}"
        );
    }
}

/// A component that does not import `state` (the 0.2.0 passthrough) keeps working, with state
/// lent or not, and is not taken for a stateful one.
#[test]
fn components_without_state_keep_working() {
    let mut chain = TransformChain::new(
        engine(),
        &[spec("pass", PASSTHROUGH, &[], Limits::default())],
    )
    .unwrap();
    assert!(!chain.uses_state());
    let records: Vec<_> = (0..10).map(|seq| keyed(seq, "k")).collect();
    let backend = Arc::new(MapBackend::default());
    let outcomes = run_with_state(&mut chain, &backend, &records, 10);
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, RecordOutcome::Outputs(_)))
    );
    assert!(
        chain
            .run_batch(&records)
            .iter()
            .all(|o| matches!(o, RecordOutcome::Outputs(_)))
    );
}

/// State quotas: a key that outgrows `state_bytes_per_key` gets its record dead-lettered with
/// a clear reason (kind `state-quota`), under either policy; its changes are dropped, the
/// other keys go on, and the state held stays within the quota.
#[test]
fn a_guest_over_its_state_quota_is_dead_lettered_or_trapped() {
    for policy in [StateQuotaPolicy::DeadLetter, StateQuotaPolicy::Trap] {
        let limits = Limits {
            state_bytes_per_key: 4_096,
            state_bytes_per_transform: 1 << 20,
            state_quota_exceeded: policy,
            ..Limits::default()
        };
        let mut chain = TransformChain::new(
            engine(),
            &[spec("count", KEYED_COUNT, &[("grow", "1000")], limits)],
        )
        .unwrap();
        let records: Vec<_> = (0..40)
            .map(|seq| keyed(seq, &format!("k{}", seq % 2)))
            .collect();
        let backend = Arc::new(MapBackend::default());
        let outcomes = run_with_state(&mut chain, &backend, &records, 16);
        let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
        let mut reason = None;
        for outcome in &outcomes {
            match outcome {
                RecordOutcome::Outputs(_) => *kinds.entry("outputs").or_default() += 1,
                RecordOutcome::DeadLetter {
                    kind, reason: why, ..
                } => {
                    assert_eq!(*kind, FailureKind::StateQuota, "{policy:?}: {why}");
                    reason.get_or_insert_with(|| why.clone());
                    *kinds.entry(kind.as_str()).or_default() += 1;
                }
                other => panic!("{policy:?}: unexpected {other:?}"),
            }
        }
        let reason = reason.expect("some records exceeded the quota");
        eprintln!("{policy:?}: {kinds:?}; reason: {reason}");
        assert!(reason.contains("state_bytes_per_key is 4096"), "{reason}");
        // Each key holds `count` (19 bytes with its key) and 1,011 bytes per record: four
        // records fit in 4 KiB, the fifth does not.
        assert_eq!(kinds.get("outputs"), Some(&8), "{policy:?}");
        let held = backend.usage(0, "t:count", &[]).namespace_bytes;
        eprintln!("{policy:?}: {held} bytes of state held for 2 keys");
        assert!(held <= 2 * 4_096, "within the quota: {held}");
    }
}

/// Acceptance: a stateful guest (a running count per key) from Pulsar to Kafka exactly-once,
/// 60,000 records, two lanes, the runtime SIGKILLed 10 times mid-stream: the `read_committed` output holds
/// every record once, each with the count the test computes itself (its rank within its key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_counts_survive_sigkills_exactly_once() {
    let Some((brokers, topics)) =
        brokers_and_topics_for("state-kill", 3, BrokerUse::Exclusive).await
    else {
        return;
    };
    let count: u64 = 60_000;
    let kills = 10;
    let dir = tempfile::tempdir().unwrap();
    let transform = transform_entry(KEYED_COUNT, "");
    let config = write_config(
        dir.path(),
        "sluice.toml",
        &pulsar_config_transforming(&brokers, &topics, "exactly-once", 2, "", &transform),
    );
    let records = pulsar_records(count);
    publish_to_pulsar(&brokers.pulsar, &topics.source, &records)
        .await
        .unwrap();
    // The test's own count: the rank of each record within its key, in publish order.
    let mut seen: HashMap<String, u64> = HashMap::new();
    let expected: Vec<u64> = (records.iter())
        .map(|record| {
            let rank = seen.entry(record.key.clone().unwrap()).or_default();
            *rank += 1;
            *rank
        })
        .collect();

    crash_loop(
        &config,
        &brokers,
        &topics,
        kills,
        |_| Chaos::None,
        count as usize,
    )
    .await;

    let output = read_all(&brokers, &[&topics.output]).await;
    let mut by_seq: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for record in &output {
        by_seq
            .entry(header_u64(record, "seq"))
            .or_default()
            .push(header_u64(record, "count"));
    }
    let twice = by_seq.values().filter(|counts| counts.len() > 1).count();
    let missing = count as usize - by_seq.len();
    let wrong: Vec<_> = (by_seq.iter())
        .filter(|(seq, counts)| counts[0] != expected[**seq as usize])
        .take(5)
        .map(|(seq, counts)| (seq, counts.clone(), expected[*seq as usize]))
        .collect();
    eprintln!(
        "{kills} kills: {} outputs, {} seqs, {twice} twice, {missing} missing, first wrong \
         counts (seq, got, expected): {wrong:?}",
        output.len(),
        by_seq.len()
    );
    assert_eq!(missing, 0, "every record's output is there");
    assert_eq!(twice, 0, "no record's output twice");
    assert!(wrong.is_empty(), "every count is the test's own");
    assert!(read_all(&brokers, &[&topics.dead_letter]).await.is_empty());
}

/// Keyed state is durable at-least-once too: its changelog is written beside the outputs and a
/// record is acked once its changes are delivered. A pipeline stopped and started again
/// restores the counts of its keys: the second run's counts go on from the first's (restarting
/// at 1 would mean nothing was restored), and its log says how many keys came back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_keyed_counts_go_on_after_a_restart() {
    let Some((brokers, topics)) = brokers_and_topics_for("state-alo", 1, BrokerUse::Shared).await
    else {
        return;
    };
    const KEYS: u64 = 13;
    let records = |seqs: std::ops::Range<u64>| -> Vec<PulsarRecord> {
        (seqs.map(|seq| PulsarRecord {
            key: Some(format!("k{}", seq % KEYS)),
            value: b"v".to_vec(),
            properties: vec![("seq".into(), seq.to_string())],
            event_time_ms: None,
        }))
        .collect()
    };
    let dir = tempfile::tempdir().unwrap();
    // Its own pipeline name: the changelog of at-least-once state is `<pipeline>.changelog`.
    let pipeline = format!("alo-{}", topics.output);
    let toml = pulsar_pipeline_toml(
        &pipeline,
        "guarantee = \"at-least-once\"\nmax_in_flight = 2000",
        "",
        &brokers,
        &topics,
        &format!(
            "{}\n{}",
            transform_entry(KEYED_COUNT, ""),
            sink_toml(&brokers, &topics, "")
        ),
    );
    let config = write_config(dir.path(), "sluice.toml", &toml);
    let per_run = 3_000;
    for run in 0..2u64 {
        let seqs = run * per_run..(run + 1) * per_run;
        publish_to_pulsar(&brokers.pulsar, &topics.source, &records(seqs))
            .await
            .unwrap();
        let log = dir.path().join(format!("run-{run}.log"));
        let mut sluice = SluiceProcess::run_logging_to(&config, &log);
        read_at_least(&brokers, &topics.output, ((run + 1) * per_run) as usize).await;
        sluice.terminate_and_wait_success();
        let text = std::fs::read_to_string(&log).unwrap();
        let restored: Vec<&str> = (text.lines())
            .filter(|line| line.contains("keyed state restored from the changelog"))
            .collect();
        eprintln!("run {run}: {restored:?}");
        let keys = if run == 0 { 0 } else { KEYS };
        assert!(
            restored
                .iter()
                .any(|line| line.contains(&format!(" keys={keys} "))),
            "run {run} restores {keys} keys: {restored:?}"
        );
    }
    let output = read_all(&brokers, &[&topics.output]).await;
    let mut counts: BTreeMap<u64, u64> = BTreeMap::new();
    for record in &output {
        counts
            .entry(header_u64(record, "seq"))
            .or_insert_with(|| header_u64(record, "count"));
    }
    assert_eq!(counts.len() as u64, 2 * per_run, "every record's output");
    let wrong: Vec<_> = (counts.iter())
        .filter(|(seq, count)| **count != **seq / KEYS + 1)
        .take(5)
        .collect();
    assert!(
        wrong.is_empty(),
        "counts (seq, count) off their rank: {wrong:?}"
    );
}

/// Acceptance: a restart restores 1,000,000 keys of state. The changelog is filled beforehand
/// (one `count` per key), one record then opens the scope; the restore's time (from the
/// runtime's log line) and the process's memory are printed, not asserted. The record's count
/// shows the restored state was read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_keys_of_state_are_restored_on_start() {
    let Some((brokers, topics)) =
        brokers_and_topics_for("state-restore", 1, BrokerUse::Shared).await
    else {
        return;
    };
    let keys: u32 = 1_000_000;
    let changelog = format!("{}-changelog", topics.output);
    create_kafka_topics(&brokers.kafka, &[&changelog], 1)
        .await
        .unwrap();
    let started = Instant::now();
    let kafka = brokers.kafka.clone();
    let topic = changelog.clone();
    tokio::task::spawn_blocking(move || fill_changelog(&kafka, &topic, keys))
        .await
        .unwrap();
    eprintln!(
        "changelog filled with {keys} keys in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let dir = tempfile::tempdir().unwrap();
    let transform = named_transform_entry("count", KEYED_COUNT, "");
    let config = write_config(
        dir.path(),
        "sluice.toml",
        &pulsar_config_transforming(&brokers, &topics, "exactly-once", 1, "", &transform),
    );
    let record = PulsarRecord {
        key: Some("k7".into()),
        value: b"v".to_vec(),
        properties: vec![("seq".into(), "0".into())],
        event_time_ms: None,
    };
    publish_to_pulsar(&brokers.pulsar, &topics.source, &[record])
        .await
        .unwrap();
    let log = dir.path().join("run.log");
    let mut runtime = SluiceProcess::run_logging_to(&config, &log);
    let output = read_at_least(&brokers, &topics.output, 1).await;
    let (rss, peak) = runtime.memory_mib();
    runtime.terminate_and_wait_success();
    let text = std::fs::read_to_string(&log).unwrap();
    let restored = (text.lines())
        .find(|line| line.contains("keyed state restored"))
        .expect("the restore is logged");
    eprintln!("restore of {keys} keys: {restored}");
    eprintln!("sluice run memory after the restore: {rss} MiB resident, {peak} MiB peak");
    assert!(restored.contains(&format!("keys={keys}")), "{restored}");
    assert_eq!(
        header_u64(&output[0], "count"),
        8,
        "k7's restored count (7) + 1"
    );
}

/// Writes `keys` changelog records of the transform `count` to partition 0 of `topic`: key
/// `k<i>`'s `count` = i (8 bytes, little-endian).
fn fill_changelog(kafka: &str, topic: &str, keys: u32) {
    use rdkafka::ClientConfig;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .set("compression.type", "lz4")
        .create()
        .unwrap();
    let namespace = "t:count";
    for i in 0..keys {
        let mut key = (namespace.len() as u32).to_le_bytes().to_vec();
        key.extend_from_slice(namespace.as_bytes());
        key.extend_from_slice(&state_key(format!("k{i}").as_bytes(), b"count"));
        let value = u64::from(i).to_le_bytes();
        let mut record = BaseRecord::<[u8], [u8]>::to(topic)
            .partition(0)
            .key(&key[..])
            .payload(&value[..]);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, returned)) => {
                    record = returned;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
        if i % 10_000 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(120)).unwrap();
}
