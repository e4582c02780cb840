//! One topic: its log, its group committer, and the delivery state of its subscriptions —
//! every state recovered from the journal (`states`, by id) and the subscriptions the current
//! Snapshot serves (`served`, by name).

use super::clock::{Clock, Millis, duration_millis};
use super::commit::{CommitResult, Committer};
use super::journal::{self, Journal};
use super::log::{self, Log};
use super::metrics::StoreMetrics;
use super::subscription::{QueuePolicy, SubscriptionId, SubscriptionState};
use super::{FsyncPolicy, StoreError};
use crate::cloudevents::PublishedEvent;
use arc_swap::ArcSwap;
use gridline_crds::model::filter::CompiledFilter;
use gridline_crds::model::{CompiledSubscription, Delivery};
use parking_lot::{Mutex, RwLock};
use prometheus::{IntCounter, IntGauge};
use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64};
use tokio::sync::Notify;

pub type StateTable = RwLock<BTreeMap<SubscriptionId, Arc<Mutex<SubscriptionState>>>>;

/// What a subscription does with its events, from the Snapshot.
pub enum Mode {
    Queue,
    /// Delivered by a dispatcher of `delivery/` (see `push.rs`), the subscription's only
    /// consumer.
    Push,
}

/// How long the push dispatcher's lock on an event lasts. Longer than any delivery can take
/// (a 30 s attempt, queued behind at most a couple of others of the same take), so a lock
/// never expires under a live dispatcher; a dispatcher that starts releases its predecessor's
/// locks at once, so the length never delays redelivery after a restart.
pub const PUSH_LOCK_DURATION: Millis = 5 * 60 * 1000;

/// A subscription's settings, swapped whole when a Snapshot changes them.
pub struct SubscriptionConfig {
    pub mode: Mode,
    /// Lock duration (under push delivery: `PUSH_LOCK_DURATION`), max deliveries, TTL,
    /// dead-letter topic.
    pub policy: QueuePolicy,
    pub filter: CompiledFilter,
    /// After this, the subscription delivers nothing.
    pub expiration: Option<Millis>,
}

impl SubscriptionConfig {
    pub fn from_compiled(subscription: &CompiledSubscription) -> SubscriptionConfig {
        let (mode, policy) = match &subscription.delivery {
            Delivery::Queue(queue) => (
                Mode::Queue,
                QueuePolicy {
                    lock_duration: duration_millis(queue.receive_lock_duration),
                    max_delivery_count: queue.max_delivery_count,
                    time_to_live: duration_millis(queue.event_time_to_live),
                    dead_letter_topic: queue.dead_letter_topic.clone(),
                },
            ),
            Delivery::Push(push) => (
                Mode::Push,
                QueuePolicy {
                    lock_duration: PUSH_LOCK_DURATION,
                    max_delivery_count: push.max_delivery_count,
                    time_to_live: duration_millis(push.event_time_to_live),
                    dead_letter_topic: push.dead_letter_topic.clone(),
                },
            ),
        };
        SubscriptionConfig {
            mode,
            policy,
            filter: subscription.filter.clone(),
            expiration: subscription.expiration_time.map(|t| t.timestamp_millis()),
        }
    }
}

/// The metric series of one subscription, resolved once.
pub struct SubscriptionMetrics {
    pub received: IntCounter,
    pub acknowledged: IntCounter,
    pub released: IntCounter,
    pub rejected: IntCounter,
    pub lock_expiries: IntCounter,
    pub pending: IntGauge,
}

/// A served subscription. Kept across Snapshots while it exists, so that long polls keep
/// waiting on the same `notify`.
pub struct Subscription {
    pub name: String,
    pub id: SubscriptionId,
    pub state: Arc<Mutex<SubscriptionState>>,
    pub config: ArcSwap<SubscriptionConfig>,
    /// Woken when events may have become available (publish, release, new lock deadline).
    pub notify: Notify,
    pub metrics: SubscriptionMetrics,
}

