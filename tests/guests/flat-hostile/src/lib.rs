//! A test guest whose result buffer is hostile input for the host (issue 17): written against
//! the raw `wit-bindgen` bindings of `sluice:transform@0.2.0` and the flat layout, not the SDK.
//! Each record's value (UTF-8) decides its result:
//!
//! | value | result |
//! |---|---|
//! | `malformed` | the whole result buffer is cut short (the batch breaks the layout) |
//! | `bad-tag` | the whole result buffer has an undefined result tag |
//! | `extra-result` | one result more than there are records (a well-formed buffer) |
//! | `forward:N` | N outputs, each forwarding the input's key, value and headers |
//! | anything else | one output forwarding the input's key, value and headers |

use sluice_flat::{FieldView, decode_batch, encode};

wit_bindgen::generate!({
    path: "../../../wit/sluice-transform@0.2.0",
    world: "transformer",
});

struct FlatHostile;

impl Guest for FlatHostile {
    fn init(_config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn transform_batch(batch: Vec<u8>) -> Vec<u8> {
        let view = decode_batch(&batch).expect("the host's batch follows the layout");
        let values: Vec<&str> = view
            .records
            .iter()
            .map(|record| std::str::from_utf8(record.value.unwrap_or_default()).unwrap_or(""))
            .collect();
        let mut results = Vec::new();
        let extra = usize::from(values.contains(&"extra-result"));
        encode::results_header(&mut results, values.len() + extra);
        for value in values.iter().copied().chain((0..extra).map(|_| "")) {
            let copies = value
                .strip_prefix("forward:")
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            encode::outputs(&mut results, copies);
            for _ in 0..copies {
                encode::output(
                    &mut results,
                    FieldView::FromInput,
                    FieldView::FromInput,
                    None,
                    None,
                    true,
                    0,
                );
            }
        }
        if values.contains(&"malformed") {
            results.truncate(results.len() - 3);
        }
        if values.contains(&"bad-tag") {
            // The first result's tag.
            results[8] = 7;
        }
        results
    }
}

export!(FlatHostile);
