//! The headers of a message or an output: the input's, read in place from the batch until
//! someone needs them as [`Header`]s, then those the transform added.

use std::sync::OnceLock;

use sluice_flat::Headers;

use crate::Header;
use crate::shared::Shared;

/// The input record's encoded headers (a range of the batch) and their count.
#[derive(Clone)]
pub(crate) struct InputHeaders {
    pub(crate) raw: Shared,
    pub(crate) count: usize,
}

impl InputHeaders {
    fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        Headers::from_raw(self.raw.bytes(), self.count).iter()
    }
}

#[derive(Clone, Default)]
pub(crate) struct HeaderList {
    /// The input's headers, first.
    pub(crate) input: Option<InputHeaders>,
    /// Headers added after them.
    pub(crate) added: Vec<Header>,
    /// All of them as [`Header`]s, made on first use of [`HeaderList::all`].
    all: OnceLock<Vec<Header>>,
}

impl HeaderList {
    pub(crate) fn from_input(input: InputHeaders) -> Self {
        Self {
            input: Some(input),
            ..Self::default()
        }
    }

    /// Every header, in order.
    pub(crate) fn all(&self) -> &[Header] {
        self.all.get_or_init(|| {
            self.input
                .iter()
                .flat_map(InputHeaders::iter)
                .map(|(name, value)| Header::new(name, value))
                .chain(self.added.iter().cloned())
                .collect()
        })
    }

    pub(crate) fn push(&mut self, header: Header) {
        self.added.push(header);
        self.all = OnceLock::new();
    }

    /// The value of the first header called `name`, without making [`Header`]s.
    pub(crate) fn get(&self, name: &str) -> Option<&[u8]> {
        if let Some(input) = &self.input
            && let Some((_, value)) = input.iter().find(|(header, _)| *header == name)
        {
            return Some(value);
        }
        self.added
            .iter()
            .find(|header| header.name == name)
            .map(|header| header.value.as_slice())
    }

    fn pairs(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.input.iter().flat_map(InputHeaders::iter).chain(
            self.added
                .iter()
                .map(|header| (header.name.as_str(), header.value.as_slice())),
        )
    }
}

impl PartialEq for HeaderList {
    fn eq(&self, other: &Self) -> bool {
        self.pairs().eq(other.pairs())
    }
}

impl Eq for HeaderList {}

impl std::fmt::Debug for HeaderList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.pairs()).finish()
    }
}
