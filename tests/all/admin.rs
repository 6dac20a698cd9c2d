//! Hot deploy, the admin API and observability of the `sluice` binary, against the real
//! brokers: a transform replaced and rolled back while records stream, a restart that keeps
//! the deployed version, refused components, the admin token, `/metrics` and `/v1/status`
//! against the test's own counts, and a SIGTERM drain.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_parse::{Scrape, Value as MetricValue};
use serde_json::{Value, json};
use sluice_tests::kafka::KafkaRecord;
use sluice_tests::pulsar::{PulsarRecord, publish_to_pulsar};
use sluice_tests::{OTHER_WORLD, PASSTHROUGH, REDACT, VERSION_STAMP_V1, VERSION_STAMP_V2};
use tempfile::TempDir;

use crate::support::assertions::{assert_per_key_order, distinct_seqs, report_counts, seq_of};
use crate::support::brokers::{Brokers, Topics, brokers_and_topics};
use crate::support::config::{
    named_transform_entry, pipeline_toml, pulsar_pipeline_toml, sink_toml, write_offline_config,
};
use crate::support::http::{AdminApi, free_loopback_address, json_of};
use crate::support::process::{SluiceProcess, error_line, sluice_command};
use crate::support::read::{read_at_least, read_until, read_until_seqs};

/// The pipeline's name in every config here (`support::pipeline_toml`).
const PIPELINE: &str = "test";
/// The `name` of the version-stamp transform in the configs here.
const STAMP: &str = "stamp";
/// The header the version-stamp guests add.
const VERSION_HEADER: &str = "transform-version";
/// Event time of record 0; record `seq` has this plus `seq`.
const EVENT_TIME_BASE_MS: u64 = 1_700_000_000_000;

/// Acceptance: v2 deployed with `sluice deploy` while 20,000 keyed records stream, then
/// `sluice rollback` to v1 while they still stream → every output was transformed by exactly one
/// version and is otherwise unchanged, none is missing, per-key order holds, per key the versions
/// run v1 → v2 → v1 in offset order, and no record published after a swap answered carries the
/// version it replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_and_rollback_while_streaming_swap_versions_in_order_and_lose_nothing() {
    let Some((brokers, topics)) = brokers_and_topics("deploy", 3).await else {
        return;
    };
    let run = AdminRun::stamping_v1(&brokers, &topics, None);
    let mut runtime = SluiceProcess::run(&run.config);
    let v1 = component_digest(VERSION_STAMP_V1).await;

    // A steady stream the swaps land in. It never passes 7,000 records before the deploy
    // answered nor 14,000 before the rollback did, so every version surely has records to
    // transform however long a swap takes.
    const TOTAL: u64 = 20_000;
    let stream = SteadyStream::start(&brokers, &topics, TOTAL, 7_000);
    read_at_least(&brokers, &topics.output, 2_000).await;
    let deploy = admin_command(
        &["deploy", PIPELINE, VERSION_STAMP_V2, "--transform", STAMP],
        &run.api,
        None,
    )
    .await;
    assert_succeeded(&deploy, "sluice deploy");
    let unpublished_at_deploy = stream.first_unpublished();
    stream.allow_up_to(14_000);
    // Roll back only once v2 has a share of the stream in Kafka.
    let enough_stamped_v2 = {
        let (mut scanned, mut stamped_v2) = (0, 0);
        move |records: &[KafkaRecord]| {
            stamped_v2 += records[scanned..]
                .iter()
                .filter(|r| r.header(VERSION_HEADER) == Some("2"))
                .count();
            scanned = records.len();
            stamped_v2 >= 2_000
        }
    };
    read_until(&brokers, &topics.output, enough_stamped_v2).await;
    let rollback = admin_command(
        &["rollback", PIPELINE, "--transform", STAMP],
        &run.api,
        None,
    )
    .await;
    assert_succeeded(&rollback, "sluice rollback");
    let unpublished_at_rollback = stream.first_unpublished();
    stream.allow_up_to(TOTAL);
    stream.finish().await;

    let all: BTreeSet<u64> = (0..TOTAL).collect();
    let output = read_until_seqs(&brokers, &topics.output, &all).await;
    let versions = run.api.versions(PIPELINE, STAMP).await;
    runtime.terminate_and_wait_success();

    let distinct = report_counts("deploy and rollback mid-stream", &output, &all);
    assert_eq!(distinct, all, "no record lost across the swaps");
    assert_per_key_order(&output);
    let phases = version_phases(&output);
    let count = |phase: Phase| phases.values().filter(|p| **p == phase).count();
    eprintln!(
        "deploy answered with {unpublished_at_deploy} and rollback with \
         {unpublished_at_rollback} of {TOTAL} records published (or being published); stamped \
         by v1: {}, by v2: {}, by v1 again: {}",
        count(Phase::V1),
        count(Phase::V2),
        count(Phase::V1Again)
    );
    for phase in [Phase::V1, Phase::V2, Phase::V1Again] {
        assert!(count(phase) > 0, "no record was stamped in phase {phase:?}");
    }
    for seq in unpublished_at_deploy..TOTAL {
        let phase = phases[&seq];
        assert_ne!(phase, Phase::V1, "seq {seq} was published after the deploy");
    }
    for seq in unpublished_at_rollback..TOTAL {
        let phase = phases[&seq];
        assert_eq!(
            phase,
            Phase::V1Again,
            "seq {seq} was published after the rollback"
        );
    }
    assert_eq!(versions.current, v1, "the rollback made v1 current again");
}

