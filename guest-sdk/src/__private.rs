//! Glue used by the code `#[transform]` generates. Not a public API: it may change in any
//! release.

use std::fmt::Display;
use std::sync::{Arc, OnceLock};

use sluice_flat::{BatchView, FieldView, RecordView, decode_batch, encode, source_kind};

use crate::config::replace_active;
use crate::header_list::{HeaderList, InputHeaders};
use crate::input_source::InputSource;
use crate::shared::{Field, Shared};
use crate::{Config, Error, ErrorKind, Message, Output, SourceKind, Writer};

/// The `wit-bindgen` output for the `transformer` world (0.2.0: flat batches).
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit/sluice-transform@0.2.0",
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

/// Body of the exported `transform-batch`: reads the flat batch in place, calls `on_message`
/// once per record (its outputs discarded on error), and encodes exactly one result per
/// record, in order (docs/flat-batch-abi.md). Messages borrow their bytes from the batch;
/// outputs that leave their input's key, value or headers unchanged send back a reference.
pub fn run_batch(
    batch: Vec<u8>,
    mut on_message: impl FnMut(Message, &mut Writer) -> Result<(), Error>,
) -> Vec<u8> {
    let batch = Arc::new(batch);
    // The host wrote the batch: a malformed one is a host bug, and trapping says so.
    let view = decode_batch(&batch)
        .unwrap_or_else(|error| panic!("the host sent a malformed batch: {error}"));
    // Outputs are usually about the size of the inputs, or references to them.
    let mut results = Vec::with_capacity(batch.len() / 2 + 64);
    encode::results_header(&mut results, view.records.len());
    let mut writer = Writer::new();
    for (index, record) in view.records.iter().enumerate() {
        let mut message = message(&batch, &view, record);
        message.index = Some(index as u32);
        let input = Input {
            key: message.key.clone(),
            value: message.value.clone(),
            headers: message.headers.input.clone(),
        };
        match on_message(message, &mut writer) {
            Ok(()) => {
                encode::outputs(&mut results, writer.len());
                for output in writer.drain() {
                    encode_output(&mut results, &output, &input);
                }
            }
            Err(error) => {
                let kind = match error.kind {
                    ErrorKind::Skip => encode::ErrorKind::Skip,
                    ErrorKind::DeadLetter => encode::ErrorKind::DeadLetter,
                    ErrorKind::Fatal => encode::ErrorKind::Fatal,
                };
                encode::error(&mut results, kind, &error.message);
                writer.drain();
            }
        }
    }
    results
}

/// What an output may reference of its input instead of carrying bytes.
struct Input {
    key: Field,
    value: Field,
    headers: Option<InputHeaders>,
}

fn message(batch: &Arc<Vec<u8>>, view: &BatchView<'_>, record: &RecordView<'_>) -> Message {
    let shared = |part: &[u8]| Shared::within(batch, part);
    let field =
        |part: Option<&[u8]>| part.map_or(Field::Absent, |part| Field::Shared(shared(part)));
    let source = view.sources.get(record.source);
    Message {
        key: field(record.key),
        value: field(record.value),
        headers: HeaderList::from_input(InputHeaders {
            raw: shared(record.headers.raw()),
            count: record.headers.len(),
        }),
        event_time_ms: record.event_time_ms,
        publish_time_ms: record.publish_time_ms,
        source: InputSource::Batch {
            kind: match source.map(|source| source.kind) {
                Some(source_kind::PULSAR) => SourceKind::Pulsar,
                Some(source_kind::GCP_PUBSUB) => SourceKind::GcpPubsub,
                _ => SourceKind::Other,
            },
            topic: shared(source.map_or(&b""[..], |source| source.topic.as_bytes())),
            message_id: shared(record.message_id.as_bytes()),
            info: OnceLock::new(),
        },
        index: None,
    }
}

/// An output's key or value as sent: a reference when it is the input's own, untouched.
fn field<'a>(field: &'a Field, input: &Field) -> FieldView<'a> {
    if field.is_input(input) {
        return FieldView::FromInput;
    }
    field.get().map_or(FieldView::Absent, FieldView::Inline)
}

fn encode_output(results: &mut Vec<u8>, output: &Output, input: &Input) {
    let input_headers = match (&output.headers.input, &input.headers) {
        (Some(this), Some(input)) => this.raw.is(&input.raw),
        _ => false,
    };
    // Headers that are not the input's own (a message's headers moved to another record)
    // are sent in full.
    let inline: Vec<(&str, &[u8])> = match input_headers {
        true => output
            .headers
            .added
            .iter()
            .map(|header| (header.name.as_str(), header.value.as_slice()))
            .collect(),
        false => output
            .headers
            .all()
            .iter()
            .map(|header| (header.name.as_str(), header.value.as_slice()))
            .collect(),
    };
    encode::output(
        results,
        field(&output.key, &input.key),
        field(&output.value, &input.value),
        output.timestamp_ms,
        output.topic.as_deref(),
        input_headers,
        inline.len(),
    );
    for (name, value) in inline {
        encode::header(results, name, value);
    }
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
