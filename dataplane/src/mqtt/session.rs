//! A session: what outlives a connection (subscriptions, queued and in-flight messages,
//! QoS 2 receipts), guarded by its own lock. The connection task drives it; the router only
//! enqueues.

use super::codec::{Message, QoS, SubscriptionOptions};
use super::metrics::MqttMetrics;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::num::{NonZeroU16, NonZeroU32};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Per-session bounds (see the README's "Flow control" for why these numbers).
#[derive(Clone, Copy, Debug)]
pub struct QueueLimits {
    /// Messages waiting for a *connected* client at which the connections publishing to it
    /// stop reading (TCP back-pressure) until it is under `resume_publishers_below` again.
    pub pause_publishers_at: usize,
    pub resume_publishers_below: usize,
    /// The hard bound while connected: beyond it even QoS 1/2 is dropped (`queue_full`). Only
    /// publishers that cannot be paused get here: a client publishing to itself, or one
    /// whose pause ran out (`Limits::max_publisher_pause`).
    pub max_queued: usize,
    /// A session without a connection keeps at most this many messages (`queue_full_offline`)…
    pub max_queued_offline: usize,
    /// …of which at most this many QoS 0 (`queue_full_qos0`).
    pub max_queued_qos0_offline: usize,
}

/// What became of a message handed to a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enqueued {
    Queued,
    /// Queued, and the client is behind: its publishers should pause until it drains.
    QueuedCongested,
    /// Dropped (and counted) at a bound.
    Dropped,
}

/// A message on its way to one session: the message itself is shared by every session it
/// went to (one `Arc` per delivery instead of a copy of topic, payload and properties), with
/// what is this delivery's own beside it.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    pub message: Arc<Message>,
    /// The message's QoS lowered to the subscription's.
    pub qos: QoS,
    /// The retain flag as this subscriber sees it (retain-as-published, retained on subscribe).
    pub retain: bool,
    /// When the MQTT 5 Message Expiry Interval, counted from when it was queued here, ends.
    pub expires_at: Option<Instant>,
}

impl Delivery {
    pub fn new(message: Arc<Message>, qos: QoS, retain: bool) -> Self {
        let expires_at = message
            .properties
            .message_expiry_interval
            .map(|expiry| Instant::now() + std::time::Duration::from_secs(u64::from(expiry.get())));
        Self {
            message,
            qos,
            retain,
            expires_at,
        }
    }

    /// The message as it was published (its own QoS and retain flag).
    pub fn of(message: Message) -> Self {
        let (qos, retain) = (message.qos, message.retain);
        Self::new(Arc::new(message), qos, retain)
    }

    /// Whole seconds of expiry left at `now` (rounded up, as the interval only shrinks while
    /// queued): `Ok(None)` without an expiry, `Err(Expired)` once it has passed.
    pub fn expiry_left(&self, now: Instant) -> Result<Option<NonZeroU32>, Expired> {
        let Some(at) = self.expires_at else {
            return Ok(None);
        };
        let left = at.saturating_duration_since(now);
        let seconds = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        NonZeroU32::new(u32::try_from(seconds).unwrap_or(u32::MAX))
            .map(Some)
            .ok_or(Expired)
    }
}

/// A message whose expiry interval passed while it waited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expired;

/// An outgoing QoS 1/2 message the client has not finished acknowledging.
#[derive(Clone, Debug, PartialEq)]
pub enum Outbound {
    /// QoS 1, PUBLISH sent.
    AwaitingPubAck(Delivery),
    /// QoS 2, PUBLISH sent.
    AwaitingPubRec(Delivery),
    /// QoS 2, PUBREL sent.
    AwaitingPubComp,
}

#[derive(Clone, Debug)]
pub struct Queued {
    pub delivery: Delivery,
    /// The identifiers of the client's subscriptions that matched (MQTT 5), sent with it.
    pub subscription_ids: Vec<NonZeroU32>,
}

