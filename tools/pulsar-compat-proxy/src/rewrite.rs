//! The broker→client rewrites that make pulsar-lite's frames acceptable to the `pulsar` crate.

use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message as _;
use pulsar::message::proto::BaseCommand;

use crate::frame::{Frame, FrameError};

/// The magic number that announces a CRC32-C checksum in a payload section.
pub const MAGIC_CRC32C: u16 = 0x0e01;

/// Bytes the magic number and the checksum add to a payload section.
pub const CHECKSUM_HEADER_LEN: usize = 6;

/// Rewrites frames sent by the broker before they reach the client.
#[derive(Debug, Clone)]
pub struct FrameRewriter {
    broker_service_url: String,
    broker_service_url_tls: String,
}

impl FrameRewriter {
    /// A rewriter that points lookup responses at the proxy listening on `proxy_addr`.
    pub fn new(proxy_addr: SocketAddr) -> Self {
        Self {
            broker_service_url: format!("pulsar://{proxy_addr}"),
            // The proxy does not terminate TLS, but a TLS URL that still named the broker would
            // let a client bypass the proxy; naming the proxy makes such a client fail visibly.
            broker_service_url_tls: format!("pulsar+ssl://{proxy_addr}"),
        }
    }

    /// The plain-text broker URL written into lookup responses.
    pub fn broker_service_url(&self) -> &str {
        &self.broker_service_url
    }

    /// Adds a missing payload checksum and points lookup responses at the proxy.
    ///
    /// # Errors
    ///
    /// Fails when the command is not a valid `BaseCommand` or the payload section is truncated.
    pub fn rewrite(&self, frame: Frame) -> Result<Frame, FrameError> {
        let command = self.rewrite_command(frame.command)?;
        let payload = frame.payload.map(add_checksum).transpose()?;
        Ok(Frame { command, payload })
    }

    /// Returns the command unchanged, unless it is a lookup response naming a broker.
    ///
    /// Only `CommandLookupTopicResponse` carries broker URLs in pulsar-rs's `PulsarApi.proto`
    /// (partitioned-metadata responses carry only a partition count), so only it is re-encoded.
    fn rewrite_command(&self, command: Bytes) -> Result<Bytes, FrameError> {
        let mut decoded = BaseCommand::decode(command.clone())?;
        let Some(lookup) = decoded.lookup_topic_response.as_mut() else {
            return Ok(command);
        };
        let mut changed = false;
        for (url, replacement) in [
            (&mut lookup.broker_service_url, &self.broker_service_url),
            (
                &mut lookup.broker_service_url_tls,
                &self.broker_service_url_tls,
            ),
        ] {
            if let Some(url) = url.as_mut().filter(|url| *url != replacement) {
                tracing::debug!(from = %url, to = %replacement, "rewriting broker URL in lookup response");
                url.clone_from(replacement);
                changed = true;
            }
        }
        Ok(if changed {
            decoded.encode_to_vec().into()
        } else {
            command
        })
    }
}

/// Prepends the magic number and the CRC32-C checksum to a payload section that lacks them.
///
/// The checksum covers everything after it: metadata size, metadata and payload. A section
/// that already starts with the magic number is returned unchanged. The check is unambiguous:
/// read as a metadata size, `0x0e01xxxx` would be more than 234 MB, far above any frame limit.
///
/// # Errors
///
/// Fails when an unchecksummed section cannot hold its metadata size and metadata.
pub fn add_checksum(section: Bytes) -> Result<Bytes, FrameError> {
    if section.starts_with(&MAGIC_CRC32C.to_be_bytes()) {
        return Ok(section);
    }
    let Some(metadata_size) = section
        .first_chunk::<4>()
        .map(|size| u32::from_be_bytes(*size))
    else {
        return Err(FrameError::MalformedPayload {
            len: section.len(),
            metadata_size: 0,
        });
    };
    let metadata_size = metadata_size as usize;
    if metadata_size > section.len() - 4 {
        return Err(FrameError::MalformedPayload {
            len: section.len(),
            metadata_size,
        });
    }

    let mut checksummed = BytesMut::with_capacity(CHECKSUM_HEADER_LEN + section.len());
    checksummed.put_u16(MAGIC_CRC32C);
    checksummed.put_u32(crc32c::crc32c(&section));
    checksummed.put_slice(&section);
    Ok(checksummed.freeze())
}

