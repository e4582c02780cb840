//! The durable event store: one append-only log per topic and the delivery state of every
//! subscription. See `README.md` beside this file for the design: files, record formats,
//! recovery, group commit and lock order.

mod clock;
mod commit;
mod dead_letter;
mod durable_file;
mod journal;
mod lock_token;
mod log;
mod metrics;
mod push;
mod queue;
mod queues;
mod record;
mod retention;
mod segment;
mod subscription;
mod topic;

#[cfg(test)]
mod tests;

use crate::pod::PodIdentity;
use clock::Clock;
use gridline_crds::model::Snapshot;
use metrics::StoreMetrics;
use parking_lot::RwLock;
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;
use topic::{Subscription, Topic};
use tracing::Instrument;

/// The event type the CloudEvents parser produces, re-exported for the store's callers.
pub use crate::cloudevents::PublishedEvent;
pub use dead_letter::{DeadLetterReason, LastAttempt};
pub use gridline_crds::types::namespace::FsyncPolicy;
pub use lock_token::LockTokenError;
pub use push::{PushConsumer, PushEvent, PushLease, PushSettle, PushTake};
pub use queues::Queues;
pub use topic::PUSH_LOCK_DURATION;

/// Cheap to clone (Arc inside). One per data-plane process.
#[derive(Clone)]
pub struct EventStore {
    inner: Arc<Inner>,
}

/// Where the store keeps its files and where it registers its metrics.
pub struct StoreOptions {
    /// The store owns `<data_dir>/store/`.
    pub data_dir: PathBuf,
    /// Store metrics are registered into `metrics.registry()`.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Knobs that production leaves at their defaults and tests and benchmarks turn.
#[doc(hidden)]
#[derive(Clone, Debug)]
pub struct StoreTuning {
    /// A log segment is sealed once it holds this many bytes.
    pub segment_bytes: u64,
    /// How often the retention pass (TTL sweep, segment deletion) runs.
    pub retention_period: Duration,
    /// The subscription journal is compacted once larger than this (and than 4× its last
    /// compacted size).
    pub journal_compaction_bytes: u64,
}

impl Default for StoreTuning {
    fn default() -> Self {
        StoreTuning {
            segment_bytes: 64 << 20,
            retention_period: Duration::from_secs(60),
            journal_compaction_bytes: 4 << 20,
        }
    }
}

/// The store's shared state. Lock order (outer first): `lifecycle` → `topics` → a topic's
/// committer `files` → a topic's `states` → one subscription's state → a committer's
/// `pending`. None is held across an `.await`.
pub(crate) struct Inner {
    /// Held while a Snapshot is applied and while the files of a removed topic or the state of
    /// a removed subscription are deleted, so that a Snapshot bringing one back never races
    /// its deletion.
    lifecycle: parking_lot::Mutex<()>,
    root: PathBuf,
    clock: Clock,
    metrics: Arc<StoreMetrics>,
    tuning: StoreTuning,
    /// The owner number of the lock tokens this store issues (`PodIdentity::owner`); tokens
    /// carrying another are refused as lost.
    owner: u16,
    /// Every topic with files, served or not.
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    fsync_policy: AtomicU8,
    fsync_interval_ms: AtomicU64,
    closing: AtomicBool,
    /// Wakes long polls and background tasks when the store closes.
    shutdown: Notify,
    tasks: parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

const ALWAYS: u8 = 0;
const INTERVAL: u8 = 1;

impl Inner {
    fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    fn fsync_policy(&self) -> (FsyncPolicy, Duration) {
        let policy = match self.fsync_policy.load(Ordering::Relaxed) {
            INTERVAL => FsyncPolicy::Interval,
            _ => FsyncPolicy::Always,
        };
        let interval = Duration::from_millis(self.fsync_interval_ms.load(Ordering::Relaxed).max(1));
        (policy, interval)
    }

    fn all_topics(&self) -> Vec<Arc<Topic>> {
        self.topics.read().values().cloned().collect()
    }

    fn served_topics(&self) -> Vec<Arc<Topic>> {
        self.topics
            .read()
            .values()
            .filter(|t| t.is_served.load(Ordering::Acquire))
            .cloned()
            .collect()
    }

    fn unserved_topics(&self) -> Vec<Arc<Topic>> {
        self.topics
            .read()
            .values()
            .filter(|t| !t.is_served.load(Ordering::Acquire))
            .cloned()
            .collect()
    }

    /// Delete the files of topic `name` if the configuration still does not serve it.
    /// Blocking. The directory is first renamed into `trash/` under the lifecycle lock (an
    /// atomic step a Snapshot cannot interleave with), then removed. Returns whether it was.
    fn delete_topic_files(&self, name: &str) -> std::io::Result<bool> {
        let trashed = {
            let _lifecycle = self.lifecycle.lock();
            let Some(topic) = self.topics.read().get(name).cloned() else {
                return Ok(false);
            };
            if topic.is_served.load(Ordering::Acquire) {
                return Ok(false);
            }
            self.topics.write().remove(name);
            topic.committer.refuse_new_work();
            let trash = self.root.join("trash");
            std::fs::create_dir_all(&trash)?;
            let mut nonce = [0u8; 8];
            getrandom::fill(&mut nonce).map_err(std::io::Error::other)?;
            let target = trash.join(format!("{name}.{:016x}", u64::from_ne_bytes(nonce)));
            let topics = self.root.join("topics");
            std::fs::rename(topics.join(name), &target)?;
            durable_file::sync_dir(&topics)?;
            self.metrics.forget_topic(name);
            target
        };
        std::fs::remove_dir_all(&trashed)?;
        Ok(true)
    }

