//! The MQTT broker (see README.md): TCP, TLS and WebSocket listeners, one task per
//! connection, the router.

pub mod authorize;
pub mod broker;
pub mod codec;
pub mod connection;
pub mod lifecycle;
pub mod limits;
pub mod metrics;
pub mod persist;
pub mod routing;
pub mod session;
pub mod tls;
pub mod trie;
pub mod websocket;

use crate::snapshot::{Readiness, SharedSnapshot};
use broker::{Broker, Limits};
use connection::Transport;
use gridline_crds::model::Snapshot;
use gridline_crds::types::State;
use metrics::MqttMetrics;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tls::TlsConfigs;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tracing::{debug, info, warn};

/// Where the local-mode MQTT listeners bind.
#[derive(Clone, Copy, Debug)]
pub struct Addrs {
    /// Plaintext MQTT (`--mqtt-addr`).
    pub plaintext: SocketAddr,
    /// MQTT over TLS (`--mqtts-addr`).
    pub tls: SocketAddr,
}

/// The broker of the served Namespace, its metrics registered in `registry`, its sessions
/// and retained messages restored from `<data_dir>/mqtt/`. Made before the listeners so
/// that the HTTP listener can carry MQTT over WebSockets. With `store`, messages are routed
/// and lifecycle events published to the Topics the Namespace names.
pub fn broker(
    snapshot: SharedSnapshot,
    registry: &prometheus::Registry,
    data_dir: &Path,
    store: Option<crate::store::EventStore>,
) -> anyhow::Result<Arc<Broker>> {
    let metrics = MqttMetrics::register(registry)?;
    let mut broker = Broker::new(snapshot.clone(), metrics, Limits::default())
        .persisting_in(data_dir.to_path_buf());
    if let Some(store) = store {
        let routing = routing::RoutingMetrics::register(registry)?;
        broker.routing = Some(routing::Routing::start(
            store.clone(),
            snapshot.clone(),
            routing,
        ));
        let lifecycle = lifecycle::LifecycleMetrics::register(registry)?;
        broker.lifecycle = Some(lifecycle::Lifecycle::start(store, snapshot, lifecycle));
    }
    let broker = Arc::new(broker);
    let stored = persist::load(data_dir);
    let retained = stored.retained.len();
    let sessions = broker.restore(stored);
    info!(sessions, retained, "mqtt state restored");
    Ok(broker)
}

/// Accept connections until `stop`; each goes to its own task at once, where the TLS
/// handshake (with `tls`) and the CONNECT handshake run, each with its timeout. Beyond
/// `max_connections`, sockets are closed.
pub async fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    tls: Option<Arc<TlsConfigs>>,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(broker.limits.max_connections));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|s| *s) => return,
        };
        let (socket, _peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                warn!(%error, "mqtt accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            broker
                .metrics
                .connects
                .with_label_values(&["over_limit"])
                .inc();
            drop(socket);
            continue;
        };
        let _ = socket.set_nodelay(true);
        let broker = broker.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => connection::handle(socket, broker, Transport::Plaintext).await,
                Some(tls) => handle_tls(socket, broker, &tls).await,
            }
            drop(permit);
        });
    }
}

/// The TLS handshake, within the handshake timeout, then the MQTT connection.
async fn handle_tls(socket: TcpStream, broker: Arc<Broker>, tls: &TlsConfigs) {
    let config = match tls.config_for(&broker.snapshot.load()) {
        Ok(config) => config,
        Err(error) => {
            warn!(%error, "no TLS configuration: closing the connection");
            return;
        }
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let stream = match tokio::time::timeout(
        broker.limits.handshake_timeout,
        acceptor.accept(socket),
    )
    .await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            debug!(%error, "TLS handshake failed");
            broker
                .metrics
                .connects
                .with_label_values(&["tls_failed"])
                .inc();
            return;
        }
        Err(_) => {
            debug!("no TLS handshake within the handshake timeout");
            broker
                .metrics
                .connects
                .with_label_values(&["tls_timeout"])
                .inc();
            return;
        }
    };
    let client_certificates = stream
        .get_ref()
        .1
        .peer_certificates()
        .map(|chain| chain.iter().map(|c| c.clone().into_owned()).collect())
        .unwrap_or_default();
    connection::handle(
        stream,
        broker,
        Transport::Tls {
            client_certificates,
        },
    )
    .await;
}

/// Whether the Namespace of `snapshot` has its broker on.
fn broker_enabled(snapshot: &Snapshot) -> bool {
    snapshot
        .namespace
        .as_ref()
        .is_some_and(|n| n.spec.topic_spaces_configuration.state == State::Enabled)
}

/// Local mode: once a Namespace is served, open the plaintext listener on `addrs.plaintext`
/// if the Namespace enables it, and the TLS listener on `addrs.tls` if it enables
/// `listeners.mqttTls` and names a certificate (both only with the broker on), announcing
/// `mqtt listening on <addr>` and `mqtts listening on <addr>` on stdout.
pub async fn run_local(
    broker: Arc<Broker>,
    addrs: Addrs,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let snapshot = broker.snapshot.clone();
    // The first configuration is applied just after start-up.
    while !matches!(*snapshot.readiness(), Readiness::Ready { .. }) {
        if *stop.borrow() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let served = snapshot.load();
    let enabled = broker_enabled(&served);
    let namespace = served.namespace.as_ref();
    let plaintext = enabled
        && namespace
            .and_then(|n| n.spec.listeners.mqtt_plaintext.as_ref())
            .is_some_and(|l| l.enabled);
    let mut tls = enabled && namespace.is_some_and(|n| n.spec.listeners.mqtt_tls.enabled);
    let tls_configs = Arc::new(TlsConfigs::default());
    if tls && let Err(error) = tls_configs.config_for(&served) {
        warn!(%error, "not listening for MQTT over TLS");
        tls = false;
    }
    drop(served);
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(watch_snapshot(broker.clone(), stop.clone()));
    if let Some(data_dir) = broker.data_dir.clone() {
        tasks.spawn(persist::run(broker.clone(), data_dir, stop.clone()));
    }
    if plaintext {
        let listener = bind("mqtt", addrs.plaintext).await?;
        tasks.spawn(serve(listener, broker.clone(), None, stop.clone()));
    }
    if tls {
        let listener = bind("mqtts", addrs.tls).await?;
        tasks.spawn(serve(
            listener,
            broker.clone(),
            Some(tls_configs),
            stop.clone(),
        ));
    }
    if !plaintext && !tls {
        info!("not listening for MQTT on TCP: the Namespace enables no MQTT TCP listener");
    }
    let mut stop = stop;
    let _ = stop.wait_for(|s| *s).await;
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Tell connections when the served Snapshot changes (`Broker::snapshot_changes`), so that
/// a disabled Client is disconnected and revoked subscriptions are dropped. The Snapshot is
/// an `ArcSwap`: comparing pointers every 100 ms costs nothing and needs no hook in the
/// applier.
async fn watch_snapshot(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let mut seen = broker.snapshot.load();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let served = broker.snapshot.load();
        if !Arc::ptr_eq(&served, &seen) {
            seen = served;
            broker.snapshot_changes.send_modify(|n| *n += 1);
        }
    }
}

/// Bind `addr` and announce `<scheme> listening on <addr>` (tests parse it).
async fn bind(scheme: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} ({scheme}): {e}"))?;
    let local = listener.local_addr()?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{scheme} listening on {local}")?;
        stdout.flush()?;
    }
    info!(addr = %local, scheme, "mqtt listening");
    Ok(listener)
}
