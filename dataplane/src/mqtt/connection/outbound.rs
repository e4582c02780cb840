//! Outgoing: packets into the write buffer, writes the socket takes without waiting, the
//! session's queue and resends encoded under one lock per turn, acknowledgements held for
//! routing, and the hand-over of a batch's fan-out (mqtt/README.md "Writes and reads in
//! batches", "Writes that block", "Fan-out", "Routing").

use super::established::{
    Acknowledged, Conn, End, Established, FINAL_WRITE_TIMEOUT, HeldAck, HeldAcks,
    MAX_PACKETS_PER_WAKE, ROUTING_FAILED, Resends, SubscriberPause, WRITE_BATCH_BYTES,
};
use crate::mqtt::broker::Broker;
use crate::mqtt::codec::{
    Ack, CodecError, Disconnect, OutgoingPublish, Packet, QoS, Version, encode_publish,
};
use crate::mqtt::peers::acks::ForwardAcks;
use crate::mqtt::reason::ReasonCode;
use crate::mqtt::routing::{RouteTicket, RoutedAcks};
use crate::mqtt::session::{Delivery, Expired, Outbound, Session, SessionState};
use std::collections::VecDeque;
use std::num::{NonZeroU16, NonZeroU32};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

impl<IO: AsyncRead + AsyncWrite + Unpin> Established<IO> {
    /// Queue a packet for the socket; it is written with the rest of the turn's output
    /// ([`Self::flush`]). Never waits: a client that does not read must not stop this
    /// connection from reading and keeping its timers (mqtt/README.md "Writes that block").
    pub(super) fn send(&mut self, packet: Packet) -> Result<(), End> {
        // The four-byte success acknowledgements, the same in 3.1.1 and MQTT 5 (a remaining
        // length of 2 is reason 0x00 without properties): one per QoS 1 message received.
        let short = match &packet {
            Packet::PubAck(ack)
                if ack.reason == ReasonCode::Success && ack.reason_string.is_none() =>
            {
                Some((0x40, ack.packet_id))
            }
            Packet::PubRec(ack)
                if ack.reason == ReasonCode::Success && ack.reason_string.is_none() =>
            {
                Some((0x50, ack.packet_id))
            }
            Packet::PubComp(ack)
                if ack.reason == ReasonCode::Success && ack.reason_string.is_none() =>
            {
                Some((0x70, ack.packet_id))
            }
            _ => None,
        };
        if let Some((kind, packet_id)) = short {
            let [high, low] = packet_id.get().to_be_bytes();
            self.framed
                .write_buffer_mut()
                .extend_from_slice(&[kind, 0x02, high, low]);
            return Ok(());
        }
        let mut buffer = std::mem::take(self.framed.write_buffer_mut());
        let encoded =
            tokio_util::codec::Encoder::encode(self.framed.codec_mut(), packet, &mut buffer);
        *self.framed.write_buffer_mut() = buffer;
        encoded.map_err(|_| End::Lost("write failed"))
    }

    /// Hand over the batch's deliveries, then write what the socket takes now, without
    /// waiting for the rest (the loop's `Io` branch goes on with it).
    async fn try_write(&mut self) -> Result<(), End> {
        // Subscribers must not wait for this client's socket.
        self.deliver_outbox();
        self.sent
            .publish(&self.broker.metrics, self.transport.listener());
        if !self.write_pending() {
            return Ok(());
        }
        let Self {
            framed,
            unwritten_since,
            unflushed,
            ..
        } = self;
        let written = std::future::poll_fn(|cx| {
            Poll::Ready(poll_write(framed, cx, unwritten_since, unflushed))
        })
        .await;
        match written {
            Poll::Ready(result) => result,
            Poll::Pending => Ok(()),
        }
    }

    /// Write everything queued, waiting at most `limit` for the socket (a last DISCONNECT).
    pub(super) async fn write_within(&mut self, limit: Duration) {
        self.deliver_outbox();
        self.sent
            .publish(&self.broker.metrics, self.transport.listener());
        let Self {
            framed,
            unwritten_since,
            unflushed,
            ..
        } = self;
        let flushed = std::future::poll_fn(|cx| poll_write(framed, cx, unwritten_since, unflushed));
        let _ = tokio::time::timeout(limit, flushed).await;
    }

    /// A server DISCONNECT (MQTT 5 only; 3.1.1 just closes), written within
    /// `FINAL_WRITE_TIMEOUT`: the connection ends either way.
    pub(super) async fn disconnect(&mut self, code: ReasonCode) {
        if self.version == Version::V5 {
            let _ = self.send(Packet::Disconnect(Disconnect::from_server(code)));
        }
        self.write_within(FINAL_WRITE_TIMEOUT).await;
    }

