//! Round trips through the codec: every packet the broker sends or receives, both versions.
//! Generated packets hold only what the version can express.

use super::*;
use bytes::Bytes;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

fn packet_id() -> impl Strategy<Value = NonZeroU16> {
    (1u16..).prop_map(|id| NonZeroU16::new(id).unwrap())
}

fn topic() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,8}(/[a-z0-9]{0,8}){0,4}"
}

fn filter() -> impl Strategy<Value = String> {
    prop_oneof![topic(), Just("#".to_string()), Just("a/+/c/#".to_string())]
}

fn short_text() -> impl Strategy<Value = String> {
    "[ -~]{0,12}"
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn payload() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..64).prop_map(Bytes::from)
}

fn properties(version: Version) -> BoxedStrategy<MessageProperties> {
    match version {
        Version::V311 => Just(MessageProperties::default()).boxed(),
        Version::V5 => (
            any::<bool>(),
            option::of((1u32..).prop_map(|n| NonZeroU32::new(n).unwrap())),
            option::of(short_text()),
            option::of(topic()),
            option::of(payload()),
            vec((short_text(), short_text()), 0..3),
        )
            .prop_map(
                |(utf8, expiry, content_type, response_topic, correlation, user)| {
                    MessageProperties {
                        payload_is_utf8: utf8,
                        message_expiry_interval: expiry,
                        content_type,
                        response_topic,
                        correlation_data: correlation,
                        user_properties: user,
                    }
                },
            )
            .boxed(),
    }
}

fn message(version: Version) -> impl Strategy<Value = Message> {
    (
        topic(),
        payload(),
        qos(),
        any::<bool>(),
        properties(version),
    )
        .prop_map(|(topic, payload, qos, retain, properties)| Message {
            topic: topic.into(),
            payload,
            qos,
            retain,
            properties,
        })
}

fn publish(version: Version) -> impl Strategy<Value = Packet> {
    let v5 = version == Version::V5;
    (
        message(version),
        any::<bool>(),
        packet_id(),
        option::of(packet_id()),
    )
        .prop_map(move |(message, dup, id, alias)| {
            Packet::Publish(Box::new(Publish {
                dup: dup && message.qos != QoS::AtMostOnce,
                packet_id: (message.qos != QoS::AtMostOnce).then_some(id),
                topic_alias: alias.filter(|_| v5),
                subscription_ids: Vec::new(),
                message,
            }))
        })
}

fn connect(version: Version) -> impl Strategy<Value = Packet> {
    let v5 = version == Version::V5;
    (
        "[a-zA-Z0-9-]{0,23}",
        any::<bool>(),
        any::<u16>(),
        option::of("[a-z0-9-]{1,12}"),
        option::of(payload()),
        any::<u32>(),
        option::of(packet_id()),
        option::of((1u32..).prop_map(|n| NonZeroU32::new(n).unwrap())),
        option::of((message(version), option::of(any::<u32>()))),
    )
        .prop_map(
            move |(client_id, clean, keep_alive, username, password, expiry, rm, mps, will)| {
                // 3.1.1 has no password without a username.
                let password = if v5 || username.is_some() {
                    password
                } else {
                    None
                };
                // The crate refuses an empty client id without clean start, in both versions
                // (MQTT 5 allows a server to: 0x85); the broker answers that CONNACK itself.
                let clean = clean || client_id.is_empty();
                Packet::Connect(Box::new(Connect {
                    version,
                    client_id,
                    clean_start: clean,
                    keep_alive,
                    username,
                    password,
                    session_expiry_interval: match (v5, clean) {
                        (true, _) => expiry,
                        (false, true) => 0,
                        (false, false) => u32::MAX,
                    },
                    receive_maximum: rm.filter(|_| v5),
                    maximum_packet_size: mps.filter(|_| v5),
                    topic_alias_maximum: 0,
                    authentication_method: None,
                    authentication_data: None,
                    will: will.map(|(message, delay)| Will {
                        message,
                        delay_interval: delay.filter(|_| v5),
                    }),
                }))
            },
        )
}

