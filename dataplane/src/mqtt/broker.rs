//! The router: sessions by client id, the subscription trie and the retained store, under one
//! lock (`Broker::state`). Lock order: the router lock before a session's lock, never the
//! other way round, and neither across an `.await`. Routing collects the target sessions,
//! releases the router lock, then enqueues (each enqueue takes one session lock).

use super::authorize::Permissions;
use super::codec::{Message, QoS, SubscriptionOptions};
use super::metrics::MqttMetrics;
use super::outbox::Outbox;
use super::persist::{self, StoredSession, StoredState};
use super::reason::ReasonCode;
use super::session::{Attachment, Delivery, Enqueued, PendingWill, QueueLimits, Queued, Session};
use super::trie::Trie;
use crate::snapshot::SharedSnapshot;
use gridline_crds::model::topic::TopicFilter;
use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use tracing::info;

/// The broker's bounds.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub handshake_timeout: Duration,
    pub queue: QueueLimits,
    /// Longest a publisher stays paused on one slow subscriber (flow control) before it
    /// reads again: two clients publishing to each other must not wait on each other forever.
    pub max_publisher_pause: Duration,
    /// In-flight incoming QoS 2 messages per session (our CONNACK receive maximum).
    pub receive_maximum: u16,
    /// Largest packet accepted (remaining length, bytes).
    pub max_packet_bytes: u32,
    /// Largest application message payload (SPEC §D: 512 KB).
    pub max_payload_bytes: usize,
    /// Longest keep-alive granted (SPEC §D: 1160 s).
    pub max_keep_alive_secs: u16,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            // Per listener. Idle connections cost a few KiB each (mqtt/README.md "Idle
            // connections"); the file-descriptor limit is usually the nearer bound.
            max_connections: 100_000,
            handshake_timeout: Duration::from_secs(10),
            queue: QueueLimits {
                pause_publishers_at: 1000,
                resume_publishers_below: 500,
                max_queued: 10_000,
                max_queued_offline: 1000,
                max_queued_qos0_offline: 100,
            },
            max_publisher_pause: Duration::from_secs(5),
            receive_maximum: 100,
            max_packet_bytes: 512 * 1024 + 16 * 1024,
            max_payload_bytes: 512 * 1024,
            max_keep_alive_secs: 1160,
        }
    }
}

/// Sessions a message may go to and still wake them at once (see `Broker::publish_batched`).
const WAKE_AT_ONCE_UP_TO: usize = 4;

/// A subscriber in the trie: keyed by (share group, client id).
type SubscriberKey = (Option<String>, String);

#[derive(Clone)]
struct Subscriber {
    session: Arc<Session>,
    options: SubscriptionOptions,
    /// The filter without the `$share/<group>/` prefix; shares are per group and filter.
    filter: String,
    subscription_id: Option<NonZeroU32>,
}

#[derive(Default)]
struct RouterState {
    sessions: HashMap<String, Arc<Session>>,
    trie: Trie<SubscriberKey, Subscriber>,
    retained: BTreeMap<String, Message>,
    /// Round-robin position of each share (group, filter).
    share_turn: HashMap<(String, String), usize>,
    next_connection_id: u64,
    /// Sessions with a connection attached, per authentication name (the Namespace's
    /// `maximumClientSessionsPerAuthenticationName` bounds it).
    connected_by_name: HashMap<String, usize>,
}

impl RouterState {
    fn count_connected(&mut self, authentication_name: &str, delta: isize) {
        let count = self
            .connected_by_name
            .entry(authentication_name.to_string())
            .or_default();
        *count = count.saturating_add_signed(delta);
        if *count == 0 {
            self.connected_by_name.remove(authentication_name);
        }
    }
}

/// A connection attached to its session (see [`Broker::attach`]).
pub struct Attached {
    pub session: Arc<Session>,
    /// Whether the session existed and was resumed (CONNACK session present).
    pub present: bool,
    pub attachment: Attachment,
}

