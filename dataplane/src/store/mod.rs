//! The durable event store: one append-only log per topic and the delivery state of every
//! subscription. See `README.md` beside this file for the design: files, record formats,
//! recovery, group commit and lock order.

mod clock;
mod commit;
mod dead_letter;
mod durable_file;
mod error;
mod inner;
mod journal;
mod lock_token;
mod log;
mod metrics;
mod options;
pub mod peer_service;
pub mod peers;
mod push;
mod queue;
mod queues;
mod record;
mod retention;
mod segment;
mod settle;
mod subscription;
mod topic;

#[cfg(test)]
mod tests;

use crate::pod::PodIdentity;
use crate::shutdown::Stopper;
use clock::Clock;
use gridline_crds::model::Snapshot;
use metrics::StoreMetrics;
use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use tracing::Instrument;

/// The event type the CloudEvents parser produces, re-exported for the store's callers.
pub use crate::cloudevents::PublishedEvent;
pub use dead_letter::{DeadLetterReason, LastAttempt};
pub use error::StoreError;
pub use gridline_crds::types::namespace::FsyncPolicy;
pub(crate) use inner::Inner;
use inner::{ALWAYS, INTERVAL, recover};
pub use lock_token::LockTokenError;
pub use options::{StoreOptions, StoreTuning};
pub use push::{PushConsumer, PushEvent, PushLease, PushSettle, PushTake};
pub use queues::Queues;
pub use settle::{FailedLockToken, ReceivedEvent, Settle, SettleOutcome};
pub use topic::PUSH_LOCK_DURATION;

/// Cheap to clone (Arc inside). One per data-plane process.
#[derive(Clone)]
pub struct EventStore {
    inner: Arc<Inner>,
}

impl EventStore {
    /// Open (or create) the store and recover every topic log and subscription state on disk,
    /// as the store of a process outside Kubernetes (`PodIdentity::local()`).
    pub async fn open(options: StoreOptions) -> Result<EventStore, StoreError> {
        Self::open_as(options, &PodIdentity::local()).await
    }

    /// [`EventStore::open`] as the store of pod `pod`: its lock tokens carry the pod's owner
    /// number.
    pub async fn open_as(
        options: StoreOptions,
        pod: &PodIdentity,
    ) -> Result<EventStore, StoreError> {
        Self::open_with(options, pod, StoreTuning::default()).await
    }

    /// [`EventStore::open`] with non-default tuning.
    #[doc(hidden)]
    pub async fn open_tuned(
        options: StoreOptions,
        tuning: StoreTuning,
    ) -> Result<EventStore, StoreError> {
        Self::open_with(options, &PodIdentity::local(), tuning).await
    }

    async fn open_with(
        options: StoreOptions,
        pod: &PodIdentity,
        tuning: StoreTuning,
    ) -> Result<EventStore, StoreError> {
        let metrics = Arc::new(StoreMetrics::new().map_err(std::io::Error::other)?);
        metrics.register(options.metrics.registry());
        let (stopper, stopped) = Stopper::new();
        let inner = Arc::new(Inner {
            lifecycle: parking_lot::Mutex::new(()),
            root: options.data_dir.join("store"),
            clock: Clock::new(),
            metrics,
            tuning,
            owner: pod.owner(),
            topics: RwLock::new(BTreeMap::new()),
            fsync_policy: AtomicU8::new(ALWAYS),
            fsync_interval_ms: AtomicU64::new(100),
            stopper,
            stopped,
            tasks: parking_lot::Mutex::new(Vec::new()),
        });
        let recovering = Arc::clone(&inner);
        tokio::task::spawn_blocking(move || recover(&recovering))
            .await
            .map_err(std::io::Error::other)??;
        let period = inner.tuning.retention_period;
        let fsync = tokio::spawn(retention::fsync_task(Arc::downgrade(&inner)));
        let retention = tokio::spawn(retention::retention_task(Arc::downgrade(&inner), period));
        inner.tasks.lock().extend([fsync, retention]);
        Ok(EventStore { inner })
    }

