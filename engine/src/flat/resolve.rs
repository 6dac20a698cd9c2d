//! Outputs that forward their input's key, value or headers, made whole from the host's
//! input record, once their size is known to be within the limits.

use sluice_record::{Bytes, InputRecord, OutputRecord};

use super::results::{DecodedOutput, Field};

/// The bytes an output will hold once resolved (as the 0.1.0 path counts them: key, value,
/// topic, header names and values), without resolving it: a guest that forwards a large
/// input many times is refused before anything is copied.
pub(crate) fn output_bytes(output: &DecodedOutput, input: &InputRecord) -> u64 {
    let field = |field: &Field, from_input: Option<&Bytes>| match field {
        Field::Absent => 0,
        Field::Bytes(bytes) => bytes.len() as u64,
        Field::FromInput => from_input.map_or(0, |bytes| bytes.len() as u64),
    };
    let headers = |headers: &mut dyn Iterator<Item = (usize, usize)>| {
        headers
            .map(|(name, value)| (name + value) as u64)
            .sum::<u64>()
    };
    let input_headers = match output.input_headers {
        true => headers(
            &mut input
                .headers
                .iter()
                .map(|header| (header.name.len(), header.value.len())),
        ),
        false => 0,
    };
    field(&output.key, input.key.as_ref())
        + field(&output.value, input.value.as_ref())
        + output.topic.as_ref().map_or(0, |topic| topic.len() as u64)
        + input_headers
        + headers(
            &mut output
                .headers
                .iter()
                .map(|header| (header.name.len(), header.value.len())),
        )
}

/// The output as a host record: what it forwards shares the input's bytes (no copy).
pub(crate) fn resolve(output: DecodedOutput, input: &InputRecord) -> OutputRecord {
    let field = |field: Field, from_input: &Option<Bytes>| match field {
        Field::Absent => None,
        Field::Bytes(bytes) => Some(bytes),
        Field::FromInput => from_input.clone(),
    };
    let headers = match output.input_headers {
        true => input
            .headers
            .iter()
            .cloned()
            .chain(output.headers)
            .collect(),
        false => output.headers,
    };
    OutputRecord {
        key: field(output.key, &input.key),
        value: field(output.value, &input.value),
        headers,
        timestamp_ms: output.timestamp_ms,
        topic: output.topic,
    }
}
