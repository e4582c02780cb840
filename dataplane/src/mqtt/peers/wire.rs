//! What pods say to each other about MQTT, on the peer link's MQTT service (the link frames,
//! orders and authenticates; this module only encodes bodies). Every body starts with a tag
//! byte; an unknown tag or a body that does not decode is an error the receiver logs and
//! answers, never a panic. A message travels as an MQTT 5 PUBLISH (our encoder, the codec's
//! decoder), so that every property a subscriber may see crosses the hop unchanged.
//!
//! | tag | body | sent as |
//! |---|---|---|
//! | 1 Interest | `full` u8, added: u32 count × interest, removed: u32 count × interest | request |
//! | 2 Forward | flags u8 (1: plain, 2: numbered), the number u64 when numbered, shares: u16 count × (group str, filter str), message | message |
//! | 3 Retained | count u32 × (at_ms u64, origin str, message) | message |
//! | 4 Claim | client id str, authentication name str, `clean_start` u8 | request |
//! | 6 Queued | up_to u64: every numbered Forward of the receiver's up to this one is queued | message |
//! | 5 Handoff | u32 length and the sessions as a JSON array of `persist::StoredSession` | request |
//!
//! The answer to a Claim (`ClaimAnswer`): connected_for_name u32, `was_connected` u8,
//! last_sequence u64, then 0, or 1 and a u32 length and the session as JSON (the
//! `persist::StoredSession` the pod would write to disk). Other requests answer empty.
//!
//! An interest is `shared` u8 (0/1), the group str when shared, the filter str. A str is a
//! u16 length and UTF-8 bytes; a message is a u32 length and the PUBLISH packet. Integers are
//! big-endian.

use crate::mqtt::codec::{
    Codec, CodecError, Message, OutgoingPublish, Packet, QoS, Version, encode_publish,
};
use crate::mqtt::peers::interest::Interest;
use crate::mqtt::persist::StoredSession;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::num::NonZeroU16;
use std::sync::Arc;
use tokio_util::codec::Decoder;

const INTEREST: u8 = 1;
const FORWARD: u8 = 2;
const RETAINED: u8 = 3;
const CLAIM: u8 = 4;
const HANDOFF: u8 = 5;
const QUEUED: u8 = 6;

/// The largest PUBLISH a body may carry: the protocol's own bound.
const MAX_PUBLISH: u32 = 268_435_455;

/// One MQTT body between pods.
#[derive(Debug, PartialEq)]
pub enum PeerMqtt {
    /// The sender's interest: all of it (`full`, when a link comes up) or what changed.
    Interest {
        full: bool,
        added: Vec<Interest>,
        removed: Vec<Interest>,
    },
    /// A message published on the sender, for the receiver's sessions.
    Forward(Forward),
    /// Retained messages set (or cleared: an empty payload) on the sender.
    Retained(Vec<RetainedUpdate>),
    /// The receiver's numbered forwards up to `up_to` are queued on the sender.
    Queued { up_to: u64 },
    /// Sessions of a pod that is stopping, for the receiver to keep until their clients come
    /// back (to any pod: a claim finds them here).
    Handoff(Vec<StoredSession>),
    /// A CONNECT on the sender for this client id: a pod holding its session hands it over.
    Claim {
        client_id: String,
        authentication_name: String,
        clean_start: bool,
    },
}

/// A pod's answer to a claim (see `broker::Handover`).
#[derive(Debug, Default, PartialEq)]
pub struct ClaimAnswer {
    pub connected_for_name: u32,
    pub was_connected: bool,
    pub last_sequence: u64,
    pub session: Option<StoredSession>,
}

