//! Test guest: the transformer world plus an import of `acme:secrets/vault`, which no Sluice
//! host provides. The host must refuse it at load, naming the import.

wit_bindgen::generate!({
    path: "wit",
    world: "transformer-with-vault",
    generate_all,
});

struct ForeignImport;

impl Guest for ForeignImport {
    fn init(_config: Vec<(String, String)>) -> Result<(), String> {
        let _ = acme::secrets::vault::get("token");
        Ok(())
    }

    fn transform_batch(records: Vec<InputRecord>) -> Vec<RecordResult> {
        records.iter().map(|_| Ok(Vec::new())).collect()
    }
}

export!(ForeignImport);