    /// A resumed session: what was in flight goes again, in sending order, before anything
    /// queued, as the socket takes it (`fill_write_buffer`).
    pub(super) fn resend_inflight(&mut self) {
        let state = self.session.state.lock();
        if !state.inflight.is_empty() {
            let ids = state.inflight.iter().map(|(id, _)| id).collect();
            self.resends = Some(Box::new(Resends(ids)));
        }
    }

    /// Apply the acknowledgements read, release those of ours that routing let go, then
    /// write queued messages while the client's receive maximum allows and the socket takes
    /// them without waiting.
    pub(super) async fn flush(&mut self) -> Result<(), End> {
        let mut taken = 0;
        let written = async {
            self.release_held_acks()?;
            // While the socket has not taken the last write, filling waits for it: the
            // acknowledgements read meanwhile are applied together then, under one lock,
            // instead of one lock per read turn against the publishers' enqueues (unless they
            // pile up, as from a client that acknowledges but does not read).
            if self.write_pending() && self.acks.len() < MAX_PACKETS_PER_WAKE {
                return self.try_write().await;
            }
            loop {
                let filled = self.fill_write_buffer()?;
                taken += filled.taken;
                self.try_write().await?;
                if !filled.more || self.write_pending() {
                    return Ok(());
                }
            }
        }
        .await;
        // Publishers paused on us may go on once we are under the resume mark.
        self.session.after_drain(self.broker.limits.queue, taken);
        written
    }

    /// Under one hold of the session lock: apply the acknowledgements read since the last
    /// turn, then encode messages to resend and queued messages into the write buffer while
    /// the client's window allows, until there are none or a write's worth is buffered
    /// (`more`: write, then come back). One lock per turn instead of one per message and one
    /// per acknowledgement.
    fn fill_write_buffer(&mut self) -> Result<Filled, End> {
        let Self {
            session,
            framed,
            sent,
            acks,
            broker,
            version,
            client_max_packet,
            client_receive_maximum,
            resends,
            ..
        } = self;
        let buffer = framed.write_buffer_mut();
        let mut filled = Filled {
            more: false,
            taken: 0,
        };
        if buffer.len() >= WRITE_BATCH_BYTES && acks.is_empty() {
            // The socket is behind: nothing to add, and no lock to take.
            return Ok(filled);
        }
        let mut state = session.state.lock();
        apply_acks(&mut state, acks, buffer);
        let mut now = None;
        if let Some(Resends(ids)) = resends.as_deref_mut() {
            while buffer.len() < WRITE_BATCH_BYTES {
                let Some(id) = ids.pop_front() else {
                    break;
                };
                let Some(packet_id) = NonZeroU16::new(id) else {
                    continue;
                };
                match state.inflight.get(id) {
                    Some(
                        Outbound::AwaitingPubAck(delivery) | Outbound::AwaitingPubRec(delivery),
                    ) => {
                        // Already on its way: resent even when its expiry has passed meanwhile.
                        let now = *now.get_or_insert_with(Instant::now);
                        let expiry = delivery.expiry_left(now).unwrap_or(Some(NonZeroU32::MIN));
                        let publish = outgoing(delivery, Some(packet_id), true, &[], expiry);
                        if encode_delivery(*version, *client_max_packet, &publish, buffer, broker)?
                        {
                            sent.count(&publish);
                        }
                    }
                    Some(Outbound::AwaitingPubComp) => {
                        let [high, low] = id.to_be_bytes();
                        buffer.extend_from_slice(&[0x62, 0x02, high, low]);
                    }
                    // Acknowledged meanwhile.
                    None => {}
                }
            }
            if !ids.is_empty() {
                filled.more = true;
                return Ok(filled);
            }
            *resends = None;
        }
        while buffer.len() < WRITE_BATCH_BYTES {
            if state.inflight.len() >= *client_receive_maximum {
                return Ok(filled);
            }
            let Some(queued) = state.queue.pop_front() else {
                return Ok(filled);
            };
            filled.taken += 1;
            let delivery = &queued.delivery;
            let expiry = match delivery.expires_at {
                None => None,
                Some(_) => match delivery.expiry_left(*now.get_or_insert_with(Instant::now)) {
                    Ok(left) => left,
                    Err(Expired) => {
                        broker.metrics.drop_message("expired");
                        continue;
                    }
                },
            };
            let packet_id = match delivery.qos {
                QoS::AtMostOnce => None,
                _ => {
                    let Some(id) = state.next_packet_id() else {
                        state.queue.push_front(queued);
                        filled.taken -= 1;
                        return Ok(filled);
                    };
                    Some(id)
                }
            };
            let publish = outgoing(delivery, packet_id, false, &queued.subscription_ids, expiry);
            let written = encode_delivery(*version, *client_max_packet, &publish, buffer, broker)?;
            if !written {
                continue;
            }
            sent.count(&publish);
            if let Some(id) = packet_id {
                let delivery = queued.delivery;
                let outbound = match delivery.qos {
                    QoS::AtLeastOnce => Outbound::AwaitingPubAck(delivery),
                    _ => Outbound::AwaitingPubRec(delivery),
                };
                state.inflight.push(id.get(), outbound);
            }
        }
        filled.more = true;
        Ok(filled)
    }