impl ClaimAnswer {
    pub fn encode(&self) -> Result<Bytes, WireError> {
        let mut out = BytesMut::with_capacity(16);
        out.put_u32(self.connected_for_name);
        out.put_u8(u8::from(self.was_connected));
        out.put_u64(self.last_sequence);
        match &self.session {
            None => out.put_u8(0),
            Some(session) => {
                let json = serde_json::to_vec(session)
                    .map_err(|error| WireError::Session(error.to_string()))?;
                out.put_u8(1);
                out.put_u32(json.len() as u32);
                out.put_slice(&json);
            }
        }
        Ok(out.freeze())
    }

    pub fn decode(mut body: Bytes) -> Result<ClaimAnswer, WireError> {
        let connected_for_name = get_u32(&mut body, "a claim answer")?;
        let was_connected = get_u8(&mut body, "a claim answer")? != 0;
        let last_sequence = get_u64(&mut body, "a claim answer")?;
        let session = match get_u8(&mut body, "a claim answer")? {
            0 => None,
            _ => {
                let length = get_u32(&mut body, "a session length")? as usize;
                if body.remaining() < length {
                    return Err(WireError::Truncated("a session"));
                }
                let json = body.split_to(length);
                Some(
                    serde_json::from_slice(&json)
                        .map_err(|error| WireError::Session(error.to_string()))?,
                )
            }
        };
        if body.has_remaining() {
            return Err(WireError::Trailing(body.remaining()));
        }
        Ok(ClaimAnswer {
            connected_for_name,
            was_connected,
            last_sequence,
            session,
        })
    }
}

/// A message forwarded to a pod with matching interest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forward {
    /// Deliver to the receiver's plain subscriptions (false: only to the shares below).
    pub plain: bool,
    /// A QoS 1/2 message whose publisher waits: its number on the sender's lane to the
    /// receiver, acknowledged (cumulatively) by `Queued` once the message is queued.
    pub ack: Option<u64>,
    /// Shares (group, filter) whose one delivery the sender gave to the receiver.
    pub shares: Vec<(String, String)>,
    pub message: Message,
}

/// A retained message and when, and where, it was set: the latest (time, then origin pod
/// name) wins on every pod, whatever order the updates arrive in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetainedUpdate {
    pub version: RetainVersion,
    pub message: Message,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RetainVersion {
    pub at_ms: u64,
    pub origin: Arc<str>,
}

