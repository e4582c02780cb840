//! The queue operations the HTTP API calls, behind one type: publish to a topic, receive from
//! a queue subscription, settle by lock token (acknowledge, release, reject, renew lock).
//!
//! This is the seam for a Namespace served by several pods. A lock token names the pod that
//! owns its event (`LockToken::owner`, from that pod's `PodIdentity`), so a settle can be
//! routed to the owner and a receive to the pod holding the subscription's events; the
//! handlers would not change. It lives in the store, not in `http/`, because only the store
//! reads its tokens, and so that other callers (the MQTT router publishes too) can come
//! through it. Today there is one implementation, the single pod's: every operation goes to
//! the local [`EventStore`], which refuses a token naming another owner as `Lost`, as it
//! refuses a stale one.

use super::{EventStore, PublishedEvent, ReceivedEvent, Settle, SettleOutcome, StoreError};
use std::time::Duration;

/// Cheap to clone.
#[derive(Clone)]
pub struct Queues {
    local: EventStore,
}

impl Queues {
    /// A single pod's queues: everything is in `store`.
    pub fn local(store: EventStore) -> Queues {
        Queues { local: store }
    }

    /// Append events to a topic; see [`EventStore::publish`] (durable per the fsync policy
    /// before it returns, all or nothing).
    pub async fn publish(
        &self,
        topic: &str,
        events: Vec<PublishedEvent>,
    ) -> Result<(), StoreError> {
        self.local.publish(topic, events).await
    }

    /// Long poll a queue subscription; see [`EventStore::receive`].
    pub async fn receive(
        &self,
        topic: &str,
        subscription: &str,
        max_events: usize,
        max_wait: Duration,
    ) -> Result<Vec<ReceivedEvent>, StoreError> {
        self.local
            .receive(topic, subscription, max_events, max_wait)
            .await
    }

    /// Settle the events named by `lock_tokens`; see [`EventStore::settle`].
    pub async fn settle(
        &self,
        topic: &str,
        subscription: &str,
        action: Settle,
        lock_tokens: &[String],
    ) -> Result<SettleOutcome, StoreError> {
        self.local
            .settle(topic, subscription, action, lock_tokens)
            .await
    }
}
