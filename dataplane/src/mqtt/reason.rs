//! MQTT reason codes: the one type the broker answers with, and the packets that carry a
//! refusal. MQTT 5 numbering throughout; 3.1.1, whose only refusals are the six CONNACK
//! return codes (and SUBACK's 0x80), is derived here, in one place, when a packet is encoded.
//!
//! The version-neutral `codec::Packet` keeps reason codes as the byte on the wire: what a
//! client sends may be any code its packet allows, and the broker only compares it
//! (`code == ReasonCode::DisconnectWithWill`, [`is_failure`]). Everything the broker sends
//! is made from a `ReasonCode`, through the codec's constructors (`ConnAck::refusal`,
//! `Disconnect::from_server`, `Ack::with`). This module is a leaf: the codec uses it, not
//! the other way round.

/// The MQTT 5 reason codes the broker sends or looks for (MQTT 5 §2.4). 0x00 is Success,
/// Normal disconnection and Granted QoS 0 alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ReasonCode {
    Success = 0x00,
    GrantedQos1 = 0x01,
    GrantedQos2 = 0x02,
    /// A client's DISCONNECT that asks for its will to be published.
    DisconnectWithWill = 0x04,
    NoMatchingSubscribers = 0x10,
    NoSubscriptionExisted = 0x11,
    /// MQTT 5 AUTH: the client re-authenticates (the server answers Success).
    ReAuthenticate = 0x19,
    UnspecifiedError = 0x80,
    MalformedPacket = 0x81,
    ProtocolError = 0x82,
    UnsupportedProtocolVersion = 0x84,
    ClientIdentifierNotValid = 0x85,
    BadUserNameOrPassword = 0x86,
    NotAuthorized = 0x87,
    ServerUnavailable = 0x88,
    ServerBusy = 0x89,
    ServerShuttingDown = 0x8B,
    BadAuthenticationMethod = 0x8C,
    KeepAliveTimeout = 0x8D,
    SessionTakenOver = 0x8E,
    TopicFilterInvalid = 0x8F,
    TopicNameInvalid = 0x90,
    PacketIdentifierNotFound = 0x92,
    ReceiveMaximumExceeded = 0x93,
    TopicAliasInvalid = 0x94,
    PacketTooLarge = 0x95,
    QuotaExceeded = 0x97,
    QosNotSupported = 0x9B,
    MaximumConnectTime = 0xA0,
}

/// Whether a reason code a client sent is a refusal: MQTT 5 §2.4, 0x80 and above.
#[inline]
pub fn is_failure(code: u8) -> bool {
    code >= 0x80
}

impl ReasonCode {
    /// The byte on the wire.
    #[inline]
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// Words for a server DISCONNECT's reason code. Sent also because paho-mqtt (2.1) reads a
    /// DISCONNECT's reason code only from a packet longer than 2 bytes, i.e. with properties.
    pub fn description(self) -> &'static str {
        match self {
            ReasonCode::ServerShuttingDown => "server shutting down",
            ReasonCode::SessionTakenOver => "session taken over",
            ReasonCode::KeepAliveTimeout => "keep-alive timeout",
            ReasonCode::NotAuthorized => "not authorized",
            ReasonCode::PacketTooLarge => "packet too large",
            ReasonCode::MalformedPacket => "malformed packet",
            ReasonCode::ProtocolError => "protocol error",
            ReasonCode::TopicNameInvalid => "topic name invalid",
            ReasonCode::TopicAliasInvalid => "topic alias invalid",
            ReasonCode::ReceiveMaximumExceeded => "receive maximum exceeded",
            ReasonCode::MaximumConnectTime => "maximum connect time",
            _ => "disconnected by the server",
        }
    }
}

impl From<ReasonCode> for u8 {
    fn from(code: ReasonCode) -> u8 {
        code.as_u8()
    }
}

/// A code read off the wire compared with the one the broker looks for.
impl PartialEq<ReasonCode> for u8 {
    #[inline]
    fn eq(&self, code: &ReasonCode) -> bool {
        *self == code.as_u8()
    }
}

impl PartialEq<u8> for ReasonCode {
    #[inline]
    fn eq(&self, code: &u8) -> bool {
        self.as_u8() == *code
    }
}

/// MQTT 3.1.1 CONNACK return codes (§3.2.2.3) for MQTT 5 CONNACK reason codes: 3.1.1 can only
/// say these, so quota and busy read as "server unavailable" and every other refusal as "not
/// authorized" (5). Read the other way (a 3.1.1 CONNACK decoded), a return code is the first
/// reason listed with it.
const V311_CONNACK_RETURN_CODES: [(ReasonCode, u8); 7] = [
    (ReasonCode::Success, 0),
    (ReasonCode::UnsupportedProtocolVersion, 1),
    (ReasonCode::ClientIdentifierNotValid, 2),
    (ReasonCode::ServerUnavailable, 3),
    (ReasonCode::ServerBusy, 3),
    (ReasonCode::QuotaExceeded, 3),
    (ReasonCode::BadUserNameOrPassword, 4),
];
const V311_NOT_AUTHORIZED: u8 = 5;

/// The 3.1.1 CONNACK return code nearest to an MQTT 5 CONNACK reason code.
pub fn v311_connack_return_code(reason: u8) -> u8 {
    V311_CONNACK_RETURN_CODES
        .iter()
        .find(|(code, _)| *code == reason)
        .map_or(V311_NOT_AUTHORIZED, |&(_, return_code)| return_code)
}

/// The MQTT 5 reason code a 3.1.1 CONNACK return code reads as.
pub fn connack_reason_of_v311(return_code: u8) -> ReasonCode {
    V311_CONNACK_RETURN_CODES
        .iter()
        .find(|&&(_, listed)| listed == return_code)
        .map_or(ReasonCode::NotAuthorized, |&(code, _)| code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_3_1_1_return_code_reads_back_as_a_reason_that_maps_to_it() {
        for return_code in 0..=5u8 {
            let reason = connack_reason_of_v311(return_code);
            assert_eq!(v311_connack_return_code(reason.as_u8()), return_code);
        }
    }

    #[test]
    fn refusals_3_1_1_cannot_name_map_to_the_nearest_return_code() {
        let cases = [
            (ReasonCode::QuotaExceeded, 3),
            (ReasonCode::ServerBusy, 3),
            (ReasonCode::ServerUnavailable, 3),
            (ReasonCode::BadAuthenticationMethod, 5),
            (ReasonCode::NotAuthorized, 5),
            (ReasonCode::BadUserNameOrPassword, 4),
        ];
        for (reason, return_code) in cases {
            assert_eq!(
                v311_connack_return_code(reason.as_u8()),
                return_code,
                "{reason:?}"
            );
        }
    }
}
