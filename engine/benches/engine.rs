//! The transform engine alone, no brokers: time per batch of `TransformChain::run_batch` for
//! batches of 1, 10, 100 and 1000 records (100-byte JSON values, keyed, one header), for
//!
//! - `empty-chain`: a pipeline without transforms (what pass-through costs the host),
//! - `identity-guest` / `redact-guest`: the `examples/passthrough` and `examples/redact`
//!   components (`fields = "email,phone"`), built with the SDK on `sluice:transform@0.2.0`
//!   (flat batches),
//! - `identity-guest-0.1`: the identity transform on `sluice:transform@0.1.0` (lists of
//!   records; `tests/guests/identity-v0-1`, raw `wit-bindgen`),
//! - `identity-native` / `redact-native`: a Rust closure doing the same work per record (for
//!   redact: the same config lookup, serde_json parse, masking walk, re-serialization and
//!   count header as `examples/redact`).
//!
//! - `identity-python` / `identity-js` and their `-0.1` twins, at batch 100 only, when
//!   `$SLUICE_BENCH_LANGUAGE_GUESTS` names a directory holding `identity_py.wasm`,
//!   `identity_py_v0_1.wasm`, `identity_js.wasm` and `identity_js_v0_1.wasm`: the identity
//!   transform in Python and JavaScript (`bench/languages/`) built with the SDKs on 0.2.0 and
//!   on 0.1.0 (`bench/languages.sh` builds all four and runs these cases).
//!
//! Criterion's time per iteration divided by the batch size is the time per record;
//! `bench/report.py` turns `<target>/criterion/*/*/new/estimates.json` into that table.
//!
//! The guests are read from `$SLUICE_BENCH_GUESTS` (a directory holding `passthrough.wasm`,
//! `redact.wasm` and `identity_v0_1.wasm`), else from `<target dir>/guests/wasm32-wasip2/release`
//! — where `tests/build.rs` and `bench/run.sh` build them — and are built there (release,
//! `wasm32-wasip2`) when missing.
//!
//! `cargo bench -p sluice-engine --bench engine` measures; `cargo test -p sluice-engine --bench engine` runs
//! every case once (a smoke test: it fails when the engine or a guest is broken).
//! With `SLUICE_BENCH_ALLOCATIONS=1` the binary prints heap allocations per record at batch 100
//! for each case instead (a counting global allocator: a figure the machine's load does not
//! change, so before/after compare across builds of any profile).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::Value;
use sluice_engine::{
    Capabilities, Limits, RecordOutcome, TransformChain, TransformEngine, TransformSpec,
};
use sluice_record::{Header, InputRecord, OutputRecord, SourceInfo, SourceKind};

const BATCH_SIZES: [usize; 4] = [1, 10, 100, 1000];
const VALUE_BYTES: usize = 100;
const REDACT_FIELDS: &str = "email,phone";
const REDACTED_HEADER: &str = "sluice-redacted";
const MASK: &str = "***";

/// Keyed records with a JSON value of exactly `VALUE_BYTES` bytes holding both masked fields.
fn records(count: usize) -> Vec<InputRecord> {
    (0..count)
        .map(|seq| {
            let mut value = format!(
                r#"{{"seq":{seq},"sent_ns":1763768000000000000,"email":"u{seq}@example.com","phone":"+1-555-0100","pad":""}}"#
            );
            let pad = VALUE_BYTES.saturating_sub(value.len());
            value.insert_str(value.len() - 2, &"x".repeat(pad));
            InputRecord {
                key: Some(format!("key-{}", seq % 64).into()),
                value: Some(value.into()),
                headers: vec![Header::new("trace", "bench")],
                event_time_ms: None,
                publish_time_ms: Some(1_763_768_000_000),
                source: SourceInfo {
                    kind: SourceKind::Other,
                    topic: "bench".into(),
                    message_id: seq.to_string().into(),
                    schema_version: None,
                },
            }
        })
        .collect()
}

/// `examples/redact`'s masking walk, on the host.
fn mask(fields: &[&str], value: &mut Value) -> usize {
    match value {
        Value::Object(object) => object
            .iter_mut()
            .map(|(name, field)| {
                if fields.contains(&name.as_str()) {
                    *field = Value::String(MASK.to_owned());
                    1
                } else {
                    mask(fields, field)
                }
            })
            .sum(),
        Value::Array(items) => items.iter_mut().map(|item| mask(fields, item)).sum(),
        _ => 0,
    }
}