/// Acceptance: a runtime restarted after a deploy runs the deployed version (kept in
/// `state_dir`), not the config's; the versions list still holds both, oldest first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_after_a_deploy_runs_the_deployed_version() {
    let Some((brokers, topics)) = brokers_and_topics("redeploy", 1).await else {
        return;
    };
    let run = AdminRun::stamping_v1(&brokers, &topics, None);
    let (v1, v2) = (
        component_digest(VERSION_STAMP_V1).await,
        component_digest(VERSION_STAMP_V2).await,
    );
    let mut first = SluiceProcess::run(&run.config);
    run.api.wait_ready(&mut first).await;
    let (status, deployed) = run
        .api
        .deploy(PIPELINE, STAMP, read(VERSION_STAMP_V2), None)
        .await;
    assert_eq!(status, 200, "{deployed}");
    for (field, expected) in [
        ("pipeline", PIPELINE),
        ("transform", STAMP),
        ("digest", &v2),
        ("previous", &v1),
    ] {
        assert_eq!(deployed[field], expected, "{field} in {deployed}");
    }
    first.terminate_and_wait_success();

    let published = 0..300;
    publish(&brokers, &topics, &published).await;
    let mut second = SluiceProcess::run(&run.config);
    let expected: BTreeSet<u64> = published.collect();
    let output = read_until_seqs(&brokers, &topics.output, &expected).await;
    let versions = run.api.versions(PIPELINE, STAMP).await;
    second.terminate_and_wait_success();

    assert_eq!(distinct_seqs(&output), expected);
    for record in &output {
        assert_eq!(stamped_version(record), "2", "seq {}", seq_of(record));
    }
    assert_eq!(versions.current, v2);
    assert_eq!(
        versions.digests,
        [v1, v2],
        "the config's version, then the deployed one"
    );
}

/// Acceptance: components that are not transforms are refused (HTTP 422 with the reason,
/// `sluice deploy` exit 2 with one `error:` line), as are unknown pipelines and transforms
/// (404); the pipeline keeps running v1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_component_is_refused_and_the_old_version_keeps_running() {
    let Some((brokers, topics)) = brokers_and_topics("refuse", 1).await else {
        return;
    };
    let run = AdminRun::stamping_v1(&brokers, &topics, None);
    let v1 = component_digest(VERSION_STAMP_V1).await;
    let mut runtime = SluiceProcess::run(&run.config);
    run.api.wait_ready(&mut runtime).await;

    let (status, refused) = run
        .api
        .deploy(PIPELINE, STAMP, read(OTHER_WORLD), None)
        .await;
    assert_eq!(status, 422, "{refused}");
    let reason = refused["error"].as_str().unwrap_or_default();
    assert!(
        reason.contains(r#"missing exports "init", "transform-batch""#),
        "{refused}"
    );
    let text = run.dir.path().join("notes.wasm");
    std::fs::write(&text, "hello, I am text").unwrap();
    let cli = admin_command(
        &[
            "deploy",
            PIPELINE,
            text.to_str().unwrap(),
            "--transform",
            STAMP,
        ],
        &run.api,
        None,
    )
    .await;
    assert_eq!(cli.status.code(), Some(2), "{}", stderr_of(&cli));
    let line = error_line(&cli);
    assert!(line.contains("not a WebAssembly component"), "{line}");
    for (pipeline, transform) in [("no-such-pipeline", STAMP), (PIPELINE, "no-such-transform")] {
        let (status, body) = run
            .api
            .deploy(pipeline, transform, read(VERSION_STAMP_V2), None)
            .await;
        assert_eq!(status, 404, "deploy to {pipeline}/{transform}: {body}");
    }
    let versions = run.api.versions(PIPELINE, STAMP).await;
    assert_eq!(versions.digests, [v1.as_str()], "nothing was deployed");
    assert_eq!(versions.current, v1);

    let published = 0..200;
    publish(&brokers, &topics, &published).await;
    let expected: BTreeSet<u64> = published.collect();
    let output = read_until_seqs(&brokers, &topics.output, &expected).await;
    runtime.terminate_and_wait_success();
    assert_eq!(distinct_seqs(&output), expected);
    for record in &output {
        assert_eq!(stamped_version(record), "1", "seq {}", seq_of(record));
    }
}

