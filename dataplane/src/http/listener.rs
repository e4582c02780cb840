//! The HTTP listeners: plain HTTP (`--http-addr`) and HTTPS (`--https-addr`, Event Grid's
//! 443). Both serve the whole router: the Event Grid API, health, metrics and MQTT over
//! WebSockets at `/mqtt`; what differs is the transport, which each request carries as a
//! [`Peer`] extension (the WebSocket upgrade needs the client's certificate).
//!
//! Each listener bounds what one client can hold: at most `max_connections` sockets (beyond
//! it a socket is closed at once and counted), a TLS handshake within its timeout, request
//! headers within `header_read_timeout` (hyper also applies it to a keep-alive connection
//! waiting for its next request, which is the idle timeout), and a request body within
//! `body_read_timeout`. A WebSocket leaves these bounds at the upgrade: from then on it is
//! an MQTT connection, counted and timed by the broker.
//!
//! HTTP/1.1 only: every Event Grid SDK speaks it, and HTTP/2 would need bounds of its own
//! (streams per connection, its idle timeout) for no client that needs them.

use crate::descriptors::ConnectionBudget;
use crate::log_limit::LogLimiter;
use crate::shutdown::{StopSignal, Stopper};
use crate::snapshot::SharedSnapshot;
use crate::tls::{PeerCertificates, Protocol, ServerTls};
use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tower::ServiceExt;
use tracing::{debug, warn};

/// How long connections get to finish their requests once the listener stops. Long polls end
/// at once (empty) when the server drains, so this bounds only requests already being read.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Accept errors (out of file descriptors, mostly) are logged at most this often.
const ACCEPT_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// Which listener a connection came in on: the metrics label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    Http,
    Https,
}

impl Listener {
    pub fn label(self) -> &'static str {
        match self {
            Listener::Http => "http",
            Listener::Https => "https",
        }
    }
}

/// What one listener lets a client hold.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// Open sockets at once.
    pub max_connections: usize,
    /// A TLS handshake must finish within this.
    pub tls_handshake_timeout: Duration,
    /// Request headers must arrive within this from the connection's start or the end of
    /// the previous response (so it is also how long an idle keep-alive connection stays).
    pub header_read_timeout: Duration,
    /// A request body must arrive whole within this from its headers.
    pub body_read_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
        }
    }
}

/// Who is at the other end of the connection a request came in on.
#[derive(Clone, Debug)]
pub struct Peer {
    pub addr: SocketAddr,
    pub transport: PeerTransport,
}

#[derive(Clone, Debug)]
pub enum PeerTransport {
    Plaintext,
    /// TLS, with the certificate chain the client presented (empty when none).
    Tls {
        client_certificates: Arc<PeerCertificates>,
    },
}

/// `gridline_http_connections` and `gridline_http_connections_refused_total`, by listener.
#[derive(Clone)]
pub struct ListenerMetrics {
    open: IntGaugeVec,
    refused: IntCounterVec,
}