fn connack(version: Version) -> BoxedStrategy<Packet> {
    let v5_reasons: &'static [u8] = &[
        0u8, 0x80, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8C, 0x95, 0x97,
    ];
    let v3_reasons: &'static [u8] = &[0u8, 0x84, 0x85, 0x86, 0x87, 0x88];
    match version {
        Version::V311 => (any::<bool>(), proptest::sample::select(v3_reasons))
            .prop_map(|(present, reason)| {
                Packet::ConnAck(ConnAck {
                    session_present: present && reason == 0,
                    reason,
                    reason_string: None,
                    session_expiry_interval: None,
                    receive_maximum: NonZeroU16::MAX,
                    maximum_packet_size: None,
                    assigned_client_id: None,
                    server_keep_alive: None,
                    topic_alias_maximum: 0,
                    authentication_method: None,
                })
            })
            .boxed(),
        Version::V5 => (
            any::<bool>(),
            proptest::sample::select(v5_reasons),
            option::of(short_text()),
            option::of(any::<u32>()),
            packet_id(),
            option::of(1u32..),
            option::of("[a-z0-9]{1,12}"),
            option::of(any::<u16>()),
        )
            .prop_map(
                |(present, reason, reason_string, expiry, rm, mps, assigned, keep_alive)| {
                    Packet::ConnAck(ConnAck {
                        session_present: present && reason == 0,
                        reason,
                        reason_string,
                        session_expiry_interval: expiry,
                        receive_maximum: rm,
                        maximum_packet_size: mps,
                        assigned_client_id: assigned,
                        server_keep_alive: keep_alive,
                        topic_alias_maximum: 0,
                        authentication_method: None,
                    })
                },
            )
            .boxed(),
    }
}

fn ack(version: Version, reasons: &'static [u8]) -> impl Strategy<Value = Ack> {
    let v5 = version == Version::V5;
    (
        packet_id(),
        proptest::sample::select(reasons),
        option::of(short_text()),
    )
        .prop_map(move |(packet_id, reason, reason_string)| Ack {
            packet_id,
            reason: if v5 { reason } else { 0 },
            reason_string: reason_string.filter(|_| v5),
        })
}

const PUBACK_REASONS: &[u8] = &[0, 0x10, 0x80, 0x87, 0x90, 0x97];
const PUBREL_REASONS: &[u8] = &[0, 0x92];

fn subscribe(version: Version) -> impl Strategy<Value = Packet> {
    let v5 = version == Version::V5;
    (
        packet_id(),
        vec(
            (filter(), qos(), any::<bool>(), any::<bool>(), 0u8..3),
            1..4,
        ),
    )
        .prop_map(move |(packet_id, filters)| {
            Packet::Subscribe(Subscribe {
                packet_id,
                subscription_id: None,
                filters: filters
                    .into_iter()
                    .map(|(f, qos, no_local, rap, rh)| {
                        (
                            f,
                            SubscriptionOptions {
                                qos,
                                no_local: no_local && v5,
                                retain_as_published: rap && v5,
                                retain_handling: if v5 { rh } else { 0 },
                            },
                        )
                    })
                    .collect(),
            })
        })
}

fn suback(version: Version) -> impl Strategy<Value = Packet> {
    let v5 = version == Version::V5;
    let v5_codes: &'static [u8] = &[0, 1, 2, 0x80, 0x87, 0x8F, 0x97, 0x9E];
    let v3_codes: &'static [u8] = &[0, 1, 2, 0x80];
    (
        packet_id(),
        vec(
            proptest::sample::select(if v5 { v5_codes } else { v3_codes }),
            1..4,
        ),
        option::of(short_text()),
    )
        .prop_map(move |(packet_id, reasons, reason_string)| {
            Packet::SubAck(SubAck {
                packet_id,
                reasons,
                reason_string: reason_string.filter(|_| v5),
            })
        })
}

