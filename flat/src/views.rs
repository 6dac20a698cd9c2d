//! What decoding yields: views borrowing the buffer, already checked against the layout.

/// An entry of an input batch's source table: what many records share, sent once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceView<'a> {
    /// One of [`crate::source_kind`].
    pub kind: u8,
    /// The Pulsar topic or Pub/Sub subscription.
    pub topic: &'a str,
}

/// The headers of a record or an output, read lazily from their checked bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Headers<'a> {
    raw: &'a [u8],
    count: usize,
}

impl<'a> Headers<'a> {
    /// Headers already checked to be `count` well-formed entries filling `raw`.
    pub(crate) fn checked(raw: &'a [u8], count: usize) -> Self {
        Self { raw, count }
    }

    /// Headers from bytes a decoder checked before ([`Headers::raw`], [`Headers::len`]),
    /// kept apart from their buffer. Bytes that do not follow the layout end the iteration
    /// early; they never panic.
    pub fn from_raw(raw: &'a [u8], count: usize) -> Self {
        Self { raw, count }
    }

    /// The encoded headers, as they lie in the buffer.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// How many headers there are.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The headers in order, as (name, value).
    pub fn iter(&self) -> HeaderIter<'a> {
        HeaderIter {
            raw: self.raw,
            remaining: self.count,
        }
    }

    /// The value of the first header called `name`.
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.iter()
            .find(|(header, _)| *header == name)
            .map(|(_, value)| value)
    }
}

/// Iterates over [`Headers`].
#[derive(Debug, Clone)]
pub struct HeaderIter<'a> {
    raw: &'a [u8],
    remaining: usize,
}

impl<'a> HeaderIter<'a> {
    /// The next length-prefixed item. The bytes were checked when decoded; should they not
    /// fit anyway the iteration ends rather than panics.
    fn item(&mut self) -> Option<&'a [u8]> {
        let (len, rest) = self.raw.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        let item = rest.get(..len)?;
        self.raw = &rest[len..];
        Some(item)
    }
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let name = std::str::from_utf8(self.item()?).ok()?;
        let value = self.item()?;
        Some((name, value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for HeaderIter<'_> {}

/// One input record of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// Index into [`BatchView::sources`] (checked).
    pub source: usize,
    /// The message id as the source prints it.
    pub message_id: &'a str,
    /// The key, if any.
    pub key: Option<&'a [u8]>,
    /// The value; `None` for a tombstone.
    pub value: Option<&'a [u8]>,
    /// Event time in milliseconds since the Unix epoch.
    pub event_time_ms: Option<i64>,
    /// Publish time in milliseconds since the Unix epoch.
    pub publish_time_ms: Option<i64>,
    /// The headers, in source order.
    pub headers: Headers<'a>,
}

/// An input batch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchView<'a> {
    /// The source table.
    pub sources: Vec<SourceView<'a>>,
    /// The records, in order.
    pub records: Vec<RecordView<'a>>,
}

/// How an output carries its key or value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldView<'a> {
    /// None.
    Absent,
    /// These bytes.
    Inline(&'a [u8]),
    /// The input record's key (for a key) or value (for a value), unchanged: the guest need
    /// not copy it back.
    FromInput,
}

/// One output of a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputView<'a> {
    /// The Kafka key.
    pub key: FieldView<'a>,
    /// The value; absent writes a tombstone.
    pub value: FieldView<'a>,
    /// Kafka timestamp; `None` lets the host choose.
    pub timestamp_ms: Option<i64>,
    /// Target topic; `None` is the sink topic.
    pub topic: Option<&'a str>,
    /// Whether the input record's headers come first.
    pub input_headers: bool,
    /// Headers written by the guest (after the input's when `input_headers`).
    pub headers: Headers<'a>,
}

/// The result for one input record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultView<'r, 'a> {
    /// Zero or more outputs.
    Outputs(&'r [OutputView<'a>]),
    /// Drop the record on purpose.
    Skip(&'a str),
    /// Dead-letter the record with this reason.
    DeadLetter(&'a str),
    /// Stop the pipeline.
    Fatal(&'a str),
}

/// Where one result's outputs are in [`ResultsView`]'s shared list, or its error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResultEntry<'a> {
    Outputs { start: usize, end: usize },
    Skip(&'a str),
    DeadLetter(&'a str),
    Fatal(&'a str),
}

/// A result batch: one result per input record, their outputs in one list (two allocations
/// per batch, none per record).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResultsView<'a> {
    pub(crate) entries: Vec<ResultEntry<'a>>,
    pub(crate) outputs: Vec<OutputView<'a>>,
}

impl<'a> ResultsView<'a> {
    /// How many results there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The results in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = ResultView<'_, 'a>> + '_ {
        self.entries.iter().map(|entry| match *entry {
            ResultEntry::Outputs { start, end } => {
                ResultView::Outputs(self.outputs.get(start..end).unwrap_or_default())
            }
            ResultEntry::Skip(reason) => ResultView::Skip(reason),
            ResultEntry::DeadLetter(reason) => ResultView::DeadLetter(reason),
            ResultEntry::Fatal(reason) => ResultView::Fatal(reason),
        })
    }
}
