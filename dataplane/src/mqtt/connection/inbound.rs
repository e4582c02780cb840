//! Incoming: what the client sends, packet by packet (PUBLISH, its acknowledgements,
//! SUBSCRIBE, UNSUBSCRIBE, PINGREQ, DISCONNECT, AUTH), and the packets that already wait in
//! the read buffer handled in the same turn.

use super::established::{
    Acknowledged, End, Established, MAX_PACKETS_PER_WAKE, TOPIC_ALIAS_MAXIMUM,
};
use super::outbound::ok_ack;
use crate::log_limit::truncated;
use crate::mqtt::authenticate::Method;
use crate::mqtt::broker::{NewSubscription, Origin, split};
use crate::mqtt::codec::{Ack, Packet, Publish, QoS, SubAck, Subscribe, Version};
use crate::mqtt::reason::{ReasonCode, is_failure};
use crate::mqtt::session::Delivery;
use futures::{FutureExt, StreamExt};
use gridline_crds::model::topic::validate_topic_name;
use std::num::NonZeroU32;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tracing::{debug, info};

/// Longest a SUBACK waits for the other pods to hear of the new subscription.
const INTEREST_SETTLE_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

impl<IO: AsyncRead + AsyncWrite + Unpin> Established<IO> {
    /// Handle the packets that already sit in the read buffer (a pipelining client sends
    /// many per read), so that their answers leave in one write. Stops at a pause.
    pub(super) async fn on_buffered_packets(&mut self) -> Result<(), End> {
        for _ in 0..MAX_PACKETS_PER_WAKE {
            if !self.reading() {
                break;
            }
            let Some(read) = self.framed.next().now_or_never() else {
                break;
            };
            match read {
                Some(Ok(packet)) => self.on_packet(packet).await?,
                Some(Err(error)) => {
                    debug!(%error, client = %self.session.client_id, "closing on a bad packet");
                    self.disconnect(error.reason()).await;
                    return Err(End::Lost("malformed packet"));
                }
                None => return Err(End::Lost("connection closed")),
            }
        }
        Ok(())
    }

    pub(super) async fn on_packet(&mut self, packet: Packet) -> Result<(), End> {
        match packet {
            Packet::Publish(publish) => self.on_publish(*publish).await,
            // Applied with the next turn's sending, under the same lock (`apply_acks`).
            Packet::PubAck(ack) => {
                self.acks.push(Acknowledged::Ack(ack.packet_id.get()));
                Ok(())
            }
            Packet::PubRec(ack) => {
                let refused = is_failure(ack.reason);
                self.acks
                    .push(Acknowledged::Received(ack.packet_id.get(), refused));
                Ok(())
            }
            Packet::PubRel(ack) => {
                let known = self.session.state.lock().on_pubrel(ack.packet_id.get());
                let code = if !known && self.version == Version::V5 {
                    ReasonCode::PacketIdentifierNotFound
                } else {
                    ReasonCode::Success
                };
                let reply = Ack::with(code, ack.packet_id);
                self.send(Packet::PubComp(reply))
            }
            Packet::PubComp(ack) => {
                self.acks.push(Acknowledged::Completed(ack.packet_id.get()));
                Ok(())
            }
            Packet::Subscribe(subscribe) => self.on_subscribe(subscribe).await,
            Packet::Unsubscribe { packet_id, filters } => {
                let reasons = filters
                    .iter()
                    .map(|raw| {
                        if self.broker.unsubscribe(&self.session, raw) {
                            ReasonCode::Success.as_u8()
                        } else {
                            ReasonCode::NoSubscriptionExisted.as_u8()
                        }
                    })
                    .collect();
                self.send(Packet::UnsubAck(SubAck {
                    packet_id,
                    reasons,
                    reason_string: None,
                }))
            }
            Packet::PingReq => self.send(Packet::PingResp),
            Packet::Disconnect(disconnect) => {
                if let Some(expiry) = disconnect.session_expiry_interval {
                    let mut state = self.session.state.lock();
                    // A session that was to end with the connection cannot be extended now.
                    if state.expiry_interval != 0 {
                        state.expiry_interval = expiry.min(state.expiry_interval.max(expiry));
                    }
                }
                Err(End::Disconnected {
                    publish_will: disconnect.reason == ReasonCode::DisconnectWithWill,
                })
            }
            Packet::Auth {
                reason: code,
                method,
                data,
            } => self.on_auth(code, method, data).await,
            // A second CONNECT, or a packet only a server sends.
            _ => {
                self.disconnect(ReasonCode::ProtocolError).await;
                Err(End::Lost("protocol error"))
            }
        }
    }

