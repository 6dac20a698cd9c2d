//! What the host gives a transform: the `host` interface (`log`), and a WASI context that
//! grants nothing (no filesystem, network, environment or stdin; clocks and random only)
//! beyond the [`Grants`] of its config: environment variables, read-only directories.
//! Guest stdout/stderr and `log` calls become host log lines, rate-limited per instance.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::LazyLock;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use wasmtime::StoreContextMut;
use wasmtime::component::{HasSelf, Linker, Resource, ResourceTable};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{DynPollable, OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{FsPerms, HostMonotonicClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::{self, LogLevel, Transformer, v0_2};
use super::capabilities::Grants;
use super::determinism::PinnedInputs;
use super::engine::{EPOCH_TICK, EpochCount};
use super::error::{Error, boxed};
use super::limits::{GuestLimiter, Limits};
use super::state::{CallState, StateCallError};
use sluice_record::Bytes;
use sluice_record::text::{MAX_GUEST_TEXT_BYTES, cut};

/// Longest guest line kept (a `log` message, a line of stdout or stderr); the rest of a
/// longer line is dropped and counted in the line's cut marker.
const MAX_LINE_BYTES: usize = MAX_GUEST_TEXT_BYTES;
/// Token bucket for guest log lines, per instance: burst and refill per second.
const LOG_BURST_LINES: f64 = 200.0;
const LOG_LINES_PER_SECOND: f64 = 100.0;
/// Stderr lines remembered per call, to explain a trap (a Rust panic message lands there).
const RECENT_STDERR_LINES: usize = 3;
/// Host resources (streams, pollables) one instance may hold at once. A transform needs a
/// handful; the cap stops a guest from growing host memory by leaking handles.
const MAX_HOST_RESOURCES: usize = 10_000;
/// The monotonic clock interface whose sleeps the host bounds (see [`linker`]).
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// The data of one transform instance's store.
pub(crate) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: GuestLimiter,
    pub(crate) log: GuestLog,
    /// When the current call's time is up; guest sleeps end there at the latest.
    pub(crate) call_deadline: Option<CallDeadline>,
    /// Keyed state: the batch it reads and the current call's changes.
    pub(crate) state: CallState,
}

/// When the current call's time is up (set by `TransformInstance::arm`).
pub(crate) struct CallDeadline {
    /// Guest sleeps end here at the latest: the call's timeout.
    pub(crate) at: Instant,
    /// The engine's epoch count by which the store's epoch deadline has certainly passed.
    pub(crate) epoch: u64,
    pub(crate) epochs: EpochCount,
}

impl HostState {
    /// A fresh state for one instance of the transform `transform` (`name@sha256:…`), given
    /// what its config grants; its clocks and random read `pinned` when given. Fails only if
    /// a granted directory cannot be opened (any more).
    pub(crate) fn new(
        transform: &str,
        limits: &Limits,
        grants: &Grants,
        pinned: Option<&PinnedInputs>,
    ) -> Result<Self, std::io::Error> {
        let log = GuestLog::new(transform);
        let mut wasi = WasiCtxBuilder::new();
        // The builder starts with no preopens, no environment, no arguments and a closed
        // stdin; sockets must be switched off explicitly. Grants add to that, read-only.
        for (name, value) in &grants.env {
            wasi.env(name, value);
        }
        for (host_path, guest_path) in &grants.read_dirs {
            wasi.preopened_dir(host_path, guest_path, FsPerms::ReadOnly)
                .map_err(|error| {
                    std::io::Error::other(format!(
                        "cannot open granted directory {}: {error}",
                        host_path.display()
                    ))
                })?;
        }
        wasi.stdout(GuestOutput {
            log: log.clone(),
            stream: Stream::Stdout,
        })
        .stderr(GuestOutput {
            log: log.clone(),
            stream: Stream::Stderr,
        })
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .monotonic_clock(ProcessClock);
        if let Some(pinned) = pinned {
            pinned.install(&mut wasi);
        }
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_HOST_RESOURCES);
        Ok(Self {
            wasi: wasi.build(),
            table,
            limiter: GuestLimiter::new(limits),
            state: CallState::new(transform_name(transform), limits.state_quota()),
            log,
            call_deadline: None,
        })
    }

    /// A pollable for a guest sleep of `duration`, cut short at the call's deadline: a
    /// blocked host call is out of the epoch's reach, so an unbounded sleep would hang the
    /// pipeline. Woken at the deadline, the guest meets the epoch check and times out.
    fn bounded_sleep(&mut self, duration: Duration) -> wasmtime::Result<Resource<DynPollable>> {
        let now = Instant::now();
        let wanted = now.checked_add(duration);
        let (until, cut_at) = match (wanted, &self.call_deadline) {
            (Some(wanted), Some(deadline)) if wanted < deadline.at => (wanted, None),
            (_, Some(deadline)) => (deadline.at, Some((deadline.epochs.clone(), deadline.epoch))),
            (Some(wanted), None) => (wanted, None),
            // Unrepresentable and no call in progress: cannot happen; do not block long.
            (None, None) => (now, None),
        };
        let sleep = self.table.push(BoundedSleep {
            until: until.into(),
            cut_at,
        })?;
        wasmtime_wasi::p2::subscribe(&mut self.table, sleep)
    }
}