/// Acceptance: with `[admin] token` set, a deploy or rollback without it or with a wrong one
/// answers 401 and changes nothing (`sluice deploy` exits 2); `sluice deploy` with the token in
/// `SLUICE_ADMIN_TOKEN` deploys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_and_rollback_need_the_admin_token() {
    let Some((brokers, topics)) = brokers_and_topics("token", 1).await else {
        return;
    };
    let token = sluice_tests::unique_name("token");
    let run = AdminRun::stamping_v1(&brokers, &topics, Some(&token));
    let (v1, v2) = (
        component_digest(VERSION_STAMP_V1).await,
        component_digest(VERSION_STAMP_V2).await,
    );
    let mut runtime = SluiceProcess::run(&run.config);
    run.api.wait_ready(&mut runtime).await;

    for (label, bearer) in [("no token", None), ("a wrong token", Some("wrong-token"))] {
        let (status, body) = run
            .api
            .deploy(PIPELINE, STAMP, read(VERSION_STAMP_V2), bearer)
            .await;
        assert_eq!(status, 401, "deploy with {label}: {body}");
    }
    let deploy_args = ["deploy", PIPELINE, VERSION_STAMP_V2, "--transform", STAMP];
    let refused = admin_command(&deploy_args, &run.api, None).await;
    assert_eq!(refused.status.code(), Some(2), "{}", stderr_of(&refused));
    error_line(&refused);
    let versions = run.api.versions(PIPELINE, STAMP).await;
    assert_eq!(versions.digests, [v1.as_str()], "nothing was deployed");

    let accepted = admin_command(&deploy_args, &run.api, Some(&token)).await;
    assert_succeeded(&accepted, "sluice deploy with the token");
    let (status, body) = run.api.rollback(PIPELINE, STAMP, None).await;
    assert_eq!(status, 401, "rollback without the token: {body}");
    let versions = run.api.versions(PIPELINE, STAMP).await;
    runtime.terminate_and_wait_success();
    assert_eq!(
        versions.current, v2,
        "deployed with the token, not rolled back without"
    );
    assert_eq!(versions.digests, [v1.as_str(), v2.as_str()]);

    // The audit log: every deploy and rollback, refused or not, with who, what and when, and
    // the token's fingerprint, never the token.
    let audit = std::fs::read_to_string(run.dir.path().join("state/audit.jsonl")).unwrap();
    assert!(!audit.contains(&token), "the audit log shows the token");
    let entries: Vec<Value> = audit.lines().map(json_of).collect();
    let summary: Vec<(&str, &str, u64)> = entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["who"].as_str().unwrap(),
                e["status"].as_u64().unwrap(),
            )
        })
        .collect();
    let fingerprint = entries[3]["who"].as_str().unwrap();
    assert!(fingerprint.starts_with("token:"), "{audit}");
    assert_eq!(
        summary,
        [
            ("deploy", "unauthenticated", 401),
            ("deploy", "unauthenticated", 401),
            ("deploy", "unauthenticated", 401),
            ("deploy", fingerprint, 200),
            ("rollback", "unauthenticated", 401),
        ],
        "{audit}"
    );
    assert_eq!(entries[3]["digest"], v2.as_str());
    for entry in &entries {
        assert!(
            entry["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
            "{entry}"
        );
        assert!(
            entry["at_ms"].as_u64().unwrap() > 1_700_000_000_000,
            "{entry}"
        );
        assert_eq!(entry["pipeline"], PIPELINE);
        assert_eq!(entry["transform"], STAMP);
    }
    println!("audit log: {} entries:\n{audit}", entries.len());
}

/// Acceptance: an admin API listening beyond loopback without a token is a config error:
/// `sluice run` exits 2 naming the token, before it connects to anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_loopback_admin_address_without_a_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_offline_config(dir.path(), PASSTHROUGH);
    let port = free_loopback_address().port();
    let admin = admin_section(&format!("0.0.0.0:{port}"), &dir.path().join("state"), None);
    let mut toml = std::fs::read_to_string(&config).unwrap();
    toml.push_str(&admin);
    std::fs::write(&config, toml).unwrap();

    let output = sluice_command(&["run", "--config", config.to_str().unwrap()], None).await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr_of(&output));
    let line = error_line(&output);
    assert!(line.contains("token"), "{line}");
}

/// Acceptance: `/metrics` parses as Prometheus text and its counters equal what the test sent
/// (500 records, 10 of them dead-lettered by the redact guest); `/v1/status` and
/// `sluice status --json` say the same; `/healthz` and `/readyz` answer 200 while it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_status_count_what_the_pipeline_did() {
    let Some((brokers, topics)) = brokers_and_topics("metrics", 2).await else {
        return;
    };
    let transforms = named_transform_entry("redact", REDACT, r#"fields = "email""#);
    let run = AdminRun::new(&brokers, &topics, &transforms, None);
    let redact = component_digest(REDACT).await;
    let mut runtime = SluiceProcess::run(&run.config);
    run.api.wait_ready(&mut runtime).await;

    const TOTAL: u64 = 500;
    let is_poison = |seq: u64| seq % 50 == 49;
    let records: Vec<PulsarRecord> = keyed_records(0..TOTAL)
        .into_iter()
        .enumerate()
        .map(|(seq, mut record)| {
            if is_poison(seq as u64) {
                record.value = format!("not json {seq}").into_bytes();
            }
            record
        })
        .collect();
    publish_to_pulsar(&brokers.pulsar, &topics.source, &records)
        .await
        .unwrap();
    let (poison, good): (BTreeSet<u64>, BTreeSet<u64>) = (0..TOTAL).partition(|s| is_poison(*s));
    read_until_seqs(&brokers, &topics.output, &good).await;
    read_until_seqs(&brokers, &topics.dead_letter, &poison).await;
    // Kafka has the records before the runtime has counted their acks and released them.
    let pipeline = [("pipeline", PIPELINE)];
    let scrape = run
        .api
        .metrics_when(|scrape| {
            let acked = metric(scrape, "sluice_records_acked_total", &pipeline);
            let in_flight = metric(scrape, "sluice_records_in_flight", &pipeline);
            acked.is_some_and(|n| n >= TOTAL as f64) && in_flight == Some(0.0)
        })
        .await;
    let (healthz, _) = run.api.get("/healthz").await.unwrap();
    let (readyz, ready) = run.api.get("/readyz").await.unwrap();
    let status = run.api.get_json("/v1/status").await;
    let status_cli = admin_command(&["status", "--json"], &run.api, None).await;
    runtime.terminate_and_wait_success();

    assert_eq!(healthz, 200);
    assert_eq!(readyz, 200, "{ready}");
    assert_eq!(json_of(&ready)["ready"], true, "{ready}");
    let value = |name: &str, labels: &[(&str, &str)]| {
        metric(&scrape, name, labels).unwrap_or_else(|| panic!("no {name}{labels:?} in /metrics"))
    };
    let counted = |name: &str| value(name, &pipeline);
    let transform = [("pipeline", PIPELINE), ("transform", "redact")];
    let (total, good, poison) = (TOTAL as f64, good.len() as f64, poison.len() as f64);
    assert_eq!(counted("sluice_records_received_total"), total);
    assert_eq!(counted("sluice_records_acked_total"), total);
    assert_eq!(counted("sluice_records_produced_total"), good);
    assert_eq!(counted("sluice_records_filtered_total"), 0.0);
    assert_eq!(counted("sluice_records_skipped_total"), 0.0);
    let dead_letter = [("pipeline", PIPELINE), ("kind", "dead-letter")];
    assert_eq!(
        value("sluice_records_dead_lettered_total", &dead_letter),
        poison
    );
    assert_eq!(
        value("sluice_transform_records_in_total", &transform),
        total
    );
    assert_eq!(
        value("sluice_transform_records_out_total", &transform),
        good
    );
    let live = [
        ("pipeline", PIPELINE),
        ("transform", "redact"),
        ("digest", redact.as_str()),
    ];
    assert_eq!(value("sluice_transform_version_info", &live), 1.0);
    // Every record went through the transform in exactly one batch.
    assert_eq!(
        metric_sum(&scrape, "sluice_transform_batch_size_sum", &pipeline),
        total
    );
    for histogram in [
        "sluice_transform_batch_seconds",
        "sluice_end_to_end_latency_seconds",
    ] {
        let observations = metric_sum(&scrape, &format!("{histogram}_count"), &pipeline);
        assert!(observations > 0.0, "{histogram} observed nothing");
    }

    let expected_counters = json!({
        "received": TOTAL, "produced": good as u64, "filtered": 0, "skipped": 0,
        "dead_lettered": poison as u64, "acked": TOTAL, "in_flight": 0, "restarts": 0,
    });
    let status = &status["pipelines"][0];
    assert_eq!(status["name"], PIPELINE, "{status}");
    assert_eq!(status["state"], "running", "{status}");
    assert_eq!(status["ready"], true, "{status}");
    assert_eq!(status["source"], "pulsar", "{status}");
    let transforms = status["transforms"]
        .as_array()
        .unwrap_or_else(|| panic!("{status}"));
    assert_eq!(transforms.len(), 1, "{status}");
    assert_eq!(transforms[0]["name"], "redact", "{status}");
    assert_eq!(transforms[0]["digest"], redact, "{status}");
    assert_has_fields(&status["counters"], &expected_counters);
    assert_succeeded(&status_cli, "sluice status --json");
    let status_cli: Value = serde_json::from_slice(&status_cli.stdout).unwrap();
    let status_cli = &status_cli["pipelines"][0];
    assert_eq!(status_cli["name"], PIPELINE, "{status_cli}");
    assert_has_fields(&status_cli["counters"], &expected_counters);
}

