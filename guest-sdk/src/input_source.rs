//! A message's source: kind, topic and message id read from the batch when first asked for.

use std::sync::OnceLock;

use crate::shared::Shared;
use crate::{SourceInfo, SourceKind};

#[derive(Clone)]
pub(crate) enum InputSource {
    /// Set by the author (tests) or made already.
    Given(SourceInfo),
    /// Ranges of the batch, made into a [`SourceInfo`] on first use.
    Batch {
        kind: SourceKind,
        topic: Shared,
        message_id: Shared,
        info: OnceLock<SourceInfo>,
    },
}

impl Default for InputSource {
    fn default() -> Self {
        InputSource::Given(SourceInfo::default())
    }
}

impl InputSource {
    pub(crate) fn get(&self) -> &SourceInfo {
        match self {
            InputSource::Given(info) => info,
            InputSource::Batch {
                kind,
                topic,
                message_id,
                info,
            } => info.get_or_init(|| SourceInfo {
                kind: *kind,
                // Both were checked to be UTF-8 when the batch was decoded.
                topic: String::from_utf8_lossy(topic.bytes()).into_owned(),
                message_id: String::from_utf8_lossy(message_id.bytes()).into_owned(),
            }),
        }
    }
}

impl PartialEq for InputSource {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Eq for InputSource {}

impl std::fmt::Debug for InputSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}
