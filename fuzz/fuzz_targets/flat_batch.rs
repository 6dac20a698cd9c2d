//! The decoders of the flat batch layout (docs/flat-batch-abi.md) on arbitrary bytes: a result
//! buffer is written by an untrusted guest and read by the host in place, so any bytes must
//! give an error or a batch, never a panic, an overflow or an allocation sized by a hostile
//! count. Every view of a decoded batch is walked (headers are read lazily).

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_flat::{ResultView, decode_batch, decode_results};

fuzz_target!(|bytes: &[u8]| {
    if let Ok(results) = decode_results(bytes) {
        for result in results.iter() {
            if let ResultView::Outputs(outputs) = result {
                for output in outputs {
                    assert_eq!(output.headers.iter().count(), output.headers.len());
                }
            }
        }
    }
    if let Ok(batch) = decode_batch(bytes) {
        for record in &batch.records {
            assert!(record.source < batch.sources.len());
            assert_eq!(record.headers.iter().count(), record.headers.len());
        }
    }
});
