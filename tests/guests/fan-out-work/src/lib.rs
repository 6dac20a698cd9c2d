//! Test guest for exactly-once and parallel lanes. Every output keeps the record's key, value
//! and headers; the config switches on what a test needs:
//! - `copies = "seq"`: `1 + seq % 3` outputs per record (`seq` header), each with header
//!   `copy` = its index, so output indexes beyond 0 exist;
//! - `busy = "value"`: CPU work before answering, from none to about a million rounds, keyed
//!   on a hash of the value (the same value always costs the same);
//! - `stamp = "true"`: headers `random` (a `wasi:random` u64) and `clock` (wall-clock ms),
//!   which a deterministic sandbox pins per record; `stamp = "marked"`: only on records whose
//!   value starts with `stamp` (the others read neither);
//! - `batch = "true"`: header `batch` = how many records the call that made the output held;
//! - `instance = "<name>"`: header `instance` = the name, so a test running several instances
//!   of one config (the name comes from an environment variable) sees which one wrote what.
//!
//! Written against the raw `wit-bindgen` bindings, like the other test guests.

use std::cell::{Cell, RefCell};
use std::time::{SystemTime, UNIX_EPOCH};

use sluice::transform::types::{Header, OutputRecord};

wit_bindgen::generate!({
    path: "../../../wit/sluice-transform@0.1.0",
    world: "transformer",
});

thread_local! {
    static COPIES_BY_SEQ: Cell<bool> = const { Cell::new(false) };
    static BUSY: Cell<bool> = const { Cell::new(false) };
    static STAMP: Cell<Stamp> = const { Cell::new(Stamp::None) };
    static BATCH: Cell<bool> = const { Cell::new(false) };
    static INSTANCE: RefCell<Option<String>> = const { RefCell::new(None) };
}

#[derive(Clone, Copy, PartialEq)]
enum Stamp {
    None,
    All,
    Marked,
}

struct FanOutWork;

impl Guest for FanOutWork {
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        for (key, value) in config {
            match (key.as_str(), value.as_str()) {
                ("copies", "seq") => COPIES_BY_SEQ.set(true),
                ("busy", "value") => BUSY.set(true),
                ("stamp", "true") => STAMP.set(Stamp::All),
                ("stamp", "marked") => STAMP.set(Stamp::Marked),
                ("batch", "true") => BATCH.set(true),
                ("instance", name) => INSTANCE.set(Some(name.to_owned())),
                _ => return Err(format!("unknown config {key} = {value:?}")),
            }
        }
        Ok(())
    }

    fn transform_batch(records: Vec<InputRecord>) -> Vec<RecordResult> {
        let batch = records.len();
        records
            .into_iter()
            .map(|record| Ok(outputs(record, batch)))
            .collect()
    }
}

fn outputs(record: InputRecord, batch: usize) -> Vec<OutputRecord> {
    let copies = if COPIES_BY_SEQ.get() {
        1 + header(&record, "seq")
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
            % 3
    } else {
        1
    };
    let mut headers = record.headers.clone();
    if BUSY.get() {
        let work = busy_work(record.value.as_deref().unwrap_or_default());
        headers.push(Header {
            name: "work".into(),
            value: work.to_string().into_bytes(),
        });
    }
    let stamp = match STAMP.get() {
        Stamp::None => false,
        Stamp::All => true,
        Stamp::Marked => record
            .value
            .as_deref()
            .unwrap_or_default()
            .starts_with(b"stamp"),
    };
    if BATCH.get() {
        headers.push(Header {
            name: "batch".into(),
            value: batch.to_string().into_bytes(),
        });
    }
    if stamp {
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).expect("wasi:random answers");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        headers.push(Header {
            name: "random".into(),
            value: u64::from_le_bytes(random).to_string().into_bytes(),
        });
        headers.push(Header {
            name: "clock".into(),
            value: now.as_millis().to_string().into_bytes(),
        });
    }
    if let Some(name) = INSTANCE.with_borrow(Clone::clone) {
        headers.push(Header {
            name: "instance".into(),
            value: name.into_bytes(),
        });
    }
    (0..copies)
        .map(|copy| {
            let mut headers = headers.clone();
            headers.push(Header {
                name: "copy".into(),
                value: copy.to_string().into_bytes(),
            });
            OutputRecord {
                key: record.key.clone(),
                value: record.value.clone(),
                headers,
                timestamp_ms: record.event_time_ms.or(record.publish_time_ms),
                topic: None,
            }
        })
        .collect()
}

fn header<'a>(record: &'a InputRecord, name: &str) -> Option<&'a str> {
    record
        .headers
        .iter()
        .find(|h| h.name == name)
        .and_then(|h| std::str::from_utf8(&h.value).ok())
}

/// Rounds of a xorshift over the value's FNV hash: 0 to ~1M rounds depending on the value.
fn busy_work(value: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in value {
        hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
    }
    let rounds = (hash % 16) * 65_536;
    let mut state = hash | 1;
    for _ in 0..rounds {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
    }
    std::hint::black_box(state) % 1000
}

export!(FanOutWork);
