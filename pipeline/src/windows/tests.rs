//! Unit tests of the window stages: each assigner, session merging, lateness, and the order
//! results come in.

use bytes::Bytes;
use sluice_record::OutputRecord;

use super::stage::{Taken, WindowStage};
use super::*;
use crate::state::StateStore;

fn settings(kind: WindowKind) -> WindowSettings {
    WindowSettings {
        name: "w".into(),
        kind,
        size_ms: None,
        advance_ms: None,
        gap_ms: None,
        lateness_ms: 0,
        aggregate: BuiltinAggregate::Count,
        field: None,
        late: LatePolicy::Drop,
        topic: None,
    }
}

fn record(key: &str, time: i64) -> OutputRecord {
    OutputRecord {
        key: Some(Bytes::copy_from_slice(key.as_bytes())),
        value: Some(Bytes::from(time.to_string())),
        headers: Vec::new(),
        timestamp_ms: Some(time),
        topic: None,
    }
}

/// A result as `(key, start, end, value)`.
type Result = (String, i64, i64, String);

fn header(output: &OutputRecord, name: &str) -> i64 {
    let header = output.headers.iter().find(|h| &*h.name == name).unwrap();
    std::str::from_utf8(&header.value).unwrap().parse().unwrap()
}

/// Runs `records` through a stage of `settings`: the results, and how many were late.
fn run(settings: WindowSettings, records: &[(&str, i64)]) -> (Vec<Result>, usize) {
    let stage = WindowStage::new(settings);
    let mut state = ScopeState::default();
    let mut index = None;
    let mut outputs = Vec::new();
    let mut late = 0;
    for (key, time) in records {
        if stage.take(&mut state, &mut index, &record(key, *time), &mut outputs) == Taken::Late {
            late += 1;
        }
    }
    let results = outputs
        .iter()
        .map(|o| {
            (
                String::from_utf8(o.key.as_deref().unwrap().to_vec()).unwrap(),
                header(o, WINDOW_START_HEADER),
                header(o, WINDOW_END_HEADER),
                String::from_utf8(o.value.as_deref().unwrap().to_vec()).unwrap(),
            )
        })
        .collect();
    (results, late)
}

fn r(key: &str, start: i64, end: i64, value: &str) -> Result {
    (key.into(), start, end, value.into())
}

#[test]
fn tumbling_windows_close_when_the_watermark_passes_their_end() {
    let mut tumbling = settings(WindowKind::Tumbling);
    tumbling.size_ms = Some(10);
    let (results, late) = run(
        tumbling,
        &[
            ("a", 1),
            ("b", 3),
            ("a", 9),
            ("a", 10),
            ("b", 25),
            ("a", 31),
        ],
    );
    assert_eq!(
        results,
        [
            r("a", 0, 10, "2"),
            r("b", 0, 10, "1"),
            r("a", 10, 20, "1"),
            r("b", 20, 30, "1"),
        ]
    );
    assert_eq!(late, 0);
}

#[test]
fn a_record_is_late_once_its_window_closed_and_lateness_keeps_it_open() {
    let mut tumbling = settings(WindowKind::Tumbling);
    tumbling.size_ms = Some(10);
    let records = [
        ("a", 5),
        ("a", 12),
        ("a", 8),
        ("a", 15),
        ("a", 9),
        ("a", 40),
    ];
    let (results, late) = run(tumbling.clone(), &records);
    assert_eq!(late, 2, "8 and 9 come after 12 closed [0, 10)");
    assert_eq!(results, [r("a", 0, 10, "1"), r("a", 10, 20, "2")]);

    tumbling.lateness_ms = 5;
    let (results, late) = run(tumbling, &records);
    assert_eq!(
        late, 1,
        "8 is in time within 5 ms of lateness, 9 (after 15) is not"
    );
    assert_eq!(results, [r("a", 0, 10, "2"), r("a", 10, 20, "2")]);
}

#[test]
fn hopping_windows_hold_a_record_in_each_window_covering_it() {
    let mut hopping = settings(WindowKind::Hopping);
    hopping.size_ms = Some(10);
    hopping.advance_ms = Some(5);
    let (results, _) = run(hopping, &[("a", 7), ("a", 12), ("a", 100)]);
    assert_eq!(
        results,
        [r("a", 0, 10, "1"), r("a", 5, 15, "2"), r("a", 10, 20, "1")]
    );
}

