//! What the handlers read: a leaf below the router (`mod.rs`) and the API handlers (`api/`).

use super::api::metrics::ApiMetrics;
use crate::delivery::StatusBoard;
use crate::metrics::Metrics;
use crate::shutdown::StopSignal;
use crate::snapshot::SharedSnapshot;
use crate::store::Queues;
use std::sync::Arc;

/// What the handlers read.
#[derive(Clone)]
pub struct AppState {
    pub snapshot: SharedSnapshot,
    pub metrics: Arc<Metrics>,
    /// Publish, receive and settle: the handlers' only way to the store.
    pub queues: Queues,
    pub api: Arc<ApiMetrics>,
    /// Shutdown began: long polls end (empty), so it does not wait for them.
    pub draining: StopSignal,
    /// Push subscriptions' delivery status (empty until push delivery is wired in).
    pub push_status: StatusBoard,
}

impl AppState {
    /// Registers the API's metrics into `metrics`' registry, so call it once per registry.
    pub fn new(
        snapshot: SharedSnapshot,
        metrics: Arc<Metrics>,
        queues: Queues,
    ) -> Result<Self, prometheus::Error> {
        let api = Arc::new(ApiMetrics::register(metrics.registry())?);
        Ok(Self {
            snapshot,
            metrics,
            queues,
            api,
            draining: StopSignal::never(),
            push_status: StatusBoard::default(),
        })
    }

    /// Serve push delivery's status at `/status/eventsubscriptions`.
    pub fn with_push_status(mut self, status: StatusBoard) -> Self {
        self.push_status = status;
        self
    }

    /// Long polls end (empty) once `stop` fires, so shutdown does not wait for them.
    pub fn with_shutdown(mut self, stop: StopSignal) -> Self {
        self.draining = stop;
        self
    }
}