/// Acceptance: SIGTERM mid-stream → exit 0 after the drain, whose `pipeline stopped:` line (in
/// the JSON log of `--log-format json`) shows every received record acked; a restart delivers
/// the rest: none missing, per-key order kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_stream_acks_everything_received_and_a_restart_delivers_the_rest() {
    let Some((brokers, topics)) = brokers_and_topics("drain", 3).await else {
        return;
    };
    let run = AdminRun::stamping_v1(&brokers, &topics, None);
    let published = 0..10_000;
    publish(&brokers, &topics, &published).await;
    let all: BTreeSet<u64> = published.collect();

    let first_log = run.dir.path().join("first.log");
    let mut first =
        SluiceProcess::run_with_args_logging_to(&run.config, &["--log-format", "json"], &first_log);
    let partial = read_at_least(&brokers, &topics.output, 1_000).await;
    first.terminate_and_wait_success();
    let first_log = std::fs::read_to_string(&first_log).unwrap();
    for line in first_log.lines().filter(|l| !l.trim().is_empty()) {
        let parsed = serde_json::from_str::<Value>(line);
        assert!(
            parsed.is_ok_and(|v| v.is_object()),
            "not a JSON log line: {line}"
        );
    }
    let (received, acked) = stopped_counters(&first_log);
    eprintln!(
        "SIGTERM after {} records were in Kafka; the first run received {received} and acked \
         {acked}",
        partial.len()
    );
    assert!(received < all.len() as u64, "the SIGTERM came mid-stream");
    assert_eq!(received, acked, "the drain acked every record received");

    let second_log = run.dir.path().join("second.log");
    let mut second = SluiceProcess::run_logging_to(&run.config, &second_log);
    let output = read_until_seqs(&brokers, &topics.output, &all).await;
    second.terminate_and_wait_success();
    let (received_again, _) = stopped_counters(&std::fs::read_to_string(&second_log).unwrap());
    let distinct = report_counts("after SIGTERM and restart", &output, &all);
    assert_eq!(distinct, all, "no record lost across SIGTERM");
    assert_per_key_order(&output);
    // Printed, not asserted (duplicates are allowed at-least-once): more than the first run
    // left unacked means Pulsar redelivered records whose acks the first run had sent.
    eprintln!(
        "the restart received {received_again} records; the first run left {} unacked",
        all.len() as u64 - acked
    );
}