#[test]
fn negative_event_times_fall_in_the_window_below_zero() {
    let mut tumbling = settings(WindowKind::Tumbling);
    tumbling.size_ms = Some(10);
    let (results, _) = run(tumbling, &[("a", -3), ("a", 50)]);
    assert_eq!(results, [r("a", -10, 0, "1")]);
}

#[test]
fn sliding_windows_end_at_each_record_and_hold_the_size_before_it() {
    let mut sliding = settings(WindowKind::Sliding);
    sliding.size_ms = Some(10);
    // Each record's window [t - 10, t] holds the records of the 10 ms before it.
    let (results, late) = run(sliding, &[("a", 5), ("a", 11), ("a", 15), ("a", 100)]);
    assert_eq!(
        results,
        [r("a", -5, 6, "1"), r("a", 1, 12, "2"), r("a", 5, 16, "3")]
    );
    assert_eq!(late, 0);
}

#[test]
fn sessions_merge_when_a_record_bridges_them() {
    let mut session = settings(WindowKind::Session);
    session.gap_ms = Some(10);
    session.lateness_ms = 100;
    let (results, late) = run(
        session,
        &[
            ("a", 0),
            ("a", 18),
            ("b", 3),
            ("a", 9),
            ("a", 200),
            ("b", 400),
        ],
    );
    // 0 and 18 are a gap apart; 9 bridges them into [0, 28).
    assert_eq!(
        results,
        [
            r("b", 3, 13, "1"),
            r("a", 0, 28, "3"),
            r("a", 200, 210, "1")
        ]
    );
    assert_eq!(late, 0);
}

#[test]
fn a_record_inside_an_open_session_joins_it_even_if_its_own_gap_closed() {
    let mut session = settings(WindowKind::Session);
    session.gap_ms = Some(10);
    // The session [0, 28) of a stays open until 28; 40 from b moves the watermark to 40…
    let (results, late) = run(
        session.clone(),
        &[("a", 0), ("a", 9), ("a", 18), ("b", 40), ("a", 5)],
    );
    assert_eq!(results, [r("a", 0, 28, "3")], "…so it closed before 5 came");
    assert_eq!(late, 1);

    let (results, late) = run(
        session,
        &[
            ("a", 0),
            ("a", 9),
            ("a", 18),
            ("b", 25),
            ("a", 5),
            ("b", 60),
        ],
    );
    assert_eq!(late, 0, "5 + gap = 15 <= 25, yet [0, 28) is open");
    assert_eq!(results, [r("a", 0, 28, "4"), r("b", 25, 35, "1")]);
}

#[test]
fn results_of_one_close_come_by_end_then_start_then_key() {
    let mut tumbling = settings(WindowKind::Tumbling);
    tumbling.size_ms = Some(10);
    let (results, _) = run(
        tumbling,
        &[("z", 1), ("y", 2), ("w", 3), ("x", 11), ("v", 50)],
    );
    assert_eq!(
        results,
        [
            r("w", 0, 10, "1"),
            r("y", 0, 10, "1"),
            r("z", 0, 10, "1"),
            r("x", 10, 20, "1"),
        ]
    );
}

#[test]
fn windows_keep_scopes_apart_and_flag_late_records_for_the_dead_letter_topic() {
    let mut tumbling = settings(WindowKind::Tumbling);
    tumbling.size_ms = Some(10);
    tumbling.late = LatePolicy::DeadLetter;
    let mut windows = Windows::new(&[tumbling], Arc::default()).unwrap();
    assert!(
        windows
            .take((0, Some(0)), &[record("a", 50)])
            .results
            .is_empty()
    );
    let other_scope = windows.take((0, Some(1)), &[record("a", 1)]);
    assert!(
        other_scope.late_in.is_empty(),
        "partition 1 has its own watermark"
    );
    let late = windows.take((0, Some(0)), &[record("a", 2)]);
    assert_eq!(late.late_in, ["w"]);
    assert!(late.dead_letter.unwrap().contains("late for window \"w\""));
}

