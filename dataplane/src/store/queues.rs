//! The queue operations the HTTP API calls, behind one type: publish to a topic, receive from
//! a queue subscription, settle by lock token (acknowledge, release, reject, renew lock).
//!
//! Alone, every operation goes to this pod's [`EventStore`]. Among several pods (DESIGN §5),
//! each pod's store is a partition of every topic: a publish is stored here; a receive takes
//! this pod's events first and gathers from the peers' partitions when it has too few
//! (`peers::Partitions`), and a long poll wakes when any partition may have events; a settle
//! goes to the pod each lock token names (`LockToken::owner`), a request whose tokens span
//! pods is split and its per-token results merged in the tokens' order. A token naming a pod
//! that is out of reach fails as `Lost`, as a stale one does. It lives in the store, not in
//! `http/`, because only the store reads its tokens.

use super::lock_token::LockToken;
use super::peers::Partitions;
use super::{
    EventStore, FailedLockToken, LockTokenError, PublishedEvent, ReceivedEvent, Settle,
    SettleOutcome, StoreError,
};
use crate::pod::PodIdentity;
use futures::future::{Either, select, select_all};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use tracing::debug;

/// Longest a clustered long poll waits before it looks at every partition again, whatever
/// it was told: a wake-up lost to a race costs at most this.
const LOOK_AGAIN_AFTER: Duration = Duration::from_millis(500);

/// Cheap to clone.
#[derive(Clone)]
pub struct Queues {
    local: EventStore,
    /// The other pods' partitions (None: this pod is the only one).
    partitions: Option<Arc<Partitions>>,
    /// This pod's owner number: the tokens it settles itself.
    owner: u16,
    /// Where the next receive starts among the peers, so that none is always asked last.
    turn: Arc<AtomicUsize>,
}

impl Queues {
    /// A single pod's queues: everything is in `store`.
    pub fn local(store: EventStore) -> Queues {
        Queues {
            local: store,
            partitions: None,
            owner: 0,
            turn: Arc::default(),
        }
    }

    /// The queues of a pod among several: `store` is this pod's partition, `partitions` the
    /// others'. A receive takes this pod's events first and gathers from peers when it has
    /// too few; a settle goes to the pod each token names.
    pub fn clustered(store: EventStore, pod: &PodIdentity, partitions: Arc<Partitions>) -> Queues {
        Queues {
            local: store,
            partitions: Some(partitions),
            owner: pod.owner(),
            turn: Arc::default(),
        }
    }

    /// Append events to a topic; see [`EventStore::publish`] (durable per the fsync policy
    /// before it returns, all or nothing). Stored on this pod: its partition.
    pub async fn publish(
        &self,
        topic: &str,
        events: Vec<PublishedEvent>,
    ) -> Result<(), StoreError> {
        self.local.publish(topic, events).await
    }

    /// Long poll a queue subscription; see [`EventStore::receive`]. Clustered: events from
    /// every partition, this pod's first; the poll wakes when any partition has events.
    pub async fn receive(
        &self,
        topic: &str,
        subscription: &str,
        max_events: usize,
        max_wait: Duration,
    ) -> Result<Vec<ReceivedEvent>, StoreError> {
        let Some(partitions) = &self.partitions else {
            return self
                .local
                .receive(topic, subscription, max_events, max_wait)
                .await;
        };
        let deadline = Instant::now() + max_wait;
        loop {
            let peers = partitions.peers();
            if peers.is_empty() {
                let left = deadline.saturating_duration_since(Instant::now());
                return self
                    .local
                    .receive(topic, subscription, max_events, left)
                    .await;
            }
            let mut events = self
                .local
                .receive(topic, subscription, max_events, Duration::ZERO)
                .await?;
            let start = self.turn.fetch_add(1, Ordering::Relaxed);
            for index in 0..peers.len() {
                if events.len() >= max_events {
                    break;
                }
                let pod = &peers[(start + index) % peers.len()];
                match partitions
                    .receive(pod, topic, subscription, max_events - events.len())
                    .await
                {
                    Ok(more) => events.extend(more),
                    Err(error) => debug!(peer = %pod, %error, "no events from a peer's partition"),
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if !events.is_empty() || left.is_zero() {
                return Ok(events);
            }
            // Nothing anywhere: wait until a partition may have some.
            let slice = left.min(LOOK_AGAIN_AFTER);
            let here = Box::pin(self.local.wait_for_activity(topic, subscription, slice));
            let there = select_all(peers.iter().map(|pod| {
                Box::pin(async move {
                    if partitions
                        .wait(pod, topic, subscription, slice)
                        .await
                        .is_err()
                    {
                        // An unreachable peer wakes nobody early.
                        tokio::time::sleep(slice).await;
                    }
                })
            }));
            match select(here, there).await {
                Either::Left((result, _)) => result?,
                Either::Right(_) => {}
            }
        }
    }

    /// Settle the events named by `lock_tokens`; see [`EventStore::settle`]. Clustered: each
    /// token goes to the pod it names, and the answers are merged in the tokens' order.
    pub async fn settle(
        &self,
        topic: &str,
        subscription: &str,
        action: Settle,
        lock_tokens: &[String],
    ) -> Result<SettleOutcome, StoreError> {
        let Some(partitions) = &self.partitions else {
            return self
                .local
                .settle(topic, subscription, action, lock_tokens)
                .await;
        };
        // By owner; a token that does not decode stays here, where the store names it
        // malformed.
        let mut by_owner: BTreeMap<u16, Vec<String>> = BTreeMap::new();
        for token in lock_tokens {
            let owner = LockToken::decode(token).map_or(self.owner, |t| t.owner);
            by_owner.entry(owner).or_default().push(token.clone());
        }
        let peers = partitions.peers();
        let mut merged = SettleOutcome::default();
        for (owner, tokens) in by_owner {
            let outcome = if owner == self.owner {
                self.local
                    .settle(topic, subscription, action, &tokens)
                    .await?
            } else {
                let pod = peers
                    .iter()
                    .find(|pod| PodIdentity::new(pod).is_ok_and(|p| p.owner() == owner));
                let answered = match pod {
                    Some(pod) => partitions
                        .settle(pod, topic, subscription, action, tokens.clone())
                        .await
                        .map_err(|error| debug!(peer = %pod, %error, "settle on a peer failed")),
                    None => Err(()),
                };
                // The pod holding the lock is out of reach: its lock is as good as lost.
                answered.unwrap_or_else(|()| SettleOutcome {
                    succeeded: Vec::new(),
                    failed: tokens
                        .into_iter()
                        .map(|lock_token| FailedLockToken {
                            lock_token,
                            error: LockTokenError::Lost,
                        })
                        .collect(),
                })
            };
            merged.succeeded.extend(outcome.succeeded);
            merged.failed.extend(outcome.failed);
        }
        // In the order the tokens came.
        let position = |token: &str| lock_tokens.iter().position(|t| t == token);
        merged.succeeded.sort_by_key(|token| position(token));
        merged
            .failed
            .sort_by_key(|failed| position(&failed.lock_token));
        Ok(merged)
    }
}