    /// Hand the batch's fanned-out deliveries to their sessions (see `outbox`).
    pub(super) fn deliver_outbox(&mut self) {
        if self.outbox.is_empty() {
            return;
        }
        let congested = self
            .outbox
            .deliver(self.broker.limits.queue, &self.broker.metrics);
        self.pause_for(congested);
    }

    /// Flow control after a publish: pause reading while one of the sessions it went to is
    /// behind. Never on our own session, which only this task drains.
    pub(super) fn pause_for(&mut self, mut congested: Vec<Arc<Session>>) {
        congested.retain(|s| !Arc::ptr_eq(s, &self.session));
        if congested.is_empty() {
            return;
        }
        self.broker
            .metrics
            .limited
            .with_label_values(&["subscriber_behind"])
            .inc();
        // Until the first of them has taken nothing for a whole pause (then it is stalled,
        // and the others are looked at again if this publisher pauses on them again): a
        // subscriber that stopped taking messages holds its publishers back for one pause,
        // counted from when it stopped.
        let patience = self.broker.limits.max_publisher_pause;
        let ends = congested
            .iter()
            .map(|s| s.patience_ends(patience))
            .min()
            .unwrap_or_else(|| Instant::now() + patience);
        match &mut self.pauses.subscribers {
            Some(pause) => {
                pause.sessions.extend(congested);
                pause.ends = pause.ends.min(ends);
            }
            None => {
                self.pauses.subscribers = Some(SubscriberPause {
                    sessions: congested,
                    ends,
                })
            }
        }
    }

    /// This connection's held acknowledgements, made at the first that may wait.
    pub(super) fn held_acks(&mut self) -> &mut HeldAcks {
        let session = &self.session;
        self.held.get_or_insert_with(|| {
            Box::new(HeldAcks {
                routed: Arc::new(RoutedAcks::new(session.clone())),
                forwarded: Arc::new(ForwardAcks::new(session.clone())),
                last_routed: 0,
                waiting: VecDeque::new(),
            })
        })
    }

    /// A ticket for the next routed message of this connection: its acknowledgement waits
    /// until the routing task has stored it.
    pub(super) fn route_ticket(&mut self) -> RouteTicket {
        let held = self.held_acks();
        held.last_routed += 1;
        RouteTicket {
            acks: held.routed.clone(),
            seq: held.last_routed,
        }
    }

    /// Acknowledge a QoS 1 (PUBACK) or QoS 2 (PUBREC) PUBLISH: at once, unless it waits for
    /// its routed copy to be stored (`routed`) or acknowledgements before it wait.
    pub(super) fn acknowledge(
        &mut self,
        qos: QoS,
        ack: Ack,
        routed: Option<u64>,
        forwarded: Option<u64>,
    ) -> Result<(), End> {
        match &mut self.held {
            Some(held) if routed.is_some() || forwarded.is_some() || !held.waiting.is_empty() => {
                held.waiting.push_back(HeldAck {
                    qos,
                    ack,
                    routed,
                    forwarded,
                });
                Ok(())
            }
            _ => self.send(acknowledgement(qos, ack)),
        }
    }

    /// Send the held acknowledgements whose routed messages are stored, in order. A message
    /// the routing Topic could not take is refused (MQTT 5: the store's reason code in PUBACK
    /// / PUBREC; 3.1.1 cannot say so: the connection closes and the client sends it again).
    pub(super) fn release_held_acks(&mut self) -> Result<(), End> {
        let Some(mut held) = self.held.take() else {
            return Ok(());
        };
        let finished = held.routed.finished();
        let forwarded_finished = held.forwarded.finished();
        let mut released = Ok(());
        while let Some(front) = held.waiting.front() {
            if front.routed.is_some_and(|seq| seq > finished)
                || front.forwarded.is_some_and(|seq| seq > forwarded_finished)
            {
                break;
            }
            let Some(HeldAck {
                qos,
                mut ack,
                routed,
                forwarded,
            }) = held.waiting.pop_front()
            else {
                break;
            };
            let failed = routed
                .and_then(|seq| held.routed.failure(seq))
                .or_else(|| forwarded.and_then(|seq| held.forwarded.failure(seq)));
            if let Some(code) = failed {
                if qos == QoS::ExactlyOnce {
                    // The exchange ends here: a resend is a new message, routed again.
                    self.session.state.lock().on_pubrel(ack.packet_id.get());
                }
                if self.version == Version::V311 {
                    released = Err(End::Lost(ROUTING_FAILED));
                    break;
                }
                ack.reason = code.as_u8();
            }
            if let Err(end) = self.send(acknowledgement(qos, ack)) {
                released = Err(end);
                break;
            }
        }
        self.held = Some(held);
        released
    }
}