impl ListenerMetrics {
    /// Refusal reasons: the label's whole range.
    const REASONS: [&'static str; 3] = ["over_limit", "tls_failed", "tls_timeout"];

    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let open = IntGaugeVec::new(
            Opts::new(
                "gridline_http_connections",
                "Open connections on each HTTP listener",
            ),
            &["listener"],
        )?;
        let refused = IntCounterVec::new(
            Opts::new(
                "gridline_http_connections_refused_total",
                "Connections an HTTP listener closed before serving a request, by reason \
                 (over_limit: the listener's connection cap; tls_failed / tls_timeout: the \
                 TLS handshake)",
            ),
            &["listener", "reason"],
        )?;
        registry.register(Box::new(open.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        for listener in [Listener::Http, Listener::Https] {
            open.with_label_values(&[listener.label()]);
            for reason in Self::REASONS {
                refused.with_label_values(&[listener.label(), reason]);
            }
        }
        Ok(Self { open, refused })
    }

    fn refused(&self, listener: Listener, reason: &'static str) {
        self.refused
            .with_label_values(&[listener.label(), reason])
            .inc();
    }
}

/// Where an HTTPS listener gets its rustls configuration: the served Namespace's, at each
/// handshake (so a rotated certificate or a new minimum version applies to the next one).
#[derive(Clone)]
pub struct TlsSource {
    pub tls: Arc<ServerTls>,
    pub snapshot: SharedSnapshot,
}

/// One listener: what it serves and how.
#[derive(Clone)]
pub struct HttpServer {
    pub router: Router,
    pub listener: Listener,
    pub limits: HttpLimits,
    pub metrics: ListenerMetrics,
    /// HTTPS: where the TLS configuration comes from. None: plain HTTP.
    pub tls: Option<TlsSource>,
    /// The process's connection budget, shared with every listener.
    pub budget: Option<ConnectionBudget>,
}

impl HttpServer {
    /// Accept on `socket` until `stop` turns true; then stop accepting, let connections
    /// finish what they are doing (within a grace period) and return.
    pub async fn serve(self, socket: TcpListener, stop: StopSignal) {
        let max = self.limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
        let permits = Arc::new(Semaphore::new(max));
        let server = Arc::new(self);
        let accept_errors = LogLimiter::new(ACCEPT_ERROR_LOG_INTERVAL);
        loop {
            let accepted = tokio::select! {
                accepted = socket.accept() => accepted,
                _ = stop.stopped() => break,
            };
            let (stream, addr) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    if let Some(suppressed) = accept_errors.allow() {
                        warn!(listener = server.listener.label(), %error, suppressed, "accept failed (logged at most every 5 s)");
                    }
                    // Out of descriptors: back off rather than spin on the same error.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let listener_permit = permits.clone().try_acquire_owned().ok();
            let process_permit = match &server.budget {
                Some(budget) => budget.take().map(Some),
                None => Some(None),
            };
            let (Some(listener_permit), Some(process_permit)) = (listener_permit, process_permit)
            else {
                server.metrics.refused(server.listener, "over_limit");
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let permits = (listener_permit, process_permit);
            tokio::spawn(
                server
                    .clone()
                    .connection(stream, addr, permits, stop.clone()),
            );
        }
        drop(socket);
        let all_closed = permits.acquire_many(max as u32);
        if tokio::time::timeout(SHUTDOWN_GRACE * 2, all_closed)
            .await
            .is_err()
        {
            debug!(
                listener = server.listener.label(),
                "connections still open at shutdown"
            );
        }
    }

    /// One connection, in its own task: the TLS handshake (HTTPS), then HTTP/1.1.
    async fn connection(
        self: Arc<Self>,
        stream: TcpStream,
        addr: SocketAddr,
        _permits: (OwnedSemaphorePermit, Option<OwnedSemaphorePermit>),
        stop: StopSignal,
    ) {
        let open = self
            .metrics
            .open
            .with_label_values(&[self.listener.label()]);
        open.inc();
        match &self.tls {
            None => {
                let peer = Peer {
                    addr,
                    transport: PeerTransport::Plaintext,
                };
                self.http(stream, peer, stop).await;
            }
            Some(source) => {
                if let Some((stream, peer)) = self.handshake(source, stream, addr).await {
                    self.http(stream, peer, stop).await;
                }
            }
        }
        open.dec();
    }

    async fn handshake(
        &self,
        source: &TlsSource,
        stream: TcpStream,
        addr: SocketAddr,
    ) -> Option<(tokio_rustls::server::TlsStream<TcpStream>, Peer)> {
        let config = match source
            .tls
            .config_for(&source.snapshot.load(), Protocol::Https)
        {
            Ok(config) => config,
            Err(error) => {
                debug!(%error, "no TLS configuration: closing the connection");
                self.metrics.refused(self.listener, "tls_failed");
                return None;
            }
        };
        match crate::tls::accept(stream, config, self.limits.tls_handshake_timeout).await {
            Ok((stream, client_certificates)) => {
                let peer = Peer {
                    addr,
                    transport: PeerTransport::Tls {
                        client_certificates: Arc::new(client_certificates),
                    },
                };
                Some((stream, peer))
            }
            Err(failure) => {
                debug!(%failure, %addr, "TLS handshake failed");
                self.metrics.refused(self.listener, failure.label());
                None
            }
        }
    }

    /// Serve HTTP/1.1 (with upgrades) on `stream` until the client leaves, a timeout ends it,
    /// or `stop` asks for a graceful end.
    async fn http<S>(&self, stream: S, peer: Peer, stop: StopSignal)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let router = self.router.clone();
        let body_read_timeout = self.limits.body_read_timeout;
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let mut request =
                request.map(|body| Body::new(DeadlineBody::new(body, body_read_timeout)));
            request.extensions_mut().insert(peer.clone());
            router.clone().oneshot(request)
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_read_timeout)
            .keep_alive(true);
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        tokio::pin!(connection);
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(error) = served {
                    debug!(%error, "HTTP connection ended with an error");
                }
                return;
            }
            _ = stop.stopped() => {}
        }
        connection.as_mut().graceful_shutdown();
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, connection).await;
    }
}

