//! Test guest: exports `init` only, no `transform-batch`. The host must refuse it at load,
//! naming the missing export.

wit_bindgen::generate!({
    path: "wit",
    world: "transformer",
});

struct MissingExport;

impl Guest for MissingExport {
    fn init(_config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }
}

export!(MissingExport);
