//! The store's shared state behind `EventStore`: its topics, the fsync policy, closing; and
//! the recovery of every topic on disk at open.

use super::clock::Clock;
use super::durable_file;
use super::error::StoreError;
use super::metrics::StoreMetrics;
use super::options::StoreTuning;
use super::topic::{self, Subscription, Topic};
use crate::cloudevents::PublishedEvent;
use crate::shutdown::{StopSignal, Stopper};
use gridline_crds::types::namespace::FsyncPolicy;
use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

/// The store's shared state. Lock order (outer first): `lifecycle` → `topics` → a topic's
/// committer `files` → a topic's `states` → one subscription's state → a committer's
/// `pending`. None is held across an `.await`.
pub(crate) struct Inner {
    /// Held while a Snapshot is applied and while the files of a removed topic or the state of
    /// a removed subscription are deleted, so that a Snapshot bringing one back never races
    /// its deletion.
    pub(super) lifecycle: parking_lot::Mutex<()>,
    pub(super) root: PathBuf,
    pub(super) clock: Clock,
    pub(super) metrics: Arc<StoreMetrics>,
    pub(super) tuning: StoreTuning,
    /// The owner number of the lock tokens this store issues (`PodIdentity::owner`); tokens
    /// carrying another are refused as lost.
    pub(super) owner: u16,
    /// Every topic with files, served or not.
    pub(super) topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    pub(super) fsync_policy: AtomicU8,
    pub(super) fsync_interval_ms: AtomicU64,
    /// Sent by `EventStore::close`; long polls and background tasks watch `stopped`.
    pub(super) stopper: Stopper,
    pub(super) stopped: StopSignal,
    pub(super) tasks: parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

pub(super) const ALWAYS: u8 = 0;
pub(super) const INTERVAL: u8 = 1;

impl Inner {
    pub(super) fn is_closing(&self) -> bool {
        self.stopped.is_stopped()
    }

    pub(super) fn fsync_policy(&self) -> (FsyncPolicy, Duration) {
        let policy = match self.fsync_policy.load(Ordering::Relaxed) {
            INTERVAL => FsyncPolicy::Interval,
            _ => FsyncPolicy::Always,
        };
        let interval = Duration::from_millis(self.fsync_interval_ms.load(Ordering::Relaxed).max(1));
        (policy, interval)
    }

    pub(super) fn all_topics(&self) -> Vec<Arc<Topic>> {
        self.topics.read().values().cloned().collect()
    }

    pub(super) fn served_topics(&self) -> Vec<Arc<Topic>> {
        self.topics
            .read()
            .values()
            .filter(|t| t.is_served.load(Ordering::Acquire))
            .cloned()
            .collect()
    }

    pub(super) fn unserved_topics(&self) -> Vec<Arc<Topic>> {
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
    pub(super) fn delete_topic_files(&self, name: &str) -> std::io::Result<bool> {
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

    pub(super) fn topic(&self, name: &str) -> Result<Arc<Topic>, StoreError> {
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

    pub(super) fn queue_subscription(
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

    pub(super) async fn publish(
        &self,
        topic: &str,
        events: Vec<PublishedEvent>,
    ) -> Result<(), StoreError> {
        if events.is_empty() {
            self.topic(topic)?;
            return Ok(());
        }
        self.topic(topic)?.publish(&events).await
    }

    /// The topic's files, opening (or creating) them on first use.
    pub(super) fn open_topic(&self, name: &str) -> std::io::Result<Arc<Topic>> {
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
pub(super) fn is_safe_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Open every topic found on disk (served or not: the first Snapshot decides).
pub(super) fn recover(inner: &Inner) -> std::io::Result<()> {
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
