//! Windows and aggregates on the real brokers (docs/windows.md): keyed Pulsar records with
//! event times — some out of order within the allowed lateness, some late beyond it — through
//! a 1-minute tumbling count and a 30-second session count, exactly-once into Kafka. The
//! results read with `read_committed` must equal what the test computes itself from the same
//! records in source order, each exactly once; the session stage dead-letters its late
//! records, each exactly once too.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use sluice_tests::kafka::KafkaRecord;
use sluice_tests::pulsar::{PulsarRecord, publish_to_pulsar};
use sluice_tests::timeouts;

use crate::exactly_once::{KillClock, own_transactions};
use crate::support::brokers::{BrokerUse, Brokers, Topics, brokers_and_topics_for};
use crate::support::config::{pulsar_pipeline_toml, sink_toml, write_config};
use crate::support::process::SluiceProcess;
use crate::support::read::{read_all, topic_size};

const RECORDS: u64 = 100_000;
const KEYS: u64 = 50;
const MINUTE_MS: i64 = 60_000;
const SESSION_GAP_MS: i64 = 30_000;
const LATENESS_MS: i64 = 10_000;

/// One window result: stage, key, start, end, value.
type WindowResult = (String, String, i64, i64, String);

/// The records, in publish (source) order. Record `i` is nominally at `base + 100·i` ms; keys
/// take turns in bursts (a key is active in one of four 1,000-record phases), so sessions end
/// and start again; 10% come up to 8 s early (out of order, within the lateness) and 0.5% two
/// minutes early (late beyond it, unless they fall into a session still open).
fn records(base: i64) -> Vec<(String, i64)> {
    let mut random = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        random
    };
    (0..RECORDS)
        .map(|i| {
            let phase = i / 1_000;
            let key = loop {
                let key = next() % KEYS;
                if (phase + key).is_multiple_of(4) {
                    break key;
                }
            };
            let mut time = base + 100 * i as i64;
            match next() % 1_000 {
                0..5 => time -= 2 * MINUTE_MS,
                5..105 => time -= (next() % 8_000) as i64,
                _ => {}
            }
            (format!("k{key}"), time)
        })
        .collect()
}

/// The test's own computation of both stages, written apart from the runtime's: a window
/// closes once the highest event time seen reaches its end plus the lateness; a record all
/// of whose windows closed is late; a session record merges first, then is checked.
#[derive(Default)]
struct Expected {
    watermark: Option<i64>,
    minutes: BTreeMap<(i64, String), u64>,
    sessions: HashMap<String, Vec<(i64, i64, u64)>>,
    results: Vec<WindowResult>,
    late_minutes: u64,
    late_sessions: u64,
}

impl Expected {
    fn closed(&self, end: i64) -> bool {
        self.watermark.is_some_and(|w| end + LATENESS_MS <= w)
    }

    fn add(&mut self, key: &str, time: i64) {
        let start = time.div_euclid(MINUTE_MS) * MINUTE_MS;
        let minute_late = self.closed(start + MINUTE_MS);
        if minute_late {
            self.late_minutes += 1;
        } else {
            *self.minutes.entry((start, key.to_owned())).or_default() += 1;
        }

        let sessions = self.sessions.remove(key).unwrap_or_default();
        let (mut merged, mut apart) = ((time, time + SESSION_GAP_MS, 1), Vec::new());
        let mut joined = Vec::new();
        for session in sessions {
            if session.0 < time + SESSION_GAP_MS && time < session.1 {
                merged = (
                    merged.0.min(session.0),
                    merged.1.max(session.1),
                    merged.2 + session.2,
                );
                joined.push(session);
            } else {
                apart.push(session);
            }
        }
        let session_late = self.closed(merged.1);
        if session_late {
            self.late_sessions += 1;
            apart.extend(joined);
        } else {
            apart.push(merged);
        }
        self.sessions.insert(key.to_owned(), apart);

        // A late record is before the watermark: it never moves it.
        self.watermark = Some(self.watermark.map_or(time, |w| w.max(time)));
        self.close();
    }