pub struct Broker {
    state: parking_lot::Mutex<RouterState>,
    pub snapshot: SharedSnapshot,
    pub metrics: MqttMetrics,
    pub limits: Limits,
    /// Where sessions and retained messages are kept across restarts (None: memory only).
    pub data_dir: Option<std::path::PathBuf>,
    /// Bumped when the served Snapshot changes ([`Broker::snapshot_changed`]): the listener
    /// supervisor then opens and closes listeners (connections follow `connection_checks`).
    pub snapshot_changes: tokio::sync::watch::Sender<u64>,
    /// Listeners closing (`mod::Closing`): their connections end with DISCONNECT 0x8B.
    /// Changed through [`Broker::close_listeners`].
    pub closing: tokio::sync::watch::Sender<super::Closing>,
    /// Bumped when connections must look again: the served Snapshot changed, or listeners
    /// are closing. Connections wait on this one channel for both (one future in every idle
    /// connection's task instead of two: mqtt/README.md "Idle connections").
    pub connection_checks: tokio::sync::watch::Sender<u64>,
    /// CONNECT and AUTH authentication, with its verifier caches.
    pub authenticator: super::authenticate::Authenticator,
    /// Refusals anyone can cause (a CONNECT with bad credentials, a PUBLISH or SUBSCRIBE
    /// outside the client's permissions) are logged at most once a second per reason; each
    /// is counted.
    pub refusal_log: crate::log_limit::LogLimiters,
    /// Routing to the Namespace's routing Topic (`routing.rs`); None without a store.
    pub routing: Option<super::routing::Routing>,
    /// Client lifecycle events (`lifecycle.rs`); None without a store.
    pub lifecycle: Option<super::lifecycle::Lifecycle>,
}

/// A subscription request, already parsed and authorized.
pub struct NewSubscription {
    pub raw: String,
    pub share_group: Option<String>,
    pub filter: TopicFilter,
    pub options: SubscriptionOptions,
    pub subscription_id: Option<NonZeroU32>,
}

impl Broker {
    /// Change which listeners' connections must end, and tell the connections.
    pub fn close_listeners(&self, modify: impl FnOnce(&mut super::Closing) -> bool) {
        if self.closing.send_if_modified(modify) {
            self.connection_checks.send_modify(|n| *n += 1);
        }
    }

    /// The served Snapshot changed: tell the listeners' supervisor and the connections.
    pub fn snapshot_changed(&self) {
        self.snapshot_changes.send_modify(|n| *n += 1);
        self.connection_checks.send_modify(|n| *n += 1);
    }

    pub fn new(snapshot: SharedSnapshot, metrics: MqttMetrics, limits: Limits) -> Self {
        Self {
            state: parking_lot::Mutex::new(RouterState::default()),
            snapshot,
            metrics,
            limits,
            data_dir: None,
            snapshot_changes: tokio::sync::watch::Sender::new(0),
            closing: tokio::sync::watch::Sender::new(super::Closing::default()),
            connection_checks: tokio::sync::watch::Sender::new(0),
            authenticator: Default::default(),
            refusal_log: crate::log_limit::LogLimiters::new(std::time::Duration::from_secs(1)),
            routing: None,
            lifecycle: None,
        }
    }

    /// Keep sessions and retained messages under `<data_dir>/mqtt/` (see `persist`).
    pub fn persisting_in(mut self, data_dir: std::path::PathBuf) -> Self {
        self.data_dir = Some(data_dir);
        self
    }

