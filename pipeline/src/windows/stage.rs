//! One window stage over one writer scope's state: takes records in the scope's source order,
//! keeps each key's open windows and the scope's watermark in the scope's state (namespace
//! `w:<name>`), and emits a result record for each window the watermark closes.
//!
//! - **Watermark**: the highest event time the stage has taken in this scope, in source
//!   order. A window `[start, end)` closes once `end + lateness_ms <= watermark`; a record
//!   whose every window is closed is late.
//! - **Sessions** merge before the lateness check: a record inside an open session joins it,
//!   even if its own `[t, t + gap)` alone would be closed.
//! - **State layout**: one entry per record key (`0x01` + key, or `0x02` for records without a
//!   key) holding that key's open windows (and, for sliding windows, its recent records), and
//!   one under the reserved key `0x00` with the watermark.
//! - **Close index**: in memory only, derived from the state — which keys have a window closing
//!   when — so closing visits only the keys due. It is built from the state the first time a
//!   scope is used (after a restore too: whoever restores a scope's state drops its index).

use std::collections::BTreeSet;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sluice_record::{Header, OutputRecord};

use super::aggregate::{Accumulator, NumberField};
use super::settings::{WindowKind, WindowSettings};
use crate::state::ScopeState;

/// The header naming the stage a result comes from.
pub const WINDOW_HEADER: &str = "sluice-window";
/// The header with a result's window start (inclusive), in ms of event time, as decimal text.
pub const WINDOW_START_HEADER: &str = "sluice-window-start";
/// The header with a result's window end (exclusive), in ms of event time, as decimal text.
pub const WINDOW_END_HEADER: &str = "sluice-window-end";

/// The reserved key of a stage's progress.
const PROGRESS_KEY: &[u8] = &[0];
const KEYED: u8 = 1;
const UNKEYED: u8 = 2;

/// A stage's progress through its scope's records.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Progress {
    watermark: Option<i64>,
}

/// Which keys (state keys) have an open window closing at which watermark, soonest first.
pub(crate) type CloseIndex = BTreeSet<(i64, Bytes)>;

/// One key's open windows, by start.
#[derive(Debug, Default, Serialize, Deserialize)]
struct KeyWindows {
    open: Vec<OpenWindow>,
    /// Sliding windows: the key's records that a window not yet closed may still need.
    recent: Vec<(i64, Vec<u8>)>,
}

#[derive(Debug, Serialize, Deserialize)]
struct OpenWindow {
    start: i64,
    end: i64,
    acc: Accumulator,
}

/// What became of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Taken {
    /// Added to at least one open window.
    InWindow,
    /// Every window it belongs to is closed (or it has no event time).
    Late,
}

/// A window stage, as configured.
pub(crate) struct WindowStage {
    pub(crate) settings: WindowSettings,
    namespace: String,
    field: NumberField,
}

impl WindowStage {
    pub(crate) fn new(settings: WindowSettings) -> Self {
        Self {
            namespace: settings.namespace(),
            field: NumberField::new(settings.field.clone()),
            settings,
        }
    }

