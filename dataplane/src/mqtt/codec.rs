//! The MQTT wire format, behind one interface: the broker speaks the version-neutral
//! [`Packet`] (`codec/packet.rs`, re-exported here), and this module maps it to and from
//! `rmqtt-codec` (3.1.1 in `codec/mqtt311.rs`, 5.0 in `codec/mqtt5.rs`). Replacing the crate
//! means rewriting this module only (see README.md, "Codec").
//! Outgoing PUBLISH is the exception: sent once per subscriber, it is encoded by us, from a
//! borrowed message ([`encode_publish`], in `codec/publish.rs`).

use bytes::{Buf, BytesMut};
use rmqtt_codec::{v3, v5, version};
use std::num::{NonZeroU16, NonZeroU32};
use tokio_util::codec::{Decoder, Encoder};

mod convert;
mod mqtt311;
mod mqtt5;
mod packet;
mod publish;
use convert::simple_ack;
use mqtt5::{from_v5, to_v5};
use mqtt311::{from_v3, to_v3};
pub use packet::{
    Ack, CodecError, ConnAck, Connect, Disconnect, Message, MessageProperties, Packet, Publish,
    QoS, SubAck, Subscribe, SubscriptionOptions, Version, Will,
};
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

#[cfg(test)]
mod tests;
