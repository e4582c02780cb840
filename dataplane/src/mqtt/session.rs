//! A session: what outlives a connection (subscriptions, queued and in-flight messages,
//! QoS 2 receipts), guarded by its own lock. The connection task drives it; the router only
//! enqueues.

use super::codec::{Message, QoS, SubscriptionOptions};
use super::metrics::MqttMetrics;
use std::collections::{BTreeSet, VecDeque};
use std::num::{NonZeroU16, NonZeroU32};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
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
    /// Queued into an empty queue: the connection has nothing else to wake it for this one
    /// (with messages already waiting, it is woken or busy draining them, or waiting for its
    /// window, and takes this one with them).
    QueuedFirst,
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

/// At most this many outgoing QoS 1/2 messages in flight per session, whatever the client's
/// receive maximum (3.1.1 clients have none): bounds the scan an out-of-order
/// acknowledgement costs ([`Inflight`]). mosquitto's `max_inflight_messages` is 20; this is
/// large enough that a subscriber on a fast link is never waiting for its window.
pub const MAX_INFLIGHT_OUTGOING: usize = 4096;

/// Outgoing QoS 1/2 messages in flight, in the order they were sent.
///
/// A `VecDeque` and not a map: clients acknowledge in order (MQTT 5 §4.6 asks them to), so
/// an acknowledgement is nearly always for the front, and packet ids are handed out in
/// sequence, so the only id the next one can collide with is the oldest's. A map keyed by
/// packet id cost a search and node shuffling per acknowledgement, and its order was the
/// ids', not the sending order, once ids wrapped. An out-of-order acknowledgement is a scan,
/// bounded by `MAX_INFLIGHT_OUTGOING`.
#[derive(Clone, Debug, Default)]
pub struct Inflight {
    entries: VecDeque<(u16, Outbound)>,
}

impl Inflight {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn position(&self, packet_id: u16) -> Option<usize> {
        match self.entries.front() {
            Some((front, _)) if *front == packet_id => Some(0),
            _ => self.entries.iter().position(|(id, _)| *id == packet_id),
        }
    }

    pub fn get(&self, packet_id: u16) -> Option<&Outbound> {
        self.position(packet_id).map(|at| &self.entries[at].1)
    }

    /// A message just sent under a packet id from [`SessionState::next_packet_id`].
    pub fn push(&mut self, packet_id: u16, outbound: Outbound) {
        debug_assert!(
            self.position(packet_id).is_none(),
            "packet id {packet_id} in use"
        );
        self.entries.push_back((packet_id, outbound));
    }

    fn replace(&mut self, packet_id: u16, outbound: Outbound) {
        if let Some(at) = self.position(packet_id) {
            self.entries[at].1 = outbound;
        }
    }

    pub fn remove(&mut self, packet_id: u16) -> Option<Outbound> {
        match self.position(packet_id)? {
            0 => self.entries.pop_front().map(|(_, o)| o),
            at => self.entries.remove(at).map(|(_, o)| o),
        }
    }

    /// In sending order: the order they are resent in after a reconnect (MQTT 5 §4.4).
    pub fn iter(&self) -> impl Iterator<Item = (u16, &Outbound)> {
        self.entries.iter().map(|(id, o)| (*id, o))
    }
}

#[derive(Clone, Debug)]
pub struct Queued {
    pub delivery: Delivery,
    /// The identifiers of the client's subscriptions that matched (MQTT 5), sent with it.
    pub subscription_ids: Vec<NonZeroU32>,
}

/// Bits of a connection id that count connections on one pod; the pod's owner number is
/// above them, so that ids stay unique when sessions move between pods.
pub const CONNECTION_COUNT_BITS: u32 = 48;

