//! The TCP side: accept clients, open one upstream connection each, pump bytes both ways.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{FramedRead, FramedWrite};
use tracing::Instrument as _;

use crate::frame::{DEFAULT_MAX_FRAME_SIZE, FrameCodec, FrameError};
use crate::rewrite::FrameRewriter;

/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);

/// Why the proxy or one of its connections stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The requested listen address.
        addr: SocketAddr,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// The upstream broker refused or did not answer a connection.
    #[error("cannot connect to the upstream broker at {addr}")]
    ConnectUpstream {
        /// The upstream address.
        addr: String,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// Forwarding client bytes to the broker failed.
    #[error("forwarding client → broker failed")]
    ClientToBroker(#[source] std::io::Error),
    /// Reading, rewriting or forwarding broker frames to the client failed.
    #[error("forwarding broker → client failed")]
    BrokerToClient(#[source] FrameError),
}

/// A bound proxy, ready to [`run`](Self::run).
#[derive(Debug)]
pub struct CompatProxy {
    listener: TcpListener,
    local_addr: SocketAddr,
    upstream: Arc<str>,
    rewriter: Arc<FrameRewriter>,
    max_frame_size: usize,
}

impl CompatProxy {
    /// Binds `listen` (port 0 picks a free port) and proxies to `upstream` (`host:port`).
    ///
    /// Lookup responses are rewritten to the address actually bound.
    ///
    /// # Errors
    ///
    /// Fails when the address cannot be bound.
    pub async fn bind(listen: SocketAddr, upstream: impl Into<String>) -> Result<Self, ProxyError> {
        let bind_error = |source| ProxyError::Bind {
            addr: listen,
            source,
        };
        let listener = TcpListener::bind(listen).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        Ok(Self {
            listener,
            local_addr,
            upstream: upstream.into().into(),
            rewriter: Arc::new(FrameRewriter::new(local_addr)),
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
        })
    }

    /// Sets the largest frame accepted from the broker (default [`DEFAULT_MAX_FRAME_SIZE`]).
    pub fn with_max_frame_size(mut self, max_frame_size: usize) -> Self {
        self.max_frame_size = max_frame_size;
        self
    }

    /// The address the proxy listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Accepts clients until the future is dropped; each connection runs in its own tasks.
    ///
    /// A failing connection is logged and closed; it never stops the proxy.
    pub async fn run(self) {
        tracing::info!(
            listen = %self.local_addr,
            upstream = %self.upstream,
            advertised = self.rewriter.broker_service_url(),
            "pulsar compat proxy ready"
        );
        loop {
            let (client, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                    continue;
                }
            };
            let upstream = Arc::clone(&self.upstream);
            let rewriter = Arc::clone(&self.rewriter);
            let max_frame_size = self.max_frame_size;
            let span = tracing::info_span!("connection", %peer);
            tokio::spawn(
                async move {
                    tracing::debug!("client connected");
                    match serve_connection(client, &upstream, &rewriter, max_frame_size).await {
                        Ok(()) => tracing::debug!("connection closed"),
                        Err(error) => tracing::warn!(
                            error = %error,
                            cause = %error_chain(&error),
                            "connection closed with an error"
                        ),
                    }
                }
                .instrument(span),
            );
        }
    }
}

/// Joins the sources of `error` with ": " for a one-line log message.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut chain = Vec::new();
    let mut source = error.source();
    while let Some(cause) = source {
        chain.push(cause.to_string());
        source = cause.source();
    }
    chain.join(": ")
}