/// The connection currently attached to a session.
#[derive(Clone, Debug)]
pub struct Attachment {
    pub connection_id: u64,
    /// Notified when another connection takes the session over.
    pub kicked: Arc<Notify>,
    /// Set before `kicked` when the take-over also ends the session (clean start, or another
    /// identity reusing the client id): the old connection's will is then due at once.
    pub session_ended: Arc<std::sync::atomic::AtomicBool>,
}

impl Attachment {
    pub fn new(connection_id: u64) -> Self {
        Self {
            connection_id,
            kicked: Arc::new(Notify::new()),
            session_ended: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        }
    }

    /// Tell the connection holding the session that another one took it over.
    pub fn kick(&self, session_ended: bool) {
        self.session_ended
            .store(session_ended, std::sync::atomic::Ordering::Release);
        self.kicked.notify_one();
    }

    pub fn session_ended(&self) -> bool {
        self.session_ended
            .load(std::sync::atomic::Ordering::Acquire)
    }
}

/// A will waiting for its delay (MQTT 5 Will Delay Interval) after its connection ended.
#[derive(Clone, Debug)]
pub struct PendingWill {
    /// The connection that left it; the timer publishes only its own will.
    pub connection_id: u64,
    pub message: Message,
}

#[derive(Debug, Default)]
pub struct SessionState {
    pub queue: VecDeque<Queued>,
    pub inflight: BTreeMap<u16, Outbound>,
    next_packet_id: u16,
    /// QoS 2 packet ids received (PUBREC sent), waiting for PUBREL.
    pub incoming_qos2: BTreeSet<u16>,
    /// Raw filters as subscribed (`$share/g/f` included) and their options.
    pub subscriptions: BTreeMap<String, SubscriptionOptions>,
    /// The subscription identifier given with a raw filter, if any (MQTT 5).
    pub subscription_ids: BTreeMap<String, NonZeroU32>,
    pub attachment: Option<Attachment>,
    /// Session expiry interval (seconds), as last set by the client, capped.
    pub expiry_interval: u32,
    /// When the last connection left (seconds since the epoch); None while never detached.
    pub detached_at: Option<u64>,
    /// The will of the last connection, until its delay passes, the session ends, or a new
    /// connection resumes the session (which discards it).
    pub pending_will: Option<PendingWill>,
}

impl SessionState {
    /// A free packet id for an outgoing QoS 1/2 message, or None if all 65535 are in flight.
    pub fn next_packet_id(&mut self) -> Option<NonZeroU16> {
        for _ in 0..u16::MAX {
            self.next_packet_id = self.next_packet_id.wrapping_add(1).max(1);
            if !self.inflight.contains_key(&self.next_packet_id) {
                return NonZeroU16::new(self.next_packet_id);
            }
        }
        None
    }

    /// The client acknowledged a QoS 1 message (PUBACK).
    pub fn on_puback(&mut self, packet_id: u16) -> bool {
        if matches!(
            self.inflight.get(&packet_id),
            Some(Outbound::AwaitingPubAck(_))
        ) {
            self.inflight.remove(&packet_id);
            return true;
        }
        false
    }

    /// The client received a QoS 2 message (PUBREC): true when a PUBREL is due.
    pub fn on_pubrec(&mut self, packet_id: u16, refused: bool) -> bool {
        match self.inflight.get(&packet_id) {
            Some(Outbound::AwaitingPubRec(_)) if refused => {
                self.inflight.remove(&packet_id);
                false
            }
            Some(Outbound::AwaitingPubRec(_)) | Some(Outbound::AwaitingPubComp) => {
                self.inflight.insert(packet_id, Outbound::AwaitingPubComp);
                true
            }
            _ => false,
        }
    }

    /// The QoS 2 exchange of an outgoing message completed (PUBCOMP).
    pub fn on_pubcomp(&mut self, packet_id: u16) -> bool {
        if matches!(
            self.inflight.get(&packet_id),
            Some(Outbound::AwaitingPubComp)
        ) {
            self.inflight.remove(&packet_id);
            return true;
        }
        false
    }