    fn close(&mut self) {
        let Some(watermark) = self.watermark else {
            return;
        };
        let due: Vec<(i64, String)> = (self.minutes.keys())
            .filter(|(start, _)| start + MINUTE_MS + LATENESS_MS <= watermark)
            .cloned()
            .collect();
        for (start, key) in due {
            let count = self.minutes.remove(&(start, key.clone())).unwrap();
            let result = (
                "per-minute".into(),
                key,
                start,
                start + MINUTE_MS,
                count.to_string(),
            );
            self.results.push(result);
        }
        for (key, sessions) in &mut self.sessions {
            sessions.retain(|(start, end, count)| {
                let open = end + LATENESS_MS > watermark;
                if !open {
                    let result = (
                        "sessions".into(),
                        key.clone(),
                        *start,
                        *end,
                        count.to_string(),
                    );
                    self.results.push(result);
                }
                open
            });
        }
    }
}

fn header(record: &KafkaRecord, name: &str) -> String {
    let value = record
        .headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"));
    String::from_utf8(value.clone()).unwrap()
}

fn result_of(record: &KafkaRecord) -> WindowResult {
    (
        header(record, "sluice-window"),
        String::from_utf8(record.key.clone().unwrap()).unwrap(),
        header(record, "sluice-window-start").parse().unwrap(),
        header(record, "sluice-window-end").parse().unwrap(),
        String::from_utf8(record.value.clone().unwrap_or_default()).unwrap(),
    )
}

fn config(brokers: &Brokers, topics: &Topics) -> String {
    let windows = format!(
        r#"
[[pipeline.windows]]
name = "per-minute"
kind = "tumbling"
size_ms = {MINUTE_MS}
lateness_ms = {LATENESS_MS}
aggregate = "count"

[[pipeline.windows]]
name = "sessions"
kind = "session"
gap_ms = {SESSION_GAP_MS}
lateness_ms = {LATENESS_MS}
aggregate = "count"
late = "dead-letter"
"#
    );
    pulsar_pipeline_toml(
        "windows",
        &format!(
            "guarantee = \"exactly-once\"\n{}\nmax_in_flight = 2000",
            own_transactions(topics)
        ),
        "",
        brokers,
        topics,
        &format!("{windows}\n{}", sink_toml(brokers, topics, "")),
    )
}