/// Proxies one client until either side closes; then both sockets are dropped (closed).
async fn serve_connection(
    client: TcpStream,
    upstream_addr: &str,
    rewriter: &FrameRewriter,
    max_frame_size: usize,
) -> Result<(), ProxyError> {
    let upstream =
        TcpStream::connect(upstream_addr)
            .await
            .map_err(|source| ProxyError::ConnectUpstream {
                addr: upstream_addr.to_owned(),
                source,
            })?;
    // Pulsar is request/response with small commands: don't let Nagle delay them. Failing to
    // set the option only costs latency, so it is not worth failing the connection over.
    for stream in [&client, &upstream] {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
    }
    let (mut client_read, client_write) = client.into_split();
    let (upstream_read, mut upstream_write) = upstream.into_split();

    // The client's frames already carry checksums and need no change: copy the bytes.
    let client_to_broker = async {
        tokio::io::copy(&mut client_read, &mut upstream_write)
            .await
            .map(drop)
            .map_err(ProxyError::ClientToBroker)
    };
    // `forward` batches writes and flushes whenever the broker has nothing more buffered.
    let broker_to_client = FramedRead::new(upstream_read, FrameCodec::new(max_frame_size))
        .map(|frame| frame.and_then(|frame| rewriter.rewrite(frame)))
        .forward(FramedWrite::new(
            client_write,
            FrameCodec::new(max_frame_size),
        ));
    let broker_to_client = async { broker_to_client.await.map_err(ProxyError::BrokerToClient) };

    // Whichever direction ends first ends the connection: returning drops both halves of both
    // sockets, which closes them.
    tokio::select! {
        result = client_to_broker => result,
        result = broker_to_client => result,
    }
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, BytesMut};
    use prost::Message as _;
    use pulsar::message::proto::{BaseCommand, CommandLookupTopicResponse, base_command};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio_util::codec::Decoder as _;

    use super::*;
    use crate::rewrite::MAGIC_CRC32C;

    fn frame_bytes(command: &BaseCommand, section: Option<&[u8]>) -> Vec<u8> {
        let command = command.encode_to_vec();
        let section = section.unwrap_or_default();
        let mut bytes = BytesMut::new();
        bytes.put_u32((4 + command.len() + section.len()) as u32);
        bytes.put_u32(command.len() as u32);
        bytes.put_slice(&command);
        bytes.put_slice(section);
        bytes.to_vec()
    }

    fn complete_frames(bytes: &BytesMut) -> usize {
        let (mut codec, mut buffer) = (FrameCodec::default(), bytes.clone());
        std::iter::from_fn(|| codec.decode(&mut buffer).unwrap()).count()
    }

    /// A fake broker on a real socket: checks what the client sent, answers with a lookup
    /// response and an unchecksummed message split over two writes, then hangs up.
    #[tokio::test]
    async fn proxies_a_connection_end_to_end_and_closes_it_when_the_broker_hangs_up() {
        let broker = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let broker_addr = broker.local_addr().unwrap();
        let proxy = CompatProxy::bind("127.0.0.1:0".parse().unwrap(), broker_addr.to_string())
            .await
            .unwrap();
        let proxy_addr = proxy.local_addr();
        let proxy_task = tokio::spawn(proxy.run());

        let lookup = BaseCommand {
            r#type: base_command::Type::LookupResponse as i32,
            lookup_topic_response: Some(CommandLookupTopicResponse {
                broker_service_url: Some(format!("pulsar://{broker_addr}")),
                request_id: 1,
                ..Default::default()
            }),
            ..Default::default()
        };
        let message = BaseCommand {
            r#type: base_command::Type::Message as i32,
            ..Default::default()
        };
        let section = [0, 0, 0, 2, b'm', b'd', b'p', b'a', b'y'];
        let client_bytes = b"bytes from the client, whatever they are".to_vec();

        let broker_task = tokio::spawn({
            let client_bytes = client_bytes.clone();
            async move {
                let (mut socket, _) = broker.accept().await.unwrap();
                let mut received = vec![0; client_bytes.len()];
                socket.read_exact(&mut received).await.unwrap();
                assert_eq!(received, client_bytes, "client bytes must pass unchanged");
                socket.write_all(&frame_bytes(&lookup, None)).await.unwrap();
                let message = frame_bytes(&message, Some(&section));
                let (first, second) = message.split_at(7);
                socket.write_all(first).await.unwrap();
                socket.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
                socket.write_all(second).await.unwrap();
            }
        });

        let mut client = TcpStream::connect(proxy_addr).await.unwrap();
        client.write_all(&client_bytes).await.unwrap();
        let mut received = BytesMut::new();
        while complete_frames(&received) < 2 {
            let read =
                tokio::time::timeout(Duration::from_secs(10), client.read_buf(&mut received));
            let read = read.await.expect("proxy forwards within 10 s").unwrap();
            assert_ne!(read, 0, "proxy closed before forwarding both frames");
        }
        broker_task.await.unwrap();

        let mut codec = FrameCodec::default();
        let lookup_frame = codec.decode(&mut received).unwrap().unwrap();
        let rewritten = BaseCommand::decode(lookup_frame.command).unwrap();
        assert_eq!(
            rewritten.lookup_topic_response.unwrap().broker_service_url,
            Some(format!("pulsar://{proxy_addr}"))
        );
        let message_frame = codec.decode(&mut received).unwrap().unwrap();
        let payload = message_frame.payload.unwrap();
        assert_eq!(payload[..2], MAGIC_CRC32C.to_be_bytes());
        assert_eq!(payload[2..6], crc32c::crc32c(&section).to_be_bytes());
        assert_eq!(payload[6..], section);

        // The broker hung up: the proxy must close the client side too.
        let mut rest = Vec::new();
        let eof = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut rest));
        assert_eq!(eof.await.expect("client side closed").unwrap(), 0);
        proxy_task.abort();
    }
}
