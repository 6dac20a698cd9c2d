//! Writing both buffers, item by item, in the order of docs/flat-batch-abi.md. The caller
//! writes a header, then its items; the counts it announces must match what it writes
//! (the reader checks them).
//!
//! Lengths and counts are `u32`: a wasm32 guest's memory holds at most 4 GiB, and the host's
//! limits keep records far below that. A length beyond `u32::MAX` is written as `u32::MAX`,
//! which no reader accepts (the buffer is then shorter than announced).

use crate::views::{FieldView, SourceView};
use crate::{LAYOUT_VERSION, Sink, field_mode, headers_mode, present, result_tag};

fn len32(len: usize) -> [u8; 4] {
    u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes()
}

fn bytes(sink: &mut impl Sink, bytes: &[u8]) {
    sink.put(&len32(bytes.len()));
    sink.put(bytes);
}

fn version(sink: &mut impl Sink) {
    sink.put(&LAYOUT_VERSION.to_le_bytes());
    sink.put(&0u16.to_le_bytes());
}

/// The input batch's header: version, record count, and the source table records refer to.
pub fn batch_header(sink: &mut impl Sink, record_count: usize, sources: &[SourceView<'_>]) {
    version(sink);
    sink.put(&len32(record_count));
    sink.put(&len32(sources.len()));
    for source in sources {
        sink.put(&[source.kind]);
        bytes(sink, source.topic.as_bytes());
    }
}

/// One input record without its headers: `header_count` headers ([`header`]) must follow.
#[allow(
    clippy::too_many_arguments,
    reason = "one argument per field of the record, in layout order"
)]
pub fn record(
    sink: &mut impl Sink,
    source_index: usize,
    message_id: &str,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    event_time_ms: Option<i64>,
    publish_time_ms: Option<i64>,
    header_count: usize,
) {
    sink.put(&len32(source_index));
    bytes(sink, message_id.as_bytes());
    let flag = |on: bool, bit: u8| if on { bit } else { 0 };
    sink.put(&[flag(key.is_some(), present::KEY)
        | flag(value.is_some(), present::VALUE)
        | flag(event_time_ms.is_some(), present::EVENT_TIME)
        | flag(publish_time_ms.is_some(), present::PUBLISH_TIME)]);
    for time in [event_time_ms, publish_time_ms].into_iter().flatten() {
        sink.put(&time.to_le_bytes());
    }
    for field in [key, value].into_iter().flatten() {
        bytes(sink, field);
    }
    sink.put(&len32(header_count));
}

/// One header of a record or an output.
pub fn header(sink: &mut impl Sink, name: &str, value: &[u8]) {
    bytes(sink, name.as_bytes());
    bytes(sink, value);
}

/// The result batch's header: version and result count (one per input record).
pub fn results_header(sink: &mut impl Sink, result_count: usize) {
    version(sink);
    sink.put(&len32(result_count));
}

/// A result with `output_count` outputs ([`output`]) to follow.
pub fn outputs(sink: &mut impl Sink, output_count: usize) {
    sink.put(&[result_tag::OUTPUTS]);
    sink.put(&len32(output_count));
}

/// What a transform error asks the host to do with the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Drop it on purpose.
    Skip,
    /// Dead-letter it with the reason.
    DeadLetter,
    /// Stop the pipeline.
    Fatal,
}

/// A result that is an error.
pub fn error(sink: &mut impl Sink, kind: ErrorKind, reason: &str) {
    sink.put(&[match kind {
        ErrorKind::Skip => result_tag::SKIP,
        ErrorKind::DeadLetter => result_tag::DEAD_LETTER,
        ErrorKind::Fatal => result_tag::FATAL,
    }]);
    bytes(sink, reason.as_bytes());
}

fn field(sink: &mut impl Sink, field: FieldView<'_>) {
    match field {
        FieldView::Absent => sink.put(&[field_mode::ABSENT]),
        FieldView::Inline(data) => {
            sink.put(&[field_mode::INLINE]);
            bytes(sink, data);
        }
        FieldView::FromInput => sink.put(&[field_mode::FROM_INPUT]),
    }
}

/// One output without its own headers: `header_count` headers ([`header`]) must follow,
/// after the input record's headers when `input_headers`.
pub fn output(
    sink: &mut impl Sink,
    key: FieldView<'_>,
    value: FieldView<'_>,
    timestamp_ms: Option<i64>,
    topic: Option<&str>,
    input_headers: bool,
    header_count: usize,
) {
    field(sink, key);
    field(sink, value);
    match timestamp_ms {
        Some(at) => {
            sink.put(&[1]);
            sink.put(&at.to_le_bytes());
        }
        None => sink.put(&[0]),
    }
    match topic {
        Some(topic) => {
            sink.put(&[1]);
            bytes(sink, topic.as_bytes());
        }
        None => sink.put(&[0]),
    }
    sink.put(&[if input_headers {
        headers_mode::INPUT_THEN_INLINE
    } else {
        headers_mode::INLINE
    }]);
    sink.put(&len32(header_count));
}