    /// MQTT 5 §4.12.1 re-authentication: AUTH 0x19 with the CONNECT's method and a new
    /// token; success is answered with AUTH 0x00 and moves the session's expiry to the new
    /// token's. AUTH on a session that did not authenticate with a method, another method or
    /// another reason code is a protocol error (0x82); a token that fails ends the session
    /// (DISCONNECT 0x87).
    async fn on_auth(
        &mut self,
        code: u8,
        method: Option<String>,
        data: Option<bytes::Bytes>,
    ) -> Result<(), End> {
        let expected = self.token.as_ref().and_then(|token| token.method.clone());
        if expected.is_none() || method != expected || code != ReasonCode::ReAuthenticate {
            self.disconnect(ReasonCode::ProtocolError).await;
            return Err(End::Lost("unexpected AUTH"));
        }
        let snapshot = self.broker.snapshot.load();
        let outcome = self.broker.authenticator.reauthenticate(
            &snapshot,
            self.authorizer.authentication_name(),
            data.as_deref(),
            std::time::SystemTime::now(),
        );
        drop(snapshot);
        let auth = &self.broker.metrics.auth;
        match outcome {
            Ok(expiry) => {
                auth.success(Method::Jwt);
                if let Some(token) = self.token.as_mut() {
                    token.deadline = Some(Instant::now() + expiry.remaining);
                }
                debug!(client = %self.session.client_id, expires_at = expiry.expires_at, "re-authenticated");
                self.send(Packet::Auth {
                    reason: ReasonCode::Success.as_u8(),
                    method: expected,
                    data: None,
                })
            }
            Err(failure) => {
                auth.failure(Method::Jwt, failure);
                info!(client = %self.session.client_id, reason = failure.reason(), "re-authentication refused: {failure}");
                self.disconnect(ReasonCode::NotAuthorized).await;
                Err(End::Lost("re-authentication failed"))
            }
        }
    }

    async fn on_publish(&mut self, mut publish: Publish) -> Result<(), End> {
        if let Some(until) = self.rate.take() {
            self.pauses.rate = Some(until);
            self.broker
                .metrics
                .limited
                .with_label_values(&["messages_per_second"])
                .inc();
        }
        let metrics = &self.broker.metrics;
        let qos = publish.message.qos;
        metrics.message_in(qos);
        metrics.bytes_in(
            self.transport.listener(),
            publish.message.payload.len() as u64,
        );
        if let Some(alias) = publish.topic_alias {
            if alias.get() > TOPIC_ALIAS_MAXIMUM || self.version == Version::V311 {
                self.disconnect(ReasonCode::TopicAliasInvalid).await;
                return Err(End::Lost("topic alias over the maximum"));
            }
            if publish.message.topic.is_empty() {
                let index = usize::from(alias.get()) - 1;
                match self
                    .topic_aliases
                    .as_ref()
                    .and_then(|aliases| aliases[index].as_ref())
                {
                    Some(topic) => publish.message.topic = topic.clone(),
                    // MQTT 5 §3.3.4: an alias with no mapping is a protocol error.
                    None => {
                        self.disconnect(ReasonCode::ProtocolError).await;
                        return Err(End::Lost("unknown topic alias"));
                    }
                }
            } else if validate_topic_name(&publish.message.topic).is_ok() {
                let index = usize::from(alias.get()) - 1;
                self.topic_aliases.get_or_insert_with(Default::default)[index] =
                    Some(publish.message.topic.clone());
            }
            publish.topic_alias = None;
        }
        if validate_topic_name(&publish.message.topic).is_err() {
            self.disconnect(ReasonCode::TopicNameInvalid).await;
            return Err(End::Lost("invalid topic name"));
        }
        if publish.message.payload.len() > self.broker.limits.max_payload_bytes {
            self.disconnect(ReasonCode::PacketTooLarge).await;
            return Err(End::Lost("message too large"));
        }
        let Some(packet_id) = publish
            .packet_id
            .filter(|_| qos != QoS::AtMostOnce)
            .or(None)
        else {
            // QoS 0.
            if self
                .authorizer
                .current()
                .can_publish(&publish.message.topic)
            {
                // Best effort: dropped (and counted) when the routing queue is full.
                if self.broker.routes(&publish.message) {
                    self.broker.route(
                        &publish.message,
                        self.authorizer.authentication_name(),
                        None,
                    );
                }
                let published = self.broker.publish_batched(
                    publish.message,
                    &self.session.client_id,
                    &mut self.outbox,
                );
                self.pause_for(published.congested);
            } else {
                self.broker.metrics.drop_message("not_authorized");
            }
            return Ok(());
        };
        if qos == QoS::ExactlyOnce {
            let (new, count) = {
                let mut state = self.session.state.lock();
                let new = state.on_incoming_qos2(packet_id.get());
                (new, state.incoming_qos2.len())
            };
            if count > usize::from(self.broker.limits.receive_maximum) {
                self.disconnect(ReasonCode::ReceiveMaximumExceeded).await;
                return Err(End::Lost("receive maximum exceeded"));
            }
            if !new {
                return self.acknowledge(qos, ok_ack(packet_id), None, None);
            }
        }
        let allowed = self
            .authorizer
            .current()
            .can_publish(&publish.message.topic);
        let mut ack = ok_ack(packet_id);
        let mut routed = None;
        let mut forwarded = None;
        if allowed {
            // Acknowledged once the routed copy is stored (mqtt/README.md "Routing").
            if self.broker.routes(&publish.message) {
                let ticket = self.route_ticket();
                routed = Some(ticket.seq);
                self.broker.route(
                    &publish.message,
                    self.authorizer.authentication_name(),
                    Some(ticket),
                );
            }
            // Clustered: the acknowledgement also waits for the pods it is forwarded to.
            let acks = self
                .broker
                .peers
                .is_some()
                .then(|| self.held_acks().forwarded.clone());
            let published = self.broker.publish_from(
                publish.message,
                &self.session.client_id,
                &mut self.outbox,
                Origin::Here {
                    acks: acks.as_ref(),
                },
            );
            forwarded = published.forwarded;
            self.pause_for(published.congested);
        } else {
            self.broker.metrics.drop_message("not_authorized");
            if let Some(suppressed) = self.broker.refusal_log.allow("publish_not_authorized") {
                info!(client = %truncated(&self.session.client_id), topic = %truncated(&publish.message.topic), suppressed, "PUBLISH not authorized");
            }
            // 3.1.1 has no way to say no: the message is dropped, the flow completes.
            if self.version == Version::V5 {
                ack.reason = ReasonCode::NotAuthorized.as_u8();
                if qos == QoS::ExactlyOnce {
                    self.session.state.lock().on_pubrel(packet_id.get());
                }
            }
        }
        self.acknowledge(qos, ack, routed, forwarded)
    }

