//! Pulsar wire frames: cut a byte stream into frames and write frames back.
//!
//! A frame is `[total_size u32][command_size u32][BaseCommand]`, optionally followed by a
//! payload section (`[magic u16][crc32c u32]` when checksummed, then
//! `[metadata_size u32][metadata][payload]`). All integers are big-endian and `total_size`
//! counts every byte after itself.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// The largest `total_size` the codec accepts by default.
///
/// Pulsar's default maximum message size is 5 MiB; 64 MiB leaves room for large batches while
/// still stopping a garbage length prefix from making the proxy buffer gigabytes.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 64 * 1024 * 1024;

/// Bytes taken by the two size prefixes (`total_size` and `command_size`).
const SIZE_PREFIXES_LEN: usize = 8;

/// One Pulsar frame, split into its command and its optional payload section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The serialized `BaseCommand` protobuf.
    pub command: Bytes,
    /// Everything after the command, exactly as received: `None` for a command-only frame.
    pub payload: Option<Bytes>,
}

impl Frame {
    /// Number of bytes the frame takes on the wire, including the `total_size` prefix.
    pub fn encoded_len(&self) -> usize {
        SIZE_PREFIXES_LEN + self.command.len() + self.payload.as_ref().map_or(0, Bytes::len)
    }
}

/// Why a frame could not be read, rewritten or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length prefix announces more than the configured limit (often: not a Pulsar stream).
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The announced `total_size`.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// `total_size` is too small to hold the `command_size` field.
    #[error("frame total size {0} is too small to hold a command size")]
    TooSmall(usize),
    /// `command_size` points past the end of the frame.
    #[error("command size {command_size} does not fit in a frame of total size {total_size}")]
    CommandTooLarge {
        /// The announced `command_size`.
        command_size: usize,
        /// The announced `total_size`.
        total_size: usize,
    },
    /// The payload section has no room for the metadata size, or the metadata overruns it.
    #[error("payload section of {len} bytes cannot hold metadata of {metadata_size} bytes")]
    MalformedPayload {
        /// Bytes in the payload section (after any magic number and checksum).
        len: usize,
        /// The announced metadata size (0 when even the size field is missing).
        metadata_size: usize,
    },
    /// The command is not a valid `BaseCommand` protobuf.
    #[error("cannot decode the command")]
    DecodeCommand(#[from] prost::DecodeError),
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A [`Decoder`] and [`Encoder`] for Pulsar frames.
///
/// Decoding is incremental: a frame split over several reads is returned once all its bytes
/// have arrived.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    max_frame_size: usize,
}

impl FrameCodec {
    /// A codec that refuses frames whose `total_size` exceeds `max_frame_size`.
    pub fn new(max_frame_size: usize) -> Self {
        Self { max_frame_size }
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_SIZE)
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let Some(size_prefix) = src.first_chunk::<4>() else {
            return Ok(None);
        };
        let total_size = u32::from_be_bytes(*size_prefix) as usize;
        if total_size > self.max_frame_size {
            return Err(FrameError::TooLarge {
                size: total_size,
                limit: self.max_frame_size,
            });
        }
        if total_size < 4 {
            return Err(FrameError::TooSmall(total_size));
        }
        let frame_len = 4 + total_size;
        if src.len() < frame_len {
            src.reserve(frame_len - src.len());
            return Ok(None);
        }