/// Why a body was refused.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("the body is empty")]
    Empty,
    #[error("unknown MQTT peer message tag {0}")]
    UnknownTag(u8),
    #[error("the body ends inside {0}")]
    Truncated(&'static str),
    #[error("{0} is not UTF-8")]
    NotUtf8(&'static str),
    #[error("{0} bytes after the message")]
    Trailing(usize),
    #[error("the forwarded message does not decode: {0}")]
    Message(String),
    #[error("a string of {0} bytes is longer than 65,535")]
    TooLong(usize),
    #[error("the handed-over session does not (de)serialize: {0}")]
    Session(String),
}

impl PeerMqtt {
    pub fn encode(&self) -> Result<Bytes, WireError> {
        let mut out = BytesMut::with_capacity(64);
        match self {
            PeerMqtt::Interest {
                full,
                added,
                removed,
            } => {
                out.put_u8(INTEREST);
                out.put_u8(u8::from(*full));
                for list in [added, removed] {
                    out.put_u32(list.len() as u32);
                    for (group, filter) in list {
                        match group {
                            Some(group) => {
                                out.put_u8(1);
                                put_str(&mut out, group)?;
                            }
                            None => out.put_u8(0),
                        }
                        put_str(&mut out, filter)?;
                    }
                }
            }
            PeerMqtt::Forward(forward) => {
                out.put_u8(FORWARD);
                out.put_u8(u8::from(forward.plain) | if forward.ack.is_some() { 2 } else { 0 });
                if let Some(seq) = forward.ack {
                    out.put_u64(seq);
                }
                out.put_u16(forward.shares.len().min(usize::from(u16::MAX)) as u16);
                for (group, filter) in forward.shares.iter().take(usize::from(u16::MAX)) {
                    put_str(&mut out, group)?;
                    put_str(&mut out, filter)?;
                }
                put_message(&mut out, &forward.message)?;
            }
            PeerMqtt::Queued { up_to } => {
                out.put_u8(QUEUED);
                out.put_u64(*up_to);
            }
            PeerMqtt::Handoff(sessions) => {
                out.put_u8(HANDOFF);
                let json = serde_json::to_vec(sessions)
                    .map_err(|error| WireError::Session(error.to_string()))?;
                out.put_u32(json.len() as u32);
                out.put_slice(&json);
            }
            PeerMqtt::Claim {
                client_id,
                authentication_name,
                clean_start,
            } => {
                out.put_u8(CLAIM);
                put_str(&mut out, client_id)?;
                put_str(&mut out, authentication_name)?;
                out.put_u8(u8::from(*clean_start));
            }
            PeerMqtt::Retained(updates) => {
                out.put_u8(RETAINED);
                out.put_u32(updates.len() as u32);
                for update in updates {
                    out.put_u64(update.version.at_ms);
                    put_str(&mut out, &update.version.origin)?;
                    put_message(&mut out, &update.message)?;
                }
            }
        }
        Ok(out.freeze())
    }

    pub fn decode(mut body: Bytes) -> Result<PeerMqtt, WireError> {
        if body.is_empty() {
            return Err(WireError::Empty);
        }
        let decoded = match body.get_u8() {
            INTEREST => {
                let full = get_u8(&mut body, "the interest")? != 0;
                let mut lists = [Vec::new(), Vec::new()];
                for list in &mut lists {
                    let count = get_u32(&mut body, "an interest count")?;
                    for _ in 0..count {
                        let group = match get_u8(&mut body, "an interest")? {
                            0 => None,
                            _ => Some(get_str(&mut body, "a share group")?),
                        };
                        list.push((group, get_str(&mut body, "a filter")?));
                    }
                }
                let [added, removed] = lists;
                PeerMqtt::Interest {
                    full,
                    added,
                    removed,
                }
            }
            FORWARD => {
                let flags = get_u8(&mut body, "a forward")?;
                let plain = flags & 1 != 0;
                let ack = if flags & 2 != 0 {
                    Some(get_u64(&mut body, "a forward's number")?)
                } else {
                    None
                };
                let count = get_u16(&mut body, "a share count")?;
                let mut shares = Vec::with_capacity(usize::from(count).min(64));
                for _ in 0..count {
                    shares.push((
                        get_str(&mut body, "a share group")?,
                        get_str(&mut body, "a share filter")?,
                    ));
                }
                PeerMqtt::Forward(Forward {
                    plain,
                    ack,
                    shares,
                    message: get_message(&mut body)?,
                })
            }
            RETAINED => {
                let count = get_u32(&mut body, "a retained count")?;
                let mut updates = Vec::with_capacity((count as usize).min(1024));
                for _ in 0..count {
                    let at_ms = get_u64(&mut body, "a retained version")?;
                    let origin = Arc::from(get_str(&mut body, "a retained origin")?);
                    updates.push(RetainedUpdate {
                        version: RetainVersion { at_ms, origin },
                        message: get_message(&mut body)?,
                    });
                }
                PeerMqtt::Retained(updates)
            }
            QUEUED => PeerMqtt::Queued {
                up_to: get_u64(&mut body, "an acknowledgement")?,
            },
            HANDOFF => {
                let length = get_u32(&mut body, "a handoff")? as usize;
                if body.remaining() < length {
                    return Err(WireError::Truncated("the sessions"));
                }
                let json = body.split_to(length);
                PeerMqtt::Handoff(
                    serde_json::from_slice(&json)
                        .map_err(|error| WireError::Session(error.to_string()))?,
                )
            }
            CLAIM => PeerMqtt::Claim {
                client_id: get_str(&mut body, "a client id")?,
                authentication_name: get_str(&mut body, "an authentication name")?,
                clean_start: get_u8(&mut body, "a claim")? != 0,
            },
            tag => return Err(WireError::UnknownTag(tag)),
        };
        if body.has_remaining() {
            return Err(WireError::Trailing(body.remaining()));
        }
        Ok(decoded)
    }
}

fn put_str(out: &mut BytesMut, s: &str) -> Result<(), WireError> {
    let length = u16::try_from(s.len()).map_err(|_| WireError::TooLong(s.len()))?;
    out.put_u16(length);
    out.put_slice(s.as_bytes());
    Ok(())
}

fn put_message(out: &mut BytesMut, message: &Message) -> Result<(), WireError> {
    let at = out.len();
    out.put_u32(0);
    encode_publish(
        Version::V5,
        &OutgoingPublish {
            message,
            qos: message.qos,
            retain: message.retain,
            dup: false,
            // Any id: the receiver takes the message, not the exchange.
            packet_id: (message.qos != QoS::AtMostOnce).then_some(NonZeroU16::MIN),
            subscription_ids: &[],
            message_expiry_interval: message.properties.message_expiry_interval,
        },
        None,
        out,
    )
    .map_err(|error| WireError::Message(error.to_string()))?;
    let length = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&length.to_be_bytes());
    Ok(())
}