    /// Attach a connection to the session of `client_id`: a new one, the existing one
    /// (taken over from any connection holding it), or a fresh one on clean start.
    /// Refused with 0x97 (quota exceeded) when `max_sessions_per_name` sessions of this
    /// authentication name are connected already (taking over one of them is not a new one).
    ///
    /// Wills: a will waiting for its delay is discarded when the session is resumed, and
    /// published when the session ends here (clean start, or another identity taking the
    /// client id). A connection taken over is told whether the session ended with it.
    pub fn attach(
        &self,
        client_id: &str,
        authentication_name: &str,
        clean_start: bool,
        max_sessions_per_name: usize,
    ) -> Result<Attached, ReasonCode> {
        let mut router = self.state.lock();
        let existing = router.sessions.get(client_id).cloned();
        let takes_over_own = existing.as_ref().is_some_and(|s| {
            s.authentication_name == authentication_name && s.state.lock().attachment.is_some()
        });
        let connected = router
            .connected_by_name
            .get(authentication_name)
            .copied()
            .unwrap_or(0);
        if !takes_over_own && connected >= max_sessions_per_name {
            return Err(ReasonCode::QuotaExceeded);
        }
        router.next_connection_id += 1;
        let attachment = Attachment::new(router.next_connection_id);
        let mut ended_wills: Vec<(Message, String)> = Vec::new();
        let (session, present) = match existing {
            Some(session) if session.authentication_name == authentication_name => (session, true),
            Some(session) => {
                // Another identity reuses the client id: its session is not ours to resume.
                let (old, will) = {
                    let mut state = session.state.lock();
                    (state.attachment.take(), state.pending_will.take())
                };
                if old.is_some() {
                    router.count_connected(&session.authentication_name, -1);
                }
                Self::remove_locked(&mut router, &session, &self.metrics);
                let fresh = Arc::new(Session::new(client_id.into(), authentication_name.into()));
                router.sessions.insert(client_id.into(), fresh.clone());
                self.metrics.sessions.inc();
                if let Some(old) = old {
                    old.kick(true);
                }
                if let Some(will) = will {
                    ended_wills.push((will.message, session.authentication_name.clone()));
                }
                (fresh, false)
            }
            None => {
                let fresh = Arc::new(Session::new(client_id.into(), authentication_name.into()));
                router.sessions.insert(client_id.into(), fresh.clone());
                self.metrics.sessions.inc();
                (fresh, false)
            }
        };
        let filters: Vec<String> = if present && clean_start {
            session.state.lock().subscriptions.filters()
        } else {
            Vec::new()
        };
        for raw in filters {
            Self::unsubscribe_locked(&mut router, &session, &raw, &self.metrics);
        }
        let mut state = session.state.lock();
        if let Some(will) = state.pending_will.take()
            && clean_start
        {
            ended_wills.push((will.message, session.authentication_name.clone()));
        }
        if present && clean_start {
            state.reset();
        }
        match state.attachment.replace(attachment.clone()) {
            Some(old) => old.kick(clean_start),
            None => router.count_connected(authentication_name, 1),
        }
        drop(state);
        drop(router);
        for (will, owner) in ended_wills {
            self.publish_will(will, &owner, client_id);
        }
        Ok(Attached {
            session,
            present: present && !clean_start,
            attachment,
        })
    }

    /// Publish a will now, if its owner may publish on its topic under the Snapshot served.
    pub fn publish_will(&self, will: Message, authentication_name: &str, client_id: &str) {
        let permissions = Permissions::compute(self.snapshot.load(), authentication_name);
        if permissions.can_publish(&will.topic) {
            info!(client = %client_id, topic = %will.topic, "will published");
            if self.routes(&will) {
                self.route(&will, authentication_name, None);
            }
            self.publish(will, client_id);
        } else {
            self.metrics.drop_message("not_authorized");
        }
    }

