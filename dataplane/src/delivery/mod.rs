//! Push delivery: a dispatcher per push subscription delivers its events to a webhook, with
//! Event Grid's retry schedule and dead-lettering. This module is the manager: it learns of
//! every Snapshot (after the store has applied it) and starts, replaces and stops dispatchers
//! to match. See `README.md` beside this file for the design.

mod batch;
mod dispatcher;
mod metrics;
mod rate;
mod schedule;
mod status;
mod status_writer;
mod webhook;

pub use schedule::TimeScale;
pub use status::StatusBoard;
pub use status_writer::StatusWriter;

use crate::shutdown::{StopSignal, Stopper};
use crate::store::{EventStore, PushConsumer};
use dispatcher::{Dispatcher, Shared};
use gridline_crds::model::{Delivery, PushDelivery, Snapshot};
use metrics::PushMetrics;
use schedule::RetryPolicy;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Knobs production leaves at their defaults; tests and benchmarks turn them.
#[derive(Clone, Copy, Debug)]
pub struct PushTuning {
    /// Requests in flight per subscription (the bound on concurrency per destination).
    pub max_concurrent_requests: usize,
    /// New events are taken only while fewer than this many events of the subscription are
    /// in flight or waiting for a retry (raised to four rounds of full requests if that is
    /// larger, so that a healthy stream never meets the bound).
    pub retry_window_events: usize,
    /// On stop, requests in flight get this long to finish.
    pub stop_grace: Duration,
    /// Test-only: multiplies every retry delay (see [`TimeScale`]).
    pub time_scale: TimeScale,
}

impl Default for PushTuning {
    fn default() -> Self {
        PushTuning {
            max_concurrent_requests: 16,
            retry_window_events: 1000,
            stop_grace: Duration::from_secs(5),
            time_scale: TimeScale::REAL,
        }
    }
}

/// Failures of starting push delivery.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("cannot register the push delivery metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("cannot build the webhook HTTP client: {0}")]
    Client(String),
}

/// The handle `server.rs` holds. Cheap to clone.
#[derive(Clone)]
pub struct PushManager {
    snapshots: Arc<watch::Sender<Option<Arc<Snapshot>>>>,
    stop: Stopper,
    task: Arc<parking_lot::Mutex<Option<JoinHandle<()>>>>,
    status: StatusBoard,
    pods: Arc<std::sync::atomic::AtomicUsize>,
}

impl PushManager {
    /// Start the manager (no dispatcher runs before the first Snapshot).
    pub fn start(
        store: EventStore,
        registry: &prometheus::Registry,
        tuning: PushTuning,
    ) -> Result<PushManager, PushError> {
        let metrics = Arc::new(PushMetrics::register(registry)?);
        let client = webhook::client(None).map_err(PushError::Client)?;
        let status = StatusBoard::default();
        if !tuning.time_scale.is_real() {
            tracing::warn!(
                time_scale = ?tuning.time_scale,
                "test-only time scale: push retry delays are shortened"
            );
        }
        let (snapshots, snapshots_rx) = watch::channel(None);
        let (stop, stop_rx) = Stopper::new();
        let pods = Arc::new(std::sync::atomic::AtomicUsize::new(1));
        let manager = Manager {
            store,
            client,
            metrics,
            status: status.clone(),
            tuning,
            running: BTreeMap::new(),
            pods: pods.clone(),
        };
        let task = tokio::spawn(manager.run(snapshots_rx, stop_rx));
        Ok(PushManager {
            snapshots: Arc::new(snapshots),
            stop,
            task: Arc::new(parking_lot::Mutex::new(Some(task))),
            status,
            pods,
        })
    }

