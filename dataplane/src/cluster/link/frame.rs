//! The peer-link wire format (README.md, "Frames", has the byte layout): a big-endian u32
//! length, then a kind byte and the kind's fields. Bodies are opaque [`Bytes`] that each
//! service encodes itself; decoding slices them out of the read buffer without copying.
//!
//! The decoder takes bytes from a peer that has authenticated but is not trusted to be
//! well-formed: every length is checked before it is read, and nothing panics.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The protocol versions this build speaks. Hello and Goodbye keep their layout in every
/// version, so two builds can always tell each other which versions they speak.
pub const PROTOCOL_VERSIONS: std::ops::RangeInclusive<u16> = 1..=1;

/// The default largest frame (length prefix excluded) a link sends or accepts.
pub const DEFAULT_MAX_FRAME: u32 = 16 * 1024 * 1024;

/// Bytes of the length prefix.
pub const LENGTH_PREFIX: usize = 4;

/// The longest error message a Response carries; longer ones are cut at a character boundary.
pub const MAX_ERROR_MESSAGE: usize = 1024;

/// Error codes of Responses from 0xFF00 up are the link layer's own; services use the ones
/// below.
pub const FIRST_LINK_ERROR_CODE: u16 = 0xFF00;
/// The peer has no service of the Request's number.
pub const NO_SERVICE: u16 = 0xFF01;
/// The service dropped the Request without answering it.
pub const UNANSWERED: u16 = 0xFF02;
/// The answer would have been a frame over the link's maximum size.
pub const RESPONSE_TOO_LARGE: u16 = 0xFF03;

/// Which service a Request or Message is for (MQTT forwarding, event routing, ...). Services
/// pick their numbers; the link layer only routes by them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceId(pub u8);

impl std::fmt::Display for ServiceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "service {}", self.0)
    }
}

/// Kind bytes.
mod kind {
    pub const HELLO: u8 = 1;
    pub const GOODBYE: u8 = 2;
    pub const REQUEST: u8 = 3;
    pub const RESPONSE: u8 = 4;
    pub const MESSAGE: u8 = 5;
    pub const PING: u8 = 6;
    pub const PONG: u8 = 7;
}

const OUTCOME_OK: u8 = 0;
const OUTCOME_ERROR: u8 = 1;

/// What a pod says first on a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The lowest and highest protocol versions the sender speaks.
    pub min_version: u16,
    pub max_version: u16,
    /// The sender's owner number (derived from its pod name).
    pub owner: u16,
    /// The sender's pod name.
    pub pod: String,
    /// The Gridline Namespace the sender serves: pods of two Namespaces never link, even when
    /// their certificates share a CA.
    pub namespace: String,
}

/// Why a link is being closed, as a Goodbye says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoodbyeReason {
    /// The sender is stopping (or draining).
    Shutdown,
    /// No protocol version both sides speak.
    Version,
    /// The Hello was refused: another Namespace, a name not in the member set, the wrong
    /// side dialled, or the sender's own name.
    Refused,
    /// An undecodable, oversized or unexpected frame.
    Protocol,
    /// The receiver is no longer in the sender's member set.
    NotMember,
    /// A newer link from the same peer replaced this one.
    Replaced,
    /// A reason code this build does not know (a newer peer's).
    Other(u8),
}

impl GoodbyeReason {
    fn code(self) -> u8 {
        match self {
            GoodbyeReason::Shutdown => 0,
            GoodbyeReason::Version => 1,
            GoodbyeReason::Refused => 2,
            GoodbyeReason::Protocol => 3,
            GoodbyeReason::NotMember => 4,
            GoodbyeReason::Replaced => 5,
            GoodbyeReason::Other(code) => code,
        }
    }

    fn from_code(code: u8) -> GoodbyeReason {
        match code {
            0 => GoodbyeReason::Shutdown,
            1 => GoodbyeReason::Version,
            2 => GoodbyeReason::Refused,
            3 => GoodbyeReason::Protocol,
            4 => GoodbyeReason::NotMember,
            5 => GoodbyeReason::Replaced,
            other => GoodbyeReason::Other(other),
        }
    }
}

impl std::fmt::Display for GoodbyeReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GoodbyeReason::Shutdown => f.write_str("shutdown"),
            GoodbyeReason::Version => f.write_str("version"),
            GoodbyeReason::Refused => f.write_str("refused"),
            GoodbyeReason::Protocol => f.write_str("protocol"),
            GoodbyeReason::NotMember => f.write_str("not a member"),
            GoodbyeReason::Replaced => f.write_str("replaced"),
            GoodbyeReason::Other(code) => write!(f, "reason {code}"),
        }
    }
}