    /// Called with every Snapshot the data plane starts serving (and once at start-up, before
    /// any request is served). Creates logs for new topics, delivery state for new queue/push
    /// subscriptions — starting at the current end of their topic —, applies changed settings
    /// and stops serving removed topics/subscriptions (their files stay until retention has
    /// passed, see `retention.rs`).
    pub fn apply_snapshot(&self, snapshot: Arc<Snapshot>) {
        let inner = &self.inner;
        let _lifecycle = inner.lifecycle.lock();
        let storage = snapshot.namespace.as_ref().map(|n| &n.spec.storage);
        let policy = storage.map_or(FsyncPolicy::Always, |s| s.fsync_policy);
        let interval = storage.map_or(100, |s| {
            u64::try_from(s.fsync_interval_milliseconds).unwrap_or(100)
        });
        inner.fsync_policy.store(
            match policy {
                FsyncPolicy::Always => ALWAYS,
                FsyncPolicy::Interval => INTERVAL,
            },
            Ordering::Relaxed,
        );
        inner
            .fsync_interval_ms
            .store(interval.max(1), Ordering::Relaxed);
        for (name, compiled) in &snapshot.topics {
            let topic = match inner.open_topic(name) {
                Ok(topic) => topic,
                Err(error) => {
                    tracing::error!(topic = %name, %error, "cannot open the topic's log");
                    continue;
                }
            };
            topic.set_fsync_policy(policy);
            topic.retention.store(
                clock::duration_millis(compiled.event_retention),
                Ordering::Relaxed,
            );
            let subscriptions: Vec<_> = snapshot.subscriptions_of(name).collect();
            if let Err(error) = topic.serve(&subscriptions, inner.owner) {
                tracing::error!(topic = %name, %error, "cannot create subscription state");
            }
            topic.is_served.store(true, Ordering::Release);
        }
        for (name, topic) in inner.topics.read().iter() {
            if !snapshot.topics.contains_key(name) && topic.is_served.swap(false, Ordering::AcqRel)
            {
                let _ = topic.serve(&[], inner.owner);
            }
        }
    }

    /// Append events to a topic. Returns only once the events are durable per the fsync
    /// policy (Always: fsynced; Interval: written, fsync within the interval). All-or-nothing
    /// per call. Subscription filters are evaluated here.
    pub async fn publish(
        &self,
        topic: &str,
        events: Vec<PublishedEvent>,
    ) -> Result<(), StoreError> {
        let span = tracing::debug_span!("store.publish", topic, events = events.len());
        self.inner.publish(topic, events).instrument(span).await
    }

    /// Long poll: wait up to `max_wait` for at least one event, return up to `max_events`
    /// (1-100), each locked for the subscription's receive lock duration.
    pub async fn receive(
        &self,
        topic: &str,
        subscription: &str,
        max_events: usize,
        max_wait: Duration,
    ) -> Result<Vec<ReceivedEvent>, StoreError> {
        let span = tracing::debug_span!("store.receive", topic, subscription);
        async {
            let (found, served) = self.inner.queue_subscription(topic, subscription)?;
            queue::receive(&self.inner, &found, &served, max_events, max_wait).await
        }
        .instrument(span)
        .await
    }

    /// Acknowledge / release (with delay) / reject / renew lock, per token. Durable before it
    /// returns.
    pub async fn settle(
        &self,
        topic: &str,
        subscription: &str,
        action: Settle,
        lock_tokens: &[String],
    ) -> Result<SettleOutcome, StoreError> {
        let span = tracing::debug_span!("store.settle", topic, subscription, ?action);
        async {
            let (found, served) = self.inner.queue_subscription(topic, subscription)?;
            queue::settle(&self.inner, &found, &served, action, lock_tokens).await
        }
        .instrument(span)
        .await
    }

    /// Wait (at most `max_wait`) until queue subscription `subscription` of `topic` may have
    /// something to hand out: an event published, a lock expired or released. A wake-up is a
    /// hint, not a promise: the caller looks with `receive`. How another pod's long poll
    /// learns that this pod has events.
    pub async fn wait_for_activity(
        &self,
        topic: &str,
        subscription: &str,
        max_wait: Duration,
    ) -> Result<(), StoreError> {
        let (_, served) = self.inner.queue_subscription(topic, subscription)?;
        let notified = served.notify.notified();
        let stopped = self.inner.stopped.stopped();
        tokio::select! {
            _ = notified => {}
            _ = stopped => {}
            _ = tokio::time::sleep(max_wait) => {}
        }
        Ok(())
    }

    /// The dispatcher's handle on push subscription `subscription` of `topic` (see
    /// `push.rs`).
    pub fn push_consumer(
        &self,
        topic: &str,
        subscription: &str,
    ) -> Result<PushConsumer, StoreError> {
        let found = self.inner.topic(topic)?;
        let served = found
            .served
            .load()
            .get(subscription)
            .cloned()
            .ok_or_else(|| StoreError::SubscriptionNotFound {
                topic: topic.to_string(),
                subscription: subscription.to_string(),
            })?;
        PushConsumer::new(Arc::clone(&self.inner), found, served)
    }

    /// Flush and stop (graceful shutdown): new calls fail with `ShuttingDown`, long polls
    /// return, queued writes finish and everything is fsynced.
    pub async fn close(&self) {
        self.inner.stopper.stop();
        for topic in self.inner.all_topics() {
            topic.committer.close().await;
        }
        let tasks = std::mem::take(&mut *self.inner.tasks.lock());
        for task in tasks {
            task.abort();
        }
    }

    /// Run the retention pass now (TTL sweep and segment deletion) instead of waiting for its
    /// period.
    #[doc(hidden)]
    pub async fn run_retention(&self) -> Result<(), StoreError> {
        retention::run_once(&self.inner).await
    }
}
