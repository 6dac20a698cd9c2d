//! Round trips of both buffers, and hostile results refused without a panic.

use crate::encode::{self, ErrorKind};
use crate::{
    DecodeError, FieldView, ResultView, SourceView, decode_batch, decode_results, source_kind,
};

fn batch() -> Vec<u8> {
    let mut buffer = Vec::new();
    let sources = [
        SourceView {
            kind: source_kind::PULSAR,
            topic: "persistent://public/default/orders",
        },
        SourceView {
            kind: source_kind::GCP_PUBSUB,
            topic: "sub",
        },
    ];
    encode::batch_header(&mut buffer, 2, &sources);
    encode::record(
        &mut buffer,
        0,
        "1:2:-1:0",
        Some(b"k"),
        Some(b"{}"),
        Some(5),
        None,
        2,
    );
    encode::header(&mut buffer, "a", b"1");
    encode::header(&mut buffer, "b", b"");
    encode::record(&mut buffer, 1, "m", None, None, None, Some(-7), 0);
    buffer
}

fn results() -> Vec<u8> {
    let mut buffer = Vec::new();
    encode::results_header(&mut buffer, 3);
    encode::outputs(&mut buffer, 2);
    encode::output(
        &mut buffer,
        FieldView::FromInput,
        FieldView::Inline(b"v"),
        Some(9),
        Some("t"),
        true,
        1,
    );
    encode::header(&mut buffer, "h", b"x");
    encode::output(
        &mut buffer,
        FieldView::Absent,
        FieldView::FromInput,
        None,
        None,
        false,
        0,
    );
    encode::error(&mut buffer, ErrorKind::DeadLetter, "bad");
    encode::outputs(&mut buffer, 0);
    buffer
}

#[test]
fn an_input_batch_round_trips() {
    let buffer = batch();
    let view = decode_batch(&buffer).unwrap();
    assert_eq!(view.sources.len(), 2);
    assert_eq!(view.sources[1].topic, "sub");
    let first = &view.records[0];
    assert_eq!(first.source, 0);
    assert_eq!(first.message_id, "1:2:-1:0");
    assert_eq!(first.key, Some(&b"k"[..]));
    assert_eq!(first.value, Some(&b"{}"[..]));
    assert_eq!(
        (first.event_time_ms, first.publish_time_ms),
        (Some(5), None)
    );
    let headers: Vec<_> = first.headers.iter().collect();
    assert_eq!(headers, [("a", &b"1"[..]), ("b", &b""[..])]);
    assert_eq!(first.headers.get("b"), Some(&b""[..]));
    let second = &view.records[1];
    assert_eq!((second.key, second.value), (None, None));
    assert_eq!(second.publish_time_ms, Some(-7));
    assert!(second.headers.is_empty());
}

#[test]
fn a_result_batch_round_trips() {
    let buffer = results();
    let view = decode_results(&buffer).unwrap();
    let results: Vec<_> = view.iter().collect();
    assert_eq!(results.len(), 3);
    let ResultView::Outputs(outputs) = results[0] else {
        panic!("{:?}", results[0]);
    };
    assert_eq!(outputs.len(), 2);
    assert_eq!(outputs[0].key, FieldView::FromInput);
    assert_eq!(outputs[0].value, FieldView::Inline(b"v"));
    assert_eq!(outputs[0].timestamp_ms, Some(9));
    assert_eq!(outputs[0].topic, Some("t"));
    assert!(outputs[0].input_headers);
    assert_eq!(outputs[0].headers.get("h"), Some(&b"x"[..]));
    assert_eq!(outputs[1].key, FieldView::Absent);
    assert_eq!(results[1], ResultView::DeadLetter("bad"));
    assert_eq!(results[2], ResultView::Outputs(&[]));
}

#[test]
fn every_truncation_and_every_flipped_byte_is_an_error_or_a_valid_batch_never_a_panic() {
    for buffer in [results(), batch()] {
        for len in 0..buffer.len() {
            assert!(decode_results(&buffer[..len]).is_err());
            assert!(decode_batch(&buffer[..len]).is_err());
        }
        for at in 0..buffer.len() {
            for value in [0u8, 1, 2, 3, 4, 0x7f, 0xff] {
                let mut bent = buffer.clone();
                bent[at] = value;
                let _ = decode_results(&bent);
                let _ = decode_batch(&bent);
            }
        }
    }
}

#[test]
fn hostile_counts_and_tags_are_named() {
    let mut huge = Vec::new();
    encode::results_header(&mut huge, 0);
    huge.truncate(4);
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        decode_results(&huge),
        Err(DecodeError::Truncated {
            item: "result count",
            ..
        })
    ));
    let mut bad_tag = Vec::new();
    encode::results_header(&mut bad_tag, 1);
    bad_tag.extend_from_slice(&[9, 0, 0, 0, 0]);
    assert_eq!(
        decode_results(&bad_tag),
        Err(DecodeError::Tag {
            at: 8,
            found: 9,
            item: "result tag"
        })
    );
    let mut trailing = results();
    trailing.push(0);
    assert_eq!(
        decode_results(&trailing),
        Err(DecodeError::Trailing { extra: 1 })
    );
    assert_eq!(
        decode_results(&[2, 0, 0, 0, 0, 0, 0, 0]),
        Err(DecodeError::Version { found: 2 })
    );
}

/// Writes the seed corpus of the fuzz target (`fuzz/corpus/flat_batch`) when asked:
/// `SLUICE_WRITE_FUZZ_CORPUS=<dir> cargo test -p sluice-flat seed`.
#[test]
fn seed_corpus() {
    let Some(dir) = std::env::var_os("SLUICE_WRITE_FUZZ_CORPUS") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("results"), results()).unwrap();
    std::fs::write(dir.join("batch"), batch()).unwrap();
    let mut empty = Vec::new();
    encode::results_header(&mut empty, 0);
    std::fs::write(dir.join("empty-results"), empty).unwrap();
}