    async fn on_subscribe(&mut self, subscribe: Subscribe) -> Result<(), End> {
        let mut reasons = Vec::with_capacity(subscribe.filters.len());
        let mut retained = Vec::new();
        for (raw, options) in subscribe.filters {
            let (group, filter) = match split(&raw) {
                Ok(Some(parts)) => parts,
                _ => {
                    reasons.push(ReasonCode::TopicFilterInvalid.as_u8());
                    continue;
                }
            };
            if !self.authorizer.current().can_subscribe(&filter) {
                if let Some(suppressed) = self.broker.refusal_log.allow("subscribe_not_authorized")
                {
                    info!(client = %truncated(&self.session.client_id), filter = %truncated(&raw), suppressed, "SUBSCRIBE not authorized");
                }
                reasons.push(ReasonCode::NotAuthorized.as_u8());
                continue;
            }
            let over_limit = {
                let state = self.session.state.lock();
                !state.subscriptions.contains(&raw)
                    && state.subscriptions.len() >= self.limits.subscriptions_per_connection
            };
            if over_limit {
                info!(client = %self.session.client_id, filter = %raw, "SUBSCRIBE over maximumSubscriptionsPerConnection");
                self.broker
                    .metrics
                    .limited
                    .with_label_values(&["subscriptions_per_connection"])
                    .inc();
                reasons.push(ReasonCode::QuotaExceeded.as_u8());
                continue;
            }
            let (_, messages) = self.broker.subscribe(
                &self.session,
                NewSubscription {
                    raw,
                    share_group: group,
                    filter,
                    options,
                    subscription_id: subscribe.subscription_id,
                },
            );
            retained.extend(messages);
            reasons.push(options.qos.granted().as_u8());
        }
        // Clustered: a message published on any pod after the SUBACK must reach the new
        // subscription, so the other pods hear of it first (bounded: a peer that does not
        // answer is soon out of the member set).
        self.broker.interest_settled(INTEREST_SETTLE_LIMIT).await;
        self.send(Packet::SubAck(SubAck {
            packet_id: subscribe.packet_id,
            reasons,
            reason_string: None,
        }))?;
        let ids: Vec<NonZeroU32> = subscribe.subscription_id.into_iter().collect();
        for message in retained {
            self.session.enqueue_with(
                Delivery::of(message),
                ids.clone(),
                self.broker.limits.queue,
                &self.broker.metrics,
            );
        }
        Ok(())
    }
}
