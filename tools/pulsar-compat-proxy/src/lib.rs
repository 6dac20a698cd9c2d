//! A loopback TCP proxy that lets the `pulsar` crate consume from `pulsar-lite`.
//!
//! **For local development and tests only.** Real Apache Pulsar needs no proxy: point the
//! `pulsar` crate straight at the broker.
//!
//! # Why it exists
//!
//! Sluice's tests run against [pulsar-lite] 0.2.0, a small Pulsar-protocol broker, because no
//! Docker (and so no Apache Pulsar) is available on the development machines. Measured there
//! (see docs/local-brokers.md): a pulsar-rs 6.9.1 producer works against pulsar-lite, but a
//! pulsar-rs consumer fails at the first message with
//! `Decoding("Error decoding payload frame: Incomplete(Size(1886547792))")`, drops the connection
//! and ends its stream.
//!
//! The cause: the Pulsar protocol makes the payload checksum (magic number `0x0e01` followed by
//! a CRC32-C) optional. pulsar-lite leaves it out of the frames it sends to consumers; the Java
//! and C++ clients accept that, but pulsar-rs's decoder always expects it. Apache Pulsar brokers
//! forward the producer's checksummed frames, so pulsar-rs works there.
//!
//! # What it does
//!
//! For every client connection the proxy opens one connection to the broker.
//!
//! - Client → broker: bytes are copied unchanged.
//! - Broker → client: frames are parsed ([`FrameCodec`]) and rewritten ([`FrameRewriter`]):
//!   - a payload section without the magic number gets `0x0e01` + CRC32-C (Castagnoli, over
//!     metadata size + metadata + payload) inserted, and `total_size` grows by 6;
//!   - a `LOOKUP_RESPONSE` gets its broker URLs replaced by the proxy's own address, because
//!     pulsar-lite advertises its own `--addr` and the client would otherwise connect to it
//!     directly, bypassing the proxy.
//!
//! Commands are decoded with the protobuf types the `pulsar` crate exports
//! (`pulsar::message::proto`); only lookup responses are re-encoded, every other command is
//! forwarded byte for byte. The proxy does not terminate TLS.
//!
//! ```text
//! pulsar-compat-proxy --listen 127.0.0.1:6650 --upstream 127.0.0.1:6651
//! ```
//!
//! [pulsar-lite]: https://pypi.org/project/pulsar-lite/

mod frame;
mod proxy;
mod rewrite;

pub use frame::{DEFAULT_MAX_FRAME_SIZE, Frame, FrameCodec, FrameError};
pub use proxy::{CompatProxy, ProxyError};
pub use rewrite::{CHECKSUM_HEADER_LEN, FrameRewriter, MAGIC_CRC32C, add_checksum};
