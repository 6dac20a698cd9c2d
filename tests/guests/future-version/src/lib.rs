//! Test guest: the transformer world at version 0.3.0, which this host does not serve. The
//! host must refuse it at load, naming the version.

wit_bindgen::generate!({
    path: "wit",
    world: "transformer",
});

struct FutureVersion;

impl Guest for FutureVersion {
    fn init(_config: Vec<(String, String)>) -> Result<(), String> {
        sluice::transform::host::log(
            sluice::transform::types::LogLevel::Info,
            "0.3.0 guest started",
        );
        Ok(())
    }

    fn transform_batch(records: Vec<InputRecord>) -> Vec<RecordResult> {
        records.iter().map(|_| Ok(Vec::new())).collect()
    }
}

export!(FutureVersion);