fn unsubscribe_and_ack(version: Version) -> impl Strategy<Value = Packet> {
    let v5 = version == Version::V5;
    prop_oneof![
        (packet_id(), vec(filter(), 1..4))
            .prop_map(|(packet_id, filters)| Packet::Unsubscribe { packet_id, filters }),
        (
            packet_id(),
            vec(proptest::sample::select(&[0u8, 0x11, 0x87][..]), 1..4)
        )
            .prop_map(move |(packet_id, reasons)| Packet::UnsubAck(SubAck {
                packet_id,
                reasons: if v5 { reasons } else { Vec::new() },
                reason_string: None,
            })),
    ]
}

fn disconnect(version: Version) -> impl Strategy<Value = Packet> {
    let v5 = version == Version::V5;
    (
        proptest::sample::select(&[0u8, 0x04, 0x81, 0x82, 0x87, 0x8D, 0x8E, 0x93, 0x95][..]),
        option::of(any::<u32>()),
        option::of(short_text()),
    )
        .prop_map(move |(reason, expiry, reason_string)| {
            Packet::Disconnect(Disconnect {
                reason: if v5 { reason } else { 0 },
                session_expiry_interval: expiry.filter(|_| v5),
                reason_string: reason_string.filter(|_| v5),
            })
        })
}

fn any_packet(version: Version) -> impl Strategy<Value = Packet> {
    prop_oneof![
        connect(version),
        connack(version),
        publish(version),
        ack(version, PUBACK_REASONS).prop_map(Packet::PubAck),
        ack(version, PUBACK_REASONS).prop_map(Packet::PubRec),
        ack(version, PUBREL_REASONS).prop_map(Packet::PubRel),
        ack(version, PUBREL_REASONS).prop_map(Packet::PubComp),
        subscribe(version),
        suback(version),
        unsubscribe_and_ack(version),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        disconnect(version),
    ]
}

