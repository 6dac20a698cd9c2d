//! Reading both buffers in place, every length, count and tag checked.

use crate::reader::Reader;
use crate::views::{
    BatchView, FieldView, Headers, OutputView, RecordView, ResultEntry, ResultsView, SourceView,
};
use crate::{DecodeError, field_mode, headers_mode, present, result_tag, source_kind};

/// The smallest encodings, to refuse counts the rest of a buffer cannot hold.
const MIN_SOURCE: usize = 1 + 4;
const MIN_RECORD: usize = 4 + 4 + 1 + 4;
const MIN_HEADER: usize = 4 + 4;
const MIN_RESULT: usize = 1 + 4;
const MIN_OUTPUT: usize = 1 + 1 + 1 + 1 + 1 + 4;

/// Reads an input batch (the guest's side).
pub fn decode_batch(buffer: &[u8]) -> Result<BatchView<'_>, DecodeError> {
    let mut reader = Reader::new(buffer);
    reader.version()?;
    let record_count = reader.count(MIN_RECORD, "record count")?;
    let source_count = reader.count(MIN_SOURCE, "source count")?;
    let mut sources = Vec::with_capacity(source_count);
    for _ in 0..source_count {
        let at = reader.at();
        let kind = reader.u8("source kind")?;
        if kind > source_kind::OTHER {
            return Err(DecodeError::Tag {
                at,
                found: kind,
                item: "source kind",
            });
        }
        let topic = reader.text("source topic")?;
        sources.push(SourceView { kind, topic });
    }
    let mut records = Vec::with_capacity(record_count);
    for record in 0..record_count {
        let index = reader.u32("source index")?;
        let source = index as usize;
        if source >= sources.len() {
            return Err(DecodeError::SourceIndex {
                record,
                index,
                sources: sources.len(),
            });
        }
        let message_id = reader.text("message id")?;
        let at = reader.at();
        let flags = reader.u8("presence flags")?;
        if flags & !present::ALL != 0 {
            return Err(DecodeError::Tag {
                at,
                found: flags,
                item: "presence flags",
            });
        }
        let has = |bit: u8| flags & bit != 0;
        let event_time_ms = has(present::EVENT_TIME)
            .then(|| reader.i64("event time"))
            .transpose()?;
        let publish_time_ms = has(present::PUBLISH_TIME)
            .then(|| reader.i64("publish time"))
            .transpose()?;
        let key = has(present::KEY).then(|| reader.bytes("key")).transpose()?;
        let value = has(present::VALUE)
            .then(|| reader.bytes("value"))
            .transpose()?;
        let headers = headers(&mut reader)?;
        records.push(RecordView {
            source,
            message_id,
            key,
            value,
            event_time_ms,
            publish_time_ms,
            headers,
        });
    }
    reader.finish()?;
    Ok(BatchView { sources, records })
}

/// Reads a result batch (the host's side). The guest wrote it: it is hostile input.
pub fn decode_results(buffer: &[u8]) -> Result<ResultsView<'_>, DecodeError> {
    let mut reader = Reader::new(buffer);
    reader.version()?;
    let result_count = reader.count(MIN_RESULT, "result count")?;
    let mut view = ResultsView {
        entries: Vec::with_capacity(result_count),
        outputs: Vec::new(),
    };
    for _ in 0..result_count {
        let at = reader.at();
        let entry = match reader.u8("result tag")? {
            result_tag::OUTPUTS => {
                let count = reader.count(MIN_OUTPUT, "output count")?;
                let start = view.outputs.len();
                view.outputs.reserve(count);
                for _ in 0..count {
                    view.outputs.push(output(&mut reader)?);
                }
                ResultEntry::Outputs {
                    start,
                    end: view.outputs.len(),
                }
            }
            result_tag::SKIP => ResultEntry::Skip(reader.text("skip reason")?),
            result_tag::DEAD_LETTER => ResultEntry::DeadLetter(reader.text("dead-letter reason")?),
            result_tag::FATAL => ResultEntry::Fatal(reader.text("fatal reason")?),
            found => {
                return Err(DecodeError::Tag {
                    at,
                    found,
                    item: "result tag",
                });
            }
        };
        view.entries.push(entry);
    }
    reader.finish()?;
    Ok(view)
}

fn output<'a>(reader: &mut Reader<'a>) -> Result<OutputView<'a>, DecodeError> {
    let key = field(reader, "key")?;
    let value = field(reader, "value")?;
    let timestamp_ms = option(reader, "timestamp flag")?
        .then(|| reader.i64("timestamp"))
        .transpose()?;
    let topic = option(reader, "topic flag")?
        .then(|| reader.text("topic"))
        .transpose()?;
    let at = reader.at();
    let input_headers = match reader.u8("headers mode")? {
        headers_mode::INLINE => false,
        headers_mode::INPUT_THEN_INLINE => true,
        found => {
            return Err(DecodeError::Tag {
                at,
                found,
                item: "headers mode",
            });
        }
    };
    let headers = headers(reader)?;
    Ok(OutputView {
        key,
        value,
        timestamp_ms,
        topic,
        input_headers,
        headers,
    })
}

fn field<'a>(reader: &mut Reader<'a>, item: &'static str) -> Result<FieldView<'a>, DecodeError> {
    let at = reader.at();
    match reader.u8(item)? {
        field_mode::ABSENT => Ok(FieldView::Absent),
        field_mode::INLINE => Ok(FieldView::Inline(reader.bytes(item)?)),
        field_mode::FROM_INPUT => Ok(FieldView::FromInput),
        found => Err(DecodeError::Tag { at, found, item }),
    }
}

fn option(reader: &mut Reader<'_>, item: &'static str) -> Result<bool, DecodeError> {
    let at = reader.at();
    match reader.u8(item)? {
        0 => Ok(false),
        1 => Ok(true),
        found => Err(DecodeError::Tag { at, found, item }),
    }
}

/// A header count and the headers, checked (names UTF-8), kept as their raw bytes.
fn headers<'a>(reader: &mut Reader<'a>) -> Result<Headers<'a>, DecodeError> {
    let count = reader.count(MIN_HEADER, "header count")?;
    let start = reader.at();
    let mut raw_len = 0;
    for _ in 0..count {
        let name = reader.text("header name")?;
        let value = reader.bytes("header value")?;
        raw_len += 8 + name.len() + value.len();
    }
    let raw = reader.slice_back(start, raw_len);
    Ok(Headers::checked(raw, count))
}
