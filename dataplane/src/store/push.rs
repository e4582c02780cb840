//! Push delivery's access to one subscription. The dispatcher of `delivery/` is the only
//! consumer of a push subscription and uses the queue's machinery: it takes (locks, for
//! `PUSH_LOCK_DURATION`) a bounded batch of events, attempts their delivery and settles each:
//! acknowledge when delivered, release with the retry schedule's delay when the attempt may be
//! retried, dead-letter (with what the last attempt ended with) when not. The delivery count
//! is thus the number of attempts, and everything a dispatcher knows survives a restart in the
//! subscription's journal, at no memory cost per waiting event.

use super::clock::duration_millis;
use super::dead_letter::{DeadLetterReason, LastAttempt};
use super::journal;
use super::lock_token::{self, LockToken};
use super::queue::{self, TakeLimits};
use super::subscription::{Lease, SettleAction};
use super::topic::{Mode, Subscription, Topic, wait};
use super::{Inner, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::futures::Notified;

/// One push subscription, as its dispatcher sees it. Holds the subscription as the Snapshot
/// served it when the consumer was made: a Snapshot that removes and re-adds the subscription
/// makes a new one (see [`PushConsumer::is_current`]). Cheap to clone.
#[derive(Clone)]
pub struct PushConsumer {
    pub(super) inner: Arc<Inner>,
    pub(super) topic: Arc<Topic>,
    pub(super) subscription: Arc<Subscription>,
}

/// How much one take may lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PushTake {
    pub max_events: usize,
    /// Stop once the taken events hold about this many bytes (at least one event is taken).
    pub max_bytes: u64,
    /// Whether new events (at the cursor) may be taken, or only retries that came due.
    pub new_events: bool,
}

/// An event locked for its dispatcher.
#[derive(Debug)]
pub struct PushEvent {
    pub lease: PushLease,
    /// Attempts including the one about to be made (1 on the first).
    pub delivery_count: u32,
    /// When it was published, wall-clock milliseconds since the Unix epoch.
    pub publish_time: i64,
    /// The CloudEvent as stored: structured JSON, verbatim.
    pub json: Vec<u8>,
}

/// The lock on one taken event; settled exactly once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PushLease(LockToken);

/// What became of one delivery attempt.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PushSettle {
    /// The endpoint took it: forget it.
    Delivered,
    /// Attempt it again once `delay` has passed (any delay: the retry schedule's).
    Retry { delay: Duration },
    /// No further attempt: dead-letter it (or drop it without a dead-letter topic).
    GiveUp {
        reason: DeadLetterReason,
        last_attempt: LastAttempt,
    },
}

impl PushConsumer {
    pub(super) fn new(
        inner: Arc<Inner>,
        topic: Arc<Topic>,
        subscription: Arc<Subscription>,
    ) -> Result<PushConsumer, StoreError> {
        if !matches!(subscription.config.load().mode, Mode::Push) {
            return Err(StoreError::NotAPushSubscription {
                topic: topic.name.clone(),
                subscription: subscription.name.clone(),
            });
        }
        Ok(PushConsumer {
            inner,
            topic,
            subscription,
        })
    }

    /// Whether the store still serves this very subscription (not removed, nor replaced by a
    /// later Snapshot that removed and re-added it).
    pub fn is_current(&self) -> bool {
        !self.inner.is_closing()
            && self
                .topic
                .is_served
                .load(std::sync::atomic::Ordering::Acquire)
            && self
                .topic
                .served
                .load()
                .get(&self.subscription.name)
                .is_some_and(|s| Arc::ptr_eq(s, &self.subscription))
    }

    /// Whether both consumers are of the same served subscription.
    pub fn same_as(&self, other: &PushConsumer) -> bool {
        Arc::ptr_eq(&self.subscription, &other.subscription)
    }

    /// The store's clock: wall-clock milliseconds (moves with tokio's paused clock in tests).
    pub fn now(&self) -> i64 {
        self.topic.clock.now()
    }