/// Session windows (gap 10) and records of three keys whose four sessions all close by the
/// last record.
fn sessions_of_three_keys() -> (WindowSettings, [(&'static str, i64); 6]) {
    let mut session = settings(WindowKind::Session);
    session.gap_ms = Some(10);
    let records = [
        ("a", 0),
        ("b", 4),
        ("a", 8),
        ("c", 30),
        ("b", 31),
        ("a", 60),
    ];
    (session, records)
}

/// Key, start and end of each result.
fn bounds(results: &[OutputRecord]) -> Vec<(String, i64, i64)> {
    (results.iter())
        .map(|o| {
            let key = String::from_utf8(o.key.as_deref().unwrap().to_vec()).unwrap();
            (
                key,
                header(o, WINDOW_START_HEADER),
                header(o, WINDOW_END_HEADER),
            )
        })
        .collect()
}

/// The state the changes of the first `committed` records leave, as a restore from the
/// changelog builds it.
fn committed_state(changes: &[Vec<StateChange>], committed: usize) -> ScopeState {
    let mut state = ScopeState::default();
    for change in changes[..committed].iter().flatten() {
        match &change.value {
            Some(value) => state.restore(&change.namespace, change.key.clone(), value.clone()),
            None => state.delete(&change.namespace, &change.key),
        }
    }
    state.take_changes();
    state
}

#[test]
fn a_scope_restored_from_its_committed_changes_gives_the_uninterrupted_results() {
    let (session, records) = sessions_of_three_keys();
    let scope = (0, Some(3));
    let results = |windowed: Windowed| bounds(&windowed.results);

    let store = Arc::new(StateStore::default());
    let mut windows = Windows::new(std::slice::from_ref(&session), store.clone()).unwrap();
    let mut uninterrupted = Vec::new();
    let mut changes = Vec::new();
    for (key, time) in records {
        let windowed = windows.take(scope, &[record(key, time)]);
        changes.push(windowed.changes.clone());
        uninterrupted.extend(results(windowed));
    }
    assert_eq!(uninterrupted.len(), 4, "{uninterrupted:?}");
    assert!(changes.iter().all(|changes| !changes.is_empty()));

    // A crash after the third record's commit: the scope comes back with what the changelog
    // holds (a new epoch: the close index must be built again), and the records after it are
    // taken again, by the same `Windows` (a restart within the process) and by a new one.
    for fresh in [false, true] {
        store.insert(scope, committed_state(&changes, 3), None);
        if fresh {
            windows = Windows::new(std::slice::from_ref(&session), store.clone()).unwrap();
        }
        let again: Vec<(String, i64, i64)> = (records[3..].iter())
            .flat_map(|(key, time)| results(windows.take(scope, &[record(key, *time)])))
            .collect();
        // Every window closes after the third record: all four results come again.
        assert_eq!(again, uninterrupted, "fresh windows: {fresh}");
    }
}

#[test]
fn settings_name_the_key_that_is_wrong() {
    let mut tumbling = settings(WindowKind::Tumbling);
    assert_eq!(tumbling.validate().unwrap_err().0, "size_ms");
    tumbling.size_ms = Some(10);
    tumbling.gap_ms = Some(1);
    assert_eq!(tumbling.validate().unwrap_err().0, "gap_ms");
    tumbling.gap_ms = None;
    tumbling.field = Some("/x".into());
    assert_eq!(tumbling.validate().unwrap_err().0, "field");
    let mut hopping = settings(WindowKind::Hopping);
    hopping.size_ms = Some(10);
    hopping.advance_ms = Some(20);
    assert_eq!(hopping.validate().unwrap_err().0, "advance_ms");
    let mut session = settings(WindowKind::Session);
    assert_eq!(session.validate().unwrap_err().0, "gap_ms");
    session.gap_ms = Some(5);
    assert!(session.validate().is_ok());
}

#[test]
fn a_scope_restored_from_its_state_closes_the_same_windows() {
    let (session, records) = sessions_of_three_keys();
    let (uninterrupted, _) = run(session.clone(), &records);
    assert_eq!(
        uninterrupted,
        [
            r("b", 4, 14, "1"),
            r("a", 0, 18, "2"),
            r("c", 30, 40, "1"),
            r("b", 31, 41, "1")
        ]
    );

    // Before every record the scope comes back with only its state, as after a restore: the
    // close index is rebuilt from it each time.
    let stage = WindowStage::new(session);
    let mut state = ScopeState::default();
    let mut outputs = Vec::new();
    for (key, time) in records {
        stage.take(&mut state, &mut None, &record(key, time), &mut outputs);
    }
    let restored = bounds(&outputs);
    let expected: Vec<(String, i64, i64)> = (uninterrupted.into_iter())
        .map(|(key, start, end, _)| (key, start, end))
        .collect();
    assert_eq!(restored, expected);
}
