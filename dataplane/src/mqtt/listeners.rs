//! The broker's TCP listeners: plaintext MQTT and MQTT over TLS, opened and closed as the
//! served Snapshot enables and disables them; their accept loops; and the graceful shutdown
//! of every connection, those over WebSockets (served by the HTTP listeners) included.

use super::accept::{Closing, Connections, WebSocketConnections, accept, tls_handshake};
use super::authorize::Listener;
use super::broker::Broker;
use super::connection::{self, Transport};
use super::persist;
use crate::descriptors::ConnectionBudget;
use crate::shutdown::{StopSignal, Stopper};
use crate::tls::{Protocol, ServerTls};
use gridline_crds::model::Snapshot;
use gridline_crds::types::State;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// How long connections get, at shutdown, to receive their DISCONNECT and close before the
/// final state is written. The data plane gives the whole MQTT shutdown 5 s.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// How long a closing listener's accept loop gets to finish.
const LISTENER_CLOSE: Duration = Duration::from_secs(1);

/// Where the local-mode MQTT listeners bind.
#[derive(Clone, Copy, Debug)]
pub struct Addrs {
    /// Plaintext MQTT (`--mqtt-addr`).
    pub plaintext: SocketAddr,
    /// MQTT over TLS (`--mqtts-addr`).
    pub tls: SocketAddr,
}

/// Accept connections until `stop`; each goes to its own task at once, where the TLS
/// handshake (with `tls`) and the CONNECT handshake run, each with its timeout. Beyond the
/// listener's `connections` limit, sockets are closed.
pub async fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    tls: Option<Arc<ServerTls>>,
    connections: Connections,
    stop: StopSignal,
) {
    loop {
        let (socket, _peer) = tokio::select! {
            accepted = accept(&listener) => accepted,
            _ = stop.stopped() => return,
        };
        let Some(permit) = connections.open(&broker.metrics) else {
            drop(socket);
            continue;
        };
        let _ = socket.set_nodelay(true);
        let broker = broker.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => connection::handle(socket, broker, Transport::Plaintext).await,
                // Boxed: a TLS stream and its handshake would otherwise size the task of
                // every plaintext connection too (the future is as large as its largest arm).
                Some(tls) => Box::pin(handle_tls(socket, broker, &tls)).await,
            }
            drop(permit);
        });
    }
}

/// The TLS handshake, then the MQTT connection.
async fn handle_tls(socket: TcpStream, broker: Arc<Broker>, tls: &ServerTls) {
    if let Some((stream, client_certificates)) = tls_handshake(
        socket,
        (tls, &broker.snapshot.load()),
        broker.limits.handshake_timeout,
        &broker.metrics,
        Listener::Tls,
    )
    .await
    {
        let transport = Transport::Tls {
            client_certificates,
        };
        connection::handle(stream, broker, transport).await;
    }
}

/// The listeners local mode runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Plaintext,
    Tls,
}

impl Kind {
    const ALL: [Kind; 2] = [Kind::Plaintext, Kind::Tls];

    /// How its connections are labelled and authorized.
    fn listener(self) -> Listener {
        match self {
            Kind::Plaintext => Listener::Plaintext,
            Kind::Tls => Listener::Tls,
        }
    }

    /// As announced: `<scheme> listening on <addr>` (tests parse it).
    fn scheme(self) -> &'static str {
        match self {
            Kind::Plaintext => "mqtt",
            Kind::Tls => "mqtts",
        }
    }

    fn addr(self, addrs: &Addrs) -> SocketAddr {
        match self {
            Kind::Plaintext => addrs.plaintext,
            Kind::Tls => addrs.tls,
        }
    }

    /// Whether `snapshot` wants this listener open: the broker on, the listener enabled,
    /// and for TLS a usable certificate.
    fn wanted(self, snapshot: &Snapshot, tls: &ServerTls) -> bool {
        let Some(namespace) = snapshot.namespace.as_ref() else {
            return false;
        };
        if namespace.spec.topic_spaces_configuration.state != State::Enabled {
            return false;
        }
        let listeners = &namespace.spec.listeners;
        let enabled = match self {
            Kind::Plaintext => listeners.mqtt_plaintext.as_ref().is_some_and(|l| l.enabled),
            Kind::Tls => listeners.mqtt_tls.enabled,
        };
        if !enabled || self == Kind::Plaintext {
            return enabled;
        }
        match tls.config_for(snapshot, Protocol::Mqtt) {
            Ok(_) => true,
            Err(error) => {
                warn!(%error, listener = self.scheme(), "not listening: no usable TLS configuration");
                false
            }
        }
    }
}

