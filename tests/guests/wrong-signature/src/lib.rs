//! Test guest: exports `init` and `transform-batch`, but `transform-batch` has another
//! type than the world declares. The host must refuse it at load, naming the export.

wit_bindgen::generate!({
    path: "wit",
    world: "transformer",
});

struct WrongSignature;

impl Guest for WrongSignature {
    fn init(_config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn transform_batch(records: Vec<String>) -> Vec<String> {
        records
    }
}

export!(WrongSignature);