    /// Keep the will of connection `connection_id` (which has just ended) until `delay`
    /// passes, then publish it unless a new connection resumed the session meanwhile.
    /// Call before `detach`, with a delay no longer than the session's expiry.
    pub fn publish_will_later(
        self: &Arc<Self>,
        session: &Arc<Session>,
        connection_id: u64,
        will: Message,
        delay: Duration,
    ) {
        {
            let mut state = session.state.lock();
            if state.attachment.as_ref().map(|a| a.connection_id) != Some(connection_id) {
                // Taken over while ending: the session was resumed before any delay passed.
                return;
            }
            state.pending_will = Some(Box::new(PendingWill {
                connection_id,
                message: will,
            }));
        }
        let broker = self.clone();
        let session = session.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let due = {
                let mut state = session.state.lock();
                match &state.pending_will {
                    Some(w) if w.connection_id == connection_id => state.pending_will.take(),
                    _ => None,
                }
            };
            if let Some(will) = due {
                broker.publish_will(
                    will.message,
                    &session.authentication_name,
                    &session.client_id,
                );
            }
        });
    }

    /// The connection ended. The session is removed at once when its expiry is zero,
    /// otherwise after its expiry interval, unless a connection attached in between.
    pub fn detach(self: &Arc<Self>, session: &Arc<Session>, connection_id: u64) {
        let expiry = {
            let mut router = self.state.lock();
            let mut state = session.state.lock();
            match &state.attachment {
                Some(a) if a.connection_id == connection_id => state.attachment = None,
                // Taken over: the new connection owns the session now.
                _ => return,
            }
            router.count_connected(&session.authentication_name, -1);
            state.detached_at = Some(persist::now());
            state.expiry_interval
        };
        if expiry == 0 {
            self.remove_if_detached(session);
            return;
        }
        self.expire_later(session, Duration::from_secs(u64::from(expiry)));
    }

    /// Remove `session` after `after` unless a connection is attached by then (and has not
    /// left again more recently: a later detach schedules its own removal).
    fn expire_later(self: &Arc<Self>, session: &Arc<Session>, after: Duration) {
        let broker = self.clone();
        let session = session.clone();
        let detached_at = session.state.lock().detached_at;
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            if session.state.lock().detached_at == detached_at {
                broker.remove_if_detached(&session);
            }
        });
    }

    /// The session ends (expired, or its connection left with expiry 0): a will still
    /// waiting for its delay is published now.
    fn remove_if_detached(&self, session: &Arc<Session>) {
        let mut router = self.state.lock();
        let will = {
            let mut state = session.state.lock();
            if state.attachment.is_some() {
                return;
            }
            state.pending_will.take()
        };
        Self::remove_locked(&mut router, session, &self.metrics);
        drop(router);
        if let Some(will) = will {
            self.publish_will(
                will.message,
                &session.authentication_name,
                &session.client_id,
            );
        }
    }

    fn remove_locked(router: &mut RouterState, session: &Arc<Session>, metrics: &MqttMetrics) {
        match router.sessions.get(&session.client_id) {
            Some(current) if Arc::ptr_eq(current, session) => {}
            _ => return,
        }
        router.sessions.remove(&session.client_id);
        metrics.sessions.dec();
        let filters: Vec<String> = session.state.lock().subscriptions.filters();
        for raw in filters {
            Self::unsubscribe_locked(router, session, &raw, metrics);
        }
    }

    /// Add (or replace) a subscription; whether it existed before, and the retained
    /// messages it should receive now.
    pub fn subscribe(&self, session: &Arc<Session>, new: NewSubscription) -> (bool, Vec<Message>) {
        let mut router = self.state.lock();
        let key = (new.share_group.clone(), session.client_id.clone());
        let existed = router
            .trie
            .insert(
                &new.filter,
                key,
                Subscriber {
                    session: session.clone(),
                    options: new.options,
                    filter: new.filter.as_str().to_string(),
                    subscription_id: new.subscription_id,
                },
            )
            .is_some();
        if !existed {
            self.metrics.subscriptions.inc();
        }
        // Retained messages go to new, non-shared subscriptions (retain handling 0 and 1).
        let send_retained = new.share_group.is_none()
            && match new.options.retain_handling {
                0 => true,
                1 => !existed,
                _ => false,
            };
        let retained = if send_retained {
            router
                .retained
                .values()
                .filter(|m| new.filter.matches(&m.topic))
                .map(|m| {
                    let mut m = m.clone();
                    m.qos = m.qos.min(new.options.qos);
                    m
                })
                .collect()
        } else {
            Vec::new()
        };
        drop(router);
        let mut state = session.state.lock();
        state
            .subscriptions
            .insert(new.raw, new.options, new.subscription_id);
        (existed, retained)
    }

    /// Remove a subscription by the filter the client wrote; whether it existed.
    pub fn unsubscribe(&self, session: &Arc<Session>, raw: &str) -> bool {
        let mut router = self.state.lock();
        Self::unsubscribe_locked(&mut router, session, raw, &self.metrics)
    }

    fn unsubscribe_locked(
        router: &mut RouterState,
        session: &Arc<Session>,
        raw: &str,
        metrics: &MqttMetrics,
    ) -> bool {
        let Ok(Some((group, filter))) = split(raw) else {
            return false;
        };
        let removed = router
            .trie
            .remove(&filter, &(group, session.client_id.clone()))
            .is_some();
        if removed {
            metrics.subscriptions.dec();
        }
        let mut state = session.state.lock();
        state.subscriptions.remove(raw);
        removed
    }

    /// Route an (authorized) message to every matching subscription and keep it if retained.
    pub fn publish(&self, message: Message, publisher: &str) -> Published {
        let mut outbox = Outbox::default();
        let mut published = self.publish_batched(message, publisher, &mut outbox);
        let congested = outbox.deliver(self.limits.queue, &self.metrics);
        published.congested.extend(congested);
        published
    }

    /// [`Broker::publish`] within a connection's batch of packets: a message for more than
    /// `WAKE_AT_ONCE_UP_TO` sessions (or any message once the batch has deferred one, to keep
    /// their order) is left in `outbox` for the caller to deliver when the batch is handled.
    pub fn publish_batched(
        &self,
        message: Message,
        publisher: &str,
        outbox: &mut Outbox,
    ) -> Published {
        // Made before the router lock is taken: with many publishers, every instruction under
        // it is waited for by the others (100 → 1 lost a fifth of its rate to an allocation and
        // the deliveries built under it).
        let message = Arc::new(message);
        let mut router = self.state.lock();
        if message.retain {
            let had = if message.payload.is_empty() {
                router.retained.remove(&*message.topic).is_some()
            } else {
                router
                    .retained
                    .insert(message.topic.to_string(), Message::clone(&message))
                    .is_some()
            };
            match (had, message.payload.is_empty()) {
                (false, false) => self.metrics.retained.inc(),
                (true, true) => self.metrics.retained.dec(),
                _ => {}
            }
        }
        // One copy per session (the highest QoS of its matching filters, every matching
        // subscription's id); one member per share. Visited in place under the router lock:
        // no key, filter or session `Arc` is copied per message.
        let mut direct: Vec<Target<'_>> = Vec::new();
        let mut shares: Vec<((&str, &str), Vec<&Subscriber>)> = Vec::new();
        // Disjoint borrows: the trie is read while share turns move.
        let state = &mut *router;
        let share_turn = &mut state.share_turn;
        state.trie.for_each_match(
            &message.topic,
            |(group, client_id), subscriber| match group {
                None => {
                    if !(subscriber.options.no_local && client_id == publisher) {
                        direct.push(Target::of(subscriber));
                    }
                }
                Some(group) => {
                    let share = (group.as_str(), subscriber.filter.as_str());
                    match shares.iter_mut().find(|(key, _)| *key == share) {
                        Some((_, members)) => members.push(subscriber),
                        None => shares.push((share, vec![subscriber])),
                    }
                }
            },
        );
        // A session matched by several of its filters gets one copy: sorted by session,
        // its targets are neighbours and merge (cheaper than hashing client ids per target).
        direct.sort_unstable_by_key(|target| target.address());
        direct.dedup_by(|duplicate, kept| {
            if !Arc::ptr_eq(duplicate.session, kept.session) {
                return false;
            }
            kept.how.qos = kept.how.qos.max(duplicate.how.qos);
            kept.how.retain_as_published |= duplicate.how.retain_as_published;
            kept.how.ids.append(&mut duplicate.how.ids);
            true
        });
        let mut targets = direct;
        let shared = !shares.is_empty();
        for ((group, filter), members) in shares {
            // Prefer connected members, in turn.
            let connected: Vec<&Subscriber> = members
                .iter()
                .copied()
                .filter(|m| m.session.state.lock().attachment.is_some())
                .collect();
            let pool = if connected.is_empty() {
                members
            } else {
                connected
            };
            let turn = share_turn
                .entry((group.to_string(), filter.to_string()))
                .or_insert(0);
            targets.push(Target::of(pool[*turn % pool.len()]));
            *turn = turn.wrapping_add(1);
        }
        if shared {
            // The outbox merges targets in address order.
            targets.sort_by_key(|target| target.address());
        }
        let mut outcome = Published::default();
        // A message for a few sessions wakes them at once: their connections write while the
        // publisher goes on with its batch (1 → 1 keeps both threads busy). A fan-out is
        // handed over after the batch (`Outbox`): one lock and one wake-up per session.
        if targets.len() > WAKE_AT_ONCE_UP_TO || !outbox.is_empty() {
            outbox.add(
                targets
                    .into_iter()
                    .map(|target| (target.session, target.how.queued(&message))),
            );
            return outcome;
        }
        // At most `WAKE_AT_ONCE_UP_TO`: on the stack, no allocation per message; the
        // deliveries are made once the router lock is released.
        let mut owned: [Option<(Arc<Session>, How)>; WAKE_AT_ONCE_UP_TO] = Default::default();
        for (slot, target) in owned.iter_mut().zip(targets) {
            *slot = Some((Arc::clone(target.session), target.how));
        }
        drop(router);
        for (session, how) in owned.into_iter().flatten() {
            match session.enqueue_quietly(how.queued(&message), self.limits.queue, &self.metrics) {
                Enqueued::QueuedFirst => session.wake.notify_one(),
                Enqueued::Queued | Enqueued::Dropped => {}
                Enqueued::QueuedCongested => outcome.congested.push(session),
            }
        }
        outcome
    }
}

