//! A hostile test guest: passes records through unless the value names a fault.
//!
//! Written against the raw `wit-bindgen` bindings (not the guest SDK) so the host's tests do
//! not depend on the SDK. Markers (the whole value, UTF-8):
//!
//! | value | behaviour |
//! |---|---|
//! | `panic` | `panic!` (traps: unreachable) |
//! | `loop` | spins forever (host epoch deadline) |
//! | `oom` | allocates until the memory limit refuses to grow |
//! | `recurse` | unbounded, non-tail recursion (wasm stack overflow) |
//! | `many` | 1,000,000 outputs |
//! | `count:N` | N copies of the record |
//! | `bytes:N` | one output whose value is N bytes |
//! | `drop` | no output (filtered) |
//! | `skip` / `dead-letter` / `fatal` | the matching `transform-error` |
//! | `log` | calls the host's `log`, then passes through |
//! | `print` | writes a line to stdout and one to stderr, then passes through |
//! | `sleep` | sleeps for an hour (host must cut the sleep at the deadline) |
//! | `env` | one output whose value is the number of environment variables it sees |
//! | `fs` | one output: `fs: allowed` if it can list `/`, else `fs: denied` |
//! | `net` | one output: `net: allowed` if it can open a TCP connection to 127.0.0.1, else `net: denied` |
//! | `open-file` | reads `/etc/hostname` and unwraps (panics, so traps, unless `/etc` is granted) |
//! | `open-socket` | connects to `127.0.0.1:9` and unwraps (panics, so traps: the network is never granted) |
//! | `read-env` | reads `$HOME` and unwraps (panics, so traps, unless `HOME` is granted) |
//! | `write-file:PATH` | writes a file at PATH and unwraps (traps: granted directories are read-only) |
//!
//! The last three pass the record through when the call succeeds; their panic message (on
//! stderr) names the denial, and the host puts it in the trap's reason.
//!
//! Config keys: `tag` (adds header `tag` to every output), `topic` (sets every output's
//! topic), `timestamp_ms` (sets every output's timestamp), `fail_init` (refuse init with this
//! reason). Any other key is refused.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use sluice::transform::host::log;
use sluice::transform::types::{Header, LogLevel, OutputRecord, TransformError};

wit_bindgen::generate!({
    path: "../../../wit/sluice-transform@0.1.0",
    world: "transformer",
});

/// What `init` configured.
#[derive(Default)]
struct Settings {
    tag: Option<String>,
    topic: Option<String>,
    timestamp_ms: Option<i64>,
}

static SETTINGS: Mutex<Option<Settings>> = Mutex::new(None);

struct FaultOnMarker;

impl Guest for FaultOnMarker {
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        let mut settings = Settings::default();
        for (key, value) in config {
            match key.as_str() {
                "tag" => settings.tag = Some(value),
                "topic" => settings.topic = Some(value),
                "timestamp_ms" => {
                    let parsed = value
                        .parse()
                        .map_err(|_| format!("timestamp_ms is not an integer: {value:?}"))?;
                    settings.timestamp_ms = Some(parsed);
                }
                "fail_init" => return Err(value),
                other => return Err(format!("unknown config key: {other}")),
            }
        }
        *SETTINGS.lock().unwrap_or_else(|e| e.into_inner()) = Some(settings);
        Ok(())
    }

    fn transform_batch(records: Vec<InputRecord>) -> Vec<RecordResult> {
        let settings = SETTINGS.lock().unwrap_or_else(|e| e.into_inner());
        let settings = settings
            .as_ref()
            .expect("transform-batch called before init");
        records
            .into_iter()
            .map(|record| transform(record, settings))
            .collect()
    }
}