fn round_trip(version: Version, packet: &Packet) -> Packet {
    let mut codec = Codec::new(version, 1 << 20);
    let mut buffer = BytesMut::new();
    codec.encode(packet.clone(), &mut buffer).expect("encode");
    let decoded = codec
        .decode(&mut buffer)
        .expect("decode")
        .expect("a whole packet");
    assert!(buffer.is_empty(), "bytes left over after {packet:?}");
    decoded
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_v311_packet_survives_a_round_trip(packet in any_packet(Version::V311)) {
        prop_assert_eq!(round_trip(Version::V311, &packet), packet);
    }

    #[test]
    fn every_v5_packet_survives_a_round_trip(packet in any_packet(Version::V5)) {
        prop_assert_eq!(round_trip(Version::V5, &packet), packet);
    }

    #[test]
    fn a_server_codec_learns_the_version_from_connect(packet in prop_oneof![connect(Version::V5), connect(Version::V311)]) {
        let Packet::Connect(connect) = &packet else { unreachable!() };
        let mut buffer = BytesMut::new();
        Codec::new(connect.version, 1 << 20).encode(packet.clone(), &mut buffer).unwrap();
        let mut server = Codec::server(1 << 20);
        prop_assert_eq!(server.decode(&mut buffer).unwrap(), Some(packet.clone()));
        prop_assert_eq!(server.version(), Some(connect.version));
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in vec(any::<u8>(), 0..256), v5 in any::<bool>()) {
        let version = if v5 { Version::V5 } else { Version::V311 };
        let mut buffer = BytesMut::from(&bytes[..]);
        let mut codec = Codec::new(version, 1 << 16);
        while let Ok(Some(_)) = codec.decode(&mut buffer) {}
        let mut buffer = BytesMut::from(&bytes[..]);
        let mut server = Codec::server(1 << 16);
        while let Ok(Some(_)) = server.decode(&mut buffer) {}
    }

    /// Streams of valid packets with corrupted bytes, cut anywhere: what a fuzzer finds first.
    #[test]
    fn corrupted_packet_streams_never_panic_the_decoder(
        v5 in any::<bool>(),
        packets in vec(any_packet(Version::V5), 1..6),
        packets_v3 in vec(any_packet(Version::V311), 1..6),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let version = if v5 { Version::V5 } else { Version::V311 };
        let packets = if v5 { packets } else { packets_v3 };
        let mut codec = Codec::new(version, 1 << 20);
        let mut buffer = BytesMut::new();
        for packet in packets {
            // Some packets of the model cannot be encoded in a version: skip those.
            let _ = codec.encode(packet, &mut buffer);
        }
        let mut bytes = buffer.to_vec();
        if !bytes.is_empty() {
            for (at, value) in flips {
                let at = at.index(bytes.len());
                bytes[at] ^= value;
            }
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        let _ = decode_stream(Some(version), 1 << 20, &bytes);
        let _ = decode_stream(None, 1 << 20, &bytes);
    }

    /// Whole streams decode back to the packets they were made of.
    #[test]
    fn a_stream_of_packets_decodes_packet_by_packet(packets in vec(any_packet(Version::V5), 1..6)) {
        let mut codec = Codec::new(Version::V5, 1 << 20);
        let mut buffer = BytesMut::new();
        let mut sent = Vec::new();
        for packet in packets {
            if codec.encode(packet.clone(), &mut buffer).is_ok() {
                sent.push(round_trip(Version::V5, &packet));
            }
        }
        let (decoded, error) = decode_stream(Some(Version::V5), 1 << 20, &buffer);
        prop_assert!(error.is_none(), "{error:?}");
        prop_assert_eq!(decoded, sent);
    }
}

#[test]
fn the_first_packet_must_be_connect() {
    let mut buffer = BytesMut::from(&b"\x30\x05\x00\x01a hi"[..]);
    assert!(matches!(
        Codec::server(1024).decode(&mut buffer),
        Err(CodecError::NotConnect)
    ));
}

#[test]
fn a_packet_over_the_maximum_is_refused_before_it_is_read() {
    let mut codec = Codec::new(Version::V5, 100);
    let mut buffer = BytesMut::from(&b"\x30\xff\x7f"[..]);
    let error = codec.decode(&mut buffer).unwrap_err();
    assert_eq!(error.reason(), reason::PACKET_TOO_LARGE);
}

// ---- encode_publish: outgoing PUBLISH from a borrowed message ----

const BOTH_VERSIONS: [Version; 2] = [Version::V311, Version::V5];

/// An owned delivery, since [`OutgoingPublish`] borrows.
#[derive(Clone, Debug)]
struct Delivery {
    message: Message,
    qos: QoS,
    retain: bool,
    dup: bool,
    packet_id: Option<NonZeroU16>,
    subscription_ids: Vec<NonZeroU32>,
    message_expiry_interval: Option<NonZeroU32>,
}

impl Delivery {
    fn of(message: Message) -> Self {
        Self {
            qos: message.qos,
            retain: message.retain,
            dup: false,
            packet_id: (message.qos != QoS::AtMostOnce).then(|| NonZeroU16::new(7).unwrap()),
            subscription_ids: Vec::new(),
            message_expiry_interval: message.properties.message_expiry_interval,
            message,
        }
    }

    fn outgoing(&self) -> OutgoingPublish<'_> {
        OutgoingPublish {
            message: &self.message,
            qos: self.qos,
            retain: self.retain,
            dup: self.dup,
            packet_id: self.packet_id,
            subscription_ids: &self.subscription_ids,
            message_expiry_interval: self.message_expiry_interval,
        }
    }

    /// The owned packet a client of `version` must receive: the delivery's QoS, retain flag
    /// and expiry; 3.1.1 without properties, subscription identifiers or expiry.
    fn expected(&self, version: Version) -> Packet {
        let v5 = version == Version::V5;
        let mut message = self.message.clone();
        message.qos = self.qos;
        message.retain = self.retain;
        message.properties = if v5 {
            MessageProperties {
                message_expiry_interval: self.message_expiry_interval,
                ..message.properties
            }
        } else {
            MessageProperties::default()
        };
        Packet::Publish(Box::new(Publish {
            dup: self.dup,
            packet_id: self.packet_id,
            topic_alias: None,
            subscription_ids: if v5 {
                self.subscription_ids.clone()
            } else {
                Vec::new()
            },
            message,
        }))
    }
}

fn non_zero_u32(range: std::ops::RangeInclusive<u32>) -> impl Strategy<Value = NonZeroU32> {
    range.prop_map(|n| NonZeroU32::new(n).unwrap())
}