/// The last frame a side sends before it closes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Goodbye {
    pub reason: GoodbyeReason,
    /// For people: what went wrong, naming what each side had.
    pub message: String,
}

/// How a request ended on the peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Error { code: u16, message: String },
}

/// One frame of a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Hello(Hello),
    Goodbye(Goodbye),
    Request {
        id: u64,
        service: ServiceId,
        body: Bytes,
    },
    Response {
        id: u64,
        outcome: Outcome,
        body: Bytes,
    },
    /// One-way; delivered in order with the Requests and Messages of the same link.
    Message {
        service: ServiceId,
        body: Bytes,
    },
    Ping(u64),
    Pong(u64),
}

/// Why bytes from a peer are not a frame. Every one of them closes the link.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("a frame of {length} bytes is over the limit of {max}")]
    TooLarge { length: u32, max: u32 },
    #[error("an empty frame (length 0)")]
    Empty,
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("a {kind} frame ends early: {needed} more bytes needed at offset {offset}")]
    Truncated {
        kind: &'static str,
        offset: usize,
        needed: usize,
    },
    #[error("a {kind} frame has {extra} bytes after its last field")]
    TrailingBytes { kind: &'static str, extra: usize },
    #[error("a {kind} frame's {field} is not UTF-8")]
    NotUtf8 {
        kind: &'static str,
        field: &'static str,
    },
    #[error("unknown response outcome {0}")]
    UnknownOutcome(u8),
}

impl Frame {
    /// The frame's kind, for logs and errors.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Frame::Hello(_) => "Hello",
            Frame::Goodbye(_) => "Goodbye",
            Frame::Request { .. } => "Request",
            Frame::Response { .. } => "Response",
            Frame::Message { .. } => "Message",
            Frame::Ping(_) => "Ping",
            Frame::Pong(_) => "Pong",
        }
    }

    /// The frame's length as its prefix states it (kind byte and fields, prefix excluded).
    pub fn encoded_len(&self) -> usize {
        1 + match self {
            Frame::Hello(hello) => 2 + 2 + 2 + 1 + hello.pod.len() + 2 + hello.namespace.len(),
            Frame::Goodbye(goodbye) => 1 + 2 + goodbye.message.len(),
            Frame::Request { body, .. } => 8 + 1 + body.len(),
            Frame::Response { outcome, body, .. } => {
                8 + 1
                    + match outcome {
                        Outcome::Ok => 0,
                        Outcome::Error { message, .. } => 2 + 2 + message.len(),
                    }
                    + body.len()
            }
            Frame::Message { body, .. } => 1 + body.len(),
            Frame::Ping(_) | Frame::Pong(_) => 8,
        }
    }

    /// Append the frame, length prefix first. Text fields longer than their length field
    /// allows are cut (a pod name is at most 63 bytes, a Namespace identity and messages are
    /// made short by their producers); the caller checks the frame against the maximum size.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Frame::Hello(hello) => {
                let pod = cut(&hello.pod, u8::MAX as usize);
                let namespace = cut(&hello.namespace, u16::MAX as usize);
                out.put_u32((1 + 2 + 2 + 2 + 1 + pod.len() + 2 + namespace.len()) as u32);
                out.put_u8(kind::HELLO);
                out.put_u16(hello.min_version);
                out.put_u16(hello.max_version);
                out.put_u16(hello.owner);
                out.put_u8(pod.len() as u8);
                out.put_slice(pod.as_bytes());
                out.put_u16(namespace.len() as u16);
                out.put_slice(namespace.as_bytes());
            }
            Frame::Goodbye(goodbye) => {
                let message = cut(&goodbye.message, u16::MAX as usize);
                out.put_u32((1 + 1 + 2 + message.len()) as u32);
                out.put_u8(kind::GOODBYE);
                out.put_u8(goodbye.reason.code());
                out.put_u16(message.len() as u16);
                out.put_slice(message.as_bytes());
            }
            Frame::Request { id, service, body } => {
                out.reserve(LENGTH_PREFIX + 10 + body.len());
                out.put_u32((1 + 8 + 1 + body.len()) as u32);
                out.put_u8(kind::REQUEST);
                out.put_u64(*id);
                out.put_u8(service.0);
                out.put_slice(body);
            }
            Frame::Response { id, outcome, body } => {
                let message = match outcome {
                    Outcome::Ok => "",
                    Outcome::Error { message, .. } => cut(message, u16::MAX as usize),
                };
                let fields = match outcome {
                    Outcome::Ok => 0,
                    Outcome::Error { .. } => 4 + message.len(),
                };
                out.reserve(LENGTH_PREFIX + 10 + fields + body.len());
                out.put_u32((1 + 8 + 1 + fields + body.len()) as u32);
                out.put_u8(kind::RESPONSE);
                out.put_u64(*id);
                match outcome {
                    Outcome::Ok => out.put_u8(OUTCOME_OK),
                    Outcome::Error { code, .. } => {
                        out.put_u8(OUTCOME_ERROR);
                        out.put_u16(*code);
                        out.put_u16(message.len() as u16);
                        out.put_slice(message.as_bytes());
                    }
                }
                out.put_slice(body);
            }
            Frame::Message { service, body } => {
                out.reserve(LENGTH_PREFIX + 2 + body.len());
                out.put_u32((1 + 1 + body.len()) as u32);
                out.put_u8(kind::MESSAGE);
                out.put_u8(service.0);
                out.put_slice(body);
            }
            Frame::Ping(token) | Frame::Pong(token) => {
                out.put_u32(1 + 8);
                out.put_u8(if matches!(self, Frame::Ping(_)) {
                    kind::PING
                } else {
                    kind::PONG
                });
                out.put_u64(*token);
            }
        }
    }

    /// Take one frame off the front of `buffer`: `Ok(None)` when it does not hold a whole
    /// frame yet (room for the rest is reserved), an error when the bytes cannot be a frame
    /// of at most `max_frame` bytes. Bodies share `buffer`'s memory.
    pub fn decode(buffer: &mut BytesMut, max_frame: u32) -> Result<Option<Frame>, FrameError> {
        if buffer.len() < LENGTH_PREFIX {
            return Ok(None);
        }
        let length = u32::from_be_bytes([buffer[0], buffer[1], buffer[2], buffer[3]]);
        if length > max_frame {
            return Err(FrameError::TooLarge {
                length,
                max: max_frame,
            });
        }
        if length == 0 {
            return Err(FrameError::Empty);
        }
        let whole = LENGTH_PREFIX + length as usize;
        if buffer.len() < whole {
            buffer.reserve(whole - buffer.len());
            return Ok(None);
        }
        buffer.advance(LENGTH_PREFIX);
        let frame = buffer.split_to(length as usize).freeze();
        parse(frame).map(Some)
    }
}

