//! The identity transform on `sluice:transform@0.1.0`, written with `wit-bindgen` directly:
//! each input record becomes one output with its key, value and headers moved (no copy in the
//! guest). The engine bench compares it with the 0.2.0 (flat batch) `examples/passthrough`;
//! the tests prove with it that a 0.1.0 component still runs through the host.

wit_bindgen::generate!({
    path: "../../../wit/sluice-transform@0.1.0",
    world: "transformer",
});

struct Identity;

impl Guest for Identity {
    fn init(_config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn transform_batch(records: Vec<InputRecord>) -> Vec<RecordResult> {
        records
            .into_iter()
            .map(|record| {
                Ok(vec![sluice::transform::types::OutputRecord {
                    key: record.key,
                    value: record.value,
                    headers: record.headers,
                    timestamp_ms: None,
                    topic: None,
                }])
            })
            .collect()
    }
}

export!(Identity);