/// Any delivery of any message: the message carries MQTT 5 properties in both versions, so
/// the 3.1.1 encoding is seen to drop them.
fn delivery() -> impl Strategy<Value = Delivery> {
    (
        message(Version::V5),
        qos(),
        any::<bool>(),
        any::<bool>(),
        packet_id(),
        vec(non_zero_u32(1..=268_435_455), 0..4),
        option::of(non_zero_u32(1..=u32::MAX)),
    )
        .prop_map(
            |(message, qos, retain, dup, id, subscription_ids, expiry)| Delivery {
                message,
                qos,
                retain,
                // MQTT 3.3.1.1: DUP is 0 in every QoS 0 PUBLISH.
                dup: dup && qos != QoS::AtMostOnce,
                packet_id: (qos != QoS::AtMostOnce).then_some(id),
                subscription_ids,
                message_expiry_interval: expiry,
            },
        )
}

fn encoded(version: Version, delivery: &Delivery) -> BytesMut {
    let mut buffer = BytesMut::new();
    encode_publish(version, &delivery.outgoing(), None, &mut buffer).expect("encode");
    buffer
}

/// The same delivery as an owned packet, encoded by `rmqtt-codec`'s own encoder.
fn encoded_by_the_crate(version: Version, delivery: &Delivery) -> BytesMut {
    let packet = delivery.expected(version);
    let mut buffer = BytesMut::new();
    match version {
        Version::V311 => v3::Codec::new(0)
            .encode(to_v3(packet).unwrap(), &mut buffer)
            .unwrap(),
        Version::V5 => v5::Codec::new(0, 0)
            .encode(to_v5(packet), &mut buffer)
            .unwrap(),
    }
    buffer
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The key check: our bytes read back through an independent decoder (the crate's).
    #[test]
    fn encode_publish_decodes_to_the_delivery_in_both_versions(delivery in delivery()) {
        for version in BOTH_VERSIONS {
            let bytes = encoded(version, &delivery);
            let (decoded, error) = decode_stream(Some(version), 1 << 20, &bytes);
            prop_assert!(error.is_none(), "{version:?}: {error:?}");
            prop_assert_eq!(decoded, vec![delivery.expected(version)], "{:?}", version);
        }
    }

    /// Same property order as the crate, so not just equivalent: the same bytes.
    #[test]
    fn encode_publish_writes_the_bytes_the_crate_writes(delivery in delivery()) {
        for version in BOTH_VERSIONS {
            prop_assert_eq!(
                encoded(version, &delivery),
                encoded_by_the_crate(version, &delivery),
                "{:?}",
                version
            );
        }
    }

    /// `Encoder<Packet>` sends PUBLISH through `encode_publish` too.
    #[test]
    fn the_packet_encoder_writes_publish_as_encode_publish_does(delivery in delivery()) {
        for version in BOTH_VERSIONS {
            let mut buffer = BytesMut::new();
            Codec::new(version, 1 << 20)
                .encode(delivery.expected(version), &mut buffer)
                .unwrap();
            prop_assert_eq!(buffer, encoded(version, &delivery), "{:?}", version);
        }
    }
}

/// A v5 message with every property, so the maximum counts them too.
fn full_message(payload_bytes: usize) -> Message {
    Message {
        topic: "devices/7/telemetry".into(),
        payload: Bytes::from(vec![b'x'; payload_bytes]),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: MessageProperties {
            payload_is_utf8: true,
            message_expiry_interval: NonZeroU32::new(60),
            content_type: Some("application/json".into()),
            response_topic: Some("devices/7/replies".into()),
            correlation_data: Some(Bytes::from_static(b"request-1")),
            user_properties: vec![("source".into(), "edge".into())],
        },
    }
}

#[test]
fn a_publish_exactly_at_the_clients_maximum_packet_size_is_sent() {
    let delivery = Delivery::of(full_message(100));
    let size = encoded(Version::V5, &delivery).len();
    let mut buffer = BytesMut::new();
    let max = NonZeroU32::new(size as u32);
    encode_publish(Version::V5, &delivery.outgoing(), max, &mut buffer).unwrap();
    assert_eq!(buffer.len(), size);
}

#[test]
fn a_publish_one_byte_over_the_clients_maximum_packet_size_is_refused_and_nothing_is_appended() {
    let delivery = Delivery::of(full_message(100));
    let size = encoded(Version::V5, &delivery).len() as u32;
    let mut buffer = BytesMut::from(&b"already queued"[..]);
    let max = NonZeroU32::new(size - 1);
    let error = encode_publish(Version::V5, &delivery.outgoing(), max, &mut buffer).unwrap_err();
    assert!(
        matches!(error, CodecError::TooLarge { size: s, max: m } if s == size && m == size - 1),
        "{error:?}"
    );
    assert_eq!(&buffer[..], b"already queued");
}

/// The rule of `encode_publish`, the whole packet against the maximum, is the codec's too.
/// (The crate compared the remaining length with the maximum less 5, dropping packets
/// within 3 bytes of the limit that MQTT 5 allows.)
#[test]
fn the_codec_refuses_a_publish_over_the_maximum_set_for_the_client_and_sends_one_at_it() {
    let delivery = Delivery::of(full_message(100));
    let packet = delivery.expected(Version::V5);
    let size = encoded(Version::V5, &delivery).len() as u32;
    let mut codec = Codec::new(Version::V5, 1 << 20);
    let mut buffer = BytesMut::new();

    codec.set_max_outgoing(size - 1);
    let error = codec.encode(packet.clone(), &mut buffer).unwrap_err();
    assert_eq!(error.reason(), reason::PACKET_TOO_LARGE);
    assert!(buffer.is_empty());

    codec.set_max_outgoing(size);
    codec.encode(packet, &mut buffer).unwrap();
    assert_eq!(buffer.len() as u32, size);
}

/// MQTT 5 §1.5.5: 127 and 128, 16,383 and 16,384, 2,097,151 and 2,097,152.
#[test]
fn the_remaining_length_takes_one_to_four_bytes_at_the_variable_byte_integer_boundaries() {
    let boundaries: [(usize, &[u8]); 6] = [
        (127, &[0x7F]),
        (128, &[0x80, 0x01]),
        (16_383, &[0xFF, 0x7F]),
        (16_384, &[0x80, 0x80, 0x01]),
        (2_097_151, &[0xFF, 0xFF, 0x7F]),
        (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
    ];
    for version in BOTH_VERSIONS {
        // QoS 0, topic "t": 3 bytes, and in MQTT 5 one byte of (empty) properties length.
        let overhead = if version == Version::V5 { 4 } else { 3 };
        for (remaining, length_bytes) in boundaries {
            let mut message = full_message(remaining - overhead);
            message.topic = "t".into();
            message.qos = QoS::AtMostOnce;
            message.properties = MessageProperties::default();
            let delivery = Delivery::of(message);

            let bytes = encoded(version, &delivery);
            assert_eq!(
                &bytes[1..1 + length_bytes.len()],
                length_bytes,
                "{version:?}"
            );
            assert_eq!(bytes.len(), 1 + length_bytes.len() + remaining);
            assert_eq!(bytes, encoded_by_the_crate(version, &delivery));
            let (decoded, error) = decode_stream(Some(version), 1 << 22, &bytes);
            assert!(error.is_none(), "{error:?}");
            assert_eq!(decoded, vec![delivery.expected(version)]);
        }
    }
}

#[test]
fn a_string_over_65535_bytes_is_refused_and_nothing_is_appended() {
    let mut long_topic = full_message(10);
    long_topic.topic = "t".repeat(65_536).into();
    let mut long_user_property = full_message(10);
    long_user_property.properties.user_properties = vec![("k".into(), "v".repeat(65_536))];
    for (version, message) in [
        (Version::V311, long_topic.clone()),
        (Version::V5, long_topic),
        (Version::V5, long_user_property),
    ] {
        let mut buffer = BytesMut::new();
        let error = encode_publish(
            version,
            &Delivery::of(message).outgoing(),
            None,
            &mut buffer,
        )
        .unwrap_err();
        assert!(matches!(error, CodecError::Encode(_)), "{error:?}");
        assert!(buffer.is_empty());
    }
}

#[test]
fn a_packet_id_is_present_exactly_when_qos_is_above_zero() {
    let mut qos0_with_id = Delivery::of(full_message(10));
    qos0_with_id.qos = QoS::AtMostOnce;
    let mut qos1_without_id = Delivery::of(full_message(10));
    qos1_without_id.packet_id = None;
    for delivery in [qos0_with_id, qos1_without_id] {
        let mut buffer = BytesMut::new();
        let error =
            encode_publish(Version::V5, &delivery.outgoing(), None, &mut buffer).unwrap_err();
        assert!(matches!(error, CodecError::Encode(_)), "{error:?}");
        assert!(buffer.is_empty());
    }
}

/// The variable byte integer ends at 268,435,455; the crate's encoder panics past it.
#[test]
fn a_subscription_identifier_over_268435455_is_refused() {
    let mut delivery = Delivery::of(full_message(10));
    delivery.subscription_ids = vec![NonZeroU32::new(268_435_456).unwrap()];
    let mut buffer = BytesMut::new();
    let error = encode_publish(Version::V5, &delivery.outgoing(), None, &mut buffer).unwrap_err();
    assert!(matches!(error, CodecError::Encode(_)), "{error:?}");
    assert!(buffer.is_empty());
}

/// What the crate alone makes of `bytes` (the decoder before `short_acknowledgement`).
fn decoded_by_the_crate(version: Version, bytes: &[u8]) -> Result<Option<Packet>, String> {
    let mut src = BytesMut::from(bytes);
    match version {
        Version::V311 => v3::Codec::new(1 << 20)
            .decode(&mut src)
            .map(|p| p.map(|(packet, _)| from_v3(packet)))
            .map_err(|e| e.to_string()),
        Version::V5 => v5::Codec::new(1 << 20, 0)
            .decode(&mut src)
            .map(|p| p.map(|(packet, _)| from_v5(packet)))
            .map_err(|e| e.to_string()),
    }
}

#[test]
fn four_byte_frames_decode_as_the_crate_decodes_them() {
    // Every first byte, the interesting packet ids and lengths: the fast path for short
    // acknowledgements must agree with the crate wherever it answers, and leave the rest
    // (other packets, packet id 0, other lengths) to it.
    for version in [Version::V311, Version::V5] {
        for first in 0..=u8::MAX {
            for length in [0u8, 2, 3] {
                for [high, low] in [[0u8, 0], [0, 1], [0x12, 0x34], [0xFF, 0xFF]] {
                    let frame = [first, length, high, low];
                    let mut src = BytesMut::from(&frame[..]);
                    let ours = match short_acknowledgement(&mut src) {
                        Some(packet) => {
                            assert!(src.is_empty(), "{frame:02X?}: the frame is consumed");
                            packet
                        }
                        None => {
                            assert_eq!(src.len(), 4, "{frame:02X?}: untouched when declined");
                            continue;
                        }
                    };
                    assert_eq!(
                        decoded_by_the_crate(version, &frame),
                        Ok(Some(ours)),
                        "{version:?} {frame:02X?}"
                    );
                }
            }
        }
    }
}

#[test]
fn a_short_acknowledgement_is_read_through_the_codec_between_other_packets() {
    let mut codec = Codec::new(Version::V5, 1 << 20);
    let mut src = BytesMut::from(&[0x40, 2, 0, 7, 0xC0, 0, 0x70, 2, 1, 0][..]);
    let ack = |id| simple_ack(NonZeroU16::new(id).unwrap());
    assert_eq!(
        codec.decode(&mut src).unwrap(),
        Some(Packet::PubAck(ack(7)))
    );
    assert_eq!(codec.decode(&mut src).unwrap(), Some(Packet::PingReq));
    assert_eq!(
        codec.decode(&mut src).unwrap(),
        Some(Packet::PubComp(ack(256)))
    );
    assert_eq!(codec.decode(&mut src).unwrap(), None);
}