    /// An incoming QoS 2 PUBLISH: true when it is new (to be routed), false for a resend.
    pub fn on_incoming_qos2(&mut self, packet_id: u16) -> bool {
        self.incoming_qos2.insert(packet_id)
    }

    /// PUBREL of an incoming QoS 2 message: whether the packet id was known.
    pub fn on_pubrel(&mut self, packet_id: u16) -> bool {
        self.incoming_qos2.remove(&packet_id)
    }

    /// Forget what only a clean start forgets.
    pub fn reset(&mut self) -> usize {
        let subscriptions = self.subscriptions.len();
        *self = SessionState {
            attachment: self.attachment.take(),
            pending_will: self.pending_will.take(),
            ..SessionState::default()
        };
        subscriptions
    }
}

pub struct Session {
    pub client_id: String,
    pub authentication_name: String,
    pub state: parking_lot::Mutex<SessionState>,
    /// Notified when a message is queued.
    pub wake: Notify,
    /// Set when the queue reached `pause_publishers_at`; cleared (and `drained` notified)
    /// when the connection has taken it under `resume_publishers_below`.
    congested: AtomicBool,
    /// Publishers paused on this session wait here.
    pub drained: Notify,
}

impl Session {
    pub fn new(client_id: String, authentication_name: String) -> Self {
        Self {
            client_id,
            authentication_name,
            state: parking_lot::Mutex::new(SessionState::default()),
            wake: Notify::new(),
            congested: AtomicBool::new(false),
            drained: Notify::new(),
        }
    }

    /// Queue a message for the client, as published, within the limits.
    pub fn enqueue(
        &self,
        message: Message,
        limits: QueueLimits,
        metrics: &MqttMetrics,
    ) -> Enqueued {
        self.enqueue_with(Delivery::of(message), Vec::new(), limits, metrics)
    }

    /// Queue a delivery, with the identifiers of the subscriptions that matched.
    pub fn enqueue_with(
        &self,
        delivery: Delivery,
        subscription_ids: Vec<NonZeroU32>,
        limits: QueueLimits,
        metrics: &MqttMetrics,
    ) -> Enqueued {
        let enqueued = self.enqueue_quietly(delivery, subscription_ids, limits, metrics);
        if enqueued != Enqueued::Dropped {
            self.wake.notify_one();
        }
        enqueued
    }

    /// [`Session::enqueue_with`] without waking the connection: the caller wakes it later
    /// (see [`Wakes`]).
    pub fn enqueue_quietly(
        &self,
        delivery: Delivery,
        subscription_ids: Vec<NonZeroU32>,
        limits: QueueLimits,
        metrics: &MqttMetrics,
    ) -> Enqueued {
        let mut state = self.state.lock();
        let waiting = state.queue.len();
        let connected = state.attachment.is_some();
        let dropped = if connected {
            (waiting >= limits.max_queued).then_some("queue_full")
        } else if delivery.qos == QoS::AtMostOnce && waiting >= limits.max_queued_qos0_offline {
            Some("queue_full_qos0")
        } else {
            (waiting >= limits.max_queued_offline).then_some("queue_full_offline")
        };
        if let Some(reason) = dropped {
            drop(state);
            metrics.drop_message(reason);
            return Enqueued::Dropped;
        }
        state.queue.push_back(Queued {
            delivery,
            subscription_ids,
        });
        drop(state);
        if connected && waiting + 1 >= limits.pause_publishers_at {
            self.congested.store(true, Ordering::Release);
            return Enqueued::QueuedCongested;
        }
        Enqueued::Queued
    }

    /// Whether publishers to this session should still wait.
    pub fn is_congested(&self) -> bool {
        self.congested.load(Ordering::Acquire)
    }

    /// The connection took messages off the queue: once under the resume mark, let paused
    /// publishers go on.
    pub fn after_drain(&self, limits: QueueLimits) {
        if self.congested.load(Ordering::Acquire)
            && self.state.lock().queue.len() < limits.resume_publishers_below
        {
            self.congested.store(false, Ordering::Release);
            self.drained.notify_waiters();
        }
    }