fn transform(record: InputRecord, settings: &Settings) -> RecordResult {
    let marker = record
        .value
        .as_deref()
        .and_then(|v| std::str::from_utf8(v).ok())
        .unwrap_or("");
    let copies = match marker {
        "panic" => panic!("fault-on-marker: panic marker"),
        "loop" => spin_forever(),
        "oom" => exhaust_memory(),
        "recurse" => {
            recurse(0);
            1
        }
        "many" => 1_000_000,
        "drop" => 0,
        "skip" => return Err(TransformError::Skip("skip marker".into())),
        "dead-letter" => return Err(TransformError::DeadLetter("dead-letter marker".into())),
        "fatal" => return Err(TransformError::Fatal("fatal marker".into())),
        "log" => {
            log(LogLevel::Info, "log marker seen");
            1
        }
        "print" => {
            println!("fault-on-marker: stdout line");
            eprintln!("fault-on-marker: stderr line");
            1
        }
        "sleep" => {
            std::thread::sleep(std::time::Duration::from_secs(3600));
            1
        }
        "env" => {
            return Ok(vec![with_value(
                &record,
                settings,
                std::env::vars().count().to_string(),
            )]);
        }
        "fs" => {
            let verdict = if std::fs::read_dir("/").is_ok() {
                "fs: allowed"
            } else {
                "fs: denied"
            };
            return Ok(vec![with_value(&record, settings, verdict.to_owned())]);
        }
        "net" => {
            let verdict = match std::net::TcpStream::connect("127.0.0.1:9") {
                Ok(_) => "net: allowed",
                // Refused means the host let the guest try.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => "net: allowed",
                Err(_) => "net: denied",
            };
            return Ok(vec![with_value(&record, settings, verdict.to_owned())]);
        }
        "open-file" => {
            let hostname = std::fs::read_to_string("/etc/hostname").unwrap();
            std::hint::black_box(hostname);
            1
        }
        "open-socket" => {
            let stream = std::net::TcpStream::connect("127.0.0.1:9").unwrap();
            drop(stream);
            1
        }
        "read-env" => {
            let home = std::env::var("HOME").unwrap();
            std::hint::black_box(home);
            1
        }
        _ => {
            if let Some(count) = marker.strip_prefix("count:") {
                count
                    .parse()
                    .map_err(|_| TransformError::DeadLetter("bad count".into()))?
            } else if let Some(path) = marker.strip_prefix("write-file:") {
                std::fs::write(path, b"written by a guest").unwrap();
                1
            } else if let Some(size) = marker.strip_prefix("bytes:") {
                let size = size
                    .parse()
                    .map_err(|_| TransformError::DeadLetter("bad size".into()))?;
                let mut output = passthrough(&record, settings);
                output.value = Some(vec![b'x'; size]);
                return Ok(vec![output]);
            } else {
                1
            }
        }
    };
    if copies == 1_000_000 {
        // As small as an output can be, so the output limit trips before the memory limit
        // when the host allows enough memory.
        return Ok((0..copies)
            .map(|_| OutputRecord {
                key: None,
                value: None,
                headers: Vec::new(),
                timestamp_ms: None,
                topic: None,
            })
            .collect());
    }
    Ok((0..copies)
        .map(|_| passthrough(&record, settings))
        .collect())
}

fn with_value(record: &InputRecord, settings: &Settings, value: String) -> OutputRecord {
    let mut output = passthrough(record, settings);
    output.value = Some(value.into_bytes());
    output
}

fn passthrough(record: &InputRecord, settings: &Settings) -> OutputRecord {
    let mut headers = record.headers.clone();
    if let Some(tag) = &settings.tag {
        headers.push(Header {
            name: "tag".into(),
            value: tag.clone().into_bytes(),
        });
    }
    OutputRecord {
        key: record.key.clone(),
        value: record.value.clone(),
        headers,
        timestamp_ms: settings.timestamp_ms,
        topic: settings.topic.clone(),
    }
}

/// Written to after every recursive call so the call is not in tail position and the
/// compiler cannot turn the recursion into a loop.
static RECURSION_SINK: AtomicU64 = AtomicU64::new(0);

#[inline(never)]
fn recurse(depth: u64) -> u64 {
    // Never true: the guard only keeps the function from being provably infinite.
    if depth == u64::MAX - RECURSION_SINK.load(Ordering::Relaxed) {
        return depth;
    }
    let below = recurse(depth + 1);
    RECURSION_SINK.store(below ^ depth, Ordering::Relaxed);
    below.wrapping_mul(31).wrapping_add(depth)
}

fn spin_forever() -> ! {
    let mut counter = 0u64;
    loop {
        counter = std::hint::black_box(counter.wrapping_add(1));
    }
}

fn exhaust_memory() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        // Touch the memory so nothing is optimised away.
        let chunk = vec![0xA5u8; 1 << 20];
        hoard.push(std::hint::black_box(chunk));
    }
}

export!(FaultOnMarker);
