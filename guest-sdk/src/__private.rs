//! Glue used by the code `#[transform]` generates. Not a public API: it may change in any
//! release.

use std::fmt::Display;

use crate::config::replace_active;
use crate::{Config, Error, ErrorKind, Header, Message, Output, SourceInfo, SourceKind, Writer};

/// The `wit-bindgen` output for the `transformer` world.
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit/sluice-transform@0.1.0",
        world: "transformer",
        // The `export!` macro is used by guest crates, through `#[transform]`.
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "::sluice_sdk::__private::bindings",
        // Guest crates depend on `sluice-sdk` only, so generated code reaches the runtime here.
        runtime_path: "::sluice_sdk::__private::wit_bindgen::rt",
    });
}

pub use bindings::Guest;
pub use bindings::sluice::transform::types::{
    Header as WitHeader, InputRecord, OutputRecord, RecordResult, SourceInfo as WitSourceInfo,
    SourceKind as WitSourceKind, TransformError,
};
pub use wit_bindgen;

/// Body of the exported `init`: stores the config for [`config()`](crate::config()), then runs
/// the author's hook (if any) with it.
pub fn run_init(
    pairs: Vec<(String, String)>,
    setup: impl FnOnce(&Config) -> Result<(), Error>,
) -> Result<(), String> {
    let config = Config::from_pairs(pairs);
    replace_active(config.clone());
    setup(&config).map_err(|error| error.message().to_owned())
}

/// Body of the exported `transform-batch`: one call of `on_message` per record, each with a
/// fresh [`Writer`], and exactly one result per record, in order.
pub fn run_batch(
    records: Vec<InputRecord>,
    mut on_message: impl FnMut(Message, &mut Writer) -> Result<(), Error>,
) -> Vec<RecordResult> {
    records
        .into_iter()
        .map(|record| {
            let mut writer = Writer::new();
            match on_message(Message::from(record), &mut writer) {
                Ok(()) => Ok(writer
                    .into_outputs()
                    .into_iter()
                    .map(OutputRecord::from)
                    .collect()),
                Err(error) => Err(TransformError::from(error)),
            }
        })
        .collect()
}

/// Converts whatever error type an author's function returns into an [`Error`]:
/// an [`Error`] as is, a [`std::error::Error`] with its source chain, anything else that is
/// [`Display`] with `{:#}` (which prints `anyhow`'s chain).
///
/// Autoref specialization: the first of [`FromSdkError`], [`FromStdError`], [`FromDisplay`] whose
/// receiver type matches wins.
#[doc(hidden)]
#[macro_export]
macro_rules! __into_error {
    ($error:expr) => {{
        #[allow(
            unused_imports,
            reason = "only one of the three applies to a given type"
        )]
        use $crate::__private::{FromDisplay as _, FromSdkError as _, FromStdError as _};
        (&&$crate::__private::ErrorRef(&$error)).into_sdk_error()
    }};
}
pub use crate::__into_error as into_error;

/// A borrowed error of any type, for [`into_error!`].
pub struct ErrorRef<'a, E>(pub &'a E);

// Manual impls: a derive would require `E: Copy`, and the `FromDisplay` step takes it by value
// out of a reference.
impl<E> Clone for ErrorRef<'_, E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<E> Copy for ErrorRef<'_, E> {}

/// Most specific: the SDK's own [`Error`], kept as is.
pub trait FromSdkError {
    /// The error as an [`Error`].
    fn into_sdk_error(self) -> Error;
}

impl FromSdkError for &&ErrorRef<'_, Error> {
    fn into_sdk_error(self) -> Error {
        self.0.clone()
    }
}

/// Any [`std::error::Error`]: dead-letter with the source chain.
pub trait FromStdError {
    /// The error as an [`Error`].
    fn into_sdk_error(self) -> Error;
}

impl<E: std::error::Error + 'static> FromStdError for &ErrorRef<'_, E> {
    fn into_sdk_error(self) -> Error {
        Error::from_std(self.0)
    }
}

/// Anything printable (`anyhow::Error`, `String`): dead-letter with its alternate form.
pub trait FromDisplay {
    /// The error as an [`Error`].
    fn into_sdk_error(self) -> Error;
}

impl<E: Display> FromDisplay for ErrorRef<'_, E> {
    fn into_sdk_error(self) -> Error {
        Error::dead_letter(format!("{:#}", self.0))
    }
}

impl From<InputRecord> for Message {
    fn from(record: InputRecord) -> Self {
        Self {
            key: record.key,
            value: record.value,
            headers: record.headers.into_iter().map(Header::from).collect(),
            event_time_ms: record.event_time_ms,
            publish_time_ms: record.publish_time_ms,
            source: SourceInfo {
                kind: match record.source.kind {
                    WitSourceKind::Pulsar => SourceKind::Pulsar,
                    WitSourceKind::GcpPubsub => SourceKind::GcpPubsub,
                    WitSourceKind::Other => SourceKind::Other,
                },
                topic: record.source.topic,
                message_id: record.source.message_id,
            },
        }
    }
}

impl From<WitHeader> for Header {
    fn from(header: WitHeader) -> Self {
        Self {
            name: header.name,
            value: header.value,
        }
    }
}

impl From<Output> for OutputRecord {
    fn from(output: Output) -> Self {
        Self {
            key: output.key,
            value: output.value,
            headers: output
                .headers
                .into_iter()
                .map(|header| WitHeader {
                    name: header.name,
                    value: header.value,
                })
                .collect(),
            timestamp_ms: output.timestamp_ms,
            topic: output.topic,
        }
    }
}

impl From<Error> for TransformError {
    fn from(error: Error) -> Self {
        let Error { kind, message } = error;
        match kind {
            ErrorKind::Skip => Self::Skip(message),
            ErrorKind::DeadLetter => Self::DeadLetter(message),
            ErrorKind::Fatal => Self::Fatal(message),
        }
    }
}
