//! The MQTT broker (see README.md): TCP, TLS and WebSocket listeners, one task per
//! connection, the router.

pub mod accept;
pub mod authenticate;
pub mod authorize;
pub mod broker;
pub mod cloud_event;
pub mod codec;
pub mod connection;
pub mod events;
pub mod lifecycle;
pub mod limits;
pub mod listeners;
pub mod metrics;
pub mod outbox;
pub mod peer_service;
pub mod peers;
pub mod persist;
pub mod reason;
pub mod routing;
pub mod session;
pub mod trie;
pub mod websocket;

// TLS is the data plane's, shared with HTTPS; `mqtt::tls` keeps naming it for the broker's
// modules.
pub use crate::tls;

use crate::snapshot::SharedSnapshot;
use broker::{Broker, Limits};
use metrics::MqttMetrics;
use std::path::Path;
use std::sync::Arc;
use tracing::info;

pub use accept::{Closing, Connections, WebSocketConnections};
pub use listeners::{Addrs, run_local, serve};

/// The broker of the served Namespace, its metrics registered in `registry`, its sessions
/// and retained messages restored from `<data_dir>/mqtt/`. Made before the listeners so
/// that the HTTP listener can carry MQTT over WebSockets. With `store`, messages are routed
/// and lifecycle events published to the Topics the Namespace names.
pub fn broker(
    snapshot: SharedSnapshot,
    registry: &prometheus::Registry,
    data_dir: &Path,
    store: Option<crate::store::EventStore>,
    max_connections_per_listener: usize,
    pod: &crate::pod::PodIdentity,
    peers: Option<Arc<peers::Peers>>,
) -> anyhow::Result<Arc<Broker>> {
    let metrics = MqttMetrics::register(registry)?;
    let limits = Limits {
        max_connections: max_connections_per_listener,
        ..Limits::default()
    };
    let mut broker = Broker::new(snapshot.clone(), metrics, limits)
        .on_pod(pod)
        .persisting_in(data_dir.to_path_buf());
    if let Some(store) = store {
        broker.events = Some(events::EventSink::start(store, snapshot, registry)?);
    }
    if let Some(peers) = peers {
        broker = broker.with_peers(peers);
    }
    let broker = Arc::new(broker);
    let stored = persist::load(data_dir);
    let retained = stored.retained.len();
    let sessions = broker.restore(stored);
    info!(sessions, retained, "mqtt state restored");
    Ok(broker)
}
