//! The MQTT broker (see README.md): a TCP listener, one task per connection, the router.

pub mod authorize;
pub mod broker;
pub mod codec;
pub mod connection;
pub mod metrics;
pub mod session;
pub mod trie;

use crate::snapshot::{Readiness, SharedSnapshot};
use broker::{Broker, Limits};
use gridline_crds::types::State;
use metrics::MqttMetrics;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tracing::{info, warn};

/// Accept connections until `stop`; each goes to its own task at once, the CONNECT
/// handshake (with its timeout) runs there. Beyond `max_connections`, sockets are closed.
pub async fn serve(listener: TcpListener, broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
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
        tokio::spawn(async move {
            connection::handle(socket, broker).await;
            drop(permit);
        });
    }
}

/// Local mode: once a Namespace is served, open the plaintext listener on `addr` if the
/// Namespace enables it and its broker (`topicSpacesConfiguration.state`), and announce
/// `mqtt listening on <addr>` on stdout.
pub async fn run_local(
    addr: SocketAddr,
    snapshot: SharedSnapshot,
    registry: &prometheus::Registry,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let metrics = MqttMetrics::register(registry)?;
    // The first configuration is applied just after start-up.
    while !matches!(*snapshot.readiness(), Readiness::Ready { .. }) {
        if *stop.borrow() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let enabled = snapshot.load().namespace.as_ref().is_some_and(|n| {
        n.spec.topic_spaces_configuration.state == State::Enabled
            && n.spec
                .listeners
                .mqtt_plaintext
                .as_ref()
                .is_some_and(|l| l.enabled)
    });
    if !enabled {
        info!("not listening for MQTT: the Namespace enables no plaintext MQTT listener");
        let mut stop = stop;
        let _ = stop.wait_for(|s| *s).await;
        return Ok(());
    }
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "mqtt listening on {local}")?;
        stdout.flush()?;
    }
    info!(addr = %local, "mqtt listening");
    let broker = Arc::new(Broker::new(snapshot, metrics, Limits::default()));
    serve(listener, broker, stop).await;
    Ok(())
}