impl Subscription {
    pub fn update_pending(&self, state: &SubscriptionState) {
        let pending = state.unread_estimate + state.in_flight_count() as u64;
        self.metrics
            .pending
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
    }
}

pub struct Topic {
    pub name: String,
    pub log: Arc<Log>,
    pub committer: Arc<Committer>,
    pub states: Arc<StateTable>,
    pub served: ArcSwap<BTreeMap<String, Arc<Subscription>>>,
    /// Whether the current Snapshot has this topic.
    pub is_served: AtomicBool,
    /// `eventRetentionInDays`, in milliseconds.
    pub retention: AtomicI64,
    pub metrics: Arc<StoreMetrics>,
    pub clock: Clock,
}

impl Topic {
    /// Open (or create) the topic's files under `dir` and recover its state.
    pub fn open(
        name: String,
        dir: PathBuf,
        tuning: &super::StoreTuning,
        owner: u16,
        clock: Clock,
        metrics: Arc<StoreMetrics>,
    ) -> io::Result<Arc<Topic>> {
        let report = log::CorruptionReport {
            topic: name.clone(),
            counter: metrics.corrupt_records.clone(),
        };
        let (log, writer) = Log::open(dir.join("segments"), tuning.segment_bytes, report)?;
        let log = Arc::new(log);
        let (journal, recovered) = Journal::open(journal::path(&dir), owner)?;
        let (start, end) = (log.start(), log.end());
        let average_record = average_record_bytes(&log);
        let states: Arc<StateTable> = Arc::new(RwLock::new(
            recovered
                .into_iter()
                .map(|(id, mut state)| {
                    // Under the `Interval` policy a crash can lose a log tail the journal
                    // already moved past.
                    state.clamp_to(start, end);
                    state.unread_estimate = (end - state.cursor) / average_record;
                    (id, Arc::new(Mutex::new(state)))
                })
                .collect(),
        ));
        let snapshot_states = Arc::clone(&states);
        let snapshotter = Box::new(move |buf: &mut Vec<u8>| {
            for state in snapshot_states.read().values() {
                journal::snapshot_record(&state.lock(), buf);
            }
        });
        let committer = Arc::new(Committer::new(
            name.clone(),
            Arc::clone(&log),
            writer,
            journal,
            snapshotter,
            Arc::clone(&metrics),
            tuning.journal_compaction_bytes,
        ));
        metrics
            .store_bytes
            .with_label_values(&[name.as_str()])
            .set(i64::try_from(log.bytes_on_disk()).unwrap_or(i64::MAX));
        Ok(Arc::new(Topic {
            name,
            log,
            committer,
            states,
            served: ArcSwap::from_pointee(BTreeMap::new()),
            is_served: AtomicBool::new(false),
            retention: AtomicI64::new(i64::MAX),
            metrics,
            clock,
        }))
    }

    pub fn set_fsync_policy(&self, policy: FsyncPolicy) {
        self.committer.set_policy(policy);
    }

