//! The MQTT wire format, behind one interface: the broker speaks the version-neutral
//! [`Packet`] below, and this module maps it to and from `rmqtt-codec` (3.1.1 and 5.0).
//! Replacing the crate means rewriting this file only (see README.md, "Codec").
//! Outgoing PUBLISH is the exception: sent once per subscriber, it is encoded by us, from a
//! borrowed message ([`encode_publish`], in `codec/publish.rs`).

use bytes::{Buf, Bytes, BytesMut};
use bytestring::ByteString;
use rmqtt_codec::{v3, v5, version};
use std::num::{NonZeroU16, NonZeroU32};
use tokio_util::codec::{Decoder, Encoder};

mod publish;
use super::reason::ReasonCode;
use super::reason::{connack_reason_of_v311, v311_connack_return_code};
use publish::write_publish;
pub use publish::{OutgoingPublish, encode_publish};

/// The wire bytes of the [`ReasonCode`]s, for code that reads packets as they are decoded
/// (the `reason` fields of [`Packet`] are the byte a client sent: tests, tools).
pub mod reason {
    use crate::mqtt::reason::ReasonCode;
    pub const SUCCESS: u8 = ReasonCode::Success.as_u8();
    pub const DISCONNECT_WITH_WILL: u8 = ReasonCode::DisconnectWithWill.as_u8();
    pub const NO_MATCHING_SUBSCRIBERS: u8 = ReasonCode::NoMatchingSubscribers.as_u8();
    pub const NO_SUBSCRIPTION_EXISTED: u8 = ReasonCode::NoSubscriptionExisted.as_u8();
    pub const UNSPECIFIED_ERROR: u8 = ReasonCode::UnspecifiedError.as_u8();
    pub const MALFORMED_PACKET: u8 = ReasonCode::MalformedPacket.as_u8();
    pub const PROTOCOL_ERROR: u8 = ReasonCode::ProtocolError.as_u8();
    pub const UNSUPPORTED_PROTOCOL_VERSION: u8 = ReasonCode::UnsupportedProtocolVersion.as_u8();
    pub const CLIENT_IDENTIFIER_NOT_VALID: u8 = ReasonCode::ClientIdentifierNotValid.as_u8();
    pub const BAD_USER_NAME_OR_PASSWORD: u8 = ReasonCode::BadUserNameOrPassword.as_u8();
    pub const NOT_AUTHORIZED: u8 = ReasonCode::NotAuthorized.as_u8();
    pub const SERVER_UNAVAILABLE: u8 = ReasonCode::ServerUnavailable.as_u8();
    pub const SERVER_BUSY: u8 = ReasonCode::ServerBusy.as_u8();
    pub const SERVER_SHUTTING_DOWN: u8 = ReasonCode::ServerShuttingDown.as_u8();
    pub const BAD_AUTHENTICATION_METHOD: u8 = ReasonCode::BadAuthenticationMethod.as_u8();
    pub const RE_AUTHENTICATE: u8 = ReasonCode::ReAuthenticate.as_u8();
    pub const KEEP_ALIVE_TIMEOUT: u8 = ReasonCode::KeepAliveTimeout.as_u8();
    pub const SESSION_TAKEN_OVER: u8 = ReasonCode::SessionTakenOver.as_u8();
    pub const TOPIC_FILTER_INVALID: u8 = ReasonCode::TopicFilterInvalid.as_u8();
    pub const TOPIC_NAME_INVALID: u8 = ReasonCode::TopicNameInvalid.as_u8();
    pub const PACKET_IDENTIFIER_NOT_FOUND: u8 = ReasonCode::PacketIdentifierNotFound.as_u8();
    pub const RECEIVE_MAXIMUM_EXCEEDED: u8 = ReasonCode::ReceiveMaximumExceeded.as_u8();
    pub const TOPIC_ALIAS_INVALID: u8 = ReasonCode::TopicAliasInvalid.as_u8();
    pub const PACKET_TOO_LARGE: u8 = ReasonCode::PacketTooLarge.as_u8();
    pub const QUOTA_EXCEEDED: u8 = ReasonCode::QuotaExceeded.as_u8();
    pub const QOS_NOT_SUPPORTED: u8 = ReasonCode::QosNotSupported.as_u8();
    pub const MAXIMUM_CONNECT_TIME: u8 = ReasonCode::MaximumConnectTime.as_u8();
}

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
    fn to_wire(self) -> rmqtt_codec::types::QoS {
        match self {
            QoS::AtMostOnce => rmqtt_codec::types::QoS::AtMostOnce,
            QoS::AtLeastOnce => rmqtt_codec::types::QoS::AtLeastOnce,
            QoS::ExactlyOnce => rmqtt_codec::types::QoS::ExactlyOnce,
        }
    }
    fn from_wire(qos: rmqtt_codec::types::QoS) -> Self {
        match qos {
            rmqtt_codec::types::QoS::AtMostOnce => QoS::AtMostOnce,
            rmqtt_codec::types::QoS::AtLeastOnce => QoS::AtLeastOnce,
            rmqtt_codec::types::QoS::ExactlyOnce => QoS::ExactlyOnce,
        }
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

fn decode_error(error: rmqtt_codec::error::DecodeError) -> CodecError {
    use rmqtt_codec::error::DecodeError;
    match error {
        DecodeError::MaxSizeExceeded { size, max } => CodecError::TooLarge { size, max },
        DecodeError::InvalidClientId => CodecError::InvalidClientId,
        DecodeError::InvalidProtocol | DecodeError::UnsupportedProtocolLevel => {
            CodecError::UnsupportedProtocol
        }
        other => CodecError::Malformed(other.to_string()),
    }
}

enum Inner {
    /// A server before CONNECT: the first packet says the version.
    Negotiating,
    V3(v3::Codec),
    V5(v5::Codec),
}

/// A tokio codec of neutral [`Packet`]s. A server codec learns the version from CONNECT.
pub struct Codec {
    inner: Inner,
    max_incoming: u32,
    /// The client's MQTT 5 Maximum Packet Size, for the PUBLISHes this codec encodes itself.
    max_outgoing: Option<NonZeroU32>,
}

impl Codec {
    /// A server-side codec: accepts only CONNECT first; packets larger than `max_incoming`
    /// bytes (remaining length) are refused.
    pub fn server(max_incoming: u32) -> Self {
        Self {
            inner: Inner::Negotiating,
            max_incoming,
            max_outgoing: None,
        }
    }

    /// A codec of a known version (clients, tests).
    pub fn new(version: Version, max_incoming: u32) -> Self {
        let mut codec = Self::server(max_incoming);
        codec.set_version(version);
        codec
    }

    fn set_version(&mut self, version: Version) {
        self.inner = match version {
            Version::V311 => Inner::V3(v3::Codec::new(self.max_incoming)),
            Version::V5 => Inner::V5(v5::Codec::new(self.max_incoming, 0)),
        };
    }

    pub fn version(&self) -> Option<Version> {
        match self.inner {
            Inner::Negotiating => None,
            Inner::V3(_) => Some(Version::V311),
            Inner::V5(_) => Some(Version::V5),
        }
    }

    /// The largest packet the peer accepts (its CONNECT `maximum_packet_size`).
    pub fn set_max_outgoing(&mut self, max: u32) {
        if let Inner::V5(codec) = &mut self.inner {
            codec.set_max_outbound_size(max);
            // 0 is "no limit" to the crate; a client cannot send 0 (a protocol error).
            self.max_outgoing = NonZeroU32::new(max);
        }
    }
}

impl Decoder for Codec {
    type Item = Packet;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Packet>, CodecError> {
        if let Inner::Negotiating = self.inner {
            if let Some(&first) = src.first()
                && first & 0xF0 != 0x10
            {
                return Err(CodecError::NotConnect);
            }
            match version::VersionCodec.decode(src) {
                Ok(Some(version::ProtocolVersion::MQTT3)) => self.set_version(Version::V311),
                Ok(Some(version::ProtocolVersion::MQTT5)) => self.set_version(Version::V5),
                Ok(None) => return Ok(None),
                Err(error) => return Err(decode_error(error)),
            }
        }
        if !matches!(self.inner, Inner::Negotiating)
            && let Some(ack) = short_acknowledgement(src)
        {
            return Ok(Some(ack));
        }
        match &mut self.inner {
            Inner::Negotiating => Ok(None),
            Inner::V3(codec) => Ok(codec
                .decode(src)
                .map_err(decode_error)?
                .map(|(packet, _)| from_v3(packet))),
            Inner::V5(codec) => Ok(codec
                .decode(src)
                .map_err(decode_error)?
                .map(|(packet, _)| from_v5(packet))),
        }
    }
}

/// Decode every whole packet at the start of `bytes` as a server would (`version` None: the
/// first packet must be a CONNECT and says the version; `Some`: a codec of that version),
/// stopping at the first error or at an incomplete packet. The entry point of the fuzz target
/// (`dataplane/fuzz/`) and of the codec's property tests: it must never panic.
pub fn decode_stream(
    version: Option<Version>,
    max_incoming: u32,
    bytes: &[u8],
) -> (Vec<Packet>, Option<CodecError>) {
    let mut codec = match version {
        Some(version) => Codec::new(version, max_incoming),
        None => Codec::server(max_incoming),
    };
    let mut buffer = BytesMut::from(bytes);
    let mut packets = Vec::new();
    loop {
        match codec.decode(&mut buffer) {
            Ok(Some(packet)) => packets.push(packet),
            Ok(None) => return (packets, None),
            Err(error) => return (packets, Some(error)),
        }
    }
}

impl Encoder<Packet> for Codec {
    type Error = CodecError;

    fn encode(&mut self, packet: Packet, dst: &mut BytesMut) -> Result<(), CodecError> {
        // PUBLISH is the one packet sent per subscriber: ours skips the crate's packet model
        // and its per-property allocations (see `encode_publish`).
        if let (Packet::Publish(publish), Some(version)) = (&packet, self.version()) {
            let outgoing = OutgoingPublish {
                message: &publish.message,
                qos: publish.message.qos,
                retain: publish.message.retain,
                dup: publish.dup,
                packet_id: publish.packet_id,
                subscription_ids: &publish.subscription_ids,
                message_expiry_interval: publish.message.properties.message_expiry_interval,
            };
            return write_publish(
                version,
                &outgoing,
                publish.topic_alias,
                self.max_outgoing,
                dst,
            );
        }
        match &mut self.inner {
            Inner::Negotiating => Err(CodecError::Encode("no version negotiated yet".into())),
            Inner::V3(codec) => {
                let packet = to_v3(packet)?;
                codec
                    .encode(packet, dst)
                    .map_err(|e| CodecError::Encode(e.to_string()))
            }
            Inner::V5(codec) => codec.encode(to_v5(packet), dst).map_err(|e| match e {
                rmqtt_codec::error::EncodeError::OverMaxPacketSize { size, max } => {
                    CodecError::TooLarge { size, max }
                }
                other => CodecError::Encode(other.to_string()),
            }),
        }
    }
}

fn text(s: &ByteString) -> String {
    s.to_string()
}

fn opt_text(s: &Option<ByteString>) -> Option<String> {
    s.as_ref().map(text)
}

fn wire(s: &Option<String>) -> Option<ByteString> {
    s.as_deref().map(ByteString::from)
}

// ---- MQTT 3.1.1 ----

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

/// PUBACK, PUBREC, PUBREL or PUBCOMP in their four-byte form (a packet id and nothing else:
/// 3.1.1's only form, MQTT 5's for success without properties, §3.4.2.1), read without the
/// crate. Subscribers send one per message they receive, so this is most of what a busy
/// broker decodes. Anything else (a reason code, properties, packet id 0, bad flags) is
/// left to the crate, which accepts or refuses it as before.
fn short_acknowledgement(src: &mut BytesMut) -> Option<Packet> {
    let &[first, 2, high, low, ..] = src.as_ref() else {
        return None;
    };
    let packet_id = NonZeroU16::new(u16::from_be_bytes([high, low]))?;
    let ack = simple_ack(packet_id);
    let packet = match first {
        0x40 => Packet::PubAck(ack),
        0x50 => Packet::PubRec(ack),
        0x62 => Packet::PubRel(ack),
        0x70 => Packet::PubComp(ack),
        _ => return None,
    };
    src.advance(4);
    Some(packet)
}

fn simple_ack(packet_id: NonZeroU16) -> Ack {
    Ack::with(ReasonCode::Success, packet_id)
}

fn from_v3(packet: v3::Packet) -> Packet {
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

fn to_v3(packet: Packet) -> Result<v3::Packet, CodecError> {
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

// ---- MQTT 5 ----

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

fn from_v5(packet: v5::Packet) -> Packet {
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

fn to_v5(packet: Packet) -> v5::Packet {
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

#[cfg(test)]
mod tests;
