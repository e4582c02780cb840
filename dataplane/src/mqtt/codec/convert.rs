//! What the mappings of both versions (`mqtt311.rs`, `mqtt5.rs`) and the decoder share:
//! strings and QoS to and from the codec crate's types. A leaf.

use super::packet::{Ack, QoS};
use crate::mqtt::reason::ReasonCode;
use bytestring::ByteString;
use std::num::NonZeroU16;

impl QoS {
    pub(super) fn to_wire(self) -> rmqtt_codec::types::QoS {
        match self {
            QoS::AtMostOnce => rmqtt_codec::types::QoS::AtMostOnce,
            QoS::AtLeastOnce => rmqtt_codec::types::QoS::AtLeastOnce,
            QoS::ExactlyOnce => rmqtt_codec::types::QoS::ExactlyOnce,
        }
    }
    pub(super) fn from_wire(qos: rmqtt_codec::types::QoS) -> Self {
        match qos {
            rmqtt_codec::types::QoS::AtMostOnce => QoS::AtMostOnce,
            rmqtt_codec::types::QoS::AtLeastOnce => QoS::AtLeastOnce,
            rmqtt_codec::types::QoS::ExactlyOnce => QoS::ExactlyOnce,
        }
    }
}

pub(super) fn text(s: &ByteString) -> String {
    s.to_string()
}

pub(super) fn opt_text(s: &Option<ByteString>) -> Option<String> {
    s.as_ref().map(text)
}

pub(super) fn wire(s: &Option<String>) -> Option<ByteString> {
    s.as_deref().map(ByteString::from)
}

/// A PUBACK, PUBREC, PUBREL or PUBCOMP of success and nothing else: the four-byte form.
pub(super) fn simple_ack(packet_id: NonZeroU16) -> Ack {
    Ack::with(ReasonCode::Success, packet_id)
}