/// An open listener: its accept loop and how to stop it.
struct Open {
    stop: Stopper,
    task: JoinHandle<()>,
    addr: SocketAddr,
}

/// Local mode: once a Namespace is served, open the listeners it enables (plaintext on
/// `addrs.plaintext`, TLS on `addrs.tls`; each announced as `<scheme> listening on <addr>`
/// on stdout) and open or close them as later Snapshots enable or disable them; run the
/// persister. On `stop`: close the listeners, end every connection (MQTT 5: DISCONNECT
/// 0x8B), those over WebSockets on the HTTP listeners (`websockets`) included, then write
/// the final state. `tls` is the data plane's one TLS configuration, shared with HTTPS.
pub async fn run_local(
    broker: Arc<Broker>,
    addrs: Addrs,
    tls: Arc<ServerTls>,
    websockets: WebSocketConnections,
    budget: Option<ConnectionBudget>,
    stop: StopSignal,
) -> anyhow::Result<()> {
    // Followed from before the first Snapshot is looked at, so none served later is missed.
    let served = broker.snapshot.changes();
    // The first configuration is applied just after start-up.
    tokio::select! {
        () = broker.snapshot.ready() => {}
        () = stop.stopped() => return Ok(()),
    }
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(follow_snapshot(broker.clone(), served, stop.clone()));
    // The persister outlives the connections: their last changes are in the final state.
    let (persist_stop, persist_stopped) = Stopper::new();
    let persister = broker.data_dir.clone().map(|dir| {
        let broker = broker.clone();
        tokio::spawn(persist::run(
            move || broker.stored_state(),
            dir,
            persist_stopped,
        ))
    });

    let connections: HashMap<Kind, Connections> = Kind::ALL
        .into_iter()
        .map(|kind| {
            let connections = Connections::new(broker.limits.max_connections, kind.listener())
                .within(budget.clone());
            (kind, connections)
        })
        .collect();
    let supervised = supervise(&broker, addrs, &tls, &connections, stop).await;
    broker.close_listeners(|closing| !std::mem::replace(&mut closing.all, true));
    let all_ended = async {
        for c in connections
            .values()
            .chain([&websockets.plaintext, &websockets.tls])
        {
            c.drained().await;
        }
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, all_ended)
        .await
        .is_err()
    {
        warn!("MQTT connections still open after the shutdown grace period");
    }
    // Their disconnection events (and routed messages still queued) go before the store
    // closes.
    broker.flush_events(SHUTDOWN_GRACE).await;
    persist_stop.stop();
    if let Some(persister) = persister {
        let _ = persister.await;
    }
    while tasks.join_next().await.is_some() {}
    supervised
}

/// The listener kinds `snapshot` turns off (all of them with the broker off or no
/// Namespace served).
fn closing_of(snapshot: &Snapshot) -> Closing {
    let namespace = snapshot.namespace.as_ref();
    let off = namespace.is_none_or(|n| n.spec.topic_spaces_configuration.state != State::Enabled);
    let Some(namespace) = namespace else {
        return Closing {
            all: false,
            plaintext: true,
            tls: true,
            websocket: true,
        };
    };
    let listeners = &namespace.spec.listeners;
    Closing {
        all: false,
        plaintext: off || !listeners.mqtt_plaintext.as_ref().is_some_and(|l| l.enabled),
        tls: off || !listeners.mqtt_tls.enabled,
        websocket: off || !listeners.websockets,
    }
}