    /// Serve exactly `subscriptions` (this topic's, from a Snapshot): keep existing ones with
    /// their new settings, create new ones at the end of the log, stop serving the others
    /// (their state stays on disk, in case the removal was a transient configuration error,
    /// and is retired: forgotten once retention has passed, see `forget_retired`).
    pub fn serve(&self, subscriptions: &[&CompiledSubscription], owner: u16) -> io::Result<()> {
        let current = self.served.load();
        let mut next = BTreeMap::new();
        for compiled in subscriptions {
            let config = SubscriptionConfig::from_compiled(compiled);
            if let Some(existing) = current.get(&compiled.name) {
                existing.config.store(Arc::new(config));
                next.insert(compiled.name.clone(), Arc::clone(existing));
                continue;
            }
            let state = self.state_named(&compiled.name, owner)?;
            let id = state.lock().id;
            let labels = [self.name.as_str(), compiled.name.as_str()];
            let subscription = Arc::new(Subscription {
                name: compiled.name.clone(),
                id,
                state,
                config: ArcSwap::from_pointee(config),
                notify: Notify::new(),
                metrics: SubscriptionMetrics {
                    received: self.metrics.received_events.with_label_values(&labels),
                    acknowledged: self.metrics.acknowledged_events.with_label_values(&labels),
                    released: self.metrics.released_events.with_label_values(&labels),
                    rejected: self.metrics.rejected_events.with_label_values(&labels),
                    lock_expiries: self.metrics.lock_expiries.with_label_values(&labels),
                    pending: self.metrics.pending_events.with_label_values(&labels),
                },
            });
            subscription.update_pending(&subscription.state.lock());
            next.insert(compiled.name.clone(), subscription);
        }
        for (name, gone) in current.iter() {
            if !next.contains_key(name) {
                // Wake its long polls: they find it gone and return.
                gone.notify.notify_waiters();
                self.metrics.forget_subscription(&self.name, name);
            }
        }
        self.mark_retirements(&next);
        self.served.store(Arc::new(next));
        Ok(())
    }

    /// Journal which states the configuration serves: a state it stopped serving (or never
    /// served since a restart) is retired from now on; a served one is not. Quiet writes: a
    /// retirement lost in a crash is recorded again, later (so never sooner), on the first
    /// Snapshot after the restart; a lost revival is recorded again when served again.
    fn mark_retirements(&self, served: &BTreeMap<String, Arc<Subscription>>) {
        let now = self.clock.now();
        let served_ids: std::collections::BTreeSet<SubscriptionId> =
            served.values().map(|s| s.id).collect();
        for state in self.states.read().values() {
            let mut state = state.lock();
            let changed = if served_ids.contains(&state.id) {
                state.revive()
            } else {
                state.retire(now)
            };
            if changed {
                let mut record = Vec::new();
                journal::retire_record(&mut state, &mut record);
                self.committer.submit_quietly(&record);
            }
        }
    }

    /// Forget the states retired for longer than `retention`: no event published since they
    /// were retired matches them, so every event they could still deliver is past retention.
    /// Written and fsynced at once, under the committer's files lock so that a compaction
    /// cannot interleave. Blocking. The caller holds the store's lifecycle lock, so that no
    /// Snapshot serves a state while it is being forgotten. Returns the names forgotten.
    pub fn forget_retired(&self, retention: Millis) -> io::Result<Vec<String>> {
        let now = self.clock.now();
        let due = |state: &SubscriptionState| {
            state
                .retired_at
                .is_some_and(|at| now.saturating_sub(at) > retention)
        };
        if !self.states.read().values().any(|s| due(&s.lock())) {
            return Ok(Vec::new());
        }
        let mut forgotten = Vec::new();
        self.committer.create_with(|_| {
            let mut states = self.states.write();
            let mut record = Vec::new();
            states.retain(|_, state| {
                let mut state = state.lock();
                if !due(&state) {
                    return true;
                }
                journal::forget_record(&mut state, &mut record);
                forgotten.push(state.name.clone());
                false
            });
            Ok(record)
        })?;
        for name in &forgotten {
            tracing::info!(topic = %self.name, subscription = %name, "forgot the state of a subscription removed from the configuration longer than retention ago");
        }
        Ok(forgotten)
    }