    /// `pods` pods of the Namespace deliver push subscriptions, each from its partition: each
    /// dispatcher keeps to its share of the per-subscription request limit.
    pub fn set_pods(&self, pods: usize) {
        self.pods
            .store(pods.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// Hand over a Snapshot the store has just applied; the manager catches up with the latest.
    pub fn apply_snapshot(&self, snapshot: Arc<Snapshot>) {
        self.snapshots.send_replace(Some(snapshot));
    }

    /// Every push subscription's delivery status (`GET /status/eventsubscriptions`).
    pub fn status(&self) -> StatusBoard {
        self.status.clone()
    }

    /// Stop every dispatcher: requests in flight get the grace period, then are cut off.
    pub async fn stop(&self) {
        self.stop.stop();
        let task = self.task.lock().take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

type Key = (String, String);

/// A dispatcher and what it was started with.
struct Running {
    push: PushDelivery,
    consumer: PushConsumer,
    stop: Stopper,
    handle: JoinHandle<()>,
}

struct Manager {
    store: EventStore,
    /// Shared by the subscriptions that name no CA of their own.
    client: reqwest::Client,
    metrics: Arc<PushMetrics>,
    status: StatusBoard,
    tuning: PushTuning,
    running: BTreeMap<Key, Running>,
    pods: Arc<std::sync::atomic::AtomicUsize>,
}

impl Manager {
    async fn run(
        mut self,
        mut snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
        stop: StopSignal,
    ) {
        loop {
            tokio::select! {
                changed = snapshots.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let latest = snapshots.borrow_and_update().clone();
                    if let Some(snapshot) = latest {
                        self.reconcile(&snapshot).await;
                    }
                }
                () = stop.stopped() => break,
            }
        }
        let keys: Vec<Key> = self.running.keys().cloned().collect();
        self.stop_all(keys).await;
    }

    /// Match the running dispatchers to the Snapshot's push subscriptions: stop those gone,
    /// replace those whose settings changed (or whose subscription the store replaced), start
    /// the new ones. A replaced dispatcher ends (its requests finish within the grace) before
    /// its successor starts, so that the successor may take over every lock.
    async fn reconcile(&mut self, snapshot: &Snapshot) {
        let desired: BTreeMap<Key, PushDelivery> = snapshot
            .subscriptions
            .iter()
            .filter_map(|(key, subscription)| match &subscription.delivery {
                Delivery::Push(push) => Some((key.clone(), push.clone())),
                Delivery::Queue(_) => None,
            })
            .collect();
        let stale: Vec<Key> = self
            .running
            .iter()
            .filter(|(key, running)| {
                let current = self
                    .store
                    .push_consumer(&key.0, &key.1)
                    .is_ok_and(|c| c.same_as(&running.consumer));
                desired.get(*key) != Some(&running.push) || !current || running.handle.is_finished()
            })
            .map(|(key, _)| key.clone())
            .collect();
        self.stop_all(stale.clone()).await;
        for key in stale {
            if !desired.contains_key(&key) {
                self.status.forget(&key.0, &key.1);
                self.metrics.forget(&key.0, &key.1);
                tracing::info!(topic = %key.0, subscription = %key.1, "push subscription removed: its dispatcher stopped");
            }
        }
        for (key, push) in desired {
            if !self.running.contains_key(&key) {
                self.start(key, push);
            }
        }
    }

    fn start(&mut self, key: Key, push: PushDelivery) {
        let (topic, subscription) = (&key.0, &key.1);
        let consumer = match self.store.push_consumer(topic, subscription) {
            Ok(consumer) => consumer,
            Err(error) => {
                tracing::warn!(%topic, %subscription, %error, "no dispatcher: the store does not serve this push subscription");
                return;
            }
        };
        let span = tracing::info_span!("push", %topic, %subscription);
        let metrics = self.metrics.subscription(topic, subscription);
        metrics.healthy.set(1);
        let (stop, stop_rx) = Stopper::new();
        let endpoint = webhook::Endpoint::new(&push, &self.client);
        let shown = endpoint
            .as_ref()
            .map_or_else(|_| "<invalid>".to_string(), |e| e.shown.clone());
        let status = self.status.track(topic, subscription, shown.clone());
        let handle = match endpoint {
            Ok(endpoint) => {
                let shared = Shared {
                    consumer: consumer.clone(),
                    endpoint,
                    retry: RetryPolicy {
                        max_delivery_count: push.max_delivery_count,
                        time_to_live: push.event_time_to_live,
                        time_scale: self.tuning.time_scale,
                    },
                    batch: batch::BatchLimits {
                        max_events: usize::try_from(push.max_events_per_batch.max(1)).unwrap_or(1),
                        max_bytes: usize::try_from(push.preferred_batch_size_bytes.max(1))
                            .unwrap_or(usize::MAX),
                    },
                    metrics,
                    status,
                    settled: tokio::sync::Notify::new(),
                    pods: self.pods.clone(),
                };
                let dispatcher = Dispatcher::new(shared, self.tuning, stop_rx);
                tracing::info!(parent: &span, endpoint = %shown, "push dispatcher starting");
                tokio::spawn(dispatcher.run(span))
            }
            Err(message) => {
                tracing::error!(parent: &span, %message, "push subscription has an unusable endpoint");
                status.not_validated("InvalidEndpoint", &message);
                metrics.validated.set(0);
                // Nothing to run until the settings change (which replaces this one).
                tokio::spawn(async move {
                    stop_rx.stopped().await;
                    drop((status, metrics));
                })
            }
        };
        self.running.insert(
            key,
            Running {
                push,
                consumer,
                stop,
                handle,
            },
        );
    }

    /// Signal the dispatchers of `keys` to stop and wait for all of them.
    async fn stop_all(&mut self, keys: Vec<Key>) {
        let handles: Vec<JoinHandle<()>> = keys
            .iter()
            .filter_map(|key| self.running.remove(key))
            .map(|running| {
                running.stop.stop();
                running.handle
            })
            .collect();
        for handle in futures::future::join_all(handles).await {
            if let Err(error) = handle
                && error.is_panic()
            {
                tracing::error!(%error, "a push dispatcher panicked");
            }
        }
    }
}
