//! MQTT over WebSockets: `GET /mqtt` with subprotocol `mqtt`, when the served Namespace
//! enables `listeners.websockets`: on the data plane's HTTP listener, and on the WSS listener
//! (TLS, Event Grid's 443), where the client's certificate is requested as on MQTT over TLS.
//!
//! The upgraded socket is bridged to the same connection handler as TCP through an in-memory
//! pipe: binary messages from the client are written into it, whatever the handler writes
//! goes back as binary messages. MQTT packets may span messages and a message may hold
//! several packets (MQTT 5 §6), so the byte stream is all the handler needs.

use super::authorize::Listener;
use super::broker::Broker;
use super::connection::{self, Transport};
use super::listeners::{self, Connections};
use super::tls::{PeerCertificates, TlsConfigs};
use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};
use tokio_rustls::server::TlsStream;
use tracing::{debug, warn};

/// Bytes buffered between the WebSocket and the connection handler, each way.
const PIPE_BYTES: usize = 64 * 1024;
/// How long a client may take to answer our Close once the connection has ended.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

#[derive(Clone)]
struct WebSocketState {
    broker: Arc<Broker>,
    /// Connections over WebSockets on the HTTP listener, bounded like a TCP listener's (on
    /// WSS the listener bounds them before the TLS handshake).
    connections: Option<Connections>,
}

/// The `/mqtt` route, to merge into the HTTP router; its connections are `connections`.
pub fn routes(broker: Arc<Broker>, connections: Connections) -> Router {
    Router::new()
        .route("/mqtt", get(upgrade))
        .with_state(WebSocketState {
            broker,
            connections: Some(connections),
        })
}

async fn upgrade(State(state): State<WebSocketState>, upgrade: WebSocketUpgrade) -> Response {
    let transport = Transport::WebSocket {
        client_certificates: Vec::new(),
        tls: false,
    };
    accept_upgrade(state, upgrade, transport)
}

async fn upgrade_wss(
    State(state): State<WebSocketState>,
    ConnectInfo(peer): ConnectInfo<WssPeer>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let transport = Transport::WebSocket {
        client_certificates: peer.client_certificates,
        tls: true,
    };
    let response = accept_upgrade(state, upgrade, transport);
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        peer.upgraded.store(true, Ordering::Relaxed);
    }
    response
}

fn accept_upgrade(
    state: WebSocketState,
    upgrade: WebSocketUpgrade,
    transport: Transport,
) -> Response {
    let snapshot = state.broker.snapshot.load();
    let enabled = snapshot.namespace.as_ref().is_some_and(|n| {
        n.spec.listeners.websockets
            && n.spec.topic_spaces_configuration.state == gridline_crds::types::State::Enabled
    });
    drop(snapshot);
    if !enabled {
        return (
            StatusCode::NOT_FOUND,
            "MQTT over WebSockets is not enabled on this Namespace\n",
        )
            .into_response();
    }
    let upgrade = upgrade.protocols(["mqtt"]);
    if upgrade.selected_protocol().is_none() {
        return (
            StatusCode::BAD_REQUEST,
            "MQTT over WebSockets needs the WebSocket subprotocol `mqtt`\n",
        )
            .into_response();
    }
    let permit = match &state.connections {
        Some(connections) => match connections.open(&state.broker) {
            Some(permit) => Some(permit),
            None => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
        },
        None => None,
    };
    let broker = state.broker;
    upgrade.on_upgrade(move |socket| bridge(socket, broker, transport, permit))
}

/// Run the connection handler over `socket` until both ends are done.
async fn bridge(
    socket: WebSocket,
    broker: Arc<Broker>,
    transport: Transport,
    _permit: Option<OwnedSemaphorePermit>,
) {
    let (client_end, handler_end) = tokio::io::duplex(PIPE_BYTES);
    let (mut from_handler, mut to_handler) = tokio::io::split(client_end);
    let (mut sink, mut stream) = socket.split();

    let inbound = async move {
        while let Some(Ok(message)) = stream.next().await {
            match message {
                Message::Binary(bytes) => {
                    if to_handler.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                // MQTT over WebSockets is binary only: a text message ends the connection.
                Message::Text(_) | Message::Close(_) => break,
                Message::Ping(_) | Message::Pong(_) => {}
            }
        }
        // End of stream for the handler: it ends the connection (and publishes the will).
        let _ = to_handler.shutdown().await;
    };
    let outbound = async move {
        let mut buffer = vec![0u8; 16 * 1024];
        let mut open = true;
        loop {
            let n = match from_handler.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            // Once the client is gone, keep draining so the handler never blocks on a write.
            if open
                && sink
                    .send(Message::Binary(Bytes::copy_from_slice(&buffer[..n])))
                    .await
                    .is_err()
            {
                open = false;
            }
        }
        if open {
            let _ = sink.send(Message::Close(None)).await;
        }
    };
    let handler = connection::handle(handler_end, broker, transport);
    let server = async {
        tokio::join!(handler, outbound);
    };
    tokio::pin!(server);
    tokio::pin!(inbound);
    tokio::select! {
        () = &mut server => {
            if tokio::time::timeout(CLOSE_GRACE, &mut inbound).await.is_err() {
                debug!("websocket client did not close in time");
            }
        }
        () = &mut inbound => server.await,
    }
}

/// Who is at the other end of a WSS connection: its address and certificate chain.
#[derive(Clone, Debug)]
struct WssPeer {
    #[allow(dead_code)] // for the logs of whoever needs it; the chain is what matters
    addr: SocketAddr,
    client_certificates: PeerCertificates,
    /// Set when `GET /mqtt` upgrades the connection (see `Counted::upgrade_by`).
    upgraded: Arc<AtomicBool>,
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Handshaken>>
    for WssPeer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, Handshaken>) -> Self {
        stream.remote_addr().clone()
    }
}