/// Every whole frame in `bytes`, as a link's reader decodes them, and the error that stopped
/// decoding, if one did (an incomplete last frame is no error). For the fuzz target and tests.
pub fn decode_stream(bytes: &[u8], max_frame: u32) -> (Vec<Frame>, Option<FrameError>) {
    let mut buffer = BytesMut::from(bytes);
    let mut frames = Vec::new();
    loop {
        match Frame::decode(&mut buffer, max_frame) {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => return (frames, None),
            Err(error) => return (frames, Some(error)),
        }
    }
}

/// `text` cut to at most `max` bytes at a character boundary.
pub fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A checked reader over one frame's bytes (kind byte excluded).
struct Fields {
    kind: &'static str,
    bytes: Bytes,
    /// Offset in the frame, for errors.
    offset: usize,
}

impl Fields {
    fn need(&self, needed: usize) -> Result<(), FrameError> {
        if self.bytes.remaining() < needed {
            return Err(FrameError::Truncated {
                kind: self.kind,
                offset: self.offset,
                needed: needed - self.bytes.remaining(),
            });
        }
        Ok(())
    }

    fn u8(&mut self) -> Result<u8, FrameError> {
        self.need(1)?;
        self.offset += 1;
        Ok(self.bytes.get_u8())
    }

    fn u16(&mut self) -> Result<u16, FrameError> {
        self.need(2)?;
        self.offset += 2;
        Ok(self.bytes.get_u16())
    }

    fn u64(&mut self) -> Result<u64, FrameError> {
        self.need(8)?;
        self.offset += 8;
        Ok(self.bytes.get_u64())
    }

    fn text(&mut self, length: usize, field: &'static str) -> Result<String, FrameError> {
        self.need(length)?;
        self.offset += length;
        let bytes = self.bytes.split_to(length);
        String::from_utf8(bytes.to_vec()).map_err(|_| FrameError::NotUtf8 {
            kind: self.kind,
            field,
        })
    }

    /// Everything left: a body.
    fn rest(self) -> Bytes {
        self.bytes
    }

    fn end(self) -> Result<(), FrameError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(FrameError::TrailingBytes {
                kind: self.kind,
                extra: self.bytes.len(),
            })
        }
    }
}

