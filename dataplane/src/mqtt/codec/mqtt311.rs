//! MQTT 3.1.1: the neutral packet model to and from the codec crate's 3.1.1 packets. A leaf.

use super::convert::{opt_text, simple_ack, text, wire};
use super::packet::{
    CodecError, ConnAck, Connect, Disconnect, Message, MessageProperties, Packet, Publish, QoS,
    SubAck, Subscribe, SubscriptionOptions, Version, Will,
};
use crate::mqtt::reason::ReasonCode;
use crate::mqtt::reason::{connack_reason_of_v311, v311_connack_return_code};
use bytes::Bytes;
use bytestring::ByteString;
use rmqtt_codec::v3;
use std::num::NonZeroU16;

/// The crate's 3.1.1 CONNACK return code for an MQTT 5 reason code (the mapping is
/// `reason::v311_connack_return_code`'s).
fn v3_return_code(reason_code: u8) -> v3::ConnectAckReason {
    use v3::ConnectAckReason as R;
    match v311_connack_return_code(reason_code) {
        0 => R::ConnectionAccepted,
        1 => R::UnacceptableProtocolVersion,
        2 => R::IdentifierRejected,
        3 => R::ServiceUnavailable,
        4 => R::BadUserNameOrPassword,
        _ => R::NotAuthorized,
    }
}

fn v5_reason_of_v3(code: v3::ConnectAckReason) -> u8 {
    connack_reason_of_v311(u8::from(code)).as_u8()
}
pub(super) fn from_v3(packet: v3::Packet) -> Packet {
    match packet {
        v3::Packet::Connect(connect) => {
            let connect = *connect;
            Packet::Connect(Box::new(Connect {
                version: Version::V311,
                client_id: text(&connect.client_id),
                clean_start: connect.clean_session,
                keep_alive: connect.keep_alive,
                username: opt_text(&connect.username),
                password: connect.password,
                session_expiry_interval: if connect.clean_session { 0 } else { u32::MAX },
                receive_maximum: None,
                maximum_packet_size: None,
                topic_alias_maximum: 0,
                authentication_method: None,
                authentication_data: None,
                will: connect.last_will.map(|will| Will {
                    message: Message {
                        topic: will.topic.clone(),
                        payload: will.message,
                        qos: QoS::from_wire(will.qos),
                        retain: will.retain,
                        properties: MessageProperties::default(),
                    },
                    delay_interval: None,
                }),
            }))
        }
        v3::Packet::ConnectAck(ack) => Packet::ConnAck(ConnAck {
            session_present: ack.session_present,
            reason: v5_reason_of_v3(ack.return_code),
            reason_string: None,
            session_expiry_interval: None,
            receive_maximum: NonZeroU16::MAX,
            maximum_packet_size: None,
            assigned_client_id: None,
            server_keep_alive: None,
            topic_alias_maximum: 0,
            authentication_method: None,
        }),
        v3::Packet::Publish(publish) => Packet::Publish(Box::new(Publish {
            dup: publish.dup,
            packet_id: publish.packet_id,
            topic_alias: None,
            subscription_ids: Vec::new(),
            message: Message {
                topic: publish.topic.clone(),
                payload: publish.payload,
                qos: QoS::from_wire(publish.qos),
                retain: publish.retain,
                properties: MessageProperties::default(),
            },
        })),
        v3::Packet::PublishAck { packet_id } => Packet::PubAck(simple_ack(packet_id)),
        v3::Packet::PublishReceived { packet_id } => Packet::PubRec(simple_ack(packet_id)),
        v3::Packet::PublishRelease { packet_id } => Packet::PubRel(simple_ack(packet_id)),
        v3::Packet::PublishComplete { packet_id } => Packet::PubComp(simple_ack(packet_id)),
        v3::Packet::Subscribe {
            packet_id,
            topic_filters,
        } => Packet::Subscribe(Subscribe {
            packet_id,
            subscription_id: None,
            filters: topic_filters
                .iter()
                .map(|(filter, qos)| {
                    (
                        text(filter),
                        SubscriptionOptions {
                            qos: QoS::from_wire(*qos),
                            no_local: false,
                            retain_as_published: false,
                            retain_handling: 0,
                        },
                    )
                })
                .collect(),
        }),
        v3::Packet::SubscribeAck { packet_id, status } => Packet::SubAck(SubAck {
            packet_id,
            reasons: status
                .iter()
                .map(|s| match s {
                    v3::SubscribeReturnCode::Success(qos) => qos.value(),
                    v3::SubscribeReturnCode::Failure => ReasonCode::UnspecifiedError.as_u8(),
                })
                .collect(),
            reason_string: None,
        }),
        v3::Packet::Unsubscribe {
            packet_id,
            topic_filters,
        } => Packet::Unsubscribe {
            packet_id,
            filters: topic_filters.iter().map(text).collect(),
        },
        v3::Packet::UnsubscribeAck { packet_id } => Packet::UnsubAck(SubAck {
            packet_id,
            reasons: Vec::new(),
            reason_string: None,
        }),
        v3::Packet::PingRequest => Packet::PingReq,
        v3::Packet::PingResponse => Packet::PingResp,
        v3::Packet::Disconnect => Packet::Disconnect(Disconnect {
            reason: ReasonCode::Success.as_u8(),
            session_expiry_interval: None,
            reason_string: None,
        }),
    }
}