    fn topic(&self, name: &str) -> Result<Arc<Topic>, StoreError> {
        if self.is_closing() {
            return Err(StoreError::ShuttingDown);
        }
        self.topics
            .read()
            .get(name)
            .filter(|t| t.is_served.load(Ordering::Acquire))
            .cloned()
            .ok_or_else(|| StoreError::TopicNotFound(name.to_string()))
    }

    fn queue_subscription(
        &self,
        topic: &str,
        subscription: &str,
    ) -> Result<(Arc<Topic>, Arc<Subscription>), StoreError> {
        let found = self.topic(topic)?;
        let served = found
            .served
            .load()
            .get(subscription)
            .cloned()
            .ok_or_else(|| StoreError::SubscriptionNotFound {
                topic: topic.to_string(),
                subscription: subscription.to_string(),
            })?;
        if !matches!(served.config.load().mode, topic::Mode::Queue) {
            return Err(StoreError::NotAQueueSubscription {
                topic: topic.to_string(),
                subscription: subscription.to_string(),
            });
        }
        Ok((found, served))
    }

    async fn publish(&self, topic: &str, events: Vec<PublishedEvent>) -> Result<(), StoreError> {
        if events.is_empty() {
            self.topic(topic)?;
            return Ok(());
        }
        self.topic(topic)?.publish(&events).await
    }

    /// The topic's files, opening (or creating) them on first use.
    fn open_topic(&self, name: &str) -> std::io::Result<Arc<Topic>> {
        if let Some(topic) = self.topics.read().get(name) {
            return Ok(Arc::clone(topic));
        }
        if !is_safe_file_name(name) {
            return Err(std::io::Error::other(format!(
                "topic name {name:?} cannot be a directory name"
            )));
        }
        let topic = Topic::open(
            name.to_string(),
            self.root.join("topics").join(name),
            &self.tuning,
            self.owner,
            self.clock,
            Arc::clone(&self.metrics),
        )?;
        Ok(Arc::clone(
            self.topics.write().entry(name.to_string()).or_insert(topic),
        ))
    }
}

/// Topic names are validated by the CRDs (letters, digits, `-`); this keeps a bad one from
/// ever naming a path outside the store.
fn is_safe_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
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
            closing: AtomicBool::new(false),
            shutdown: Notify::new(),
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
        self.inner.closing.store(true, Ordering::Release);
        self.inner.shutdown.notify_waiters();
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

/// Open every topic found on disk (served or not: the first Snapshot decides).
fn recover(inner: &Inner) -> std::io::Result<()> {
    // A deletion interrupted by a crash: the topic had already left `topics/`.
    let trash = inner.root.join("trash");
    if trash.exists() {
        std::fs::remove_dir_all(&trash)?;
    }
    let topics_dir = inner.root.join("topics");
    std::fs::create_dir_all(&topics_dir)?;
    for entry in std::fs::read_dir(&topics_dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        inner.open_topic(&name)?;
    }
    Ok(())
}

/// One event handed out by `receive`, locked for the subscription's lock duration.
pub struct ReceivedEvent {
    pub lock_token: String,
    /// 1 on first delivery.
    pub delivery_count: u32,
    pub event: Box<RawValue>,
}

/// What to do with the events named by lock tokens.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Settle {
    Acknowledge,
    Release { delay: Duration },
    Reject,
    RenewLock,
}

/// Which tokens a settle call succeeded and failed for.
#[derive(Debug, Default, PartialEq)]
pub struct SettleOutcome {
    pub succeeded: Vec<String>,
    pub failed: Vec<FailedLockToken>,
}

/// One token a settle call failed for, and why.
#[derive(Debug, PartialEq)]
pub struct FailedLockToken {
    pub lock_token: String,
    pub error: LockTokenError,
}

/// Failures of a whole store call.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("topic '{0}' not found")]
    TopicNotFound(String),
    #[error("event subscription '{subscription}' not found on topic '{topic}'")]
    SubscriptionNotFound { topic: String, subscription: String },
    #[error(
        "event subscription '{subscription}' on topic '{topic}' uses push delivery; receive and settle work on queue subscriptions only"
    )]
    NotAQueueSubscription { topic: String, subscription: String },
    #[error("event subscription '{subscription}' on topic '{topic}' uses queue delivery")]
    NotAPushSubscription { topic: String, subscription: String },
    #[error("the store is shutting down")]
    ShuttingDown,
    /// Reading or writing failed. A call that writes (publish, receive's locks, settle) stored
    /// nothing of its own when it fails this way.
    #[error("storage failure: {0}")]
    Io(#[from] std::io::Error),
}

impl StoreError {
    /// No room to write: the volume is full (ENOSPC), a quota is spent (EDQUOT) or a file-size
    /// limit is reached (EFBIG). Nothing of the call was stored, and storing works again once
    /// space is freed. (A failed write reaches callers as `Io` with `ErrorKind::StorageFull`
    /// for all three.)
    pub fn is_storage_full(&self) -> bool {
        matches!(self, StoreError::Io(io) if io.kind() == std::io::ErrorKind::StorageFull)
    }
}