    /// Resolves when events may have become available (a matching publish, a release). Make
    /// it (and `enable` it) before a take that finds nothing, so nothing slips in between.
    pub fn notified(&self) -> Notified<'_> {
        self.subscription.notify.notified()
    }

    /// When the next delayed retry comes due (or a lock expires), if any.
    pub fn next_due(&self) -> Option<tokio::time::Instant> {
        if self.is_expired() {
            return None;
        }
        let due = self.subscription.state.lock().next_due()?;
        Some(self.topic.clock.instant_at(due))
    }

    /// Events taken and not settled: locked, or waiting for a retry.
    pub fn in_flight(&self) -> usize {
        self.subscription.state.lock().in_flight_count()
    }

    fn is_expired(&self) -> bool {
        let now = self.topic.clock.now();
        self.subscription
            .config
            .load()
            .expiration
            .is_some_and(|t| now >= t)
    }

    /// Make every lock of the subscription available again at once. A dispatcher calls it
    /// when it starts: any lock is its predecessor's (a restart, a replaced dispatcher), whose
    /// attempts ended without a settlement. Their attempts stay counted.
    pub async fn release_locks(&self) -> Result<usize, StoreError> {
        let commit = {
            let mut state = self.subscription.state.lock();
            let released = state.release_locks(self.topic.clock.now());
            if released.is_empty() {
                return Ok(0);
            }
            let mut record = Vec::new();
            journal::upsert_record(&mut state, &released, &mut record);
            let commit = self
                .topic
                .committer
                .submit(&[], &record)
                .ok_or(StoreError::ShuttingDown)?;
            (commit, released.len())
        };
        wait(commit.0).await?;
        self.subscription.notify.notify_waiters();
        Ok(commit.1)
    }

    /// Lock what is available now, within `limits`: retries that came due first, then new
    /// events. Never waits for events to arrive (see [`PushConsumer::notified`]), nor for the
    /// locks to be fsynced (see `TakeLimits::durable_leases`). Events past their time to live
    /// or out of attempts are dead-lettered (or dropped) instead.
    pub async fn take(&self, limits: PushTake) -> Result<Vec<PushEvent>, StoreError> {
        if self.inner.is_closing() {
            return Err(StoreError::ShuttingDown);
        }
        if !self.is_current() || self.is_expired() {
            return Ok(Vec::new());
        }
        let limits = TakeLimits {
            max_events: limits.max_events.max(1),
            max_bytes: Some(limits.max_bytes.max(1)),
            new_events: limits.new_events,
            durable_leases: false,
        };
        loop {
            let config = self.subscription.config.load();
            // The tokens never leave the process: one random draw per take keeps each lock's
            // nonce distinct without a draw per event.
            let seed = lock_token::nonces(1)?.first().copied().unwrap_or_default();
            let nonces = (0u64..).map(move |n| seed.wrapping_add(n));
            let (events, more) = queue::take_batch(
                &self.inner,
                &self.topic,
                &self.subscription,
                &config.policy,
                limits,
                nonces,
                push_event,
            )
            .await?;
            if !events.is_empty() || !more {
                return Ok(events);
            }
            // Only events of other subscriptions were scanned: go on reading.
        }
    }

    /// Settle taken events, each with its own outcome; durable before it returns. Per item:
    /// whether its lock still held (a lock lost means an earlier dispatcher's event, released
    /// meanwhile: nothing to do).
    pub async fn settle(&self, items: &[(PushLease, PushSettle)]) -> Result<Vec<bool>, StoreError> {
        let actions: Vec<(LockToken, SettleAction)> = items
            .iter()
            .map(|(lease, outcome)| {
                let action = match *outcome {
                    PushSettle::Delivered => SettleAction::Acknowledge,
                    PushSettle::Retry { delay } => SettleAction::Release {
                        delay: duration_millis(delay),
                    },
                    PushSettle::GiveUp {
                        reason,
                        last_attempt,
                    } => SettleAction::DeadLetter {
                        reason,
                        last_attempt,
                    },
                };
                (lease.0, action)
            })
            .collect();
        let results =
            queue::settle_tokens(&self.inner, &self.topic, &self.subscription, &actions).await?;
        Ok(results.iter().map(Result::is_ok).collect())
    }
}

fn push_event(lease: &Lease, json: &[u8]) -> Option<PushEvent> {
    Some(PushEvent {
        lease: PushLease(lease.token),
        delivery_count: lease.token.delivery_count,
        publish_time: lease.publish_time,
        json: json.to_vec(),
    })
}