/// Keep the open listeners what the served Snapshot asks for until `stop`, then close them.
/// A listener the first Snapshot enables must open (else the data plane fails to start); a
/// later one that cannot bind is logged and tried again at the next Snapshot change.
async fn supervise(
    broker: &Arc<Broker>,
    addrs: Addrs,
    tls: &Arc<ServerTls>,
    connections: &HashMap<Kind, Connections>,
    stop: StopSignal,
) -> anyhow::Result<()> {
    let mut changes = broker.snapshot_changes.subscribe();
    let mut open: HashMap<Kind, Open> = HashMap::new();
    let mut first = true;
    let result = loop {
        let served = broker.snapshot.load();
        let closing = closing_of(&served);
        broker.close_listeners(|current| {
            let changed = *current != closing;
            *current = closing;
            changed
        });
        let mut failed = None;
        for kind in Kind::ALL {
            let wanted = kind.wanted(&served, tls);
            if wanted && !open.contains_key(&kind) {
                match crate::listen::bind_announced(kind.scheme(), kind.addr(&addrs)).await {
                    Ok((listener, addr)) => {
                        let task = start(kind, (listener, addr), broker, tls, connections);
                        open.insert(kind, task);
                    }
                    Err(error) if first => failed = Some(error),
                    Err(error) => warn!("{error:#}"),
                }
            } else if !wanted && let Some(listener) = open.remove(&kind) {
                close(kind, listener).await;
            }
        }
        if open.is_empty() && first {
            info!("not listening for MQTT on TCP: the Namespace enables no MQTT TCP listener");
        }
        drop(served);
        if let Some(error) = failed {
            break Err(error);
        }
        first = false;
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { break Ok(()) },
            _ = stop.stopped() => break Ok(()),
        }
    };
    // Connections first: they get their DISCONNECT while the listeners close.
    broker.close_listeners(|closing| !std::mem::replace(&mut closing.all, true));
    for listener in open.values() {
        listener.stop.stop();
    }
    for (kind, listener) in open {
        close(kind, listener).await;
    }
    result
}

/// Spawn the accept loop of `kind` on `listener`.
fn start(
    kind: Kind,
    (listener, addr): (TcpListener, SocketAddr),
    broker: &Arc<Broker>,
    tls: &Arc<ServerTls>,
    connections: &HashMap<Kind, Connections>,
) -> Open {
    let (stop, stopped) = Stopper::new();
    let broker = broker.clone();
    let connections = connections
        .get(&kind)
        .cloned()
        .unwrap_or_else(|| Connections::new(broker.limits.max_connections, kind.listener()));
    let tls = tls.clone();
    let task = match kind {
        Kind::Plaintext => tokio::spawn(serve(listener, broker, None, connections, stopped)),
        Kind::Tls => tokio::spawn(serve(listener, broker, Some(tls), connections, stopped)),
    };
    Open { stop, task, addr }
}

/// Stop accepting on `listener` and close its socket. Its connections are ended by
/// `Broker::closing` when the Snapshot turned their kind off, else they stay.
async fn close(kind: Kind, mut listener: Open) {
    listener.stop.stop();
    if tokio::time::timeout(LISTENER_CLOSE, &mut listener.task)
        .await
        .is_err()
    {
        listener.task.abort();
    }
    info!(addr = %listener.addr, scheme = kind.scheme(), "mqtt listener closed");
}

/// Tell connections and the listeners' supervisor when a new Snapshot is served
/// (`Broker::snapshot_changed`), so that a disabled Client is disconnected, revoked
/// subscriptions are dropped and listeners follow the Namespace.
async fn follow_snapshot(broker: Arc<Broker>, mut served: watch::Receiver<u64>, stop: StopSignal) {
    loop {
        tokio::select! {
            changed = served.changed() => if changed.is_err() { return },
            _ = stop.stopped() => return,
        }
        broker.snapshot_changed();
    }
}
