//! Taking connections in: the places of a listener's connections (`Connections`, bounded per
//! listener and by the process's descriptor budget, waited for at shutdown), the accept loop's
//! error back-off, and the TLS handshake. The TCP listeners (`listeners.rs`) and MQTT over
//! WebSockets (`websocket.rs`) both use it; it knows nothing of the broker above it.

use super::authorize::Listener;
use super::metrics::MqttMetrics;
use crate::descriptors::ConnectionBudget;
use crate::tls::{Protocol, ServerTls};
use gridline_crds::model::Snapshot;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

/// Which listeners are closing (`Broker::closing`): their connections end, MQTT 5 ones with
/// DISCONNECT 0x8B (server shutting down). `all` at shutdown; one kind when the Snapshot turns
/// it off (`websocket` covers WebSockets on both HTTP listeners).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Closing {
    pub all: bool,
    pub plaintext: bool,
    pub tls: bool,
    pub websocket: bool,
}

impl Closing {
    /// Whether a connection that came in on `listener` must end.
    pub fn covers(&self, listener: Listener) -> bool {
        self.all
            || match listener {
                Listener::Plaintext => self.plaintext,
                Listener::Tls => self.tls,
                Listener::WebSocket | Listener::SecureWebSocket => self.websocket,
            }
    }
}

/// The connections of one listener: at most `max` at once, and within the process's
/// connection budget when it has one (beyond either, sockets are closed and counted); at
/// shutdown, waited for.
#[derive(Clone)]
pub struct Connections {
    permits: Arc<Semaphore>,
    max: u32,
    /// Which listener these are, for the metrics.
    listener: Listener,
    budget: Option<ConnectionBudget>,
}

/// A connection's place on its listener and in the process's budget, given back on drop.
pub struct ConnectionPermit {
    _listener: OwnedSemaphorePermit,
    _process: Option<OwnedSemaphorePermit>,
}

impl Connections {
    pub fn new(max: usize, listener: Listener) -> Self {
        let max = u32::try_from(max)
            .unwrap_or(u32::MAX)
            .min(Semaphore::MAX_PERMITS as u32);
        Self {
            permits: Arc::new(Semaphore::new(max as usize)),
            max,
            listener,
            budget: None,
        }
    }

    /// Connections also take their descriptor from `budget`, shared with every listener.
    pub fn within(mut self, budget: Option<ConnectionBudget>) -> Self {
        self.budget = budget;
        self
    }

    /// A place for one more connection, held for its lifetime; None (counted) when full.
    pub fn open(&self, metrics: &MqttMetrics) -> Option<ConnectionPermit> {
        let listener = self.permits.clone().try_acquire_owned().ok();
        let process = match &self.budget {
            Some(budget) => budget.take().map(Some),
            None => Some(None),
        };
        match (listener, process) {
            (Some(listener), Some(process)) => Some(ConnectionPermit {
                _listener: listener,
                _process: process,
            }),
            _ => {
                metrics.connect(self.listener, "over_limit");
                None
            }
        }
    }

    /// Resolves once every connection has ended.
    pub async fn drained(&self) {
        let _ = self.permits.acquire_many(self.max).await;
    }
}

/// The places of MQTT connections over WebSockets: on plain HTTP (`ws`) and over TLS (`wss`),
/// bounded and counted like a TCP listener's.
#[derive(Clone)]
pub struct WebSocketConnections {
    pub plaintext: Connections,
    pub tls: Connections,
}

/// The next connection; accept errors (out of file descriptors and the like) back off
/// instead of spinning.
pub async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(error) => {
                warn!(%error, "mqtt accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The TLS handshake within `timeout` (counted when it fails), with the configuration of
/// the Namespace in `snapshot`; the stream and the client's certificate chain.
pub async fn tls_handshake(
    socket: TcpStream,
    (tls, snapshot): (&ServerTls, &Snapshot),
    timeout: Duration,
    metrics: &MqttMetrics,
    listener: Listener,
) -> Option<(
    tokio_rustls::server::TlsStream<TcpStream>,
    crate::tls::PeerCertificates,
)> {
    let config = match tls.config_for(snapshot, Protocol::Mqtt) {
        Ok(config) => config,
        Err(error) => {
            warn!(%error, "no TLS configuration: closing the connection");
            return None;
        }
    };
    match crate::tls::accept(socket, config, timeout).await {
        Ok(accepted) => Some(accepted),
        Err(failure) => {
            debug!(%failure, "TLS handshake failed");
            metrics.connect(listener, failure.label());
            None
        }
    }
}
