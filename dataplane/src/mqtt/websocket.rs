//! MQTT over WebSockets: `GET /mqtt` with subprotocol `mqtt`, when the served Namespace
//! enables `listeners.websockets`, on both HTTP listeners: plain HTTP, and HTTPS (Event
//! Grid's 443), where the client's certificate, requested in the TLS handshake as on MQTT
//! over TLS, comes with the request ([`crate::http::listener::Peer`]).
//!
//! The upgraded socket is bridged to the same connection handler as TCP through an in-memory
//! pipe: binary messages from the client are written into it, whatever the handler writes
//! goes back as binary messages. MQTT packets may span messages and a message may hold
//! several packets (MQTT 5 §6), so the byte stream is all the handler needs.

use super::accept::{ConnectionPermit, Connections, WebSocketConnections};
use super::broker::Broker;
use super::connection::{self, Transport};
use crate::http::listener::{Peer, PeerTransport};
use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::debug;

/// Bytes buffered between the WebSocket and the connection handler, each way.
const PIPE_BYTES: usize = 64 * 1024;
/// How long a client may take to answer our Close once the connection has ended.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

#[derive(Clone)]
struct WebSocketState {
    broker: Arc<Broker>,
    connections: WebSocketConnections,
}

/// The `/mqtt` route, to merge into the HTTP router served on both HTTP listeners.
pub fn routes(broker: Arc<Broker>, connections: WebSocketConnections) -> Router {
    Router::new()
        .route("/mqtt", get(upgrade))
        .with_state(WebSocketState {
            broker,
            connections,
        })
}

async fn upgrade(
    State(state): State<WebSocketState>,
    peer: Option<Extension<Peer>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let (transport, connections) = match peer.map(|Extension(peer)| peer.transport) {
        Some(PeerTransport::Tls {
            client_certificates,
        }) => (
            Transport::WebSocket {
                client_certificates: client_certificates.as_ref().clone(),
                tls: true,
            },
            state.connections.tls.clone(),
        ),
        Some(PeerTransport::Plaintext) | None => (
            Transport::WebSocket {
                client_certificates: Vec::new(),
                tls: false,
            },
            state.connections.plaintext.clone(),
        ),
    };
    accept_upgrade(&state.broker, &connections, upgrade, transport)
}

fn accept_upgrade(
    broker: &Arc<Broker>,
    connections: &Connections,
    upgrade: WebSocketUpgrade,
    transport: Transport,
) -> Response {
    let snapshot = broker.snapshot.load();
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
    let Some(permit) = connections.open(&broker.metrics) else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let broker = broker.clone();
    upgrade.on_upgrade(move |socket| bridge(socket, broker, transport, permit))
}

/// Run the connection handler over `socket` until both ends are done.
async fn bridge(
    socket: WebSocket,
    broker: Arc<Broker>,
    transport: Transport,
    _permit: ConnectionPermit,
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