/// The id of the `count`th connection attached on the pod with `owner` number.
pub fn connection_id(owner: u16, count: u64) -> u64 {
    (u64::from(owner) << CONNECTION_COUNT_BITS) | (count & ((1 << CONNECTION_COUNT_BITS) - 1))
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

/// The session's subscriptions: raw filters as subscribed (`$share/g/f` included), their
/// options and identifiers (MQTT 5), in filter order. A sorted `Vec`: a session holds a few
/// (Event Grid allows 20 per connection), and the two `BTreeMap`s this replaced cost an idle
/// connection with one subscription a 320-byte tree node (mqtt/README.md "Idle connections").
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Subscriptions(Vec<HeldSubscription>);

#[derive(Clone, Debug, PartialEq)]
pub struct HeldSubscription {
    pub raw: String,
    pub options: SubscriptionOptions,
    pub id: Option<NonZeroU32>,
}

impl Subscriptions {
    fn position(&self, raw: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|held| held.raw.as_str().cmp(raw))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, raw: &str) -> bool {
        self.position(raw).is_ok()
    }

    /// Add or replace (options and identifier) the subscription to `raw`.
    pub fn insert(&mut self, raw: String, options: SubscriptionOptions, id: Option<NonZeroU32>) {
        match self.position(&raw) {
            Ok(at) => {
                self.0[at].options = options;
                self.0[at].id = id;
            }
            Err(at) => {
                self.0.insert(at, HeldSubscription { raw, options, id });
                // Exactly what is held: most sessions subscribe once and keep it.
                self.0.shrink_to_fit();
            }
        }
    }

    /// Remove the subscription to `raw`; whether there was one.
    pub fn remove(&mut self, raw: &str) -> bool {
        match self.position(raw) {
            Ok(at) => {
                self.0.remove(at);
                true
            }
            Err(_) => false,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &HeldSubscription> {
        self.0.iter()
    }

    /// The raw filters, in order.
    pub fn filters(&self) -> Vec<String> {
        self.0.iter().map(|held| held.raw.clone()).collect()
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
    pub inflight: Inflight,
    next_packet_id: u16,
    /// QoS 2 packet ids received (PUBREC sent), waiting for PUBREL.
    pub incoming_qos2: BTreeSet<u16>,
    pub subscriptions: Subscriptions,
    pub attachment: Option<Attachment>,
    /// Session expiry interval (seconds), as last set by the client, capped.
    pub expiry_interval: u32,
    /// When the last connection left (seconds since the epoch); None while never detached.
    pub detached_at: Option<u64>,
    /// The will of the last connection, until its delay passes, the session ends, or a new
    /// connection resumes the session (which discards it).
    pub pending_will: Option<Box<PendingWill>>,
    /// The session's last lifecycle sequence number on the pod it was handed over from (0:
    /// it never moved): its events here number above it.
    pub sequence_floor: u64,
}

impl SessionState {
    /// A free packet id for an outgoing QoS 1/2 message, or None if all 65535 are in flight.
    /// Ids go out in sequence and the in-flight ones are kept in sending order, so the next
    /// id can only be taken by the oldest message in flight (sent 65535 ids ago).
    pub fn next_packet_id(&mut self) -> Option<NonZeroU16> {
        if self.inflight.len() >= usize::from(u16::MAX) {
            return None;
        }
        loop {
            self.next_packet_id = self.next_packet_id.wrapping_add(1).max(1);
            let oldest = self.inflight.entries.front().map(|(id, _)| *id);
            if oldest != Some(self.next_packet_id) {
                return NonZeroU16::new(self.next_packet_id);
            }
        }
    }

    /// The client acknowledged a QoS 1 message (PUBACK).
    pub fn on_puback(&mut self, packet_id: u16) -> bool {
        if matches!(
            self.inflight.get(packet_id),
            Some(Outbound::AwaitingPubAck(_))
        ) {
            self.inflight.remove(packet_id);
            return true;
        }
        false
    }

    /// The client received a QoS 2 message (PUBREC): true when a PUBREL is due.
    pub fn on_pubrec(&mut self, packet_id: u16, refused: bool) -> bool {
        match self.inflight.get(packet_id) {
            Some(Outbound::AwaitingPubRec(_)) if refused => {
                self.inflight.remove(packet_id);
                false
            }
            Some(Outbound::AwaitingPubRec(_)) | Some(Outbound::AwaitingPubComp) => {
                self.inflight.replace(packet_id, Outbound::AwaitingPubComp);
                true
            }
            _ => false,
        }
    }

    /// The QoS 2 exchange of an outgoing message completed (PUBCOMP).
    pub fn on_pubcomp(&mut self, packet_id: u16) -> bool {
        if matches!(
            self.inflight.get(packet_id),
            Some(Outbound::AwaitingPubComp)
        ) {
            self.inflight.remove(packet_id);
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

/// Queue a delivery unless a bound says drop it (counted): false when dropped. A connected
/// session that `stalled` (it took nothing off its queue while its publishers waited) keeps
/// QoS 1/2 up to the hard bound and no QoS 0, as a session without a connection keeps few.
fn admit(
    state: &mut SessionState,
    queued: Queued,
    limits: QueueLimits,
    stalled: bool,
    metrics: &MqttMetrics,
) -> bool {
    let waiting = state.queue.len();
    let dropped = if state.attachment.is_some() {
        if waiting >= limits.max_queued {
            Some("queue_full")
        } else {
            (stalled && queued.delivery.qos == QoS::AtMostOnce).then_some("subscriber_stalled")
        }
    } else if queued.delivery.qos == QoS::AtMostOnce && waiting >= limits.max_queued_qos0_offline {
        Some("queue_full_qos0")
    } else {
        (waiting >= limits.max_queued_offline).then_some("queue_full_offline")
    };
    match dropped {
        Some(reason) => {
            metrics.drop_message(reason);
            false
        }
        None => {
            state.queue.push_back(queued);
            true
        }
    }
}

/// What [`Session::enqueue_batch`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchQueued {
    /// How many were queued (the others were dropped at a bound).
    pub queued: usize,
    /// The queue was empty and is not now: its connection has nothing else to wake it.
    pub wake: bool,
    /// The client is behind: its publishers should pause until it drains.
    pub congested: bool,
}

pub struct Session {
    pub client_id: String,
    pub authentication_name: String,
    pub state: parking_lot::Mutex<SessionState>,
    /// Notified when a message is queued (and when routed messages this session's connection
    /// published were stored, `routing::RoutedAcks`).
    pub wake: Notify,
    /// Flow control toward publishers: `FLOWING`, `CONGESTED` (the queue reached
    /// `pause_publishers_at`: publishers pause until the connection has taken it under
    /// `resume_publishers_below`, which notifies `drained`) or `STALLED` (the connection took
    /// nothing off the queue for `Limits::max_publisher_pause` while publishers waited: they
    /// no longer wait for it, until it takes something again).
    flow: AtomicU8,
    /// While the flow is not `FLOWING`: when the queue became congested or the connection last
    /// took messages off it (milliseconds on [`clock_millis`]), which tells a slow subscriber
    /// from a stuck one.
    last_progress: AtomicU64,
    /// Publishers paused on this session wait here.
    pub drained: Notify,
}

/// Milliseconds since the first call, on tokio's clock (paused in tests).
fn clock_millis(now: Instant) -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(now.saturating_duration_since(epoch).as_millis()).unwrap_or(u64::MAX)
}

/// `Session::flow` values.
const FLOWING: u8 = 0;
const CONGESTED: u8 = 1;
const STALLED: u8 = 2;

impl Session {
    pub fn new(client_id: String, authentication_name: String) -> Self {
        Self {
            client_id,
            authentication_name,
            state: parking_lot::Mutex::new(SessionState::default()),
            wake: Notify::new(),
            flow: AtomicU8::new(FLOWING),
            last_progress: AtomicU64::new(0),
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
        let queued = Queued {
            delivery,
            subscription_ids,
        };
        let enqueued = self.enqueue_quietly(queued, limits, metrics);
        if enqueued != Enqueued::Dropped {
            self.wake.notify_one();
        }
        // Woken here whatever the queue held: the caller has no wake-up to decide on.
        if enqueued == Enqueued::QueuedFirst {
            Enqueued::Queued
        } else {
            enqueued
        }
    }

    /// [`Session::enqueue_with`] without waking the connection: the caller wakes it later
    /// (see [`super::outbox::Outbox`]).
    pub fn enqueue_quietly(
        &self,
        queued: Queued,
        limits: QueueLimits,
        metrics: &MqttMetrics,
    ) -> Enqueued {
        match self.enqueue_batch([queued], limits, metrics) {
            BatchQueued { queued: 0, .. } => Enqueued::Dropped,
            BatchQueued {
                congested: true, ..
            } => Enqueued::QueuedCongested,
            BatchQueued { wake: true, .. } => Enqueued::QueuedFirst,
            _ => Enqueued::Queued,
        }
    }

    /// Queue deliveries in their order under one hold of the lock (a batch's deliveries to
    /// this session, see [`super::outbox::Outbox`]), each within the limits, without waking
    /// the connection.
    pub fn enqueue_batch(
        &self,
        batch: impl IntoIterator<Item = Queued>,
        limits: QueueLimits,
        metrics: &MqttMetrics,
    ) -> BatchQueued {
        let stalled = self.flow.load(Ordering::Acquire) == STALLED;
        let mut state = self.state.lock();
        let waiting = state.queue.len();
        for queued in batch {
            admit(&mut state, queued, limits, stalled, metrics);
        }
        let now_waiting = state.queue.len();
        let queued = now_waiting - waiting;
        let connected = state.attachment.is_some();
        drop(state);
        let congested =
            connected && now_waiting >= limits.pause_publishers_at && self.mark_congested();
        BatchQueued {
            queued,
            wake: waiting == 0 && queued > 0,
            congested,
        }
    }

    /// The queue is at the pause mark: publishers should wait, unless the session stalled.
    fn mark_congested(&self) -> bool {
        match self
            .flow
            .compare_exchange(FLOWING, CONGESTED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                // Publishers wait from now: the subscriber has a whole pause to take some.
                self.last_progress
                    .store(clock_millis(Instant::now()), Ordering::Release);
                true
            }
            Err(flow) => flow == CONGESTED,
        }
    }

    /// Whether publishers to this session should still wait.
    pub fn is_congested(&self) -> bool {
        self.flow.load(Ordering::Acquire) == CONGESTED
    }

    /// Whether publishers stopped waiting for this session (see [`Session::stall_if_idle_for`]).
    pub fn is_stalled(&self) -> bool {
        self.flow.load(Ordering::Acquire) == STALLED
    }

    /// When a publisher should stop waiting for this congested session: `patience` after
    /// its connection last took messages off the queue (or after it became congested).
    pub fn patience_ends(&self, patience: std::time::Duration) -> Instant {
        let now = Instant::now();
        let idle = clock_millis(now).saturating_sub(self.last_progress.load(Ordering::Acquire));
        now + patience.saturating_sub(std::time::Duration::from_millis(idle))
    }

    /// A publisher's pause on this session ran out: if the connection has taken nothing off
    /// the queue for `patience`, it is stuck (its client neither reads nor acknowledges), and
    /// publishers stop waiting for it; those paused now are woken. True when this call
    /// stalled it.
    pub fn stall_if_idle_for(&self, patience: std::time::Duration) -> bool {
        if self.patience_ends(patience) > Instant::now() {
            return false;
        }
        let stalled = self
            .flow
            .compare_exchange(CONGESTED, STALLED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if stalled {
            self.drained.notify_waiters();
        }
        stalled
    }

    /// The connection took `taken` messages off the queue: that is progress (a stalled
    /// session is congested again: publishers wait for it again), and once under the resume
    /// mark paused publishers go on. One atomic load when the flow is free.
    pub fn after_drain(&self, limits: QueueLimits, taken: usize) {
        let flow = self.flow.load(Ordering::Acquire);
        if flow == FLOWING {
            return;
        }
        if taken > 0 {
            self.last_progress
                .store(clock_millis(Instant::now()), Ordering::Release);
            if flow == STALLED {
                let _ = self.flow.compare_exchange(
                    STALLED,
                    CONGESTED,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
            }
        }
        if self.state.lock().queue.len() < limits.resume_publishers_below {
            self.flow.store(FLOWING, Ordering::Release);
            self.drained.notify_waiters();
        }
    }

    /// The connection left: publishers must not wait for a client that is gone (the
    /// offline bounds apply from now on).
    pub fn release_publishers(&self) {
        self.flow.store(FLOWING, Ordering::Release);
        self.drained.notify_waiters();
    }
}

#[cfg(test)]
mod tests;
