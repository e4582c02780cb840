//! The version-neutral packet model the broker speaks: what `codec.rs` maps to and from the
//! codec crate and what `publish.rs` encodes. A leaf (it knows neither the crate nor the
//! encoders), so both can use it; `codec.rs` re-exports every item as `codec::X`.

use crate::mqtt::reason::ReasonCode;
use bytes::Bytes;
use std::num::{NonZeroU16, NonZeroU32};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V311,
    V5,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QoS {
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl QoS {
    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

/// The MQTT 5 properties of an application message that the broker passes through.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageProperties {
    pub payload_is_utf8: bool,
    pub message_expiry_interval: Option<NonZeroU32>,
    pub content_type: Option<String>,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: Vec<(String, String)>,
}

/// An application message: what PUBLISH and a will carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub topic: bytestring::ByteString,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    pub properties: MessageProperties,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publish {
    pub dup: bool,
    /// Present exactly when QoS > 0.
    pub packet_id: Option<NonZeroU16>,
    pub topic_alias: Option<NonZeroU16>,
    pub subscription_ids: Vec<NonZeroU32>,
    pub message: Message,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Will {
    pub message: Message,
    pub delay_interval: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connect {
    pub version: Version,
    pub client_id: String,
    pub clean_start: bool,
    pub keep_alive: u16,
    pub username: Option<String>,
    pub password: Option<Bytes>,
    /// MQTT 5; 3.1.1 sessions: 0 with clean session, "never" without.
    pub session_expiry_interval: u32,
    pub receive_maximum: Option<NonZeroU16>,
    pub maximum_packet_size: Option<NonZeroU32>,
    pub topic_alias_maximum: u16,
    pub authentication_method: Option<String>,
    /// MQTT 5 Authentication Data (the token of `OAUTH2-JWT`): a secret, never logged.
    pub authentication_data: Option<Bytes>,
    pub will: Option<Will>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnAck {
    pub session_present: bool,
    /// MQTT 5 reason code; mapped to the nearest 3.1.1 return code.
    pub reason: u8,
    pub reason_string: Option<String>,
    pub session_expiry_interval: Option<u32>,
    pub receive_maximum: NonZeroU16,
    pub maximum_packet_size: Option<u32>,
    pub assigned_client_id: Option<String>,
    pub server_keep_alive: Option<u16>,
    pub topic_alias_maximum: u16,
    /// MQTT 5 §4.12: a successful CONNACK repeats the CONNECT's Authentication Method.
    pub authentication_method: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubscriptionOptions {
    pub qos: QoS,
    pub no_local: bool,
    pub retain_as_published: bool,
    /// 0: send retained messages; 1: only for a new subscription; 2: never.
    pub retain_handling: u8,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscribe {
    pub packet_id: NonZeroU16,
    pub subscription_id: Option<NonZeroU32>,
    pub filters: Vec<(String, SubscriptionOptions)>,
}

/// PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK: a packet id, one reason code each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    pub packet_id: NonZeroU16,
    pub reason: u8,
    pub reason_string: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubAck {
    pub packet_id: NonZeroU16,
    pub reasons: Vec<u8>,
    pub reason_string: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disconnect {
    pub reason: u8,
    pub session_expiry_interval: Option<u32>,
    pub reason_string: Option<String>,
}

impl ConnAck {
    /// A CONNACK with this code and nothing else (a refusal, or the base of an acceptance):
    /// one packet for both versions; a 3.1.1 client is written the nearest return code
    /// (`reason::v311_connack_return_code`).
    pub fn with(code: ReasonCode, session_present: bool) -> ConnAck {
        ConnAck {
            session_present,
            reason: code.as_u8(),
            reason_string: None,
            session_expiry_interval: None,
            receive_maximum: NonZeroU16::MAX,
            maximum_packet_size: None,
            assigned_client_id: None,
            server_keep_alive: None,
            topic_alias_maximum: 0,
            authentication_method: None,
        }
    }

    /// A refused CONNECT's answer (no session is present after a refusal).
    pub fn refusal(code: ReasonCode) -> ConnAck {
        ConnAck::with(code, false)
    }
}

impl Disconnect {
    /// The server's DISCONNECT (MQTT 5; a 3.1.1 client is just closed), with the words for
    /// its code as the reason string.
    pub fn from_server(code: ReasonCode) -> Disconnect {
        Disconnect {
            reason: code.as_u8(),
            session_expiry_interval: None,
            reason_string: Some(code.description().into()),
        }
    }
}

impl Ack {
    /// PUBACK, PUBREC, PUBREL or PUBCOMP of `packet_id` with this code.
    pub fn with(code: ReasonCode, packet_id: NonZeroU16) -> Ack {
        Ack {
            packet_id,
            reason: code.as_u8(),
            reason_string: None,
        }
    }
}

impl QoS {
    /// SUBACK's code for a subscription granted at this QoS.
    pub fn granted(self) -> ReasonCode {
        match self {
            QoS::AtMostOnce => ReasonCode::Success,
            QoS::AtLeastOnce => ReasonCode::GrantedQos1,
            QoS::ExactlyOnce => ReasonCode::GrantedQos2,
        }
    }
}

/// Every MQTT control packet, version-neutral.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    Connect(Box<Connect>),
    ConnAck(ConnAck),
    Publish(Box<Publish>),
    PubAck(Ack),
    PubRec(Ack),
    PubRel(Ack),
    PubComp(Ack),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe {
        packet_id: NonZeroU16,
        filters: Vec<String>,
    },
    UnsubAck(SubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    /// MQTT 5 AUTH (re-authentication: reason 0x19 with a new token; the server's answer).
    Auth {
        reason: u8,
        method: Option<String>,
        /// A secret, never logged.
        data: Option<Bytes>,
    },
}

/// Why bytes could not be decoded or a packet encoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("malformed packet: {0}")]
    Malformed(String),
    #[error("packet of {size} bytes exceeds the maximum of {max}")]
    TooLarge { size: u32, max: u32 },
    #[error("unsupported protocol version")]
    UnsupportedProtocol,
    #[error("an empty client id needs clean start")]
    InvalidClientId,
    #[error("the first packet is not CONNECT")]
    NotConnect,
    #[error("cannot encode: {0}")]
    Encode(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl CodecError {
    /// The reason code a DISCONNECT (or CONNACK) carries for this error.
    pub fn reason(&self) -> ReasonCode {
        match self {
            CodecError::TooLarge { .. } => ReasonCode::PacketTooLarge,
            CodecError::UnsupportedProtocol => ReasonCode::UnsupportedProtocolVersion,
            CodecError::NotConnect => ReasonCode::ProtocolError,
            CodecError::InvalidClientId => ReasonCode::ClientIdentifierNotValid,
            _ => ReasonCode::MalformedPacket,
        }
    }
}
