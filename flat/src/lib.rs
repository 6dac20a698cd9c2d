//! The flat batch layout of `sluice:transform@0.2.0` (docs/flat-batch-abi.md): an input batch
//! goes to the guest as one little-endian byte buffer, and the results come back as another.
//!
//! Both sides use this crate, so there is one reading of the layout:
//! - the host encodes input batches ([`encode`]) and reads result batches ([`decode_results`]);
//! - the guest SDK reads input batches ([`decode_batch`]) and encodes result batches.
//!
//! Decoding borrows from the buffer (no copy of any key, value, header or text) and treats it
//! as hostile: every count, length and tag is checked against what is left, and a buffer that
//! breaks the layout is a [`DecodeError`], never a panic (the host fuzzes [`decode_results`]).
//! Encoding writes through a [`Sink`]: the host first counts the exact size
//! ([`ByteCounter`]), asks the guest for that much memory once, then writes the batch straight
//! into it ([`SliceWriter`]).

mod decode;
pub mod encode;
mod error;
mod reader;
mod sink;
mod views;

pub use decode::{decode_batch, decode_results};
pub use error::DecodeError;
pub use sink::{ByteCounter, Sink, SliceWriter};
pub use views::{
    BatchView, FieldView, HeaderIter, Headers, OutputView, RecordView, ResultView, ResultsView,
    SourceView,
};

/// The layout version both buffers start with. A change to the layout is a new version; a
/// reader refuses versions it does not know.
pub const LAYOUT_VERSION: u16 = 1;

/// Source kinds, as the byte `kind` of a source entry.
pub mod source_kind {
    /// Apache Pulsar.
    pub const PULSAR: u8 = 0;
    /// Google Cloud Pub/Sub.
    pub const GCP_PUBSUB: u8 = 1;
    /// Anything else: `sluice exec`, tests.
    pub const OTHER: u8 = 2;
}

/// Bits of an input record's `present` byte.
pub(crate) mod present {
    pub(crate) const KEY: u8 = 1;
    pub(crate) const VALUE: u8 = 1 << 1;
    pub(crate) const EVENT_TIME: u8 = 1 << 2;
    pub(crate) const PUBLISH_TIME: u8 = 1 << 3;
    pub(crate) const ALL: u8 = KEY | VALUE | EVENT_TIME | PUBLISH_TIME;
}

/// The tag of a result: outputs, or one of the errors.
pub(crate) mod result_tag {
    pub(crate) const OUTPUTS: u8 = 0;
    pub(crate) const SKIP: u8 = 1;
    pub(crate) const DEAD_LETTER: u8 = 2;
    pub(crate) const FATAL: u8 = 3;
}

/// How an output carries its key or value.
pub(crate) mod field_mode {
    pub(crate) const ABSENT: u8 = 0;
    pub(crate) const INLINE: u8 = 1;
    pub(crate) const FROM_INPUT: u8 = 2;
}

/// How an output carries its headers.
pub(crate) mod headers_mode {
    /// Only the headers that follow.
    pub(crate) const INLINE: u8 = 0;
    /// The input record's headers, then the headers that follow.
    pub(crate) const INPUT_THEN_INLINE: u8 = 1;
}

#[cfg(test)]
mod tests;
