//! The identity of every record Sluice writes: which pipeline wrote it, from which source
//! message, as which of that message's outputs. Three headers carry it; this module is the
//! only place that names, stamps or parses them.
//!
//! Consumers deduplicate on the identity in at-least-once mode, and the read-back
//! exactly-once mode finds what a pipeline already wrote by it (docs/delivery-guarantees.md).

use std::sync::{Arc, LazyLock};

use crate::validation::header_size;
use crate::{Bytes, Header, OutputRecord};

/// Header that carries the source message id on every record Sluice writes.
pub const SOURCE_ID_HEADER: &str = "sluice.source.id";
/// Header naming the pipeline that wrote a record.
pub const PIPELINE_HEADER: &str = "sluice.pipeline";
/// Header with a record's index among the outputs of its source record (0-based; the
/// dead-letter copy counts as an output). With the source id and the pipeline it identifies
/// every record Sluice writes.
pub const OUTPUT_INDEX_HEADER: &str = "sluice.output.index";

/// The three names as shared strings, made once: stamping an output allocates no name.
static NAMES: LazyLock<[Arc<str>; 3]> =
    LazyLock::new(|| [SOURCE_ID_HEADER, PIPELINE_HEADER, OUTPUT_INDEX_HEADER].map(Arc::from));

/// Who has the last word on an output's `sluice.source.id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceIdPolicy {
    /// A transform may set its own (at-least-once): it may know a better business id.
    TransformMayOverride,
    /// Always the host's (exactly-once): the read-back must find the id it deduplicates on.
    HostOnly,
}

/// One output found in Kafka: the source message it came from and its index among that
/// message's outputs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WrittenOutput {
    pub source_id: String,
    pub index: u32,
}

/// How many headers [`stamp`] adds: room a passthrough output reserves for them.
pub const IDENTITY_HEADERS: usize = 3;

/// The output indexes most records have, as text made once: stamping them allocates nothing.
const SMALL_INDEXES: [&str; 8] = ["0", "1", "2", "3", "4", "5", "6", "7"];

/// Stamps `output` as output `index` of source message `source_id`, written by `pipeline`.
/// The identity is the host's: a transform's `sluice.pipeline` and `sluice.output.index` are
/// replaced, and its `sluice.source.id` too unless `policy` lets it stand.
pub fn stamp(
    output: &mut OutputRecord,
    pipeline: &str,
    source_id: &str,
    index: u32,
    policy: SourceIdPolicy,
) {
    Stamper::new(pipeline).stamp(output, source_id, index, policy);
}

/// [`stamp`] for one pipeline, its name's bytes made once and shared by every output.
#[derive(Debug, Clone)]
pub struct Stamper {
    pipeline: Bytes,
}

impl Stamper {
    pub fn new(pipeline: &str) -> Self {
        Self {
            pipeline: Bytes::copy_from_slice(pipeline.as_bytes()),
        }
    }

    /// Stamps `output` as output `index` of source message `source_id` (see [`stamp`]).
    pub fn stamp(
        &self,
        output: &mut OutputRecord,
        source_id: &str,
        index: u32,
        policy: SourceIdPolicy,
    ) {
        let keep_source_id = policy == SourceIdPolicy::TransformMayOverride
            && output.headers.iter().any(|h| &*h.name == SOURCE_ID_HEADER);
        output.headers.retain(|h| {
            let name = &*h.name;
            name != PIPELINE_HEADER
                && name != OUTPUT_INDEX_HEADER
                && (keep_source_id || name != SOURCE_ID_HEADER)
        });
        output.headers.reserve(IDENTITY_HEADERS);
        let [source_id_name, pipeline_name, index_name] = &*NAMES;
        if !keep_source_id {
            output.headers.push(Header::shared(
                source_id_name.clone(),
                Bytes::copy_from_slice(source_id.as_bytes()),
            ));
        }
        output
            .headers
            .push(Header::shared(pipeline_name.clone(), self.pipeline.clone()));
        let index_text = match SMALL_INDEXES.get(index as usize) {
            Some(text) => Bytes::from_static(text.as_bytes()),
            None => Bytes::from(index.to_string()),
        };
        output
            .headers
            .push(Header::shared(index_name.clone(), index_text));
    }
}

