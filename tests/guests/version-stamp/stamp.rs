// The body of the `version-stamp-v1` and `version-stamp-v2` test guests, included by both
// (`include!`), each with its own `VERSION`: two components that behave alike except for the
// stamp, so a test can tell which one transformed a record.
//
// Every record passes through unchanged (key, value, headers, the source timestamp, the sink
// topic) with one header added: `transform-version` = `VERSION`. Written against the raw
// `wit-bindgen` bindings, like the other test guests, so the host's tests do not depend on
// the SDK. The config table is refused when not empty: a test that passes one means
// something this guest does not do.

use sluice::transform::types::{Header, OutputRecord};

wit_bindgen::generate!({
    path: "../../../wit/sluice-transform@0.1.0",
    world: "transformer",
});

/// The header every output carries.
const VERSION_HEADER: &str = "transform-version";

struct VersionStamp;

impl Guest for VersionStamp {
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        match config.first() {
            None => Ok(()),
            Some((key, _)) => Err(format!("unknown config key: {key}")),
        }
    }

    fn transform_batch(records: Vec<InputRecord>) -> Vec<RecordResult> {
        records.into_iter().map(|record| Ok(vec![stamp(record)])).collect()
    }
}

fn stamp(record: InputRecord) -> OutputRecord {
    let mut headers = record.headers;
    headers.push(Header {
        name: VERSION_HEADER.into(),
        value: VERSION.as_bytes().to_vec(),
    });
    OutputRecord {
        key: record.key,
        value: record.value,
        headers,
        // What the host would pick itself; set explicitly so the output is the input's.
        timestamp_ms: record.event_time_ms.or(record.publish_time_ms),
        topic: None,
    }
}

export!(VersionStamp);