/// [`keyed_records`] `0..total` published in the background, one chunk of 200 every 100 ms,
/// never past the limit the test allows.
struct SteadyStream {
    allowed: tokio::sync::watch::Sender<u64>,
    /// The end of the chunk being published, else of the last one published: every record
    /// from here on is published after this was read.
    unpublished_from: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl SteadyStream {
    fn start(brokers: &Brokers, topics: &Topics, total: u64, allowed: u64) -> Self {
        const CHUNK: u64 = 200;
        let (allowed, mut limit) = tokio::sync::watch::channel(allowed);
        let unpublished_from = Arc::new(AtomicU64::new(0));
        let progress = unpublished_from.clone();
        let (url, topic) = (brokers.pulsar.clone(), topics.source.clone());
        let task = tokio::spawn(async move {
            let mut next = 0;
            while next < total {
                let limit = *limit.wait_for(|limit| *limit > next).await.unwrap();
                let end = (next + CHUNK).min(limit).min(total);
                progress.store(end, Ordering::SeqCst);
                publish_to_pulsar(&url, &topic, &keyed_records(next..end))
                    .await
                    .unwrap();
                next = end;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Self {
            allowed,
            unpublished_from,
            task,
        }
    }

    /// The first `seq` not yet published nor being published.
    fn first_unpublished(&self) -> u64 {
        self.unpublished_from.load(Ordering::SeqCst)
    }

    fn allow_up_to(&self, limit: u64) {
        self.allowed.send_replace(limit);
    }

    /// Waits until every record is published.
    async fn finish(self) {
        self.task.await.expect("publishing the stream failed");
    }
}

/// A config for `sluice run` in a temporary directory: Pulsar → `transforms` → Kafka, the admin
/// API on a free loopback port, deployed components kept in the directory's `state/`.
struct AdminRun {
    dir: TempDir,
    config: PathBuf,
    api: AdminApi,
}

impl AdminRun {
    fn new(brokers: &Brokers, topics: &Topics, transforms: &str, token: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("state");
        std::fs::create_dir(&state_dir).unwrap();
        let listen = free_loopback_address();
        let mut toml = pipeline_toml(brokers, topics, transforms, "");
        toml.push_str(&admin_section(&listen.to_string(), &state_dir, token));
        let config = dir.path().join("sluice.toml");
        std::fs::write(&config, toml).unwrap();
        Self {
            dir,
            config,
            api: AdminApi::new(listen),
        }
    }

    /// The `stamp` transform running `version-stamp-v1`, where every deploy test starts.
    fn stamping_v1(brokers: &Brokers, topics: &Topics, token: Option<&str>) -> Self {
        let transforms = named_transform_entry(STAMP, VERSION_STAMP_V1, "");
        Self::new(brokers, topics, &transforms, token)
    }
}

/// An `[admin]` section (appended after the pipelines: it is a top-level table).
fn admin_section(listen: &str, state_dir: &Path, token: Option<&str>) -> String {
    let state_dir = state_dir.to_str().unwrap();
    let mut section = format!("\n[admin]\nlisten = {listen:?}\nstate_dir = {state_dir:?}\n");
    if let Some(token) = token {
        section.push_str(&format!("token = {token:?}\n"));
    }
    section
}

/// Every field of `expected` is in `actual` with the same value (`actual` may have more).
fn assert_has_fields(actual: &Value, expected: &Value) {
    let expected = expected.as_object().expect("expected fields are an object");
    for (field, value) in expected {
        assert_eq!(&actual[field], value, "{field} in {actual}");
    }
}

/// The value of the one sample called `name` whose labels include `labels`, if there is one.
fn metric(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let values = sample_values(scrape, name, labels);
    assert!(
        values.len() <= 1,
        "{name}{labels:?} matches {} samples",
        values.len()
    );
    values.first().copied()
}

/// The sum of the samples called `name` whose labels include `labels` (a histogram's `_sum`
/// or `_count` may be split over more labels than the test names).
fn metric_sum(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let values = sample_values(scrape, name, labels);
    assert!(!values.is_empty(), "no {name}{labels:?} in /metrics");
    values.iter().sum()
}

fn sample_values(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .map(|s| match s.value {
            MetricValue::Counter(v) | MetricValue::Gauge(v) | MetricValue::Untyped(v) => v,
            ref other => panic!("{name} is not a single number: {other:?}"),
        })
        .collect()
}

/// `sluice <args> --admin <api>`: a client command (`deploy`, `rollback`, `status`).
async fn admin_command(args: &[&str], api: &AdminApi, token: Option<&str>) -> Output {
    let mut args = args.to_vec();
    args.extend(["--admin", &api.base_url]);
    sluice_command(&args, token).await
}

fn assert_succeeded(output: &Output, command: &str) {
    assert!(
        output.status.success(),
        "{command} failed ({}):\n{}",
        output.status,
        stderr_of(output)
    );
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The digest `sluice check` prints for `component` (`sha256:…` of the file).
async fn component_digest(component: &str) -> String {
    let output = sluice_command(&["check", component], None).await;
    assert_succeeded(&output, "sluice check");
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("digest:"))
        .map(|digest| digest.trim().to_owned())
        .unwrap_or_else(|| panic!("no digest line in:\n{stdout}"))
}

fn read(component: &str) -> Vec<u8> {
    std::fs::read(component).unwrap()
}

/// Records `seqs` over 16 keys, each with its `seq` as a property and in its value.
fn keyed_records(seqs: Range<u64>) -> Vec<PulsarRecord> {
    seqs.map(|seq| PulsarRecord {
        key: Some(key_of(seq)),
        value: value_of(seq).into_bytes(),
        properties: vec![("seq".into(), seq.to_string())],
        event_time_ms: Some(EVENT_TIME_BASE_MS + seq),
    })
    .collect()
}

fn key_of(seq: u64) -> String {
    format!("key-{}", seq % 16)
}

fn value_of(seq: u64) -> String {
    format!(r#"{{"seq":{seq},"email":"user{seq}@example.com"}}"#)
}

async fn publish(brokers: &Brokers, topics: &Topics, seqs: &Range<u64>) {
    publish_to_pulsar(
        &brokers.pulsar,
        &topics.source,
        &keyed_records(seqs.clone()),
    )
    .await
    .unwrap();
}

/// The version a stamped record carries, after checking that it carries exactly one and that
/// the guest changed nothing else (key, value, timestamp as published).
fn stamped_version(record: &KafkaRecord) -> &str {
    let seq = seq_of(record);
    assert_eq!(
        record.header_count(VERSION_HEADER),
        1,
        "seq {seq}: one {VERSION_HEADER} header expected: {:?}",
        record.header_list
    );
    assert_eq!(record.key_str(), Some(key_of(seq).as_str()), "seq {seq}");
    assert_eq!(
        record.value_str(),
        Some(value_of(seq).as_str()),
        "seq {seq}"
    );
    assert_eq!(
        record.timestamp_ms,
        Some((EVENT_TIME_BASE_MS + seq) as i64),
        "seq {seq}"
    );
    record.header(VERSION_HEADER).unwrap()
}

/// Which version stamped a record, relative to the deploy and the rollback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// v1, before any v2 record of the key.
    V1,
    /// v2.
    V2,
    /// v1, after a v2 record of the key.
    V1Again,
}

/// The phase of every record (the first copy of each `seq`), walking each key's records in
/// offset order; fails when a key's versions do not run v1… → v2… → v1… (a record stamped by a
/// version that was already replaced).
fn version_phases(records: &[KafkaRecord]) -> BTreeMap<u64, Phase> {
    let mut sorted: Vec<&KafkaRecord> = records.iter().collect();
    sorted.sort_by_key(|r| (r.partition, r.offset));
    let mut phase_of_key: HashMap<String, Phase> = HashMap::new();
    let mut phases = BTreeMap::new();
    for record in sorted {
        let seq = seq_of(record);
        let version = stamped_version(record);
        if phases.contains_key(&seq) {
            continue;
        }
        let key = record.key_str().expect("every record has a key").to_owned();
        let before = phase_of_key.get(&key).copied().unwrap_or(Phase::V1);
        let phase = match (before, version) {
            (Phase::V1, "1") => Phase::V1,
            (Phase::V1 | Phase::V2, "2") => Phase::V2,
            (Phase::V2 | Phase::V1Again, "1") => Phase::V1Again,
            _ => panic!("{key}: seq {seq} stamped {version:?} after phase {before:?}"),
        };
        phase_of_key.insert(key, phase);
        phases.insert(seq, phase);
    }
    phases
}

/// `received` and `acked` of the last `pipeline stopped: received=… acked=…` line of `log`
/// (plain or JSON).
fn stopped_counters(log: &str) -> (u64, u64) {
    let line = log
        .lines()
        .rfind(|line| line.contains("pipeline stopped:"))
        .unwrap_or_else(|| panic!("no `pipeline stopped:` line in the log:\n{log}"));
    let counter = |name: &str| -> u64 {
        line.split(|c: char| c.is_whitespace() || c == '"' || c == ',')
            .find_map(|word| word.strip_prefix(name)?.strip_prefix('='))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {name}=N in {line}"))
    };
    (counter("received"), counter("acked"))
}

/// The checked-in Grafana dashboard.
const DASHBOARD: &str = include_str!("../../deploy/grafana/sluice.json");

/// Acceptance (issue 21): every query of the Grafana dashboard (`deploy/grafana/sluice.json`:
/// each panel's targets and the template variables) names only metrics a running `sluice`
/// serves on `/metrics`, and every panel has a query naming one. The names come from the
/// scrape's samples and from its `# TYPE` lines, so a family with no series yet (no record
/// dead-lettered, say) still counts, with the suffixes its type gives its samples.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_names_a_metric_sluice_serves() {
    let Some((brokers, topics)) = brokers_and_topics("dashboard", 2).await else {
        return;
    };
    let transforms = named_transform_entry("redact", REDACT, r#"fields = "email""#);
    let run = AdminRun::new(&brokers, &topics, &transforms, None);
    let mut runtime = SluiceProcess::run(&run.config);
    run.api.wait_ready(&mut runtime).await;
    // Families with labels show only once they have a series: a record the guest
    // dead-letters (a value that is not JSON) and a deploy (of the same version) make them.
    let mut records = keyed_records(0..20);
    records[19].value = b"not json".to_vec();
    publish_to_pulsar(&brokers.pulsar, &topics.source, &records)
        .await
        .unwrap();
    read_until_seqs(&brokers, &topics.output, &(0..19).collect()).await;
    read_until_seqs(&brokers, &topics.dead_letter, &[19].into()).await;
    let component = std::fs::read(REDACT).unwrap();
    let (deployed, answer) = run.api.deploy(PIPELINE, "redact", component, None).await;
    assert_eq!(deployed, 200, "{answer}");
    let (status, text) = run.api.get("/metrics").await.unwrap();
    runtime.terminate_and_wait_success();
    assert_eq!(status, 200, "{text}");

    let served = served_metric_names(&text);
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let mut queries: Vec<(String, String)> = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"]
            .as_str()
            .expect("a panel has a title")
            .to_owned();
        let exprs: Vec<&str> = panel["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["expr"].as_str())
            .collect();
        assert!(!exprs.is_empty(), "panel {title:?} has no query");
        for expr in exprs {
            queries.push((format!("panel {title:?}"), expr.to_owned()));
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
    {
        if let Some(definition) = variable["definition"].as_str() {
            queries.push((
                format!("variable {}", variable["name"]),
                definition.to_owned(),
            ));
        }
    }
    let mut named = BTreeSet::new();
    for (place, expr) in &queries {
        let names = sluice_metric_names(expr);
        assert!(
            !names.is_empty(),
            "{place}: {expr:?} names no sluice metric"
        );
        for name in names {
            assert!(
                served.contains(&name),
                "{place}: {name} is not served; /metrics has {served:?}"
            );
            named.insert(name);
        }
    }
    eprintln!(
        "dashboard: {} panels, {} queries, {} metrics named, all served ({} names on /metrics)",
        dashboard["panels"].as_array().map_or(0, Vec::len),
        queries.len(),
        named.len(),
        served.len()
    );
}

/// The sample names of a Prometheus / OpenMetrics text: those of its samples, and those each
/// `# TYPE` line's family gives its samples.
fn served_metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(declaration) = line.strip_prefix("# TYPE ") {
            let mut parts = declaration.split_whitespace();
            let (Some(family), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total", "_created"],
                "histogram" => &["_bucket", "_sum", "_count", "_created"],
                "summary" => &["", "_sum", "_count", "_created"],
                "info" => &["_info"],
                _ => &[""],
            };
            names.extend(suffixes.iter().map(|s| format!("{family}{s}")));
        } else if !line.starts_with('#') {
            let name: String = line
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            if !name.is_empty() {
                names.insert(name);
            }
        }
    }
    names
}

/// The `sluice_…` identifiers of a PromQL expression.
fn sluice_metric_names(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|token| token.starts_with("sluice_"))
        .map(str::to_owned)
        .collect()
}

/// One of several instances of one config in [`one_deploy_reaches_every_instance`].
struct SharingInstance {
    name: &'static str,
    process: SluiceProcess,
    api: AdminApi,
}

/// Waits until every instance's `/v1/status` shows `digest` live for the stamp transform.
async fn wait_until_every_instance_runs(instances: &[SharingInstance], digest: &str) {
    for instance in instances {
        let deadline = std::time::Instant::now() + sluice_tests::timeouts::ADMIN;
        loop {
            let status = instance.api.get_json("/v1/status").await;
            if status["pipelines"][0]["transforms"][0]["digest"] == digest {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "instance {} does not run {digest}: {status}",
                instance.name
            );
            tokio::time::sleep(sluice_tests::timeouts::RECHECK).await;
        }
    }
}

/// Waits until `sluice status --json` through `api` lists `count` instances, each running
/// `digest`; returns the table `sluice status` prints then.
async fn wait_until_status_lists(api: &AdminApi, count: usize, digest: &str) -> String {
    let deadline = std::time::Instant::now() + sluice_tests::timeouts::ADMIN;
    loop {
        let output = admin_command(&["status", "--json"], api, None).await;
        assert_succeeded(&output, "sluice status --json");
        let status: Value = serde_json::from_slice(&output.stdout).unwrap();
        let instances = status["pipelines"][0]["instances"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if instances.len() == count && instances.iter().all(|i| i["transforms"][STAMP] == digest) {
            let table = admin_command(&["status"], api, None).await;
            assert_succeeded(&table, "sluice status");
            return String::from_utf8_lossy(&table.stdout).into_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sluice status does not list {count} instances running {digest}: {status}"
        );
        tokio::time::sleep(sluice_tests::timeouts::RECHECK).await;
    }
}

/// Acceptance (issue 21): three instances of one config on a key_shared subscription share
/// their versions through the pipeline's deployments topic. `sluice deploy` sent once, to
/// one instance, swaps all three; a fourth started after it starts on the deployed version;
/// `sluice rollback` sent to another brings all four back; `sluice status` lists the
/// instances and the version each runs. Every output carries exactly one
/// version stamp; what was published after every instance ran v2 carries v2, after the
/// rollback v1; none is missing; per-key order holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_deploy_reaches_every_instance() {
    let Some((brokers, topics)) = brokers_and_topics("shared-deploy", 3).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let transforms = named_transform_entry(STAMP, VERSION_STAMP_V1, "");
    let mut toml = pulsar_pipeline_toml(
        PIPELINE,
        "max_in_flight = 2000",
        "subscription_type = \"key_shared\"",
        &brokers,
        &topics,
        &format!("{transforms}\n{}", sink_toml(&brokers, &topics, "")),
    );
    // One config for all: each instance's admin address and state dir come from its
    // environment; the deployments topic is the test's own.
    toml.push_str(&format!(
        "\n[admin]\nlisten = \"${{SLUICE_TEST_ADMIN}}\"\nstate_dir = \"${{SLUICE_TEST_STATE}}\"\n\
         deployments = \"kafka\"\ndeployments_topic_prefix = \"{}-deployments.\"\n",
        topics.output
    ));
    let config = dir.path().join("sluice.toml");
    std::fs::write(&config, toml).unwrap();
    let start_instance = async |name: &'static str| {
        let listen = free_loopback_address().to_string();
        let state = dir.path().join(format!("state-{name}"));
        let mut process = SluiceProcess::run_with_env_logging_to(
            &config,
            &[],
            &[
                ("SLUICE_TEST_ADMIN", listen.as_str()),
                ("SLUICE_TEST_STATE", state.to_str().unwrap()),
            ],
            &dir.path().join(format!("{name}.log")),
        );
        let api = AdminApi::new(listen.parse().unwrap());
        api.wait_ready(&mut process).await;
        SharingInstance { name, process, api }
    };
    let mut instances = Vec::new();
    for name in ["a", "b", "c"] {
        instances.push(start_instance(name).await);
    }
    let (v1, v2) = (
        component_digest(VERSION_STAMP_V1).await,
        component_digest(VERSION_STAMP_V2).await,
    );
    // Unbatched: key_shared hands a batch to the consumer of its first key.
    let publish = |seqs: Range<u64>| {
        let (url, topic) = (brokers.pulsar.clone(), topics.source.clone());
        async move {
            sluice_tests::pulsar::publish_to_pulsar_unbatched(&url, &topic, &keyed_records(seqs))
                .await
                .unwrap();
        }
    };
    // Phases of the stream: 0 before the deploy, 1 published while it swaps, 2 once every
    // instance runs v2, 3 while the rollback swaps, 4 once every instance is back on v1.
    const PHASE: u64 = 2_000;
    let phase = |n: u64| n * PHASE..(n + 1) * PHASE;
    let through = |n: u64| (0..(n + 1) * PHASE).collect::<BTreeSet<u64>>();
    publish(phase(0)).await;
    read_until_seqs(&brokers, &topics.output, &through(0)).await;

    let streaming = tokio::spawn(publish(phase(1)));
    let deploy = admin_command(
        &["deploy", PIPELINE, VERSION_STAMP_V2, "--transform", STAMP],
        &instances[0].api,
        None,
    )
    .await;
    assert_succeeded(&deploy, "sluice deploy (to a)");
    wait_until_every_instance_runs(&instances, &v2).await;
    streaming.await.unwrap();
    let status_v2 = wait_until_status_lists(&instances[2].api, 3, &v2).await;
    eprintln!("after one deploy to a, `sluice status` through c:\n{status_v2}");
    publish(phase(2)).await;
    read_until_seqs(&brokers, &topics.output, &through(2)).await;
    // An instance started now (a scale-up, a restarted pod) reads the topic before it runs:
    // it starts on v2, not on its config's v1.
    let late = start_instance("d").await;
    let running = late.api.get_json("/v1/status").await;
    assert_eq!(
        running["pipelines"][0]["transforms"][0]["digest"],
        v2.as_str(),
        "a new instance starts on the deployed version: {running}"
    );
    instances.push(late);

    let streaming = tokio::spawn(publish(phase(3)));
    let rollback = admin_command(
        &["rollback", PIPELINE, "--transform", STAMP],
        &instances[1].api,
        None,
    )
    .await;
    assert_succeeded(&rollback, "sluice rollback (to b)");
    wait_until_every_instance_runs(&instances, &v1).await;
    streaming.await.unwrap();
    let status_v1 = wait_until_status_lists(&instances[0].api, 4, &v1).await;
    eprintln!(
        "after one rollback to b, `sluice status` through a (d started after the deploy):\n{status_v1}"
    );
    publish(phase(4)).await;
    let all = through(4);
    let output = read_until_seqs(&brokers, &topics.output, &all).await;
    // A component the topic cannot hold is refused, saying why, before anything changes.
    let oversized = vec![0_u8; sluice_runtime::shared_deployments::MAX_ENTRY_BYTES + 1];
    let (refused, answer) = instances[2]
        .api
        .deploy(PIPELINE, STAMP, oversized, None)
        .await;
    assert_eq!(refused, 413, "{answer}");
    let reason = answer["error"].as_str().unwrap_or_default();
    assert!(reason.contains("deployments topic"), "{reason}");
    eprintln!("an oversized component: {refused} {reason}");
    wait_until_every_instance_runs(&instances, &v1).await;
    let mut received = Vec::new();
    for instance in &instances {
        let status = instance.api.get_json("/v1/status").await;
        let count = &status["pipelines"][0]["counters"]["received"];
        received.push(format!("{} {count}", instance.name));
    }
    eprintln!("records each instance received: {}", received.join(", "));
    for instance in &mut instances {
        instance.process.terminate_and_wait_success();
    }

    let distinct = report_counts("one deploy, four instances", &output, &all);
    assert_eq!(distinct, all, "no record lost");
    assert_per_key_order(&output);
    let mut by_phase: BTreeMap<(u64, String), usize> = BTreeMap::new();
    let mut sorted: Vec<&KafkaRecord> = output.iter().collect();
    sorted.sort_by_key(|r| (r.partition, r.offset));
    // Per key (one instance transforms a key while the instances stay), the swap happens once:
    // (phase, version) never goes back along the key's records.
    let mut last_of_key: HashMap<&str, (u64, String)> = HashMap::new();
    for record in sorted {
        assert_eq!(
            record.header_count(VERSION_HEADER),
            1,
            "transformed by exactly one version: {record:?}"
        );
        let version = record.header(VERSION_HEADER).unwrap().to_owned();
        let phase = seq_of(record) / PHASE;
        *by_phase.entry((phase, version.clone())).or_default() += 1;
        let rank = |phase: u64, version: &str| match (phase, version) {
            (0, _) => 0,
            (1, "1") => 1,
            (1, _) | (2, _) => 2,
            (3, "2") => 3,
            _ => 4,
        };
        let key = record.key_str().unwrap();
        if let Some((last_phase, last_version)) = last_of_key.get(key) {
            assert!(
                rank(*last_phase, last_version) <= rank(phase, &version),
                "key {key}: version {version} (phase {phase}) after {last_version} (phase {last_phase})"
            );
        }
        last_of_key.insert(key, (phase, version));
    }
    eprintln!(
        "outputs by (phase, version): {by_phase:?} (0: before the deploy, 1: during it, 2: after \
         it, 3: during the rollback, 4: after it)"
    );
    for ((phase, version), count) in &by_phase {
        let expected = match phase {
            0 | 4 => Some("1"),
            2 => Some("2"),
            _ => None,
        };
        if let Some(expected) = expected {
            assert_eq!(
                version, expected,
                "{count} outputs of phase {phase} carry version {version}"
            );
        }
    }
}