        let mut frame = src.split_to(frame_len).freeze();
        frame.advance(4);
        let command_size = frame.get_u32() as usize;
        if command_size > frame.remaining() {
            return Err(FrameError::CommandTooLarge {
                command_size,
                total_size,
            });
        }
        let command = frame.split_to(command_size);
        let payload = (!frame.is_empty()).then_some(frame);
        Ok(Some(Frame { command, payload }))
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        // The read limit does not apply here: a rewritten frame may be a few bytes larger than
        // the frame read, and the client has its own limit. Only the u32 fields bound it.
        let total_size = frame.encoded_len() - 4;
        let (Ok(total_size_field), Ok(command_size_field)) = (
            u32::try_from(total_size),
            u32::try_from(frame.command.len()),
        ) else {
            return Err(FrameError::TooLarge {
                size: total_size,
                limit: u32::MAX as usize,
            });
        };
        dst.reserve(frame.encoded_len());
        dst.put_u32(total_size_field);
        dst.put_u32(command_size_field);
        dst.put_slice(&frame.command);
        if let Some(payload) = &frame.payload {
            dst.put_slice(payload);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(command: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&((4 + command.len() + payload.len()) as u32).to_be_bytes());
        bytes.extend_from_slice(&(command.len() as u32).to_be_bytes());
        bytes.extend_from_slice(command);
        bytes.extend_from_slice(payload);
        bytes
    }

    #[test]
    fn decodes_a_command_only_frame() {
        let mut src = BytesMut::from(&wire(b"cmd", b"")[..]);
        let frame = FrameCodec::default().decode(&mut src).unwrap().unwrap();
        assert_eq!(
            frame,
            Frame {
                command: Bytes::from_static(b"cmd"),
                payload: None
            }
        );
        assert!(src.is_empty());
    }

    #[test]
    fn decodes_a_frame_with_payload_and_leaves_the_next_frame_in_the_buffer() {
        let mut bytes = wire(b"cmd", b"payload");
        bytes.extend_from_slice(&wire(b"next", b"")[..6]);
        let mut src = BytesMut::from(&bytes[..]);
        let mut codec = FrameCodec::default();

        let frame = codec.decode(&mut src).unwrap().unwrap();
        assert_eq!(frame.command, Bytes::from_static(b"cmd"));
        assert_eq!(frame.payload, Some(Bytes::from_static(b"payload")));
        assert_eq!(src.len(), 6, "the partial second frame stays buffered");
        assert_eq!(codec.decode(&mut src).unwrap(), None);
    }

    #[test]
    fn returns_a_frame_only_once_every_split_part_has_arrived() {
        let bytes = wire(b"command", b"payload-bytes");
        let mut codec = FrameCodec::default();
        let mut src = BytesMut::new();
        for (index, byte) in bytes.iter().enumerate() {
            src.put_u8(*byte);
            let decoded = codec.decode(&mut src).unwrap();
            if index + 1 < bytes.len() {
                assert_eq!(decoded, None, "frame returned early at byte {index}");
            } else {
                let frame = decoded.expect("the last byte completes the frame");
                assert_eq!(frame.payload, Some(Bytes::from_static(b"payload-bytes")));
            }
        }
    }

    #[test]
    fn encoding_reproduces_the_decoded_bytes() {
        for bytes in [wire(b"cmd", b""), wire(b"cmd", b"payload")] {
            let mut codec = FrameCodec::default();
            let frame = codec
                .decode(&mut BytesMut::from(&bytes[..]))
                .unwrap()
                .unwrap();
            let mut out = BytesMut::new();
            codec.encode(frame, &mut out).unwrap();
            assert_eq!(&out[..], &bytes[..]);
        }
    }

    #[test]
    fn refuses_a_frame_above_the_limit_before_buffering_it() {
        let mut src = BytesMut::from(&1_000_000u32.to_be_bytes()[..]);
        let error = FrameCodec::new(1000).decode(&mut src).unwrap_err();
        assert!(matches!(
            error,
            FrameError::TooLarge {
                size: 1_000_000,
                limit: 1000
            }
        ));
    }

    #[test]
    fn refuses_garbage_sizes() {
        let mut too_small = BytesMut::from(&[0, 0, 0, 2, 0, 0][..]);
        assert!(matches!(
            FrameCodec::default().decode(&mut too_small),
            Err(FrameError::TooSmall(2))
        ));

        let mut command_overruns = BytesMut::from(&[0, 0, 0, 5, 0, 0, 0, 9, 1][..]);
        assert!(matches!(
            FrameCodec::default().decode(&mut command_overruns),
            Err(FrameError::CommandTooLarge {
                command_size: 9,
                total_size: 5
            })
        ));
    }
}