/// Committed results and dead-letter copies, once there are `results` and `late` of them or
/// they stop growing for [`timeouts::STALL`].
async fn wait_for_results(
    brokers: &Brokers,
    topics: &Topics,
    results: usize,
    late: usize,
    log: &Path,
) -> (Vec<KafkaRecord>, Vec<KafkaRecord>) {
    let mut last = (0, Instant::now());
    loop {
        let output = read_all(brokers, &[&topics.output]).await;
        let dead = read_all(brokers, &[&topics.dead_letter]).await;
        let seen = output.len() + dead.len();
        if output.len() >= results && dead.len() >= late {
            return (output, dead);
        }
        if seen > last.0 {
            last = (seen, Instant::now());
        } else if last.1.elapsed() > timeouts::STALL {
            eprintln!(
                "results stuck at {} of {results} and {} of {late} dead letters; the run's log \
                 ends:\n{}",
                output.len(),
                dead.len(),
                tail(log)
            );
            return (output, dead);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Publishes the records, runs the pipeline with `kills` SIGKILLs mid-stream, and checks the
/// committed results and dead-letter copies against the test's own computation.
async fn windows_through_kills(test: &str, kills: u64) {
    let Some((brokers, topics)) = brokers_and_topics_for(test, 3, BrokerUse::Exclusive).await
    else {
        return;
    };
    // A day ago, whole minutes: well inside the topics' retention.
    let base = (sluice_record::now_ms() - 86_400_000).div_euclid(MINUTE_MS) * MINUTE_MS;
    let records = records(base);
    let mut expected = Expected::default();
    for (key, time) in &records {
        expected.add(key, *time);
    }
    let mut expected_results = std::mem::take(&mut expected.results);
    expected_results.sort();
    let (minutes, sessions) = expected_results.iter().fold((0, 0), |(m, s), r| {
        if r.0 == "per-minute" {
            (m + 1, s)
        } else {
            (m, s + 1)
        }
    });
    eprintln!(
        "{RECORDS} records: expecting {minutes} minute counts and {sessions} session counts; \
         late: {} for the minutes (dropped), {} for the sessions (dead-lettered)",
        expected.late_minutes, expected.late_sessions
    );

    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "sluice.toml", &config(&brokers, &topics));
    let pulsar_records: Vec<PulsarRecord> = (records.iter().enumerate())
        .map(|(seq, (key, time))| PulsarRecord {
            key: Some(key.clone()),
            value: seq.to_string().into_bytes(),
            properties: vec![("seq".into(), seq.to_string())],
            event_time_ms: Some(*time as u64),
        })
        .collect();
    publish_to_pulsar(&brokers.pulsar, &topics.source, &pulsar_records)
        .await
        .unwrap();

    let log_of = |run: u64| dir.path().join(format!("run-{run}.log"));
    let started = Instant::now();
    let mut runtime = SluiceProcess::run_logging_to(&config, &log_of(0));
    let mut clock = KillClock::new();
    // Kills spread over the first half of the results (by the output topic's size, which
    // counts aborted records too): every kill lands mid-stream.
    let step = (expected_results.len() as i64 / (2 * kills.max(1) as i64)).max(1);
    let mut written = 0;
    for kill in 1..=kills {
        let target = written + step;
        let waited = Instant::now();
        while topic_size(&brokers, &topics.output).await < target {
            assert!(
                waited.elapsed() < timeouts::STALL,
                "results stuck below {target}; the run's log ends:\n{}",
                tail(&log_of(kill - 1))
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(clock.next(Duration::ZERO, Duration::from_millis(1_500))).await;
        runtime.kill();
        written = topic_size(&brokers, &topics.output).await.max(written);
        eprintln!(
            "kill {kill} at {:.1} s: output topic at offset {written}",
            started.elapsed().as_secs_f64()
        );
        runtime = SluiceProcess::run_logging_to(&config, &log_of(kill));
    }
    let late = expected.late_sessions as usize;
    let (output, dead) = wait_for_results(
        &brokers,
        &topics,
        expected_results.len(),
        late,
        &log_of(kills),
    )
    .await;
    // A moment more: anything beyond the expected would show as a duplicate.
    tokio::time::sleep(Duration::from_secs(3)).await;
    runtime.terminate_and_wait_success();
    let output = if output.len() >= expected_results.len() {
        read_all(&brokers, &[&topics.output]).await
    } else {
        output
    };
    eprintln!(
        "{kills} kills; {} results and {} dead-letter copies committed after {:.1} s",
        output.len(),
        dead.len(),
        started.elapsed().as_secs_f64()
    );

    let mut actual: Vec<WindowResult> = output.iter().map(result_of).collect();
    actual.sort();
    let missing: Vec<&WindowResult> = (expected_results.iter())
        .filter(|r| actual.binary_search(r).is_err())
        .collect();
    let unexpected: Vec<&WindowResult> = (actual.iter())
        .filter(|r| expected_results.binary_search(r).is_err())
        .collect();
    let mut duplicates = actual.clone();
    duplicates.dedup();
    let duplicates = actual.len() - duplicates.len();
    eprintln!(
        "results: {} expected, {} committed, {} expected ones missing (first: {:?}), {} \
         committed ones not expected (first: {:?}), {duplicates} duplicates",
        expected_results.len(),
        actual.len(),
        missing.len(),
        missing.iter().take(3).collect::<Vec<_>>(),
        unexpected.len(),
        unexpected.iter().take(3).collect::<Vec<_>>(),
    );
    assert!(
        missing.is_empty() && unexpected.is_empty() && duplicates == 0,
        "window results exactly once, equal to the test's own computation"
    );

    let mut dead_seqs: Vec<String> = dead.iter().map(|r| header(r, "seq")).collect();
    dead_seqs.sort();
    let copies = dead_seqs.len();
    dead_seqs.dedup();
    eprintln!(
        "dead-lettered late records: {copies} copies of {} records (expected {late})",
        dead_seqs.len()
    );
    assert_eq!(
        (copies, dead_seqs.len()),
        (late, late),
        "each late record dead-lettered once"
    );
}

/// The windows on the real brokers, one uninterrupted run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_equal_the_tests_own_computation() {
    windows_through_kills("windows-run", 0).await;
}

/// Acceptance (issue 20): 100,000 keyed records, late and out of order, through a 1-minute
/// tumbling count and a 30-second session window, with 10 SIGKILLs of `sluice run`
/// mid-stream: the committed results equal the test's own computation, exactly once. The
/// open windows survive each kill in the scope's changelog (committed with the results) and
/// are restored before the scope's next record: in memory only, a killed run lost them
/// (measured before the durable state: 306 of 4,252 results missing, 229 unexpected).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_through_sigkills_equal_the_tests_own_computation_exactly_once() {
    windows_through_kills("windows-kills", 10).await;
}