#[cfg(test)]
mod tests {
    use bytes::Buf;
    use pulsar::message::proto::{
        CommandLookupTopicResponse, CommandMessage, MessageIdData, base_command,
        command_lookup_topic_response,
    };
    use tokio_util::codec::{Decoder, Encoder};

    use super::*;
    use crate::frame::FrameCodec;

    const PROXY_ADDR: &str = "127.0.0.1:6650";

    fn rewriter() -> FrameRewriter {
        FrameRewriter::new(PROXY_ADDR.parse().unwrap())
    }

    fn message_command() -> BaseCommand {
        BaseCommand {
            r#type: base_command::Type::Message as i32,
            message: Some(CommandMessage {
                consumer_id: 7,
                message_id: MessageIdData {
                    ledger_id: 1,
                    entry_id: 2,
                    ..Default::default()
                },
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// `[metadata_size][metadata][payload]`, as pulsar-lite sends it (no magic, no checksum).
    fn unchecksummed_section(metadata: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut section = (metadata.len() as u32).to_be_bytes().to_vec();
        section.extend_from_slice(metadata);
        section.extend_from_slice(payload);
        section
    }

    fn encode(frame: Frame) -> BytesMut {
        let mut wire = BytesMut::new();
        FrameCodec::default().encode(frame, &mut wire).unwrap();
        wire
    }

    #[test]
    fn inserts_magic_and_crc32c_into_an_unchecksummed_payload() {
        let section = unchecksummed_section(b"meta", b"hello");
        let frame = Frame {
            command: message_command().encode_to_vec().into(),
            payload: Some(Bytes::from(section.clone())),
        };
        let original_len = encode(frame.clone()).len();

        let mut wire = encode(rewriter().rewrite(frame).unwrap());

        assert_eq!(wire.len(), original_len + CHECKSUM_HEADER_LEN);
        let total_size = wire.get_u32() as usize;
        assert_eq!(
            total_size,
            wire.len(),
            "total_size must grow by the 6 inserted bytes"
        );
        let command_size = wire.get_u32() as usize;
        assert_eq!(
            BaseCommand::decode(wire.split_to(command_size)).unwrap(),
            message_command()
        );
        assert_eq!(wire.get_u16(), MAGIC_CRC32C);
        let checksum = wire.get_u32();
        assert_eq!(
            &wire[..],
            &section[..],
            "the section follows the checksum unchanged"
        );
        // CRC-32C check value from RFC 3720 (iSCSI), to pin the polynomial, then this frame's.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(checksum, crc32c::crc32c(&section));
    }

    #[test]
    fn leaves_an_already_checksummed_payload_alone() {
        let section = unchecksummed_section(b"meta", b"hello");
        let mut checksummed = MAGIC_CRC32C.to_be_bytes().to_vec();
        checksummed.extend_from_slice(&crc32c::crc32c(&section).to_be_bytes());
        checksummed.extend_from_slice(&section);
        let frame = Frame {
            command: message_command().encode_to_vec().into(),
            payload: Some(Bytes::from(checksummed)),
        };

        assert_eq!(rewriter().rewrite(frame.clone()).unwrap(), frame);
    }

    #[test]
    fn leaves_a_command_only_frame_byte_for_byte_alone() {
        let ping = BaseCommand {
            r#type: base_command::Type::Ping as i32,
            ..Default::default()
        };
        let frame = Frame {
            command: ping.encode_to_vec().into(),
            payload: None,
        };

        assert_eq!(rewriter().rewrite(frame.clone()).unwrap(), frame);
    }

    #[test]
    fn rewrites_a_frame_whose_bytes_arrive_in_pieces() {
        let frame = Frame {
            command: message_command().encode_to_vec().into(),
            payload: Some(unchecksummed_section(b"metadata", b"payload").into()),
        };
        let wire = encode(frame.clone());
        let mut codec = FrameCodec::default();
        let mut buffer = BytesMut::new();
        let mut decoded = Vec::new();
        for piece in wire.chunks(5) {
            buffer.extend_from_slice(piece);
            while let Some(frame) = codec.decode(&mut buffer).unwrap() {
                decoded.push(rewriter().rewrite(frame).unwrap());
            }
        }

        assert_eq!(decoded.len(), 1);
        let payload = decoded[0].payload.as_ref().unwrap();
        assert!(payload.starts_with(&MAGIC_CRC32C.to_be_bytes()));
        assert_eq!(
            payload.len(),
            frame.payload.unwrap().len() + CHECKSUM_HEADER_LEN
        );
    }

    fn lookup_response(url: Option<&str>, url_tls: Option<&str>) -> BaseCommand {
        BaseCommand {
            r#type: base_command::Type::LookupResponse as i32,
            lookup_topic_response: Some(CommandLookupTopicResponse {
                broker_service_url: url.map(str::to_owned),
                broker_service_url_tls: url_tls.map(str::to_owned),
                response: Some(command_lookup_topic_response::LookupType::Connect as i32),
                request_id: 42,
                authoritative: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn points_lookup_responses_at_the_proxy_and_fixes_the_sizes() {
        let original = lookup_response(
            Some("pulsar://127.0.0.1:6651"),
            Some("pulsar+ssl://broker.example:6652"),
        );
        let frame = Frame {
            command: original.encode_to_vec().into(),
            payload: None,
        };

        let mut wire = encode(rewriter().rewrite(frame).unwrap());

        let total_size = wire.get_u32() as usize;
        assert_eq!(total_size, wire.len());
        let command_size = wire.get_u32() as usize;
        assert_eq!(command_size, wire.len(), "a lookup response has no payload");
        let rewritten = BaseCommand::decode(wire).unwrap();
        let expected = lookup_response(
            Some("pulsar://127.0.0.1:6650"),
            Some("pulsar+ssl://127.0.0.1:6650"),
        );
        assert_eq!(rewritten, expected, "only the URLs change");
    }

    #[test]
    fn does_not_invent_urls_in_a_failed_lookup() {
        let failed = lookup_response(None, None);
        let frame = Frame {
            command: failed.encode_to_vec().into(),
            payload: None,
        };

        let rewritten = rewriter().rewrite(frame.clone()).unwrap();

        assert_eq!(rewritten, frame);
    }

    #[test]
    fn refuses_truncated_payload_sections_and_garbage_commands() {
        let command: Bytes = message_command().encode_to_vec().into();
        let too_short = Frame {
            command: command.clone(),
            payload: Some(Bytes::from_static(&[0])),
        };
        assert!(matches!(
            rewriter().rewrite(too_short),
            Err(FrameError::MalformedPayload {
                len: 1,
                metadata_size: 0
            })
        ));

        let overrun = Frame {
            command,
            payload: Some(Bytes::from_static(&[0, 0, 0, 9, 1, 2])),
        };
        assert!(matches!(
            rewriter().rewrite(overrun),
            Err(FrameError::MalformedPayload {
                len: 6,
                metadata_size: 9
            })
        ));

        let garbage = Frame {
            command: Bytes::from_static(&[0xff, 0xff, 0xff]),
            payload: None,
        };
        assert!(matches!(
            rewriter().rewrite(garbage),
            Err(FrameError::DecodeCommand(_))
        ));
    }
}