/// Monotonic time for guests: nanoseconds since the first use in this process. Ours (not
/// WASI's default) so `subscribe-instant` can be bounded on the same scale.
struct ProcessClock;

static CLOCK_ORIGIN: LazyLock<Instant> = LazyLock::new(Instant::now);

impl HostMonotonicClock for ProcessClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        u64::try_from(CLOCK_ORIGIN.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A guest sleep, ready at `until`.
struct BoundedSleep {
    until: tokio::time::Instant,
    /// Set when the sleep was cut at the call's deadline: the epoch count to wait for.
    cut_at: Option<(EpochCount, u64)>,
}

#[wasmtime_wasi::async_trait]
impl Pollable for BoundedSleep {
    async fn ready(&mut self) {
        tokio::time::sleep_until(self.until).await;
        // A sleep cut at the deadline wakes the guest only once the epoch has passed the
        // store's deadline, so the guest traps as timed out on waking. Waiting for the
        // ticker (not the wall clock) matters on a loaded machine: a descheduled ticker
        // thread once let a cut sleep return early and the guest finish its record.
        if let Some((epochs, deadline)) = &self.cut_at {
            while epochs.now() < *deadline {
                tokio::time::sleep(EPOCH_TICK).await;
            }
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl bindings::sluice::transform::types::Host for HostState {}

impl bindings::sluice::transform::host::Host for HostState {
    fn log(&mut self, level: LogLevel, message: String) {
        self.log.line(Stream::Log(level), message.as_bytes());
    }
}

impl v0_2::sluice::transform::types::Host for HostState {}

impl v0_2::sluice::transform::host::Host for HostState {
    fn log(&mut self, level: v0_2::sluice::transform::types::LogLevel, message: String) {
        use v0_2::sluice::transform::types::LogLevel as Level;
        let level = match level {
            Level::Trace => LogLevel::Trace,
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        };
        self.log.line(Stream::Log(level), message.as_bytes());
    }
}

/// The transform's name in `name@sha256:…`: its state namespace does not change with its
/// version, so a deployed version keeps the state of the one it replaced.
fn transform_name(transform: &str) -> &str {
    transform
        .split_once('@')
        .map_or(transform, |(name, _)| name)
}

impl v0_2::sluice::transform::state::Host for HostState {
    fn get(&mut self, record: u32, name: Vec<u8>) -> Option<Vec<u8>> {
        self.state.get(record, &name).map(|value| value.to_vec())
    }

    fn set(
        &mut self,
        record: u32,
        name: Vec<u8>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), String>> {
        match self.state.set(record, &name, Bytes::from(value)) {
            Ok(()) => Ok(Ok(())),
            Err(StateCallError::Refused(reason)) => Ok(Err(reason)),
            Err(StateCallError::Trap(reason)) => Err(wasmtime::Error::msg(reason)),
        }
    }

    fn delete(&mut self, record: u32, name: Vec<u8>) {
        self.state.delete(record, &name);
    }
}

/// The linker every transform is instantiated with: WASI p2 (sync) plus the `host` interface
/// of both world versions.
pub(crate) fn linker(engine: &wasmtime::Engine) -> Result<Linker<HostState>, Error> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| Error::Linker(boxed(e)))?;
    Transformer::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |state| state)
        .map_err(|e| Error::Linker(boxed(e)))?;
    v0_2::Transformer::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |state| state)
        .map_err(|e| Error::Linker(boxed(e)))?;
    // Replace WASI's sleeps with ones bounded by the call's deadline.
    linker.allow_shadowing(true);
    let mut clock = linker
        .instance(MONOTONIC_CLOCK)
        .map_err(|e| Error::Linker(boxed(e)))?;
    clock
        .func_wrap(
            "subscribe-duration",
            |mut store: StoreContextMut<'_, HostState>, (nanos,): (u64,)| {
                Ok((store
                    .data_mut()
                    .bounded_sleep(Duration::from_nanos(nanos))?,))
            },
        )
        .map_err(|e| Error::Linker(boxed(e)))?;
    clock
        .func_wrap(
            "subscribe-instant",
            |mut store: StoreContextMut<'_, HostState>, (when,): (u64,)| {
                let nanos = when.saturating_sub(ProcessClock.now());
                Ok((store
                    .data_mut()
                    .bounded_sleep(Duration::from_nanos(nanos))?,))
            },
        )
        .map_err(|e| Error::Linker(boxed(e)))?;
    linker.allow_shadowing(false);
    Ok(linker)
}

