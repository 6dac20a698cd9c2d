//! The config parser: TOML, `${VAR}` interpolation, every section's validation, the
//! credential files it reads. Any text must give a config or an error, never a panic or a
//! hang. (Credential files named in the text are read with a size bound, so `/dev/zero` is an
//! error, not an exhausted memory.)
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use sluice_runtime::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Config::parse(text, Path::new("fuzz.toml"), Path::new("/nonexistent"));
});