    /// The state of the subscription called `name`: recovered, or new at the end of the log.
    fn state_named(&self, name: &str, owner: u16) -> io::Result<Arc<Mutex<SubscriptionState>>> {
        if let Some(state) = self
            .states
            .read()
            .values()
            .find(|state| state.lock().name == name)
        {
            let state = Arc::clone(state);
            {
                let mut guard = state.lock();
                // Segments may have been deleted while it was not served.
                let (start, end) = (self.log.start(), self.log.end().max(guard.cursor));
                guard.clamp_to(start, end);
            }
            return Ok(state);
        }
        let mut created = None;
        self.committer.create_with(|end_of_log| {
            let mut states = self.states.write();
            let id = loop {
                let mut bytes = [0u8; 4];
                getrandom::fill(&mut bytes).map_err(io::Error::other)?;
                let id = u32::from_ne_bytes(bytes);
                if id != 0 && !states.contains_key(&id) {
                    break id;
                }
            };
            let state = SubscriptionState::new(id, name.to_string(), end_of_log, owner);
            let mut record = Vec::new();
            journal::snapshot_record(&state, &mut record);
            let state = Arc::new(Mutex::new(state));
            states.insert(id, Arc::clone(&state));
            created = Some(state);
            Ok(record)
        })?;
        tracing::info!(topic = %self.name, subscription = %name, "subscription starts at the end of the log");
        created.ok_or_else(|| io::Error::other("subscription not created"))
    }

    /// Append `events` (all or nothing), routed to the served subscriptions whose filter
    /// matches; returns once durable per the fsync policy.
    pub async fn publish(&self, events: &[PublishedEvent]) -> Result<(), StoreError> {
        let served = self.served.load();
        let subscriptions: Vec<(&Arc<Subscription>, arc_swap::Guard<Arc<SubscriptionConfig>>)> =
            served.values().map(|s| (s, s.config.load())).collect();
        let bytes: usize = events.iter().map(|e| e.json.get().len() + 32).sum();
        let mut buffer = Vec::with_capacity(bytes);
        let mut matched_counts = vec![0u64; subscriptions.len()];
        let mut ids = Vec::with_capacity(subscriptions.len());
        let now = self.clock.now();
        for event in events {
            ids.clear();
            for (index, (subscription, config)) in subscriptions.iter().enumerate() {
                if config.filter.matches(&event.attributes) {
                    ids.push(subscription.id);
                    matched_counts[index] += 1;
                }
            }
            log::encode_event(&mut buffer, now, &ids, event.json.get().as_bytes());
        }
        let durable = self
            .committer
            .submit(&buffer, &[])
            .ok_or(StoreError::ShuttingDown)?;
        wait(durable).await?;
        for ((subscription, _), count) in subscriptions.iter().zip(matched_counts) {
            if count > 0 {
                {
                    let mut state = subscription.state.lock();
                    state.unread_estimate += count;
                    subscription.update_pending(&state);
                }
                subscription.notify.notify_waiters();
            }
        }
        self.metrics
            .published_events
            .with_label_values(&[self.name.as_str()])
            .inc_by(events.len() as u64);
        Ok(())
    }

    /// The lowest address any served subscription still needs.
    pub fn low_watermark(&self) -> u64 {
        self.served
            .load()
            .values()
            .map(|s| s.state.lock().low_watermark())
            .min()
            .unwrap_or(u64::MAX)
    }
}

/// Wait for a commit and turn its failure into a store error.
pub async fn wait(durable: tokio::sync::oneshot::Receiver<CommitResult>) -> Result<(), StoreError> {
    match durable.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err((kind, message))) => {
            // One kind for every way of running out of room (see `StoreError::is_storage_full`).
            let kind = if super::commit::is_disk_full(kind) {
                io::ErrorKind::StorageFull
            } else {
                kind
            };
            Err(StoreError::Io(io::Error::new(kind, message)))
        }
        // The flusher always answers; a dropped sender means the runtime is going away.
        Err(_) => Err(StoreError::ShuttingDown),
    }
}

/// Average record size at the start of the log (for estimating unread events after a restart
/// without reading the whole log). 1 KiB when the log is empty.
fn average_record_bytes(log: &Log) -> u64 {
    let Ok(chunk) = log.read_chunk(log.start(), 1 << 16) else {
        return 1024;
    };
    let (count, bytes) = chunk.events().fold((0u64, 0u64), |(c, b), e| {
        (c + 1, b + u64::from(e.total_len))
    });
    bytes
        .checked_div(count)
        .map_or(1024, |average| average.max(1))
}