/// A session a message goes to (borrowed from the trie, under the router lock), and how.
struct Target<'a> {
    session: &'a Arc<Session>,
    how: How,
}

/// How a message goes to a session.
struct How {
    qos: QoS,
    retain_as_published: bool,
    ids: Vec<NonZeroU32>,
}

impl<'a> Target<'a> {
    fn of(subscriber: &'a Subscriber) -> Self {
        Target {
            session: &subscriber.session,
            how: How {
                qos: subscriber.options.qos,
                retain_as_published: subscriber.options.retain_as_published,
                ids: subscriber.subscription_id.into_iter().collect(),
            },
        }
    }

    fn address(&self) -> usize {
        Arc::as_ptr(self.session) as usize
    }
}

impl How {
    /// This session's delivery of `message`, with the identifiers of its matching
    /// subscriptions.
    fn queued(mut self, message: &Arc<Message>) -> Queued {
        self.ids.sort_unstable();
        self.ids.dedup();
        Queued {
            delivery: Delivery::new(
                Arc::clone(message),
                message.qos.min(self.qos),
                message.retain && self.retain_as_published,
            ),
            subscription_ids: self.ids,
        }
    }
}

/// What [`Broker::publish`] did with a message.
#[derive(Default)]
pub struct Published {
    /// Connected sessions that are behind: the publisher should pause until they drain.
    pub congested: Vec<Arc<Session>>,
}

