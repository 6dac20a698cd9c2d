//! Why a buffer does not follow the layout.

/// A buffer that breaks the flat layout; `at` is the byte offset where reading failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The buffer ends before the item it announces.
    #[error("flat batch truncated at byte {at}: {wanted} more bytes needed for {item}")]
    Truncated {
        at: usize,
        wanted: usize,
        item: &'static str,
    },
    /// The layout version is not one this reader knows.
    #[error("flat batch layout version {found} is not supported (this reader knows 1)")]
    Version { found: u16 },
    /// A tag, mode or flag byte has a value the layout does not define.
    #[error("flat batch byte {at}: {found} is not a valid {item}")]
    Tag {
        at: usize,
        found: u8,
        item: &'static str,
    },
    /// A text (name, topic, reason) is not UTF-8.
    #[error("flat batch byte {at}: {item} is not UTF-8")]
    NotUtf8 { at: usize, item: &'static str },
    /// A record names a source entry the batch does not have.
    #[error("flat batch record {record}: source {index} of {sources}")]
    SourceIndex {
        record: usize,
        index: u32,
        sources: usize,
    },
    /// Bytes follow the last item.
    #[error("flat batch has {extra} bytes after its last item")]
    Trailing { extra: usize },
}