fn parse(mut frame: Bytes) -> Result<Frame, FrameError> {
    let kind_byte = frame.get_u8();
    let fields = |kind| Fields {
        kind,
        bytes: frame.clone(),
        offset: 1,
    };
    match kind_byte {
        kind::HELLO => {
            let mut fields = fields("Hello");
            let min_version = fields.u16()?;
            let max_version = fields.u16()?;
            let owner = fields.u16()?;
            let pod_length = fields.u8()? as usize;
            let pod = fields.text(pod_length, "pod name")?;
            let namespace_length = fields.u16()? as usize;
            let namespace = fields.text(namespace_length, "namespace")?;
            // Later versions may append fields to a Hello; this one ignores them.
            Ok(Frame::Hello(Hello {
                min_version,
                max_version,
                owner,
                pod,
                namespace,
            }))
        }
        kind::GOODBYE => {
            let mut fields = fields("Goodbye");
            let reason = GoodbyeReason::from_code(fields.u8()?);
            let length = fields.u16()? as usize;
            let message = fields.text(length, "message")?;
            Ok(Frame::Goodbye(Goodbye { reason, message }))
        }
        kind::REQUEST => {
            let mut fields = fields("Request");
            let id = fields.u64()?;
            let service = ServiceId(fields.u8()?);
            Ok(Frame::Request {
                id,
                service,
                body: fields.rest(),
            })
        }
        kind::RESPONSE => {
            let mut fields = fields("Response");
            let id = fields.u64()?;
            let outcome = match fields.u8()? {
                OUTCOME_OK => Outcome::Ok,
                OUTCOME_ERROR => {
                    let code = fields.u16()?;
                    let length = fields.u16()? as usize;
                    let message = fields.text(length, "error message")?;
                    Outcome::Error { code, message }
                }
                other => return Err(FrameError::UnknownOutcome(other)),
            };
            Ok(Frame::Response {
                id,
                outcome,
                body: fields.rest(),
            })
        }
        kind::MESSAGE => {
            let mut fields = fields("Message");
            let service = ServiceId(fields.u8()?);
            Ok(Frame::Message {
                service,
                body: fields.rest(),
            })
        }
        kind::PING | kind::PONG => {
            let ping = kind_byte == kind::PING;
            let mut fields = fields(if ping { "Ping" } else { "Pong" });
            let token = fields.u64()?;
            fields.end()?;
            Ok(if ping {
                Frame::Ping(token)
            } else {
                Frame::Pong(token)
            })
        }
        other => Err(FrameError::UnknownKind(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(frame: &Frame) -> Frame {
        let mut buffer = BytesMut::new();
        frame.encode(&mut buffer);
        assert_eq!(buffer.len(), LENGTH_PREFIX + frame.encoded_len());
        let decoded = Frame::decode(&mut buffer, DEFAULT_MAX_FRAME)
            .expect("decodes")
            .expect("whole");
        assert!(buffer.is_empty(), "nothing left over");
        decoded
    }

    fn text() -> impl Strategy<Value = String> {
        proptest::string::string_regex(".{0,40}").unwrap()
    }

    fn body() -> impl Strategy<Value = Bytes> {
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(Bytes::from)
    }

    fn frame() -> impl Strategy<Value = Frame> {
        let reason = prop_oneof![
            Just(GoodbyeReason::Shutdown),
            Just(GoodbyeReason::Version),
            Just(GoodbyeReason::Refused),
            Just(GoodbyeReason::Protocol),
            Just(GoodbyeReason::NotMember),
            Just(GoodbyeReason::Replaced),
            (6u8..).prop_map(GoodbyeReason::Other),
        ];
        let outcome = prop_oneof![
            Just(Outcome::Ok),
            (any::<u16>(), text()).prop_map(|(code, message)| Outcome::Error { code, message }),
        ];
        prop_oneof![
            (any::<u16>(), any::<u16>(), any::<u16>(), text(), text()).prop_map(
                |(min_version, max_version, owner, pod, namespace)| Frame::Hello(Hello {
                    min_version,
                    max_version,
                    owner,
                    pod,
                    namespace
                })
            ),
            (reason, text())
                .prop_map(|(reason, message)| Frame::Goodbye(Goodbye { reason, message })),
            (any::<u64>(), any::<u8>(), body()).prop_map(|(id, service, body)| Frame::Request {
                id,
                service: ServiceId(service),
                body
            }),
            (any::<u64>(), outcome, body()).prop_map(|(id, outcome, body)| Frame::Response {
                id,
                outcome,
                body
            }),
            (any::<u8>(), body()).prop_map(|(service, body)| Frame::Message {
                service: ServiceId(service),
                body
            }),
            any::<u64>().prop_map(Frame::Ping),
            any::<u64>().prop_map(Frame::Pong),
        ]
    }

    proptest! {
        #[test]
        fn every_frame_decodes_to_itself(frame in frame()) {
            prop_assert_eq!(round_trip(&frame), frame);
        }

        #[test]
        fn frames_split_anywhere_decode_in_order(
            frames in proptest::collection::vec(frame(), 1..8),
            chunk in 1usize..64,
        ) {
            let mut wire = BytesMut::new();
            for frame in &frames {
                frame.encode(&mut wire);
            }
            let mut buffer = BytesMut::new();
            let mut decoded = Vec::new();
            for piece in wire.chunks(chunk) {
                buffer.extend_from_slice(piece);
                while let Some(frame) = Frame::decode(&mut buffer, DEFAULT_MAX_FRAME).unwrap() {
                    decoded.push(frame);
                }
            }
            prop_assert_eq!(decoded, frames);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_stream(&bytes, 256);
            let _ = decode_stream(&bytes, DEFAULT_MAX_FRAME);
        }

        #[test]
        fn arbitrary_bytes_after_a_valid_kind_never_panic(
            kind in 0u8..10,
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut buffer = BytesMut::new();
            buffer.put_u32(1 + bytes.len() as u32);
            buffer.put_u8(kind);
            buffer.put_slice(&bytes);
            let _ = Frame::decode(&mut buffer, DEFAULT_MAX_FRAME);
        }
    }

    #[test]
    fn an_oversize_length_is_refused_before_its_bytes_arrive() {
        let mut buffer = BytesMut::from(&[0x01, 0x00, 0x00, 0x01][..]);
        assert_eq!(
            Frame::decode(&mut buffer, DEFAULT_MAX_FRAME),
            Err(FrameError::TooLarge {
                length: DEFAULT_MAX_FRAME + 1,
                max: DEFAULT_MAX_FRAME
            })
        );
    }

    #[test]
    fn a_partial_frame_waits_for_the_rest() {
        let mut wire = BytesMut::new();
        Frame::Ping(7).encode(&mut wire);
        let mut buffer = BytesMut::from(&wire[..wire.len() - 1]);
        assert_eq!(Frame::decode(&mut buffer, DEFAULT_MAX_FRAME), Ok(None));
        buffer.extend_from_slice(&wire[wire.len() - 1..]);
        assert_eq!(
            Frame::decode(&mut buffer, DEFAULT_MAX_FRAME),
            Ok(Some(Frame::Ping(7)))
        );
    }

    #[test]
    fn malformed_frames_name_what_is_wrong() {
        let decode = |bytes: &[u8]| Frame::decode(&mut BytesMut::from(bytes), DEFAULT_MAX_FRAME);
        assert_eq!(decode(&[0, 0, 0, 0]), Err(FrameError::Empty));
        assert_eq!(decode(&[0, 0, 0, 1, 99]), Err(FrameError::UnknownKind(99)));
        assert_eq!(
            decode(&[0, 0, 0, 3, kind::REQUEST, 0, 0]),
            Err(FrameError::Truncated {
                kind: "Request",
                offset: 1,
                needed: 6
            })
        );
        assert_eq!(
            decode(&[0, 0, 0, 10, kind::PING, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
            Err(FrameError::TrailingBytes {
                kind: "Ping",
                extra: 1
            })
        );
        assert_eq!(
            decode(&[0, 0, 0, 5, kind::GOODBYE, 2, 0, 1, 0xff]),
            Err(FrameError::NotUtf8 {
                kind: "Goodbye",
                field: "message"
            })
        );
        assert_eq!(
            decode(&[0, 0, 0, 10, kind::RESPONSE, 0, 0, 0, 0, 0, 0, 0, 1, 9]),
            Err(FrameError::UnknownOutcome(9))
        );
    }

    #[test]
    fn a_hello_with_fields_appended_by_a_later_version_still_decodes() {
        let hello = Hello {
            min_version: 1,
            max_version: 3,
            owner: 2,
            pod: "orders-gridline-2".into(),
            namespace: "default/orders".into(),
        };
        let mut wire = BytesMut::new();
        Frame::Hello(hello.clone()).encode(&mut wire);
        wire.put_u32(0xdead_beef);
        let length = (wire.len() - LENGTH_PREFIX) as u32;
        wire[..4].copy_from_slice(&length.to_be_bytes());
        assert_eq!(
            Frame::decode(&mut wire, DEFAULT_MAX_FRAME),
            Ok(Some(Frame::Hello(hello)))
        );
    }

    #[test]
    fn long_texts_are_cut_at_a_character_boundary() {
        assert_eq!(cut("ééé", 5), "éé");
        assert_eq!(cut("abc", 5), "abc");
    }
}