impl Broker {
    /// What outlives a restart (see `persist`): sessions with an expiry, their
    /// subscriptions and undelivered QoS 1/2 messages, and the retained messages.
    pub fn stored_state(&self) -> StoredState {
        let router = self.state.lock();
        let now = persist::now();
        let mut sessions = Vec::new();
        for session in router.sessions.values() {
            let state = session.state.lock();
            if state.expiry_interval == 0 {
                continue;
            }
            let seen = match state.attachment {
                Some(_) => now,
                None => state.detached_at.unwrap_or(now),
            };
            sessions.push(StoredSession {
                client_id: session.client_id.clone(),
                authentication_name: session.authentication_name.clone(),
                expiry_interval: state.expiry_interval,
                expires_at: seen.saturating_add(u64::from(state.expiry_interval)),
                subscriptions: state
                    .subscriptions
                    .iter()
                    .map(|held| {
                        let mut stored: persist::StoredOptions = (&held.options).into();
                        stored.subscription_id = held.id.map(NonZeroU32::get);
                        (held.raw.clone(), stored)
                    })
                    .collect(),
                queue: persist::undelivered(&state),
            });
        }
        sessions.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        let retained = router
            .retained
            .values()
            .map(|m| {
                let left = m.properties.message_expiry_interval.map(|e| e.get());
                persist::StoredMessage::from_message(m, left)
            })
            .collect();
        StoredState { sessions, retained }
    }

