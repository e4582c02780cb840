//! MQTT 5: the neutral packet model to and from the codec crate's MQTT 5 packets. A leaf.

use super::convert::{opt_text, text, wire};
use super::packet::{
    Ack, ConnAck, Connect, Disconnect, Message, MessageProperties, Packet, Publish, QoS, SubAck,
    Subscribe, SubscriptionOptions, Version, Will,
};
use bytestring::ByteString;
use rmqtt_codec::v5;
use std::num::{NonZeroU16, NonZeroU32};

fn from_v5_properties(
    p: Option<v5::PublishProperties>,
) -> (MessageProperties, Option<NonZeroU16>, Vec<NonZeroU32>) {
    let p = p.unwrap_or_default();
    (
        MessageProperties {
            payload_is_utf8: p.is_utf8_payload,
            message_expiry_interval: p.message_expiry_interval,
            content_type: opt_text(&p.content_type),
            response_topic: opt_text(&p.response_topic),
            correlation_data: p.correlation_data,
            user_properties: user_properties(&p.user_properties),
        },
        p.topic_alias,
        p.subscription_ids,
    )
}

fn to_v5_properties(
    p: &MessageProperties,
    topic_alias: Option<NonZeroU16>,
    subscription_ids: Vec<NonZeroU32>,
) -> v5::PublishProperties {
    v5::PublishProperties {
        topic_alias,
        correlation_data: p.correlation_data.clone(),
        message_expiry_interval: p.message_expiry_interval,
        content_type: wire(&p.content_type),
        user_properties: wire_user_properties(&p.user_properties),
        is_utf8_payload: p.payload_is_utf8,
        response_topic: wire(&p.response_topic),
        subscription_ids,
    }
}

fn user_properties(p: &v5::UserProperties) -> Vec<(String, String)> {
    p.iter().map(|(k, v)| (text(k), text(v))).collect()
}

fn wire_user_properties(p: &[(String, String)]) -> v5::UserProperties {
    p.iter()
        .map(|(k, v)| (ByteString::from(k.as_str()), ByteString::from(v.as_str())))
        .collect()
}

fn v5_ack(packet_id: NonZeroU16, reason_code: u8, reason_string: &Option<ByteString>) -> Ack {
    Ack {
        packet_id,
        reason: reason_code,
        reason_string: opt_text(reason_string),
    }
}

