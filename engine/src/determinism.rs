//! A deterministic sandbox for exactly-once: a guest that reads clocks or random gets values
//! that depend only on the record it is transforming, so a record replayed after a crash
//! yields the same outputs as the first time (docs/delivery-guarantees.md, "Exactly-once").
//!
//! Per record: the wall clock reads the record's event time (else publish time), the
//! monotonic clock starts at 0 and moves 1 µs per reading, and `wasi:random/random` and
//! `wasi:random/insecure` stream from a ChaCha generator seeded with a hash of the record's
//! source identity. `wasi:random/insecure-seed` is a constant. Only components that import
//! clocks or random need this. Most of them import clocks or random without reading them per
//! record (a language's standard library links them), so a batch is first called as one with
//! the inputs *watched*: if the guest read none of them, the batch's outputs do not depend on
//! them and stand; if it read one, they are discarded and the records are called one at a time,
//! each pinned to its record (see `TransformInstance::run`).

use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chacha20::ChaCha20Rng;
use rand_core::{Rng, SeedableRng, TryRng};
use sha2::{Digest, Sha256};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtxBuilder};

use sluice_record::InputRecord;

/// How far the pinned monotonic clock moves per reading.
const MONOTONIC_STEP_NS: u64 = 1_000;

/// WASI interfaces whose answers change from one call to the next unless pinned.
const NONDETERMINISTIC_IMPORTS: [&str; 4] = [
    "wasi:clocks/wall-clock@",
    "wasi:clocks/monotonic-clock@",
    "wasi:random/random@",
    "wasi:random/insecure@",
];

/// Whether a component importing `import` can tell two runs of the same record apart.
pub(crate) fn is_nondeterministic(import: &str) -> bool {
    NONDETERMINISTIC_IMPORTS
        .iter()
        .any(|prefix| import.starts_with(prefix))
}

/// The record-pinned clocks and random of one transform, shared by its instances' WASI
/// contexts.
#[derive(Clone)]
pub(crate) struct PinnedInputs(Arc<Mutex<Pinned>>);

struct Pinned {
    wall: Duration,
    monotonic_ns: u64,
    random: ChaCha20Rng,
    /// Watching a batch call: whether the guest read a clock or random during it.
    watch: Option<bool>,
}

impl PinnedInputs {
    pub(crate) fn new() -> Self {
        Self(Arc::new(Mutex::new(Pinned {
            wall: Duration::ZERO,
            monotonic_ns: 0,
            random: ChaCha20Rng::from_seed([0; 32]),
            watch: None,
        })))
    }

    /// Watches the next call: [`Self::stop_watching`] tells whether the guest read a clock
    /// or random meanwhile (what it read then is of no record: its outputs must be dropped).
    pub(crate) fn watch(&self) {
        self.lock().watch = Some(false);
    }

    /// Stops watching; whether the guest read a clock or random since [`Self::watch`].
    pub(crate) fn stop_watching(&self) -> bool {
        self.lock().watch.take().unwrap_or(false)
    }

    /// Pins clocks and random to `record` for the next call.
    pub(crate) fn pin(&self, record: &InputRecord) {
        let mut seed = Sha256::new();
        seed.update(record.source.topic.as_bytes());
        seed.update([0]);
        seed.update(record.source.message_id.as_bytes());
        let wall_ms = record.default_timestamp_ms().unwrap_or(0).max(0);
        let mut pinned = self.lock();
        pinned.watch = None;
        pinned.wall = Duration::from_millis(wall_ms as u64);
        pinned.monotonic_ns = 0;
        pinned.random = ChaCha20Rng::from_seed(seed.finalize().into());
    }

    /// Sets up a WASI context to read its clocks and random from here.
    pub(crate) fn install(&self, wasi: &mut WasiCtxBuilder) {
        wasi.wall_clock(PinnedWallClock(self.clone()))
            .monotonic_clock(PinnedMonotonicClock(self.clone()))
            .secure_random(PinnedRandom(self.clone()))
            .insecure_random(PinnedRandom(self.clone()))
            .insecure_random_seed(0);
    }

    fn lock(&self) -> MutexGuard<'_, Pinned> {
        self.0.lock().expect("pinned inputs lock poisoned")
    }

    /// The inputs, for a read by the guest (noted when watching).
    fn read(&self) -> MutexGuard<'_, Pinned> {
        let mut pinned = self.lock();
        if let Some(read) = pinned.watch.as_mut() {
            *read = true;
        }
        pinned
    }
}

struct PinnedWallClock(PinnedInputs);

impl HostWallClock for PinnedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }

    fn now(&self) -> Duration {
        self.0.read().wall
    }
}

struct PinnedMonotonicClock(PinnedInputs);

impl HostMonotonicClock for PinnedMonotonicClock {
    fn resolution(&self) -> u64 {
        MONOTONIC_STEP_NS
    }

    fn now(&self) -> u64 {
        let mut pinned = self.0.read();
        pinned.monotonic_ns += MONOTONIC_STEP_NS;
        pinned.monotonic_ns
    }
}

struct PinnedRandom(PinnedInputs);

impl TryRng for PinnedRandom {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(Rng::next_u32(&mut self.0.read().random))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(Rng::next_u64(&mut self.0.read().random))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        Rng::fill_bytes(&mut self.0.read().random, dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_and_random_imports_are_recognised() {
        assert!(is_nondeterministic("wasi:clocks/wall-clock@0.2.6"));
        assert!(is_nondeterministic("wasi:random/random@0.2.12"));
        assert!(!is_nondeterministic("wasi:random/insecure-seed@0.2.6"));
        assert!(!is_nondeterministic("wasi:io/streams@0.2.6"));
    }

    #[test]
    fn a_watched_call_tells_whether_the_guest_read_a_clock_or_random() {
        let inputs = PinnedInputs::new();
        inputs.watch();
        assert!(!inputs.stop_watching(), "nothing read");
        let reads: [&dyn Fn(&PinnedInputs); 3] = [
            &|inputs| {
                PinnedWallClock(inputs.clone()).now();
            },
            &|inputs| {
                PinnedMonotonicClock(inputs.clone()).now();
            },
            &|inputs| {
                Rng::next_u64(&mut PinnedRandom(inputs.clone()));
            },
        ];
        for read in reads {
            inputs.watch();
            read(&inputs);
            assert!(inputs.stop_watching(), "a read is noted");
            assert!(!inputs.stop_watching(), "once");
            read(&inputs);
            assert!(!inputs.stop_watching(), "unwatched reads are not noted");
        }
    }
}
