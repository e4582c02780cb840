//! Typed MQTT packets for tests that write bytes themselves (over a WebSocket, a raw socket, a
//! CONNECT split across frames) instead of through [`super::mqtt::RawClient`]: a packet is
//! built from the broker's codec types and encoded by its codec, so no test hand-assembles
//! flags, lengths or properties. Bytes written by hand remain only where a test sends
//! malformed input on purpose; those are named `MALFORMED_...` where they are used.

use gridline_dataplane::mqtt::codec::{
    Codec, Connect, Message, Packet, Publish, QoS, Subscribe, SubscriptionOptions, Version, Will,
};
use std::num::NonZeroU16;
use tokio_util::codec::Encoder;

/// The bytes of `packet` as a client of `version` sends them.
pub fn encode(version: Version, packet: Packet) -> Vec<u8> {
    let mut bytes = bytes::BytesMut::new();
    Codec::new(version, 1 << 20)
        .encode(packet, &mut bytes)
        .expect("a test packet encodes");
    bytes.to_vec()
}

/// A CONNECT of `version` for `client_id` as `user`: clean start, keep-alive 60, no will.
pub fn connect(version: Version, client_id: &str, user: &str) -> Connect {
    Connect {
        version,
        client_id: client_id.into(),
        clean_start: true,
        keep_alive: 60,
        username: Some(user.into()),
        password: None,
        session_expiry_interval: 0,
        receive_maximum: None,
        maximum_packet_size: None,
        topic_alias_maximum: 0,
        authentication_method: None,
        authentication_data: None,
        will: None,
    }
}

/// `connect` carrying `message` as its will, published at once when the connection is lost.
pub fn with_will(connect: Connect, message: Message) -> Connect {
    Connect {
        will: Some(Will {
            message,
            delay_interval: None,
        }),
        ..connect
    }
}

/// An application message on `topic` at `qos`, not retained, no properties.
pub fn message(topic: &str, payload: &str, qos: QoS) -> Message {
    Message {
        topic: topic.into(),
        payload: bytes::Bytes::copy_from_slice(payload.as_bytes()),
        qos,
        retain: false,
        properties: Default::default(),
    }
}

/// A PUBLISH of `message`; `packet_id` is left out at QoS 0, where it has no place.
pub fn publish(packet_id: u16, message: Message) -> Packet {
    Packet::Publish(Box::new(Publish {
        dup: false,
        packet_id: NonZeroU16::new(packet_id).filter(|_| message.qos != QoS::AtMostOnce),
        topic_alias: None,
        subscription_ids: Vec::new(),
        message,
    }))
}

/// A SUBSCRIBE of each filter at its maximum QoS, every other option at its default (local
/// messages wanted, retain flag not kept, retained messages sent).
pub fn subscribe(packet_id: u16, filters: &[(&str, QoS)]) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: NonZeroU16::new(packet_id).expect("a SUBSCRIBE's packet id is not 0"),
        subscription_id: None,
        filters: filters
            .iter()
            .map(|(filter, qos)| (filter.to_string(), options(*qos)))
            .collect(),
    })
}

/// Subscription options asking for `qos`, every other option at its default.
pub fn options(qos: QoS) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        no_local: false,
        retain_as_published: false,
        retain_handling: 0,
    }
}