pub(super) fn from_v5(packet: v5::Packet) -> Packet {
    match packet {
        v5::Packet::Connect(connect) => {
            let connect = *connect;
            Packet::Connect(Box::new(Connect {
                version: Version::V5,
                client_id: text(&connect.client_id),
                clean_start: connect.clean_start,
                keep_alive: connect.keep_alive,
                username: opt_text(&connect.username),
                password: connect.password,
                session_expiry_interval: connect.session_expiry_interval_secs,
                receive_maximum: connect.receive_max,
                maximum_packet_size: connect.max_packet_size,
                topic_alias_maximum: connect.topic_alias_max,
                authentication_method: opt_text(&connect.auth_method),
                authentication_data: connect.auth_data,
                will: connect.last_will.map(|will| Will {
                    message: Message {
                        topic: will.topic.clone(),
                        payload: will.message,
                        qos: QoS::from_wire(will.qos),
                        retain: will.retain,
                        properties: MessageProperties {
                            payload_is_utf8: will.is_utf8_payload.unwrap_or(false),
                            message_expiry_interval: will.message_expiry_interval,
                            content_type: opt_text(&will.content_type),
                            response_topic: opt_text(&will.response_topic),
                            correlation_data: will.correlation_data,
                            user_properties: user_properties(&will.user_properties),
                        },
                    },
                    delay_interval: will.will_delay_interval_sec,
                }),
            }))
        }
        v5::Packet::ConnectAck(ack) => Packet::ConnAck(ConnAck {
            session_present: ack.session_present,
            reason: u8::from(ack.reason_code),
            reason_string: opt_text(&ack.reason_string),
            session_expiry_interval: ack.session_expiry_interval_secs,
            receive_maximum: ack.receive_max,
            maximum_packet_size: ack.max_packet_size,
            assigned_client_id: opt_text(&ack.assigned_client_id),
            server_keep_alive: ack.server_keepalive_sec,
            topic_alias_maximum: ack.topic_alias_max,
            authentication_method: opt_text(&ack.auth_method),
        }),
        v5::Packet::Publish(publish) => {
            let publish = *publish;
            let (properties, topic_alias, subscription_ids) =
                from_v5_properties(publish.properties);
            Packet::Publish(Box::new(Publish {
                dup: publish.dup,
                packet_id: publish.packet_id,
                topic_alias,
                subscription_ids,
                message: Message {
                    topic: publish.topic.clone(),
                    payload: publish.payload,
                    qos: QoS::from_wire(publish.qos),
                    retain: publish.retain,
                    properties,
                },
            }))
        }
        v5::Packet::PublishAck(a) => Packet::PubAck(v5_ack(
            a.packet_id,
            u8::from(a.reason_code),
            &a.reason_string,
        )),
        v5::Packet::PublishReceived(a) => Packet::PubRec(v5_ack(
            a.packet_id,
            u8::from(a.reason_code),
            &a.reason_string,
        )),
        v5::Packet::PublishRelease(a) => Packet::PubRel(v5_ack(
            a.packet_id,
            u8::from(a.reason_code),
            &a.reason_string,
        )),
        v5::Packet::PublishComplete(a) => Packet::PubComp(v5_ack(
            a.packet_id,
            u8::from(a.reason_code),
            &a.reason_string,
        )),
        v5::Packet::Subscribe(s) => Packet::Subscribe(Subscribe {
            packet_id: s.packet_id,
            subscription_id: s.id,
            filters: s
                .topic_filters
                .iter()
                .map(|(f, o)| {
                    (
                        text(f),
                        SubscriptionOptions {
                            qos: QoS::from_wire(o.qos),
                            no_local: o.no_local,
                            retain_as_published: o.retain_as_published,
                            retain_handling: u8::from(o.retain_handling),
                        },
                    )
                })
                .collect(),
        }),
        v5::Packet::SubscribeAck(a) => Packet::SubAck(SubAck {
            packet_id: a.packet_id,
            reasons: a.status.iter().map(|&r| u8::from(r)).collect(),
            reason_string: opt_text(&a.reason_string),
        }),
        v5::Packet::Unsubscribe(u) => Packet::Unsubscribe {
            packet_id: u.packet_id,
            filters: u.topic_filters.iter().map(text).collect(),
        },
        v5::Packet::UnsubscribeAck(a) => Packet::UnsubAck(SubAck {
            packet_id: a.packet_id,
            reasons: a.status.iter().map(|&r| u8::from(r)).collect(),
            reason_string: opt_text(&a.reason_string),
        }),
        v5::Packet::PingRequest => Packet::PingReq,
        v5::Packet::PingResponse => Packet::PingResp,
        v5::Packet::Disconnect(d) => Packet::Disconnect(Disconnect {
            reason: u8::from(d.reason_code),
            session_expiry_interval: d.session_expiry_interval_secs,
            reason_string: opt_text(&d.reason_string),
        }),
        v5::Packet::Auth(a) => Packet::Auth {
            reason: u8::from(a.reason_code),
            method: opt_text(&a.auth_method),
            data: a.auth_data,
        },
    }
}

/// An enum of the crate from a reason code; codes the crate does not know become its
/// "unspecified error".
fn code<T: TryFrom<u8>>(value: u8, fallback: T) -> T {
    T::try_from(value).unwrap_or(fallback)
}