/// Where a guest line came from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
    Log(LogLevel),
}

/// Turns guest output into host log lines, attributed to the transform.
#[derive(Clone)]
pub(crate) struct GuestLog(Arc<Mutex<LogState>>);

struct LogState {
    transform: String,
    stdout_partial: PartialLine,
    stderr_partial: PartialLine,
    recent_stderr: VecDeque<String>,
    tokens: f64,
    refilled_at: Instant,
    suppressed: u64,
}

impl GuestLog {
    fn new(transform: &str) -> Self {
        Self(Arc::new(Mutex::new(LogState {
            transform: transform.to_owned(),
            stdout_partial: PartialLine::default(),
            stderr_partial: PartialLine::default(),
            recent_stderr: VecDeque::new(),
            tokens: LOG_BURST_LINES,
            refilled_at: Instant::now(),
            suppressed: 0,
        })))
    }

    fn lock(&self) -> MutexGuard<'_, LogState> {
        // A poisoned lock only means a log line was lost; the state stays consistent.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Call before each call into the guest.
    pub(crate) fn begin_call(&self) {
        self.lock().recent_stderr.clear();
    }

    /// Call after each call into the guest: flushes unterminated output.
    pub(crate) fn end_call(&self) {
        let mut state = self.lock();
        for stream in [Stream::Stdout, Stream::Stderr] {
            let partial = std::mem::take(state.partial(stream));
            if !partial.is_empty() {
                state.emit(stream, &partial.kept, partial.cut);
            }
        }
        if state.suppressed > 0 && state.take_token() {
            let suppressed = std::mem::take(&mut state.suppressed);
            tracing::warn!(
                target: "sluice::guest",
                transform = %state.transform,
                suppressed,
                "guest log lines suppressed by the rate limit"
            );
        }
    }

    /// The last few stderr lines of the current call, joined, if any.
    pub(crate) fn recent_stderr(&self) -> Option<String> {
        let state = self.lock();
        if state.recent_stderr.is_empty() {
            return None;
        }
        Some(
            state
                .recent_stderr
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(" "),
        )
    }

    /// A complete message (a `log` call).
    pub(crate) fn line(&self, stream: Stream, message: &[u8]) {
        let kept = &message[..message.len().min(MAX_LINE_BYTES)];
        self.lock().emit(stream, kept, message.len() - kept.len());
    }

    /// Raw bytes written to stdout or stderr: split into lines; of a line longer than
    /// [`MAX_LINE_BYTES`] only the start is kept, and the rest is counted.
    fn write(&self, stream: Stream, bytes: &[u8]) {
        let mut state = self.lock();
        for piece in bytes.split_inclusive(|&b| b == b'\n') {
            let (text, ends_line) = match piece.strip_suffix(b"\n") {
                Some(text) => (text, true),
                None => (piece, false),
            };
            state.partial(stream).push(text);
            if ends_line {
                let line = std::mem::take(state.partial(stream));
                state.emit(stream, &line.kept, line.cut);
            }
        }
    }
}

/// The unterminated line of a stream: its first [`MAX_LINE_BYTES`], and how many bytes of it
/// were dropped.
#[derive(Default)]
struct PartialLine {
    kept: Vec<u8>,
    cut: usize,
}

impl PartialLine {
    fn push(&mut self, bytes: &[u8]) {
        let take = bytes.len().min(MAX_LINE_BYTES - self.kept.len());
        self.kept.extend_from_slice(&bytes[..take]);
        self.cut += bytes.len() - take;
    }

    fn is_empty(&self) -> bool {
        self.kept.is_empty() && self.cut == 0
    }
}

impl LogState {
    fn partial(&mut self, stream: Stream) -> &mut PartialLine {
        match stream {
            Stream::Stderr => &mut self.stderr_partial,
            Stream::Stdout | Stream::Log(_) => &mut self.stdout_partial,
        }
    }

