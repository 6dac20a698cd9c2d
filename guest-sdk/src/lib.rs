//! Write [Sluice](https://example.invalid/sluice) transform components in Rust.
//!
//! A transform sits between a source (Apache Pulsar, Google Cloud Pub/Sub) and Apache Kafka. You
//! write one function that receives each input record as a [`Message`] and writes zero or more
//! [`Output`]s into a [`Writer`]; [`#[transform]`](transform) turns it into a component that
//! implements the `sluice:transform/transformer@0.2.0` world (`init` and `transform-batch`, a
//! batch crossing as one flat buffer each way: docs/flat-batch-abi.md).
//!
//! ```
//! use sluice_sdk::{Error, Message, Result, Writer, transform};
//!
//! /// Tags every JSON record; dead-letters the rest.
//! #[transform]
//! fn on_message(msg: Message, out: &mut Writer) -> Result<()> {
//!     let Some(value) = msg.value() else {
//!         return Err(Error::skip("tombstone"));
//!     };
//!     if !value.starts_with(b"{") {
//!         return Err(Error::dead_letter("value is not a JSON object"));
//!     }
//!     out.write(msg.into_output().with_header("validated-by", "tagger"));
//!     Ok(())
//! }
//!
//! // The function stays an ordinary function, so native tests call it directly.
//! let mut out = Writer::default();
//! on_message(Message::from_value(r#"{"a":1}"#), &mut out).unwrap();
//! assert_eq!(out.outputs()[0].header("validated-by"), Some(&b"tagger"[..]));
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2` and a `crate-type = ["cdylib"]`
//! library: the `.wasm` file is the component.
//!
//! # Errors decide what happens to the record
//!
//! Returning `Err` produces no outputs for that record (whatever was written is discarded):
//!
//! | error | the host |
//! |---|---|
//! | [`Error::skip`] | drops the record, counts it, acknowledges the source |
//! | [`Error::dead_letter`] | writes the original record to the dead-letter topic with the reason |
//! | [`Error::fatal`] | stops the pipeline; the record is redelivered later |
//! | anything else (`?` on a `serde_json::Error`, an `anyhow::Error`, ...) | dead-letters it with the error's message and causes |
//!
//! A panic traps the instance: the host dead-letters that record and starts a fresh instance.
//!
//! # Configuration
//!
//! The pipeline's `config = { ... }` table arrives once, before any record. [`config()`] returns
//! it from anywhere; an optional hook validates it, and its error refuses the configuration:
//!
//! ```
//! use sluice_sdk::{Config, Message, Result, Writer, transform};
//!
//! fn setup(cfg: &Config) -> Result<()> {
//!     cfg.require("topic")?; // error: missing config key "topic"
//!     Ok(())
//! }
//!
//! #[transform(init = setup)]
//! fn on_message(msg: Message, out: &mut Writer) -> Result<()> {
//!     let config = sluice_sdk::config();
//!     out.write_to(config.require("topic")?, msg);
//!     Ok(())
//! }
//!
//! // In tests, set the config for the current thread only:
//! let mut out = Writer::default();
//! sluice_sdk::testing::with_config([("topic", "audit")], || {
//!     on_message(Message::from_value("x"), &mut out)
//! })
//! .unwrap();
//! assert_eq!(out.outputs()[0].topic(), Some("audit"));
//! ```
//!
//! # JSON records
//!
//! With the `json` feature, the `json` module parses a record's value (dead-lettering what is
//! not JSON), finds fields by a configured dotted path and re-exports `serde_json`.
#![deny(missing_docs)]

// Lets generated code name this crate `::sluice_sdk` from inside it too.
extern crate self as sluice_sdk;

#[doc(hidden)]
pub mod __private;
mod config;
mod error;
mod header_list;
mod input_source;
#[cfg(feature = "json")]
pub mod json;
pub mod log;
mod message;
mod output;
mod shared;
mod state;
pub mod testing;
mod writer;

pub use config::{Config, config};
pub use error::{Error, ErrorKind, Result};
pub use message::{Header, Message, SourceInfo, SourceKind};
pub use output::Output;
/// Turns `fn(Message, &mut Writer) -> Result<(), E>` into the component's exports.
///
/// ```text
/// #[transform]                 fn on_message(msg: Message, out: &mut Writer) -> Result<()>
/// #[transform(init = setup)]   ... and run `fn setup(cfg: &Config) -> Result<(), E>` in `init`
/// ```
///
/// The function stays callable as written. The attribute adds, out of sight, the implementation
/// of the `init` and `transform-batch` exports: `init` stores the config (see [`config()`]) and
/// runs the hook; `transform-batch` calls the function once per record with a fresh [`Writer`].
/// `E` may be [`Error`], any [`std::error::Error`], or anything printable such as
/// `anyhow::Error`. A signature that does not fit is a compile error pointing at the mismatch.
pub use sluice_sdk_macro::transform;
pub use state::State;
pub use writer::Writer;