pub(super) fn to_v5(packet: Packet) -> v5::Packet {
    match packet {
        Packet::Connect(c) => v5::Packet::Connect(Box::new(v5::Connect {
            clean_start: c.clean_start,
            keep_alive: c.keep_alive,
            session_expiry_interval_secs: c.session_expiry_interval,
            auth_method: wire(&c.authentication_method),
            auth_data: c.authentication_data.clone(),
            request_problem_info: true,
            request_response_info: false,
            receive_max: c.receive_maximum,
            topic_alias_max: c.topic_alias_maximum,
            user_properties: Vec::new(),
            max_packet_size: c.maximum_packet_size,
            last_will: c.will.as_ref().map(|will| v5::LastWill {
                qos: will.message.qos.to_wire(),
                retain: will.message.retain,
                topic: will.message.topic.clone(),
                message: will.message.payload.clone(),
                will_delay_interval_sec: will.delay_interval,
                correlation_data: will.message.properties.correlation_data.clone(),
                message_expiry_interval: will.message.properties.message_expiry_interval,
                content_type: wire(&will.message.properties.content_type),
                user_properties: wire_user_properties(&will.message.properties.user_properties),
                is_utf8_payload: Some(will.message.properties.payload_is_utf8),
                response_topic: wire(&will.message.properties.response_topic),
            }),
            client_id: ByteString::from(c.client_id.as_str()),
            username: wire(&c.username),
            password: c.password.clone(),
            cert: None,
        })),
        Packet::ConnAck(a) => v5::Packet::ConnectAck(Box::new(v5::ConnectAck {
            session_present: a.session_present,
            reason_code: code(a.reason, v5::ConnectAckReason::UnspecifiedError),
            session_expiry_interval_secs: a.session_expiry_interval,
            receive_max: a.receive_maximum,
            max_qos: rmqtt_codec::types::QoS::ExactlyOnce,
            max_packet_size: a.maximum_packet_size,
            assigned_client_id: wire(&a.assigned_client_id),
            topic_alias_max: a.topic_alias_maximum,
            retain_available: true,
            wildcard_subscription_available: true,
            subscription_identifiers_available: true,
            shared_subscription_available: true,
            server_keepalive_sec: a.server_keep_alive,
            response_info: None,
            server_reference: None,
            auth_method: wire(&a.authentication_method),
            auth_data: None,
            reason_string: wire(&a.reason_string),
            user_properties: Vec::new(),
        })),
        // As in `to_v3`: the reference encoding for the tests, not the broker's.
        Packet::Publish(p) => {
            let p = *p;
            let properties = to_v5_properties(
                &p.message.properties,
                p.topic_alias,
                p.subscription_ids.clone(),
            );
            v5::Packet::Publish(Box::new(rmqtt_codec::types::Publish {
                dup: p.dup,
                retain: p.message.retain,
                qos: p.message.qos.to_wire(),
                topic: p.message.topic.clone(),
                packet_id: p.packet_id,
                payload: p.message.payload,
                properties: Some(properties),
            }))
        }
        Packet::PubAck(a) => v5::Packet::PublishAck(pub_ack(a)),
        Packet::PubRec(a) => v5::Packet::PublishReceived(pub_ack(a)),
        Packet::PubRel(a) => v5::Packet::PublishRelease(pub_ack2(a)),
        Packet::PubComp(a) => v5::Packet::PublishComplete(pub_ack2(a)),
        Packet::Subscribe(s) => v5::Packet::Subscribe(v5::Subscribe {
            packet_id: s.packet_id,
            id: s.subscription_id,
            user_properties: Vec::new(),
            topic_filters: s
                .filters
                .iter()
                .map(|(f, o)| {
                    (
                        ByteString::from(f.as_str()),
                        v5::SubscriptionOptions {
                            qos: o.qos.to_wire(),
                            no_local: o.no_local,
                            retain_as_published: o.retain_as_published,
                            retain_handling: code(
                                o.retain_handling,
                                v5::RetainHandling::AtSubscribe,
                            ),
                        },
                    )
                })
                .collect(),
        }),
        Packet::SubAck(a) => v5::Packet::SubscribeAck(v5::SubscribeAck {
            packet_id: a.packet_id,
            properties: Vec::new(),
            reason_string: wire(&a.reason_string),
            status: a
                .reasons
                .iter()
                .map(|&r| code(r, v5::SubscribeAckReason::UnspecifiedError))
                .collect(),
        }),
        Packet::Unsubscribe { packet_id, filters } => v5::Packet::Unsubscribe(v5::Unsubscribe {
            packet_id,
            user_properties: Vec::new(),
            topic_filters: filters
                .iter()
                .map(|f| ByteString::from(f.as_str()))
                .collect(),
        }),
        Packet::UnsubAck(a) => v5::Packet::UnsubscribeAck(v5::UnsubscribeAck {
            packet_id: a.packet_id,
            properties: Vec::new(),
            reason_string: wire(&a.reason_string),
            status: a
                .reasons
                .iter()
                .map(|&r| code(r, v5::UnsubscribeAckReason::UnspecifiedError))
                .collect(),
        }),
        Packet::PingReq => v5::Packet::PingRequest,
        Packet::PingResp => v5::Packet::PingResponse,
        Packet::Disconnect(d) => v5::Packet::Disconnect(v5::Disconnect {
            reason_code: code(d.reason, v5::DisconnectReasonCode::UnspecifiedError),
            session_expiry_interval_secs: d.session_expiry_interval,
            server_reference: None,
            reason_string: wire(&d.reason_string),
            user_properties: Vec::new(),
        }),
        Packet::Auth {
            reason,
            method,
            data,
        } => v5::Packet::Auth(v5::Auth {
            reason_code: code(reason, v5::AuthReasonCode::ContinueAuth),
            auth_method: wire(&method),
            auth_data: data,
            reason_string: None,
            user_properties: Vec::new(),
        }),
    }
}

fn pub_ack(a: Ack) -> v5::PublishAck {
    v5::PublishAck {
        packet_id: a.packet_id,
        reason_code: code(a.reason, v5::PublishAckReason::UnspecifiedError),
        properties: Vec::new(),
        reason_string: wire(&a.reason_string),
    }
}

fn pub_ack2(a: Ack) -> v5::PublishAck2 {
    v5::PublishAck2 {
        packet_id: a.packet_id,
        reason_code: code(a.reason, v5::PublishAck2Reason::PacketIdNotFound),
        properties: Vec::new(),
        reason_string: wire(&a.reason_string),
    }
}
