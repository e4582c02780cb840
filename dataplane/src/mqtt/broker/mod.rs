//! The router: sessions by client id, the subscription trie and the retained store, under one
//! lock (`Broker::state`). Lock order: the router lock before a session's lock, never the
//! other way round, and neither across an `.await`. Routing collects the target sessions,
//! releases the router lock, then enqueues (each enqueue takes one session lock).

use super::accept::Closing;
use super::authorize::Permissions;
use super::codec::{Message, QoS, SubscriptionOptions};
use super::events::EventSink;
use super::lifecycle::DisconnectionReason;
use super::metrics::MqttMetrics;
use super::peers::Peers;
use super::peers::interest::{InterestChange, LocalInterest};
use super::persist;
use super::reason::ReasonCode;
use super::routing::RouteTicket;
use super::session::{Attachment, PendingWill, QueueLimits, Session, connection_id};
use super::trie::Trie;
use crate::snapshot::SharedSnapshot;
use gridline_crds::model::topic::TopicFilter;
use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use tracing::info;

mod fanout;
mod handover;
pub use handover::Handover;
mod stored;

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
    /// Connections attached so far here; a connection's id is this count under the pod's
    /// owner number (`connection_id`).
    connections_attached: u64,
    /// Sessions with a connection attached, per authentication name (the Namespace's
    /// `maximumClientSessionsPerAuthenticationName` bounds it).
    connected_by_name: HashMap<String, usize>,
    /// The filters the trie holds, counted, with the changes the peers are still to hear of.
    interest: LocalInterest,
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
    /// Listeners closing (`accept::Closing`): their connections end with DISCONNECT 0x8B.
    /// Changed through [`Broker::close_listeners`].
    pub closing: tokio::sync::watch::Sender<Closing>,
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
    /// Routed messages and client lifecycle events for the store (`events.rs`); None
    /// without a store.
    pub events: Option<EventSink>,
    /// This pod's owner number (`PodIdentity::owner`), in every connection id it gives.
    pod_owner: u16,
    /// The other pods of the Namespace (None: this pod is alone).
    pub peers: Option<Arc<Peers>>,
    /// The version of this pod's interest (`LocalInterest::version`), sent when it changes:
    /// `mqtt::peer_service` tells the peers.
    pub interest_changes: tokio::sync::watch::Sender<u64>,
    /// The interest version every connected peer has acknowledged: a SUBACK waits for it, so
    /// that a message published anywhere after the SUBACK reaches the new subscription.
    pub interest_told: tokio::sync::watch::Sender<u64>,
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
    pub fn close_listeners(&self, modify: impl FnOnce(&mut Closing) -> bool) {
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
            closing: tokio::sync::watch::Sender::new(Closing::default()),
            connection_checks: tokio::sync::watch::Sender::new(0),
            authenticator: Default::default(),
            refusal_log: crate::log_limit::LogLimiters::new(std::time::Duration::from_secs(1)),
            events: None,
            pod_owner: 0,
            peers: None,
            interest_changes: tokio::sync::watch::Sender::new(0),
            interest_told: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Whether an authorized message is to be routed into the Namespace's routing Topic.
    pub fn routes(&self, message: &Message) -> bool {
        self.events
            .as_ref()
            .is_some_and(|e| e.routing.routes(message))
    }

    /// Queue a message that [`Broker::routes`] for routing (see `Routing::route`).
    pub fn route(&self, message: &Message, authentication_name: &str, ticket: Option<RouteTicket>) {
        if let Some(events) = &self.events {
            events.routing.route(message, authentication_name, ticket);
        }
    }

    /// A session was attached to connection `connection_id`: a lifecycle event if enabled.
    /// `floor`: the session's last lifecycle sequence number on a pod it came from.
    pub fn session_connected(
        &self,
        authentication_name: &str,
        session: &str,
        connection_id: u64,
        floor: u64,
    ) {
        if let Some(events) = &self.events {
            events
                .lifecycle
                .session_connected(authentication_name, session, connection_id, floor);
        }
    }

    /// Connection `connection_id` of a session ended, for `reason`: a lifecycle event if
    /// enabled.
    pub fn session_disconnected(
        &self,
        authentication_name: &str,
        session: &str,
        connection_id: u64,
        floor: u64,
        reason: DisconnectionReason,
    ) {
        if let Some(events) = &self.events {
            events.lifecycle.session_disconnected(
                authentication_name,
                session,
                connection_id,
                floor,
                reason,
            );
        }
    }

    /// Graceful shutdown, once connections have ended: wait (at most `within`) until routed
    /// and lifecycle events queued are appended, before the store closes.
    pub async fn flush_events(&self, within: Duration) {
        if let Some(events) = &self.events {
            events.flush(within).await;
        }
    }

    /// Number this pod's connections under `pod`'s owner number (default: 0, `local`).
    pub fn on_pod(mut self, pod: &crate::pod::PodIdentity) -> Self {
        self.pod_owner = pod.owner();
        self
    }

    /// Forward to and take messages from the Namespace's other pods.
    pub fn with_peers(mut self, peers: Arc<Peers>) -> Self {
        self.peers = Some(peers);
        self
    }

    /// This pod's interest changes not yet told to the peers, and the version they bring.
    pub fn take_interest_changes(&self) -> (Vec<InterestChange>, u64) {
        self.state.lock().interest.take_pending()
    }

    /// All of this pod's interest and its version (for a peer whose link just came up).
    pub fn all_interest(&self) -> (Vec<super::peers::interest::Interest>, u64) {
        self.state.lock().interest.all()
    }

    /// Wait (at most `within`) until every connected peer knows this pod's interest as it is
    /// now. Alone, at once.
    pub async fn interest_settled(&self, within: Duration) {
        if self.peers.is_none() {
            return;
        }
        let version = self.state.lock().interest.version();
        let mut told = self.interest_told.subscribe();
        let _ = tokio::time::timeout(within, told.wait_for(|v| *v >= version)).await;
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
        self.attach_claimed(
            client_id,
            authentication_name,
            clean_start,
            max_sessions_per_name,
            Elsewhere::default(),
        )
    }

    /// [`Broker::attach`] once the other pods answered the client id's claim: the per-name
    /// limit counts their connected sessions too, and taking over a session connected on
    /// another pod is not a new one.
    pub fn attach_claimed(
        &self,
        client_id: &str,
        authentication_name: &str,
        clean_start: bool,
        max_sessions_per_name: usize,
        elsewhere: Elsewhere,
    ) -> Result<Attached, ReasonCode> {
        let mut router = self.state.lock();
        let existing = router.sessions.get(client_id).cloned();
        let takes_over_own = elsewhere.took_over_connected
            || existing.as_ref().is_some_and(|s| {
                s.authentication_name == authentication_name && s.state.lock().attachment.is_some()
            });
        let connected = router
            .connected_by_name
            .get(authentication_name)
            .copied()
            .unwrap_or(0)
            + elsewhere.connected_for_name;
        if !takes_over_own && connected >= max_sessions_per_name {
            return Err(ReasonCode::QuotaExceeded);
        }
        router.connections_attached += 1;
        let attachment =
            Attachment::new(connection_id(self.pod_owner, router.connections_attached));
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
        self.note_interest(&router);
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
        self.note_interest(&router);
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
}

/// What the other pods said of a CONNECT's client id and authentication name.
#[derive(Clone, Copy, Debug, Default)]
pub struct Elsewhere {
    /// Sessions of the authentication name connected on the other pods.
    pub connected_for_name: usize,
    /// The session was connected on another pod, which handed it over.
    pub took_over_connected: bool,
}

/// What [`Broker::publish`] did with a message.
#[derive(Default)]
pub struct Published {
    /// Connected sessions that are behind: the publisher should pause until they drain.
    pub congested: Vec<Arc<Session>>,
    /// The message's number among its connection's forwarded ones (`ForwardAcks`): its
    /// acknowledgement waits until the pods it went to have queued it.
    pub forwarded: Option<u64>,
}

/// Where a message being published comes from.
#[derive(Clone, Copy)]
pub enum Origin<'a> {
    /// Published on this pod (by a client or as a will): delivered to this pod's sessions and
    /// forwarded to the peers with matching interest. `acks`: the publishing connection's,
    /// for a QoS 1/2 message whose acknowledgement waits for the peers.
    Here {
        acks: Option<&'a Arc<super::peers::acks::ForwardAcks>>,
    },
    /// Forwarded by a peer: delivered to this pod's plain subscriptions when `plain`, and to
    /// one member of each share listed (the peer chose this pod for them); never forwarded
    /// on, never stored as retained (retained updates travel on their own).
    Peer {
        plain: bool,
        shares: &'a [(String, String)],
    },
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