    /// The connection left: publishers must not wait for a client that is gone (the
    /// offline bounds apply from now on).
    pub fn release_publishers(&self) {
        self.congested.store(false, Ordering::Release);
        self.drained.notify_waiters();
    }
}

/// Sessions that were given messages and whose connections have not been woken yet.
///
/// A connection that handles a batch of PUBLISH packets wakes each subscriber once, after the
/// batch, instead of once per message: woken at once, a subscriber's task runs on the other
/// worker thread and writes one message per `write` (measured: 1 → 100 fan-out spent most of
/// its time switching tasks and in syscalls). Waking after the batch lets each subscriber
/// write everything queued in one go. The batch is bounded (`MAX_PACKETS_PER_WAKE` packets),
/// so the delay is bounded too.
#[derive(Default)]
pub struct Wakes(Vec<Arc<Session>>);

impl Wakes {
    pub fn push(&mut self, session: Arc<Session>) {
        self.0.push(session);
    }

    /// Wake every session given since the last call, each once.
    pub fn wake_all(&mut self) {
        if self.0.is_empty() {
            return;
        }
        self.0.sort_unstable_by_key(|s| Arc::as_ptr(s) as usize);
        self.0.dedup_by(|a, b| Arc::ptr_eq(a, b));
        for session in self.0.drain(..) {
            session.wake.notify_one();
        }
    }