/// What [`Established::fill_write_buffer`] did.
struct Filled {
    /// It stopped at a write's worth: write, then fill again.
    more: bool,
    /// Messages taken off the session's queue (flow control's progress).
    taken: usize,
}

/// Apply acknowledgements to the session; a PUBREC that calls for a PUBREL gets one, written
/// into `buffer` (0x62, length 2, the packet id: the same four bytes in 3.1.1 and in MQTT 5,
/// where a remaining length of 2 means reason 0x00 and no properties).
pub(super) fn apply_acks(
    state: &mut SessionState,
    acks: &mut Vec<Acknowledged>,
    buffer: &mut bytes::BytesMut,
) {
    for ack in acks.drain(..) {
        match ack {
            Acknowledged::Ack(id) => {
                state.on_puback(id);
            }
            Acknowledged::Received(id, refused) => {
                if state.on_pubrec(id, refused) {
                    let [high, low] = id.to_be_bytes();
                    buffer.extend_from_slice(&[0x62, 0x02, high, low]);
                }
            }
            Acknowledged::Completed(id) => {
                state.on_pubcomp(id);
            }
        }
    }
}

/// Write out the write buffer (and flush below it). While the socket takes nothing,
/// `unwritten_since` keeps the time it last took something (the write-stall deadline counts
/// from there); None once everything is written.
pub(super) fn poll_write<IO: AsyncRead + AsyncWrite + Unpin>(
    framed: &mut Conn<IO>,
    cx: &mut Context<'_>,
    unwritten_since: &mut Option<Instant>,
    unflushed: &mut bool,
) -> Poll<Result<(), End>> {
    let before = framed.write_buffer().len();
    match futures::Sink::<Packet>::poll_flush(Pin::new(&mut *framed), cx) {
        Poll::Ready(Ok(())) => {
            *unwritten_since = None;
            *unflushed = false;
            Poll::Ready(Ok(()))
        }
        Poll::Ready(Err(_)) => Poll::Ready(Err(End::Lost("write failed"))),
        Poll::Pending => {
            *unflushed = true;
            if unwritten_since.is_none() || framed.write_buffer().len() < before {
                *unwritten_since = Some(Instant::now());
            }
            Poll::Pending
        }
    }
}

/// The PUBLISH packet of a delivery, to be encoded straight from the shared message.
fn outgoing<'a>(
    delivery: &'a Delivery,
    packet_id: Option<NonZeroU16>,
    dup: bool,
    subscription_ids: &'a [NonZeroU32],
    message_expiry_interval: Option<NonZeroU32>,
) -> OutgoingPublish<'a> {
    OutgoingPublish {
        message: &delivery.message,
        qos: delivery.qos,
        retain: delivery.retain,
        dup,
        packet_id,
        subscription_ids,
        message_expiry_interval,
    }
}

/// Encode one PUBLISH into the write buffer. A message larger than the client accepts (its
/// MQTT 5 Maximum Packet Size) is dropped, as MQTT 5 says, and counted: `Ok(false)`.
fn encode_delivery(
    version: Version,
    client_max_packet: Option<NonZeroU32>,
    publish: &OutgoingPublish<'_>,
    buffer: &mut bytes::BytesMut,
    broker: &Broker,
) -> Result<bool, End> {
    match encode_publish(version, publish, client_max_packet, buffer) {
        Ok(()) => Ok(true),
        Err(CodecError::TooLarge { .. }) => {
            broker.metrics.drop_message("too_large_for_client");
            Ok(false)
        }
        Err(_) => Err(End::Lost("write failed")),
    }
}

/// The acknowledgement of a received PUBLISH: PUBACK for QoS 1, PUBREC for QoS 2.
fn acknowledgement(qos: QoS, ack: Ack) -> Packet {
    match qos {
        QoS::ExactlyOnce => Packet::PubRec(ack),
        _ => Packet::PubAck(ack),
    }
}

pub(super) fn ok_ack(packet_id: NonZeroU16) -> Ack {
    Ack::with(ReasonCode::Success, packet_id)
}