/// A TLS stream that holds its place among the listener's connections for as long as it
/// lives, the WebSocket after the upgrade included. Until the upgrade it must happen by
/// `upgrade_by` (the handshake timeout), else reading ends: axum sets no HTTP read timeout,
/// and a client that stays after TLS without asking for `/mqtt` must not keep its place.
struct Counted {
    stream: TlsStream<TcpStream>,
    _permit: OwnedSemaphorePermit,
    upgraded: Arc<AtomicBool>,
    upgrade_by: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.upgraded.load(Ordering::Relaxed) {
            self.upgrade_by = None;
        } else if let Some(deadline) = self.upgrade_by.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            debug!("no WebSocket upgrade within the handshake timeout");
            return Poll::Ready(Ok(())); // end of stream: hyper closes the connection
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The connections whose TLS handshake is done, for axum to serve HTTP on. Handshakes run
/// in their own tasks (`serve_wss`), so a slow client never holds up the accept loop.
struct Handshaken {
    ready: mpsc::Receiver<(Counted, WssPeer)>,
    local: SocketAddr,
}

impl axum::serve::Listener for Handshaken {
    type Io = Counted;
    type Addr = WssPeer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(ready) => ready,
            // The accept loop has stopped: nothing more comes; axum is being shut down.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(WssPeer {
            addr: self.local,
            client_certificates: Vec::new(),
            upgraded: Arc::default(),
        })
    }
}

/// The WSS listener: accept TCP until `stop`, each socket to its own task for the TLS
/// handshake (within the handshake timeout, bounded by `connections`), then HTTP with only
/// `GET /mqtt`; the upgraded socket goes through the same bridge as on the HTTP listener,
/// with the client's certificate chain.
pub async fn serve_wss(
    listener: TcpListener,
    broker: Arc<Broker>,
    tls: Arc<TlsConfigs>,
    connections: Connections,
    stop: watch::Receiver<bool>,
) {
    let local = match listener.local_addr() {
        Ok(local) => local,
        Err(error) => {
            warn!(%error, "wss listener has no address");
            return;
        }
    };
    // A handshake that finished waits here until axum takes it: a small bound, as each
    // holds a connection's place anyway.
    let (handshaken, ready) = mpsc::channel(64);
    let accepting = {
        let broker = broker.clone();
        let mut stop = stop.clone();
        async move {
            loop {
                let (socket, addr) = tokio::select! {
                    accepted = listeners::accept(&listener) => accepted,
                    _ = stop.wait_for(|s| *s) => return,
                };
                let Some(permit) = connections.open(&broker) else {
                    drop(socket);
                    continue;
                };
                let _ = socket.set_nodelay(true);
                let broker = broker.clone();
                let tls = tls.clone();
                let handshaken = handshaken.clone();
                tokio::spawn(async move {
                    let Some((stream, client_certificates)) =
                        listeners::tls_handshake(socket, &broker, &tls, Listener::SecureWebSocket)
                            .await
                    else {
                        return;
                    };
                    let upgraded = Arc::new(AtomicBool::new(false));
                    let deadline = tokio::time::sleep(broker.limits.handshake_timeout);
                    let counted = Counted {
                        stream,
                        _permit: permit,
                        upgraded: upgraded.clone(),
                        upgrade_by: Some(Box::pin(deadline)),
                    };
                    let peer = WssPeer {
                        addr,
                        client_certificates,
                        upgraded,
                    };
                    let _ = handshaken.send((counted, peer)).await;
                });
            }
        }
    };
    let app = Router::new()
        .route("/mqtt", get(upgrade_wss))
        .with_state(WebSocketState {
            broker,
            connections: None,
        })
        .into_make_service_with_connect_info::<WssPeer>();
    let mut stopped = stop;
    let serving =
        axum::serve(Handshaken { ready, local }, app).with_graceful_shutdown(async move {
            let _ = stopped.wait_for(|s| *s).await;
        });
    let (_, served) = tokio::join!(accepting, serving);
    if let Err(error) = served {
        warn!(%error, "wss listener failed");
    }
}