/// Bytes the identity headers [`stamp`] adds may take at most in a record's size as
/// [`kafka_size`](crate::validation::kafka_size) counts it (an output index of up to ten digits).
pub fn stamp_bytes(pipeline: &str, source_id: &str) -> u64 {
    header_size(SOURCE_ID_HEADER.len(), source_id.len())
        + header_size(PIPELINE_HEADER.len(), pipeline.len())
        + header_size(OUTPUT_INDEX_HEADER.len(), u32::MAX.to_string().len())
}

/// The identity in `headers` (name, value) of a record written by `pipeline`; `None` for a
/// record someone else wrote or one without a complete identity.
pub fn written_by<'a>(
    headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    pipeline: &str,
) -> Option<WrittenOutput> {
    let mut written_by = None;
    let mut source_id = None;
    let mut index = None;
    for (name, value) in headers {
        let value = value.and_then(|v| std::str::from_utf8(v).ok());
        match name {
            PIPELINE_HEADER => written_by = value,
            SOURCE_ID_HEADER => source_id = value,
            OUTPUT_INDEX_HEADER => index = value.and_then(|v| v.parse().ok()),
            _ => {}
        }
    }
    if written_by? != pipeline {
        return None;
    }
    Some(WrittenOutput {
        source_id: source_id?.to_owned(),
        index: index?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(headers: &[(&str, &str)]) -> OutputRecord {
        OutputRecord {
            key: None,
            value: None,
            headers: headers.iter().map(|(n, v)| Header::new(*n, *v)).collect(),
            timestamp_ms: None,
            topic: None,
        }
    }

    fn parsed(output: &OutputRecord, pipeline: &str) -> Option<WrittenOutput> {
        written_by(
            output
                .headers
                .iter()
                .map(|h| (&*h.name, Some(&h.value[..]))),
            pipeline,
        )
    }

    #[test]
    fn a_stamped_output_parses_back_for_its_pipeline_only() {
        let mut out = output(&[("origin", "web"), (OUTPUT_INDEX_HEADER, "9")]);
        stamp(&mut out, "orders", "1:2:-1:-1", 3, SourceIdPolicy::HostOnly);
        let names: Vec<_> = out.headers.iter().map(|h| &*h.name).collect();
        assert_eq!(
            names,
            [
                "origin",
                SOURCE_ID_HEADER,
                PIPELINE_HEADER,
                OUTPUT_INDEX_HEADER
            ]
        );
        let expected = WrittenOutput {
            source_id: "1:2:-1:-1".into(),
            index: 3,
        };
        assert_eq!(parsed(&out, "orders"), Some(expected));
        assert_eq!(parsed(&out, "other"), None);
        assert_eq!(
            parsed(&output(&[(PIPELINE_HEADER, "orders")]), "orders"),
            None
        );
    }

    #[test]
    fn every_output_index_parses_back_whether_its_text_is_made_once_or_per_record() {
        let stamper = Stamper::new("orders");
        for index in [0, 1, 7, 8, 10, 4_000_000_000] {
            let mut out = output(&[]);
            stamper.stamp(&mut out, "m", index, SourceIdPolicy::HostOnly);
            let expected = WrittenOutput {
                source_id: "m".into(),
                index,
            };
            assert_eq!(parsed(&out, "orders"), Some(expected), "index {index}");
        }
    }

    #[test]
    fn stamp_bytes_bound_what_the_stamp_adds() {
        let mut out = output(&[]);
        let before = crate::validation::kafka_size(&out);
        stamp(
            &mut out,
            "orders",
            "1:2:-1:-1",
            u32::MAX,
            SourceIdPolicy::HostOnly,
        );
        let added = crate::validation::kafka_size(&out) - before;
        assert_eq!(added, stamp_bytes("orders", "1:2:-1:-1"));
    }

    #[test]
    fn a_transform_source_id_stands_only_when_the_policy_allows() {
        let transform_set = output(&[(SOURCE_ID_HEADER, "order-7")]);
        let mut kept = transform_set.clone();
        stamp(
            &mut kept,
            "p",
            "m1",
            0,
            SourceIdPolicy::TransformMayOverride,
        );
        assert_eq!(parsed(&kept, "p").unwrap().source_id, "order-7");
        let mut replaced = transform_set;
        stamp(&mut replaced, "p", "m1", 0, SourceIdPolicy::HostOnly);
        assert_eq!(parsed(&replaced, "p").unwrap().source_id, "m1");
    }
}