fn get_u8(body: &mut Bytes, what: &'static str) -> Result<u8, WireError> {
    if body.remaining() < 1 {
        return Err(WireError::Truncated(what));
    }
    Ok(body.get_u8())
}

fn get_u16(body: &mut Bytes, what: &'static str) -> Result<u16, WireError> {
    if body.remaining() < 2 {
        return Err(WireError::Truncated(what));
    }
    Ok(body.get_u16())
}

fn get_u32(body: &mut Bytes, what: &'static str) -> Result<u32, WireError> {
    if body.remaining() < 4 {
        return Err(WireError::Truncated(what));
    }
    Ok(body.get_u32())
}

fn get_u64(body: &mut Bytes, what: &'static str) -> Result<u64, WireError> {
    if body.remaining() < 8 {
        return Err(WireError::Truncated(what));
    }
    Ok(body.get_u64())
}

fn get_str(body: &mut Bytes, what: &'static str) -> Result<String, WireError> {
    let length = usize::from(get_u16(body, what)?);
    if body.remaining() < length {
        return Err(WireError::Truncated(what));
    }
    let bytes = body.split_to(length);
    String::from_utf8(bytes.to_vec()).map_err(|_| WireError::NotUtf8(what))
}

fn get_message(body: &mut Bytes) -> Result<Message, WireError> {
    let length = get_u32(body, "a message length")? as usize;
    if body.remaining() < length {
        return Err(WireError::Truncated("a message"));
    }
    let mut packet = BytesMut::from(&body.split_to(length)[..]);
    let mut codec = Codec::new(Version::V5, MAX_PUBLISH);
    match codec.decode(&mut packet) {
        Ok(Some(Packet::Publish(publish))) if packet.is_empty() => Ok(publish.message),
        Ok(Some(_)) => Err(WireError::Message("not one PUBLISH".into())),
        Ok(None) => Err(WireError::Truncated("a message")),
        Err(error) => Err(WireError::Message(codec_error(error))),
    }
}