    /// Takes `record` into its windows in `state`, and appends the results of the windows
    /// this closes to `results`.
    pub(crate) fn take(
        &self,
        state: &mut ScopeState,
        index: &mut Option<CloseIndex>,
        record: &OutputRecord,
        results: &mut Vec<OutputRecord>,
    ) -> Taken {
        let Some(time) = record.timestamp_ms else {
            return Taken::Late;
        };
        let index = index.get_or_insert_with(|| self.close_index(state));
        let mut progress: Progress = self.load(state, PROGRESS_KEY).unwrap_or_default();
        let group = group_key(record.key.as_deref());
        let mut windows: KeyWindows = self.load(state, &group).unwrap_or_default();
        let closing_before: Vec<i64> = windows.open.iter().map(|w| self.close_at(w.end)).collect();
        let value = record.value.as_deref().unwrap_or_default();
        let number = (self.settings.aggregate.is_numeric())
            .then(|| self.field.read(value))
            .flatten();
        let closed = |end: i64| progress.watermark.is_some_and(|w| self.close_at(end) <= w);
        let mut taken = false;
        match self.settings.kind {
            WindowKind::Tumbling | WindowKind::Hopping => {
                for (start, end) in self.fixed_spans(time) {
                    if closed(end) {
                        continue;
                    }
                    let window = open_window(&mut windows.open, start, end, self);
                    window.acc.add(time, value, number);
                    taken = true;
                }
            }
            WindowKind::Sliding => {
                let size = self.settings.size_ms.unwrap_or(1) as i64;
                for window in windows.open.iter_mut() {
                    if window.start <= time && time < window.end && !closed(window.end) {
                        window.acc.add(time, value, number);
                        taken = true;
                    }
                }
                let (start, end) = (time.saturating_sub(size), time.saturating_add(1));
                let exists = windows
                    .open
                    .iter()
                    .any(|w| (w.start, w.end) == (start, end));
                if !exists && !closed(end) {
                    let mut acc = Accumulator::new(self.settings.aggregate);
                    for (at, earlier) in &windows.recent {
                        if start <= *at && *at <= time {
                            let number = (self.settings.aggregate.is_numeric())
                                .then(|| self.field.read(earlier))
                                .flatten();
                            acc.add(*at, earlier, number);
                        }
                    }
                    acc.add(time, value, number);
                    let at = windows
                        .open
                        .partition_point(|w| (w.start, w.end) < (start, end));
                    windows.open.insert(at, OpenWindow { start, end, acc });
                    taken = true;
                }
                if taken {
                    windows.recent.push((time, value.to_vec()));
                }
            }
            WindowKind::Session => {
                let gap = self.settings.gap_ms.unwrap_or(1) as i64;
                let (mut start, mut end) = (time, time.saturating_add(gap));
                // Sessions of a key never overlap, so one pass finds every one it joins.
                let (joined, kept): (Vec<OpenWindow>, Vec<OpenWindow>) = (windows.open)
                    .drain(..)
                    .partition(|w| w.start < end && time < w.end);
                for window in &joined {
                    start = start.min(window.start);
                    end = end.max(window.end);
                }
                windows.open = kept;
                if closed(end) {
                    // Put back what was drained: the record changes nothing.
                    windows.open.extend(joined);
                    windows.open.sort_by_key(|w| w.start);
                } else {
                    let mut acc = Accumulator::new(self.settings.aggregate);
                    let mut added = false;
                    for window in joined {
                        if !added && window.start > time {
                            acc.add(time, value, number);
                            added = true;
                        }
                        acc.merge(window.acc);
                    }
                    if !added {
                        acc.add(time, value, number);
                    }
                    let at = windows.open.partition_point(|w| w.start < start);
                    windows.open.insert(at, OpenWindow { start, end, acc });
                    taken = true;
                }
            }
        }
        if !taken {
            return Taken::Late;
        }
        let watermark = progress.watermark.map_or(time, |w| w.max(time));
        progress.watermark = Some(watermark);
        for close in closing_before {
            index.remove(&(close, group.clone()));
        }
        for window in &windows.open {
            index.insert((self.close_at(window.end), group.clone()));
        }
        self.prune_recent(&mut windows, watermark);
        self.store(state, group, &windows);
        self.close_due(state, index, watermark, results);
        self.store(state, Bytes::from_static(PROGRESS_KEY), &progress);
        Taken::InWindow
    }

