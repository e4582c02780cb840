//! The broker's events for the store, as one sink: MQTT messages routed into the Namespace's
//! routing Topic (`routing.rs`) and client lifecycle events (`lifecycle.rs`). Each kind has
//! its own bounded queue and task (a flood of routed messages cannot crowd lifecycle events
//! out); both append through the store's ordinary publish path. The sink knows nothing of
//! the broker: connections hand it messages and session changes, and at shutdown it is
//! flushed before the store closes.

use super::lifecycle::{Lifecycle, LifecycleMetrics};
use super::routing::{Routing, RoutingMetrics};
use crate::snapshot::SharedSnapshot;
use crate::store::EventStore;
use std::time::Duration;
use tracing::warn;

pub struct EventSink {
    pub routing: Routing,
    pub lifecycle: Lifecycle,
}

impl EventSink {
    /// Start both tasks, appending to `store` under the Snapshot served; their metrics are
    /// registered in `registry`.
    pub fn start(
        store: EventStore,
        snapshot: SharedSnapshot,
        registry: &prometheus::Registry,
    ) -> Result<Self, prometheus::Error> {
        let routing = Routing::start(
            store.clone(),
            snapshot.clone(),
            RoutingMetrics::register(registry)?,
        );
        let lifecycle = Lifecycle::start(store, snapshot, LifecycleMetrics::register(registry)?);
        Ok(Self { routing, lifecycle })
    }

    /// Events queued and not yet appended (or given up on), of both kinds.
    pub fn pending(&self) -> usize {
        self.routing.pending() + self.lifecycle.pending()
    }

    /// Graceful shutdown, once connections have ended: wait (at most `within`) until what
    /// was queued is appended, before the store closes.
    pub async fn flush(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while self.pending() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let left = self.pending();
        if left > 0 {
            warn!(
                events = left,
                "routed and lifecycle events still queued at shutdown"
            );
        }
    }
}