fn codec_error(error: CodecError) -> String {
    error.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::codec::MessageProperties;
    use proptest::prelude::*;

    fn message(qos: QoS, retain: bool) -> Message {
        Message {
            topic: "devices/1/temp".into(),
            payload: Bytes::from_static(b"21.5"),
            qos,
            retain,
            properties: MessageProperties {
                payload_is_utf8: true,
                message_expiry_interval: std::num::NonZeroU32::new(60),
                content_type: Some("text/plain".into()),
                response_topic: Some("replies/1".into()),
                correlation_data: Some(Bytes::from_static(b"\x01\x02")),
                user_properties: vec![("k".into(), "v".into()), ("k".into(), "w".into())],
            },
        }
    }

    fn round_trip(body: PeerMqtt) {
        let encoded = body.encode().unwrap();
        assert_eq!(PeerMqtt::decode(encoded).unwrap(), body);
    }

    #[test]
    fn every_body_round_trips_with_every_property() {
        round_trip(PeerMqtt::Interest {
            full: true,
            added: vec![(None, "a/+".into()), (Some("g".into()), "b/#".into())],
            removed: vec![(None, "c".into())],
        });
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            round_trip(PeerMqtt::Forward(Forward {
                plain: qos != QoS::ExactlyOnce,
                ack: (qos != QoS::AtMostOnce).then_some(7),
                shares: vec![("g".into(), "devices/+/temp".into())],
                message: message(qos, qos == QoS::AtLeastOnce),
            }));
        }
        let mut cleared = message(QoS::AtMostOnce, true);
        cleared.payload = Bytes::new();
        round_trip(PeerMqtt::Queued { up_to: u64::MAX });
        round_trip(PeerMqtt::Retained(vec![
            RetainedUpdate {
                version: RetainVersion {
                    at_ms: 1_700_000_000_000,
                    origin: "pod-1".into(),
                },
                message: message(QoS::AtLeastOnce, true),
            },
            RetainedUpdate {
                version: RetainVersion {
                    at_ms: 7,
                    origin: "pod-2".into(),
                },
                message: cleared,
            },
        ]));
    }

    #[test]
    fn a_claim_and_its_answer_round_trip_with_the_session() {
        round_trip(PeerMqtt::Claim {
            client_id: "device-1".into(),
            authentication_name: "device-1".into(),
            clean_start: false,
        });
        let answer = ClaimAnswer {
            connected_for_name: 2,
            was_connected: true,
            last_sequence: 3_400_000_000_000_001,
            session: Some(StoredSession {
                client_id: "device-1".into(),
                authentication_name: "device-1".into(),
                expiry_interval: 3600,
                expires_at: 1_800_000_000,
                subscriptions: vec![],
                queue: vec![],
            }),
        };
        assert_eq!(
            ClaimAnswer::decode(answer.encode().unwrap()).unwrap(),
            answer
        );
        let handoff = PeerMqtt::Handoff(vec![answer.session.unwrap()]);
        let encoded = handoff.encode().unwrap();
        assert!(matches!(
            PeerMqtt::decode(encoded).unwrap(),
            PeerMqtt::Handoff(sessions) if sessions.len() == 1
        ));
        let none = ClaimAnswer::default();
        assert_eq!(ClaimAnswer::decode(none.encode().unwrap()).unwrap(), none);
        assert!(ClaimAnswer::decode(Bytes::from_static(&[0, 0])).is_err());
    }

    #[test]
    fn bodies_that_are_not_ours_are_errors() {
        assert!(matches!(
            PeerMqtt::decode(Bytes::new()),
            Err(WireError::Empty)
        ));
        assert!(matches!(
            PeerMqtt::decode(Bytes::from_static(&[9])),
            Err(WireError::UnknownTag(9))
        ));
        let mut body = PeerMqtt::Forward(Forward {
            plain: true,
            ack: None,
            shares: vec![],
            message: message(QoS::AtLeastOnce, false),
        })
        .encode()
        .unwrap()
        .to_vec();
        body.push(0);
        assert!(matches!(
            PeerMqtt::decode(body.into()),
            Err(WireError::Trailing(1))
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = PeerMqtt::decode(Bytes::from(bytes));
        }

        #[test]
        fn every_cut_of_a_forward_is_an_error(cut in 0usize..200) {
            let body = PeerMqtt::Forward(Forward {
                plain: true,
                ack: Some(1),
                shares: vec![("g".into(), "f/+".into())],
                message: message(QoS::AtLeastOnce, false),
            })
            .encode()
            .unwrap();
            if cut < body.len() {
                prop_assert!(PeerMqtt::decode(body.slice(..cut)).is_err());
            }
        }
    }
}