    /// Restore what the last run stored: expired sessions are dropped, the others wait
    /// detached for their client (and expire on time if it does not come back).
    pub fn restore(self: &Arc<Self>, stored: StoredState) -> usize {
        let now = persist::now();
        {
            let mut router = self.state.lock();
            for message in stored.retained {
                let message = message.into_message();
                if router
                    .retained
                    .insert(message.topic.to_string(), message)
                    .is_none()
                {
                    self.metrics.retained.inc();
                }
            }
        }
        let mut restored = 0;
        for stored in stored.sessions {
            let Some(left) = stored.expires_at.checked_sub(now).filter(|l| *l > 0) else {
                continue;
            };
            let session = Arc::new(Session::new(
                stored.client_id.clone(),
                stored.authentication_name,
            ));
            {
                let mut router = self.state.lock();
                if router.sessions.contains_key(&stored.client_id) {
                    continue;
                }
                router
                    .sessions
                    .insert(stored.client_id.clone(), session.clone());
                self.metrics.sessions.inc();
            }
            session.state.lock().expiry_interval = stored.expiry_interval;
            for (raw, options) in &stored.subscriptions {
                let Ok(Some((share_group, filter))) = split(raw) else {
                    continue;
                };
                self.subscribe(
                    &session,
                    NewSubscription {
                        raw: raw.clone(),
                        share_group,
                        filter,
                        options: options.options(),
                        subscription_id: options.subscription_id.and_then(NonZeroU32::new),
                    },
                );
            }
            for message in stored.queue {
                session.enqueue(message.into_message(), self.limits.queue, &self.metrics);
            }
            session.state.lock().detached_at = Some(now);
            self.expire_later(&session, Duration::from_secs(left));
            restored += 1;
        }
        restored
    }
}

/// `(share group, filter)` of a subscription as the client wrote it.
pub fn split(raw: &str) -> Result<Option<(Option<String>, TopicFilter)>, String> {
    match gridline_crds::model::topic::parse_shared_subscription(raw) {
        Ok(Some(shared)) => TopicFilter::parse(shared.filter)
            .map(|f| Some((Some(shared.group.to_string()), f)))
            .map_err(|e| e.to_string()),
        Ok(None) => TopicFilter::parse(raw)
            .map(|f| Some((None, f)))
            .map_err(|e| e.to_string()),
        Err(error) => Err(error.to_string()),
    }
}

impl QoS {
    pub fn label(self) -> &'static str {
        match self {
            QoS::AtMostOnce => "0",
            QoS::AtLeastOnce => "1",
            QoS::ExactlyOnce => "2",
        }
    }
}