    fn take_token(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled_at).as_secs_f64();
        self.refilled_at = now;
        self.tokens = (self.tokens + elapsed * LOG_LINES_PER_SECOND).min(LOG_BURST_LINES);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Logs one guest line: `message`, of which `cut_before` further bytes were dropped
    /// already, within [`MAX_LINE_BYTES`] with a marker when cut.
    fn emit(&mut self, stream: Stream, message: &[u8], cut_before: usize) {
        let text = String::from_utf8_lossy(message);
        let text = text.trim_end_matches('\r');
        if text.trim().is_empty() && cut_before == 0 {
            return;
        }
        let text = cut(text, cut_before, MAX_LINE_BYTES);
        if let Stream::Stderr = stream
            && !text.starts_with("note: run with `RUST_BACKTRACE=1`")
        {
            if self.recent_stderr.len() == RECENT_STDERR_LINES {
                self.recent_stderr.pop_front();
            }
            self.recent_stderr.push_back(text.trim().to_owned());
        }
        if !self.take_token() {
            self.suppressed += 1;
            return;
        }
        let transform = self.transform.as_str();
        macro_rules! guest_event {
            ($level:expr, $stream:expr) => {
                tracing::event!(target: "sluice::guest", $level, transform, stream = $stream, "{text}")
            };
        }
        match stream {
            Stream::Stdout => guest_event!(tracing::Level::INFO, "stdout"),
            Stream::Stderr => guest_event!(tracing::Level::WARN, "stderr"),
            Stream::Log(LogLevel::Trace) => guest_event!(tracing::Level::TRACE, "log"),
            Stream::Log(LogLevel::Debug) => guest_event!(tracing::Level::DEBUG, "log"),
            Stream::Log(LogLevel::Info) => guest_event!(tracing::Level::INFO, "log"),
            Stream::Log(LogLevel::Warn) => guest_event!(tracing::Level::WARN, "log"),
            Stream::Log(LogLevel::Error) => guest_event!(tracing::Level::ERROR, "log"),
        }
    }
}

/// The guest's stdout or stderr. Writes complete synchronously into the [`GuestLog`], so
/// the lines of a call are logged by the time the call returns.
#[derive(Clone)]
struct GuestOutput {
    log: GuestLog,
    stream: Stream,
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.log.write(self.stream, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always ready: lines beyond the rate limit are dropped, never blocked on.
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.log.write(self.stream, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_split_into_lines_and_stderr_remembered() {
        let log = GuestLog::new("t@sha256:0");
        log.begin_call();
        log.write(Stream::Stderr, b"thread panicked at src/lib.rs:1:1:\nboom");
        log.write(
            Stream::Stderr,
            b"!\nnote: run with `RUST_BACKTRACE=1` for a backtrace\n",
        );
        assert_eq!(
            log.recent_stderr().as_deref(),
            Some("thread panicked at src/lib.rs:1:1: boom!")
        );
        log.write(Stream::Stderr, b"unterminated");
        log.end_call();
        assert_eq!(
            log.recent_stderr().as_deref(),
            Some("thread panicked at src/lib.rs:1:1: boom! unterminated")
        );
        log.begin_call();
        assert_eq!(log.recent_stderr(), None);
    }

    #[test]
    fn a_long_line_keeps_its_start_and_says_how_much_was_cut() {
        let log = GuestLog::new("t@sha256:0");
        let total = MAX_LINE_BYTES * 2 + 10;
        log.write(Stream::Stderr, &vec![b'x'; total - 100]);
        log.write(Stream::Stderr, &[b'x'; 100]);
        log.end_call();
        let state = log.lock();
        assert_eq!(state.recent_stderr.len(), 1);
        let line = &state.recent_stderr[0];
        assert!(line.len() <= MAX_LINE_BYTES, "{}", line.len());
        let kept = line.find('…').unwrap();
        assert!(
            line.ends_with(&format!("[{} bytes cut]", total - kept)),
            "{line}"
        );
    }

    #[test]
    fn a_huge_log_message_is_cut_to_the_bound() {
        let log = GuestLog::new("t@sha256:0");
        log.begin_call();
        log.line(Stream::Stderr, &vec![b'y'; 50 << 20]);
        let line = log.recent_stderr().unwrap();
        assert!(line.len() <= MAX_LINE_BYTES);
        assert!(line.ends_with("bytes cut]"), "{}", &line[line.len() - 40..]);
    }

    #[test]
    fn the_rate_limit_counts_what_it_drops() {
        let log = GuestLog::new("t@sha256:0");
        for _ in 0..(LOG_BURST_LINES as usize + 50) {
            log.line(Stream::Log(LogLevel::Info), b"spam");
        }
        assert!(
            log.lock().suppressed >= 45,
            "suppressed {}",
            log.lock().suppressed
        );
    }
}