/// What `examples/redact` does for one record, as a native closure would: read the field
/// list from the config, parse, mask, re-serialize, add the count header.
fn redact_native(config: &BTreeMap<String, String>, record: &InputRecord) -> RecordOutcome {
    let fields: Vec<&str> = config["fields"]
        .split(',')
        .map(str::trim)
        .filter(|field| !field.is_empty())
        .collect();
    let mut document: Value =
        serde_json::from_slice(record.value.as_deref().unwrap_or_default()).expect("JSON value");
    let masked = mask(&fields, &mut document);
    let mut output = OutputRecord::passthrough(record);
    output.value = Some(serde_json::to_vec(&document).expect("serializable").into());
    output
        .headers
        .push(Header::new(REDACTED_HEADER, masked.to_string()));
    RecordOutcome::Outputs(vec![output])
}

fn identity_native(record: &InputRecord) -> RecordOutcome {
    RecordOutcome::Outputs(vec![OutputRecord::passthrough(record)])
}

fn spec(name: &str, component: PathBuf, config: &[(&str, &str)]) -> TransformSpec {
    TransformSpec {
        name: name.into(),
        component,
        config: config
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        limits: Limits::default(),
        capabilities: Capabilities::default(),
    }
}

/// The directory holding the example guests, built there first when they are missing.
fn guests_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SLUICE_BENCH_GUESTS") {
        return PathBuf::from(dir);
    }
    // The bench runs as <target>/release/deps/engine-<hash>.
    let exe = std::env::current_exe().expect("path of the bench binary");
    let target = exe
        .ancestors()
        .nth(3)
        .expect("bench binary inside <target>/<profile>/deps");
    let guest_target = target.join("guests");
    let dir = guest_target.join("wasm32-wasip2/release");
    let guests = ["passthrough.wasm", "redact.wasm", "identity_v0_1.wasm"];
    if !guests.iter().all(|guest| dir.join(guest).is_file()) {
        build_guests(&guest_target, "../examples");
        build_guests(&guest_target, "../tests/guests");
    }
    dir
}

fn build_guests(guest_target: &Path, workspace: &str) {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join(workspace);
    eprintln!(
        "building the example guests into {} (set SLUICE_BENCH_GUESTS to use prebuilt ones)",
        guest_target.display()
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&examples)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(guest_target)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .status()
        .expect("cargo runs");
    assert!(
        status.success(),
        "building the guests in {} failed",
        examples.display()
    );
}

fn chain(engine: &TransformEngine, specs: &[TransformSpec]) -> TransformChain {
    TransformChain::new(engine, specs).unwrap_or_else(|e| {
        panic!(
            "cannot load {:?}: {:#}",
            specs.iter().map(|s| &s.component).collect::<Vec<_>>(),
            anyhow::Error::new(e)
        )
    })
}

/// Every record of `outcomes` produced exactly one output: a broken guest must not look fast.
fn check(outcomes: &[RecordOutcome], expected_header: Option<&str>) {
    for outcome in outcomes {
        let RecordOutcome::Outputs(outputs) = outcome else {
            panic!("record failed: {outcome:?}");
        };
        assert_eq!(outputs.len(), 1);
        if let Some(name) = expected_header {
            assert!(outputs[0].headers.iter().any(|h| &*h.name == name));
        }
    }
}

