//! Making a link: TCP, TLS (mutual, ALPN `gridline-peer/1`), then the Hellos. The dialer
//! sends its Hello first; the acceptor checks it and answers with its own Hello or a
//! Goodbye; the dialer checks the answer the same way. Either refusal is a Goodbye naming
//! the reason, then the close.

use super::frame::{Frame, Goodbye, GoodbyeReason, Hello};
use super::hello::{self, Refusal, Role};
use super::metrics::Failure;
use super::tls::{ALPN, LinkTls};
use crate::cluster::members::MembersWatch;
use bytes::BytesMut;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsStream;

/// The largest Hello or Goodbye read before the link is up (both are a few hundred bytes).
const MAX_HANDSHAKE_FRAME: u32 = 64 * 1024;

/// Why a link could not be made.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    #[error("the TLS peer did not negotiate ALPN gridline-peer/1")]
    Alpn,
    #[error("no handshake within {0:?}")]
    Timeout(Duration),
    #[error("socket error during the Hellos: {0}")]
    Io(std::io::Error),
    #[error("this pod refused the peer's Hello: {}", .0.message)]
    Refused(Refusal),
    #[error("the peer said goodbye ({}): {}", .0.reason, crate::log_limit::truncated(&.0.message))]
    Goodbye(Goodbye),
    #[error("the peer sent {0} where a Hello belongs")]
    Unexpected(String),
}

impl HandshakeError {
    pub fn failure(&self) -> Failure {
        match self {
            HandshakeError::Connect(_) | HandshakeError::Io(_) => Failure::Io,
            HandshakeError::Tls(_) | HandshakeError::Alpn => Failure::Tls,
            HandshakeError::Timeout(_) => Failure::Timeout,
            HandshakeError::Refused(Refusal { reason, .. })
            | HandshakeError::Goodbye(Goodbye { reason, .. }) => match reason {
                GoodbyeReason::Version => Failure::Version,
                _ => Failure::Refused,
            },
            HandshakeError::Unexpected(_) => Failure::Protocol,
        }
    }
}

/// A link whose Hellos were exchanged.
pub struct Linked {
    pub stream: TlsStream<TcpStream>,
    /// The peer's Hello (its name, owner, Namespace).
    pub peer: Hello,
    /// The protocol version the link speaks.
    pub version: u16,
    /// Bytes read past the peer's Hello.
    pub leftover: BytesMut,
}

/// TLS as a server on an accepted connection.
pub async fn accept_tls(
    socket: TcpStream,
    tls: &LinkTls,
) -> Result<TlsStream<TcpStream>, HandshakeError> {
    let _ = socket.set_nodelay(true);
    let stream = tokio_rustls::TlsAcceptor::from(tls.server_config())
        .accept(socket)
        .await
        .map_err(HandshakeError::Tls)?;
    if stream.get_ref().1.alpn_protocol() != Some(ALPN) {
        return Err(HandshakeError::Alpn);
    }
    Ok(TlsStream::Server(stream))
}

/// TCP and TLS as a client to `addr`.
pub async fn connect_tls(
    addr: &str,
    tls: &LinkTls,
) -> Result<TlsStream<TcpStream>, HandshakeError> {
    let socket = TcpStream::connect(addr)
        .await
        .map_err(HandshakeError::Connect)?;
    let _ = socket.set_nodelay(true);
    let stream = tokio_rustls::TlsConnector::from(tls.client_config())
        .connect(LinkTls::server_name(), socket)
        .await
        .map_err(HandshakeError::Tls)?;
    if stream.get_ref().1.alpn_protocol() != Some(ALPN) {
        return Err(HandshakeError::Alpn);
    }
    Ok(TlsStream::Client(stream))
}

/// Exchange Hellos on `stream` as `role` (a dialer names the member it `dialled`).
pub async fn exchange_hellos(
    mut stream: TlsStream<TcpStream>,
    ours: &Hello,
    role: Role,
    dialled: Option<&str>,
    members: &MembersWatch,
) -> Result<Linked, HandshakeError> {
    let mut buffer = BytesMut::with_capacity(1024);
    if role == Role::Dialer {
        write_frame(&mut stream, &Frame::Hello(ours.clone())).await?;
    }
    let theirs = match read_frame(&mut stream, &mut buffer).await? {
        Frame::Hello(hello) => hello,
        Frame::Goodbye(goodbye) => return Err(HandshakeError::Goodbye(goodbye)),
        other => return Err(HandshakeError::Unexpected(other.kind_name().to_string())),
    };
    let checked = hello::check(ours, &theirs, role, dialled, &members.borrow());
    match checked {
        Ok(version) => {
            if role == Role::Acceptor {
                write_frame(&mut stream, &Frame::Hello(ours.clone())).await?;
            }
            Ok(Linked {
                stream,
                peer: theirs,
                version,
                leftover: buffer,
            })
        }
        Err(refusal) => {
            let goodbye = Frame::Goodbye(Goodbye {
                reason: refusal.reason,
                message: refusal.message.clone(),
            });
            // The refusal is what matters; a peer that does not read its Goodbye changes
            // nothing.
            let _ = write_frame(&mut stream, &goodbye).await;
            let _ = stream.shutdown().await;
            Err(HandshakeError::Refused(refusal))
        }
    }
}

/// Write one frame and flush it.
pub async fn write_frame<S: AsyncWrite + Unpin>(
    stream: &mut S,
    frame: &Frame,
) -> Result<(), HandshakeError> {
    let mut bytes = BytesMut::with_capacity(frame.encoded_len() + 4);
    frame.encode(&mut bytes);
    stream.write_all(&bytes).await.map_err(HandshakeError::Io)?;
    stream.flush().await.map_err(HandshakeError::Io)
}

/// Read one frame (at most [`MAX_HANDSHAKE_FRAME`] bytes); what follows it stays in `buffer`.
pub async fn read_frame<S: AsyncRead + Unpin>(
    stream: &mut S,
    buffer: &mut BytesMut,
) -> Result<Frame, HandshakeError> {
    loop {
        match Frame::decode(buffer, MAX_HANDSHAKE_FRAME) {
            Ok(Some(frame)) => return Ok(frame),
            Ok(None) => {}
            Err(error) => {
                return Err(HandshakeError::Unexpected(format!(
                    "bytes that are no frame ({error})"
                )));
            }
        }
        buffer.reserve(4096);
        match stream.read_buf(buffer).await {
            Ok(0) => {
                return Err(HandshakeError::Io(std::io::Error::from(
                    std::io::ErrorKind::UnexpectedEof,
                )));
            }
            Ok(_) => {}
            Err(error) => return Err(HandshakeError::Io(error)),
        }
    }
}