/// A request body that fails once its deadline passes: a client that sends headers and
/// then trickles (or withholds) its body cannot hold the connection longer than that.
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl DeadlineBody {
    fn new(inner: Incoming, timeout: Duration) -> Self {
        Self {
            inner,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

/// The body did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within the body read timeout")]
pub struct BodyTimeout;

impl hyper::body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyTimeout.into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The HTTPS listener follows the served Namespace: open on `addr` (announced as `https
/// listening on <addr>` on stdout; tests parse it) while the Namespace enables
/// `listeners.https` and a certificate can be served, closed otherwise. `changes` ticks at
/// every applied Snapshot. Returns once `stop` turns true and the listener is closed; fails
/// only when the first Snapshot that wants it cannot bind (later failures are logged and
/// tried again at the next change).
pub async fn follow_https(
    server: HttpServer,
    addr: SocketAddr,
    mut changes: watch::Receiver<u64>,
    stop: StopSignal,
) -> anyhow::Result<()> {
    let Some(source) = server.tls.clone() else {
        anyhow::bail!("the HTTPS listener needs a TLS source");
    };
    let mut open: Option<(Stopper, tokio::task::JoinHandle<()>, SocketAddr)> = None;
    let mut first = true;
    loop {
        let served = source.snapshot.load();
        // Nothing to decide before the first Snapshot is applied.
        if served.namespace.is_some() || !first {
            let wanted = https_wanted(&served, &source.tls);
            drop(served);
            if wanted && open.is_none() {
                match crate::listen::bind_announced("https", addr).await {
                    Ok((socket, local)) => {
                        let (stop_listener, stopped) = Stopper::new();
                        let task = tokio::spawn(server.clone().serve(socket, stopped));
                        open = Some((stop_listener, task, local));
                    }
                    Err(error) if first => return Err(error),
                    Err(error) => warn!("{error:#}"),
                }
            } else if !wanted && let Some((stop_listener, task, local)) = open.take() {
                stop_listener.stop();
                let _ = task.await;
                tracing::info!(addr = %local, "https listener closed");
            }
            first = false;
        }
        let changed = tokio::select! {
            changed = changes.changed() => changed.is_ok(),
            _ = stop.stopped() => break,
        };
        if !changed {
            // No more Snapshots (the applier ended, and the server is ending with its error):
            // keep serving what is open until told to stop, rather than end first and hide why.
            let _ = stop.stopped().await;
            break;
        }
    }
    if let Some((stop_listener, task, _)) = open {
        stop_listener.stop();
        let _ = task.await;
    }
    Ok(())
}

/// Whether `snapshot` wants HTTPS served: the Namespace enables it and has a certificate.
fn https_wanted(snapshot: &gridline_crds::model::Snapshot, tls: &ServerTls) -> bool {
    let Some(namespace) = snapshot.namespace.as_ref() else {
        return false;
    };
    if !namespace.spec.listeners.https.enabled {
        return false;
    }
    match tls.config_for(snapshot, Protocol::Https) {
        Ok(_) => true,
        Err(error) => {
            warn!(%error, "not listening for HTTPS: no usable TLS configuration");
            false
        }
    }
}
