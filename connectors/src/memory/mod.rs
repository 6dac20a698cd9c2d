//! In-memory stand-ins for a broker, for tests of the pipeline without brokers: a source the
//! test pushes records into and reads the acks of, and a sink that keeps what it was sent and
//! can be taken down and brought back to play an outage.
//!
//! Everything a source needs is in this folder: its `ConnectSource` (start), its
//! `SourceClient` (receive, ack, nack, with a message id as its ack token), and no config
//! section (tests build it in code). A new connector follows the same shape.

mod sink;
mod source;

pub use sink::MemorySink;
pub use source::MemorySource;
