//! Bytes of the input batch, shared by every message built from it: a message's key, value,
//! headers and source are ranges of the one buffer the host wrote, not copies.

use std::sync::Arc;

/// A range of the batch buffer.
#[derive(Clone)]
pub(crate) struct Shared {
    batch: Arc<Vec<u8>>,
    start: usize,
    len: usize,
}

impl Shared {
    /// The range `part` covers in `batch`; `part` must be a slice of it (decoded from it).
    pub(crate) fn within(batch: &Arc<Vec<u8>>, part: &[u8]) -> Self {
        let start = (part.as_ptr() as usize).saturating_sub(batch.as_ptr() as usize);
        Self {
            batch: Arc::clone(batch),
            start,
            len: part.len(),
        }
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        self.batch
            .get(self.start..self.start + self.len)
            .unwrap_or_default()
    }

    /// Whether both are the very same range of the same batch (not merely equal bytes).
    pub(crate) fn is(&self, other: &Shared) -> bool {
        Arc::ptr_eq(&self.batch, &other.batch) && self.start == other.start && self.len == other.len
    }
}

/// A key or value: absent, the author's bytes, or the input's range of the batch.
#[derive(Clone, Default)]
pub(crate) enum Field {
    #[default]
    Absent,
    Owned(Vec<u8>),
    Shared(Shared),
}

impl Field {
    pub(crate) fn get(&self) -> Option<&[u8]> {
        match self {
            Field::Absent => None,
            Field::Owned(bytes) => Some(bytes),
            Field::Shared(shared) => Some(shared.bytes()),
        }
    }

    /// Whether this is the input's own field, untouched (`input` is that field).
    pub(crate) fn is_input(&self, input: &Field) -> bool {
        match (self, input) {
            (Field::Shared(this), Field::Shared(input)) => this.is(input),
            _ => false,
        }
    }
}

impl PartialEq for Field {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Eq for Field {}

impl std::fmt::Debug for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}