fn v3_message(message: &Message) -> (ByteString, Bytes, rmqtt_codec::types::QoS, bool) {
    (
        message.topic.clone(),
        message.payload.clone(),
        message.qos.to_wire(),
        message.retain,
    )
}

pub(super) fn to_v3(packet: Packet) -> Result<v3::Packet, CodecError> {
    Ok(match packet {
        Packet::Connect(connect) => v3::Packet::Connect(Box::new(v3::Connect {
            protocol: rmqtt_codec::types::Protocol(rmqtt_codec::types::MQTT_LEVEL_311),
            clean_session: connect.clean_start,
            keep_alive: connect.keep_alive,
            last_will: connect.will.as_ref().map(|will| {
                let (topic, message, qos, retain) = v3_message(&will.message);
                v3::LastWill {
                    qos,
                    retain,
                    topic,
                    message,
                }
            }),
            client_id: ByteString::from(connect.client_id.as_str()),
            username: wire(&connect.username),
            password: connect.password.clone(),
            cert: None,
        })),
        Packet::ConnAck(ack) => v3::Packet::ConnectAck(v3::ConnectAck {
            return_code: v3_return_code(ack.reason),
            session_present: ack.session_present,
        }),
        // Not reached from `Encoder<Packet>`, which encodes PUBLISH itself: the crate's
        // encoding, kept as the reference the codec tests compare ours with.
        Packet::Publish(publish) => {
            let (topic, payload, qos, retain) = v3_message(&publish.message);
            v3::Packet::Publish(Box::new(rmqtt_codec::types::Publish {
                dup: publish.dup,
                retain,
                qos,
                topic,
                packet_id: publish.packet_id,
                payload,
                properties: None,
            }))
        }
        Packet::PubAck(ack) => v3::Packet::PublishAck {
            packet_id: ack.packet_id,
        },
        Packet::PubRec(ack) => v3::Packet::PublishReceived {
            packet_id: ack.packet_id,
        },
        Packet::PubRel(ack) => v3::Packet::PublishRelease {
            packet_id: ack.packet_id,
        },
        Packet::PubComp(ack) => v3::Packet::PublishComplete {
            packet_id: ack.packet_id,
        },
        Packet::Subscribe(subscribe) => v3::Packet::Subscribe {
            packet_id: subscribe.packet_id,
            topic_filters: subscribe
                .filters
                .iter()
                .map(|(f, o)| (ByteString::from(f.as_str()), o.qos.to_wire()))
                .collect(),
        },
        Packet::SubAck(ack) => v3::Packet::SubscribeAck {
            packet_id: ack.packet_id,
            status: ack
                .reasons
                .iter()
                .map(|&r| match r {
                    0 => v3::SubscribeReturnCode::Success(rmqtt_codec::types::QoS::AtMostOnce),
                    1 => v3::SubscribeReturnCode::Success(rmqtt_codec::types::QoS::AtLeastOnce),
                    2 => v3::SubscribeReturnCode::Success(rmqtt_codec::types::QoS::ExactlyOnce),
                    _ => v3::SubscribeReturnCode::Failure,
                })
                .collect(),
        },
        Packet::Unsubscribe { packet_id, filters } => v3::Packet::Unsubscribe {
            packet_id,
            topic_filters: filters
                .iter()
                .map(|f| ByteString::from(f.as_str()))
                .collect(),
        },
        Packet::UnsubAck(ack) => v3::Packet::UnsubscribeAck {
            packet_id: ack.packet_id,
        },
        Packet::PingReq => v3::Packet::PingRequest,
        Packet::PingResp => v3::Packet::PingResponse,
        Packet::Disconnect(_) => v3::Packet::Disconnect,
        Packet::Auth { .. } => {
            return Err(CodecError::Encode(
                "AUTH does not exist in MQTT 3.1.1".into(),
            ));
        }
    })
}