fn engine_benches(c: &mut Criterion) {
    let dir = guests_dir();
    let engine = TransformEngine::new(None).expect("wasmtime engine");
    let config: BTreeMap<String, String> = [("fields".to_owned(), REDACT_FIELDS.to_owned())]
        .into_iter()
        .collect();
    let mut empty = chain(&engine, &[]);
    let mut identity = chain(
        &engine,
        &[spec("identity", dir.join("passthrough.wasm"), &[])],
    );
    let mut identity_v0_1 = chain(
        &engine,
        &[spec("identity-0.1", dir.join("identity_v0_1.wasm"), &[])],
    );
    let mut redact = chain(
        &engine,
        &[spec(
            "redact",
            dir.join("redact.wasm"),
            &[("fields", REDACT_FIELDS)],
        )],
    );

    if std::env::var_os("SLUICE_BENCH_ALLOCATIONS").is_some() {
        let batch = records(100);
        let cases: [(&str, &mut dyn FnMut()); 6] = [
            ("empty-chain", &mut || drop(empty.run_batch(&batch))),
            ("identity-guest", &mut || drop(identity.run_batch(&batch))),
            ("identity-guest-0.1", &mut || {
                drop(identity_v0_1.run_batch(&batch))
            }),
            ("identity-native", &mut || {
                drop(batch.iter().map(identity_native).collect::<Vec<_>>())
            }),
            ("redact-guest", &mut || drop(redact.run_batch(&batch))),
            ("redact-native", &mut || {
                drop(
                    batch
                        .iter()
                        .map(|r| redact_native(&config, r))
                        .collect::<Vec<_>>(),
                )
            }),
        ];
        for (name, run) in cases {
            println!(
                "allocations per record at batch 100: {name}: {:.2}",
                allocations_per_record(100, run)
            );
        }
        return;
    }
    for workload in ["identity", "redact"] {
        let mut group = c.benchmark_group(workload);
        for size in BATCH_SIZES {
            let batch = records(size);
            group.throughput(Throughput::Elements(size as u64));
            if workload == "identity" {
                check(&empty.run_batch(&batch), None);
                check(&identity.run_batch(&batch), None);
                assert_eq!(
                    identity_v0_1.run_batch(&batch),
                    identity.run_batch(&batch),
                    "both identity guests pass every record through"
                );
                group.bench_with_input(
                    BenchmarkId::new("empty-chain", size),
                    &batch,
                    |b, batch| b.iter(|| empty.run_batch(black_box(batch))),
                );
                group.bench_with_input(
                    BenchmarkId::new("identity-guest", size),
                    &batch,
                    |b, batch| b.iter(|| identity.run_batch(black_box(batch))),
                );
                group.bench_with_input(
                    BenchmarkId::new("identity-guest-0.1", size),
                    &batch,
                    |b, batch| b.iter(|| identity_v0_1.run_batch(black_box(batch))),
                );
                group.bench_with_input(
                    BenchmarkId::new("identity-native", size),
                    &batch,
                    |b, batch| {
                        b.iter(|| {
                            black_box(batch)
                                .iter()
                                .map(identity_native)
                                .collect::<Vec<_>>()
                        })
                    },
                );
            } else {
                let guest = redact.run_batch(&batch);
                let native: Vec<_> = batch.iter().map(|r| redact_native(&config, r)).collect();
                check(&guest, Some(REDACTED_HEADER));
                assert_eq!(
                    guest, native,
                    "the native closure must do what the guest does"
                );
                group.bench_with_input(
                    BenchmarkId::new("redact-guest", size),
                    &batch,
                    |b, batch| b.iter(|| redact.run_batch(black_box(batch))),
                );
                group.bench_with_input(
                    BenchmarkId::new("redact-native", size),
                    &batch,
                    |b, batch| {
                        b.iter(|| {
                            black_box(batch)
                                .iter()
                                .map(|r| redact_native(&config, r))
                                .collect::<Vec<_>>()
                        })
                    },
                );
            }
        }
        group.finish();
    }
}

/// The Python and JavaScript identity guests on both world versions, at batch 100, when
/// `$SLUICE_BENCH_LANGUAGE_GUESTS` is set (building them needs componentize-py and
/// componentize-js: `bench/languages.sh`).
fn language_benches(c: &mut Criterion) {
    let Some(dir) = std::env::var_os("SLUICE_BENCH_LANGUAGE_GUESTS").map(PathBuf::from) else {
        eprintln!(
            "languages: skipped (set SLUICE_BENCH_LANGUAGE_GUESTS, or run bench/languages.sh)"
        );
        return;
    };
    let engine = TransformEngine::new(None).expect("wasmtime engine");
    let batch = records(100);
    let expected: Vec<_> = batch
        .iter()
        .map(identity_native)
        .collect::<Vec<RecordOutcome>>();
    let mut group = c.benchmark_group("languages");
    group.throughput(Throughput::Elements(batch.len() as u64));
    for (name, file) in [
        ("identity-python", "identity_py.wasm"),
        ("identity-python-0.1", "identity_py_v0_1.wasm"),
        ("identity-js", "identity_js.wasm"),
        ("identity-js-0.1", "identity_js_v0_1.wasm"),
    ] {
        let mut guest = chain(&engine, &[spec(name, dir.join(file), &[])]);
        assert_eq!(
            guest.run_batch(&batch),
            expected,
            "{name} passes every record through"
        );
        group.bench_with_input(BenchmarkId::new(name, batch.len()), &batch, |b, batch| {
            b.iter(|| guest.run_batch(black_box(batch)))
        });
    }
    group.finish();
}

/// Counts heap allocations: with `SLUICE_BENCH_ALLOCATIONS` set the bench prints allocations
/// per record at batch 100 instead of timing, a figure the machine's load does not change.
struct CountingAllocator;

static ALLOCATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { std::alloc::System.realloc(ptr, layout, size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Heap allocations (and reallocations) per record of `run` on a batch of `size`.
fn allocations_per_record(size: usize, mut run: impl FnMut()) -> f64 {
    const ROUNDS: u64 = 20;
    run();
    let before = ALLOCATIONS.load(std::sync::atomic::Ordering::Relaxed);
    for _ in 0..ROUNDS {
        run();
    }
    let after = ALLOCATIONS.load(std::sync::atomic::Ordering::Relaxed);
    (after - before) as f64 / (ROUNDS * size as u64) as f64
}

criterion_group! {
    name = benches;
    // Short by default so a full run stays within minutes; `--measurement-time` overrides.
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = engine_benches, language_benches
}
criterion_main!(benches);