    /// The close index of what `state` holds.
    fn close_index(&self, state: &ScopeState) -> CloseIndex {
        (state.entries(&self.namespace))
            .filter(|(key, _)| key.as_ref() != PROGRESS_KEY)
            .filter_map(|(key, value)| {
                let windows: KeyWindows = postcard::from_bytes(value).ok()?;
                Some((key.clone(), windows))
            })
            .flat_map(|(group, windows)| {
                (windows.open.into_iter())
                    .map(move |w| (self.close_at(w.end), group.clone()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Sliding windows: forgets the records no window still open or yet to come can hold (a
    /// record is in windows ending up to `size` after it).
    fn prune_recent(&self, windows: &mut KeyWindows, watermark: i64) {
        if self.settings.kind == WindowKind::Sliding {
            let size = self.settings.size_ms.unwrap_or(0) as i64;
            let horizon = size + 1 + self.settings.lateness_ms as i64;
            (windows.recent).retain(|(at, _)| at.saturating_add(horizon) > watermark);
        }
    }

    /// When a window ending at `end` closes, in watermark time.
    fn close_at(&self, end: i64) -> i64 {
        end.saturating_add(self.settings.lateness_ms as i64)
    }

    /// Tumbling and hopping: the windows holding `time`, oldest first.
    fn fixed_spans(&self, time: i64) -> Vec<(i64, i64)> {
        let size = self.settings.size_ms.unwrap_or(1) as i64;
        let advance = self.settings.advance_ms.map_or(size, |a| a as i64);
        let last_start = time.div_euclid(advance) * advance;
        let mut spans: Vec<(i64, i64)> = (0..)
            .map(|k| last_start - k * advance)
            .take_while(|start| start + size > time)
            .map(|start| (start, start + size))
            .collect();
        spans.reverse();
        spans
    }

    /// Emits and forgets every window the watermark closed, ordered by end, start and key.
    fn close_due(
        &self,
        state: &mut ScopeState,
        index: &mut CloseIndex,
        watermark: i64,
        results: &mut Vec<OutputRecord>,
    ) {
        let mut groups = BTreeSet::new();
        while index.first().is_some_and(|(close, _)| *close <= watermark) {
            let (_, group) = index.pop_first().expect("just seen");
            groups.insert(group);
        }
        let mut due = Vec::new();
        for group in groups {
            let Some(mut windows) = self.load::<KeyWindows>(state, &group) else {
                continue;
            };
            let (closed, open): (Vec<OpenWindow>, Vec<OpenWindow>) = (windows.open)
                .drain(..)
                .partition(|w| self.close_at(w.end) <= watermark);
            windows.open = open;
            self.prune_recent(&mut windows, watermark);
            if windows.open.is_empty() && windows.recent.is_empty() {
                state.delete(&self.namespace, &group);
            } else {
                self.store(state, group.clone(), &windows);
            }
            due.extend(
                closed
                    .into_iter()
                    .map(|w| (w.end, w.start, group.clone(), w.acc)),
            );
        }
        due.sort_by(|a, b| (a.0, a.1, &a.2).cmp(&(b.0, b.1, &b.2)));
        results.extend(
            due.into_iter()
                .map(|(end, start, group, acc)| self.result(&group, start, end, &acc)),
        );
    }

    fn result(&self, group: &[u8], start: i64, end: i64, acc: &Accumulator) -> OutputRecord {
        let key = match group.split_first() {
            Some((&KEYED, key)) => Some(Bytes::copy_from_slice(key)),
            _ => None,
        };
        OutputRecord {
            key,
            value: Some(Bytes::from(acc.emit())),
            headers: vec![
                Header::new(WINDOW_HEADER, self.settings.name.as_bytes()),
                Header::new(WINDOW_START_HEADER, start.to_string()),
                Header::new(WINDOW_END_HEADER, end.to_string()),
            ],
            // The latest event time the window holds.
            timestamp_ms: Some(end - 1),
            topic: self.settings.topic.clone(),
        }
    }

    fn load<T: for<'de> Deserialize<'de>>(&self, state: &ScopeState, key: &[u8]) -> Option<T> {
        let bytes = state.get(&self.namespace, key)?;
        match postcard::from_bytes(bytes) {
            Ok(value) => Some(value),
            Err(error) => {
                // Only another version's layout could do this; starting over beats stopping.
                tracing::warn!(window = %self.settings.name, %error, "unreadable window state; ignored");
                None
            }
        }
    }

    fn store<T: Serialize>(&self, state: &mut ScopeState, key: Bytes, value: &T) {
        let bytes = postcard::to_allocvec(value).expect("window state serialises");
        state.put(&self.namespace, key, Bytes::from(bytes));
    }
}

/// The state key of a record key's windows.
fn group_key(key: Option<&[u8]>) -> Bytes {
    match key {
        Some(key) => {
            let mut group = Vec::with_capacity(key.len() + 1);
            group.push(KEYED);
            group.extend_from_slice(key);
            Bytes::from(group)
        }
        None => Bytes::from_static(&[UNKEYED]),
    }
}

/// The open window `[start, end)` of a key, created empty if needed.
fn open_window<'w>(
    open: &'w mut Vec<OpenWindow>,
    start: i64,
    end: i64,
    stage: &WindowStage,
) -> &'w mut OpenWindow {
    let at = open.partition_point(|w| (w.start, w.end) < (start, end));
    if open
        .get(at)
        .is_none_or(|w| (w.start, w.end) != (start, end))
    {
        let acc = Accumulator::new(stage.settings.aggregate);
        open.insert(at, OpenWindow { start, end, acc });
    }
    &mut open[at]
}