    /// Give the memory back while idle.
    pub fn release(&mut self) {
        debug_assert!(self.0.is_empty());
        self.0 = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn message(qos: QoS) -> Message {
        Message {
            topic: "a".into(),
            payload: Bytes::from_static(b"x"),
            qos,
            retain: false,
            properties: Default::default(),
        }
    }

    #[test]
    fn qos1_flow_ends_with_puback() {
        let mut state = SessionState::default();
        let id = state.next_packet_id().unwrap().get();
        state.inflight.insert(
            id,
            Outbound::AwaitingPubAck(Delivery::of(message(QoS::AtLeastOnce))),
        );
        assert!(!state.on_pubcomp(id));
        assert!(state.on_puback(id));
        assert!(state.inflight.is_empty());
        assert!(
            !state.on_puback(id),
            "a second PUBACK is not an acknowledgement"
        );
    }

    #[test]
    fn qos2_outgoing_flow_is_publish_pubrec_pubrel_pubcomp() {
        let mut state = SessionState::default();
        let id = state.next_packet_id().unwrap().get();
        state.inflight.insert(
            id,
            Outbound::AwaitingPubRec(Delivery::of(message(QoS::ExactlyOnce))),
        );
        assert!(!state.on_puback(id));
        assert!(!state.on_pubcomp(id), "PUBCOMP before PUBREC is ignored");
        assert!(state.on_pubrec(id, false));
        assert_eq!(state.inflight.get(&id), Some(&Outbound::AwaitingPubComp));
        assert!(
            state.on_pubrec(id, false),
            "a resent PUBREC gets PUBREL again"
        );
        assert!(state.on_pubcomp(id));
        assert!(state.inflight.is_empty());
    }

    #[test]
    fn a_refused_pubrec_ends_the_exchange() {
        let mut state = SessionState::default();
        state.inflight.insert(
            7,
            Outbound::AwaitingPubRec(Delivery::of(message(QoS::ExactlyOnce))),
        );
        assert!(!state.on_pubrec(7, true));
        assert!(state.inflight.is_empty());
    }

    #[test]
    fn qos2_incoming_is_routed_once_until_pubrel() {
        let mut state = SessionState::default();
        assert!(state.on_incoming_qos2(5));
        assert!(!state.on_incoming_qos2(5), "a resend is not routed again");
        assert!(state.on_pubrel(5));
        assert!(!state.on_pubrel(5));
        assert!(
            state.on_incoming_qos2(5),
            "after PUBREL the id is free again"
        );
    }

    #[test]
    fn packet_ids_skip_zero_and_those_in_flight() {
        let mut state = SessionState::default();
        state.inflight.insert(1, Outbound::AwaitingPubComp);
        assert_eq!(state.next_packet_id().unwrap().get(), 2);
        state.next_packet_id = u16::MAX;
        assert_eq!(state.next_packet_id().unwrap().get(), 2);
    }

    fn limits() -> QueueLimits {
        QueueLimits {
            pause_publishers_at: 3,
            resume_publishers_below: 2,
            max_queued: 4,
            max_queued_offline: 2,
            max_queued_qos0_offline: 1,
        }
    }

    fn dropped(metrics: &MqttMetrics, reason: &str) -> u64 {
        metrics.dropped.with_label_values(&[reason]).get()
    }

    #[test]
    fn an_offline_session_drops_qos0_first_then_everything() {
        let metrics = MqttMetrics::register(&prometheus::Registry::new()).unwrap();
        let session = Session::new("c".into(), "c".into());
        let enqueue = |qos| session.enqueue(message(qos), limits(), &metrics);
        assert_eq!(enqueue(QoS::AtMostOnce), Enqueued::Queued);
        assert_eq!(enqueue(QoS::AtMostOnce), Enqueued::Dropped);
        assert_eq!(enqueue(QoS::AtLeastOnce), Enqueued::Queued);
        assert_eq!(enqueue(QoS::ExactlyOnce), Enqueued::Dropped);
        assert_eq!(dropped(&metrics, "queue_full_qos0"), 1);
        assert_eq!(dropped(&metrics, "queue_full_offline"), 1);
        assert!(!session.is_congested(), "nobody to wait for while offline");
    }

    #[test]
    fn a_connected_session_asks_publishers_to_pause_then_lets_them_go_once_drained() {
        let metrics = MqttMetrics::register(&prometheus::Registry::new()).unwrap();
        let session = Session::new("c".into(), "c".into());
        session.state.lock().attachment = Some(Attachment::new(1));
        let enqueue = |qos| session.enqueue(message(qos), limits(), &metrics);
        assert_eq!(enqueue(QoS::AtMostOnce), Enqueued::Queued);
        assert_eq!(enqueue(QoS::AtMostOnce), Enqueued::Queued);
        assert_eq!(enqueue(QoS::AtLeastOnce), Enqueued::QueuedCongested);
        assert!(session.is_congested());
        assert_eq!(enqueue(QoS::AtLeastOnce), Enqueued::QueuedCongested);
        assert_eq!(
            enqueue(QoS::AtLeastOnce),
            Enqueued::Dropped,
            "the hard bound"
        );
        assert_eq!(dropped(&metrics, "queue_full"), 1);

        session.state.lock().queue.pop_front();
        session.state.lock().queue.pop_front();
        session.after_drain(limits());
        assert!(
            session.is_congested(),
            "2 waiting: not under the resume mark yet"
        );
        session.state.lock().queue.pop_front();
        session.after_drain(limits());
        assert!(!session.is_congested());
    }

    #[tokio::test]
    async fn a_paused_publisher_is_woken_when_the_session_drains() {
        let metrics = MqttMetrics::register(&prometheus::Registry::new()).unwrap();
        let session = Arc::new(Session::new("c".into(), "c".into()));
        session.state.lock().attachment = Some(Attachment::new(1));
        for _ in 0..3 {
            session.enqueue(message(QoS::AtLeastOnce), limits(), &metrics);
        }
        let waiter = {
            let session = Arc::clone(&session);
            tokio::spawn(async move {
                let drained = session.drained.notified();
                tokio::pin!(drained);
                drained.as_mut().enable();
                if session.is_congested() {
                    drained.await;
                }
            })
        };
        tokio::task::yield_now().await;
        session.state.lock().queue.clear();
        session.after_drain(limits());
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .unwrap();
    }
}
