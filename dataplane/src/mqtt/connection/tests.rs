//! The connection on tokio's paused clock: keep-alive, writes that stall, topic aliases, the
//! message rate, and the idle task's size.

use super::established::{Acknowledged, Conn, TOPIC_ALIAS_MAXIMUM, WRITE_STALL_WITHOUT_KEEP_ALIVE};
use super::handshake::{Accepted, attach, establish};
use super::outbound::apply_acks;
use super::{Transport, handle};
use crate::mqtt::authenticate::{Authenticated, Method};
use crate::mqtt::broker::{Broker, Limits};
use crate::mqtt::codec::{Codec, Connect, Message, Packet, Publish, QoS, Version, reason};
use crate::mqtt::limits::NamespaceLimits;
use crate::mqtt::metrics::MqttMetrics;
use crate::mqtt::session::{Delivery, Outbound, Session};
use crate::snapshot::SharedSnapshot;
use futures::{SinkExt, StreamExt};
use gridline_crds::model::Snapshot;
use std::num::NonZeroU16;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::codec::Framed;

/// What the development identity authenticates: the name, without a token or certificate.
pub(super) fn development(authentication_name: &str) -> Authenticated {
    Authenticated {
        authentication_name: authentication_name.into(),
        method: Method::Development,
        authentication_method: None,
        token_expiry: None,
    }
}

/// Idle connections are most of a broker's memory (mqtt/README.md "Idle connections"):
/// tokio allocates each connection's task as its future plus about 100 bytes, in steps of
/// 128. What the future holds while the connection waits must stay small; a field or a
/// select! branch that grows it shows up here first.
#[tokio::test]
async fn a_plaintext_connection_task_stays_within_its_memory_budget() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let _client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    let metrics = MqttMetrics::register(&prometheus::Registry::new()).unwrap();
    let broker = Arc::new(Broker::new(
        SharedSnapshot::new(),
        metrics,
        Limits::default(),
    ));
    let future = handle(server, broker, Transport::Plaintext);
    let size = std::mem::size_of_val(&future);
    println!("connection future: {size} bytes");
    assert!(size <= 1_472, "an idle connection's future is {size} bytes");
}

#[test]
fn acknowledgements_are_applied_in_one_go_and_a_pubrec_gets_its_pubrel() {
    let mut state = crate::mqtt::session::SessionState::default();
    let message = |qos| {
        Delivery::of(Message {
            topic: "t".into(),
            payload: bytes::Bytes::from_static(b"x"),
            qos,
            retain: false,
            properties: Default::default(),
        })
    };
    state
        .inflight
        .push(4, Outbound::AwaitingPubAck(message(QoS::AtLeastOnce)));
    state
        .inflight
        .push(5, Outbound::AwaitingPubRec(message(QoS::ExactlyOnce)));
    state
        .inflight
        .push(6, Outbound::AwaitingPubRec(message(QoS::ExactlyOnce)));
    let mut acks = vec![
        Acknowledged::Ack(4),
        Acknowledged::Received(5, false),
        Acknowledged::Received(6, true),
    ];
    let mut buffer = bytes::BytesMut::new();
    apply_acks(&mut state, &mut acks, &mut buffer);
    assert!(acks.is_empty());
    assert_eq!(&buffer[..], &[0x62, 0x02, 0x00, 0x05], "PUBREL for 5 only");
    let left: Vec<(u16, &Outbound)> = state.inflight.iter().collect();
    assert_eq!(left, vec![(5, &Outbound::AwaitingPubComp)]);
    let (packets, error) = crate::mqtt::codec::decode_stream(Some(Version::V5), 1024, &buffer);
    assert!(error.is_none());
    assert!(
        matches!(&packets[..], [Packet::PubRel(ack)] if ack.packet_id.get() == 5 && ack.reason == 0)
    );
}

fn connect(keep_alive: u16) -> Connect {
    Connect {
        version: Version::V5,
        client_id: "c1".into(),
        clean_start: true,
        keep_alive,
        username: Some("c1".into()),
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

/// A connection past the authentication step, and the client's end of the pipe.
fn connected(keep_alive: u16) -> (Conn<tokio::io::DuplexStream>, tokio::task::JoinHandle<()>) {
    connected_with(keep_alive, NamespaceLimits::of(&Snapshot::default()))
}

fn connected_with(
    keep_alive: u16,
    limits: NamespaceLimits,
) -> (Conn<tokio::io::DuplexStream>, tokio::task::JoinHandle<()>) {
    let metrics = MqttMetrics::register(&prometheus::Registry::new()).unwrap();
    let broker = Arc::new(Broker::new(
        SharedSnapshot::new(),
        metrics,
        Limits::default(),
    ));
    let (client, server) = tokio::io::duplex(64 * 1024);
    let server = Framed::new(server, Codec::new(Version::V5, 1 << 20));
    let task = tokio::spawn(async move {
        let connect = connect(keep_alive);
        let attached = attach(&broker, &connect, "c1", limits, Default::default()).unwrap();
        let Accepted {
            mut connection,
            connack,
        } = establish(
            server,
            broker,
            connect,
            development("c1"),
            Transport::Plaintext,
            attached,
            limits,
        );
        let end = connection.run(connack).await;
        connection.finish(end).await;
    });
    (Framed::new(client, Codec::new(Version::V5, 1 << 20)), task)
}

/// A connection whose client's end of the pipe holds only `pipe_bytes` unread, with its
/// session and broker, so that messages can be queued to it as the router would.
fn connected_through(
    keep_alive: u16,
    pipe_bytes: usize,
) -> (
    Conn<tokio::io::DuplexStream>,
    tokio::task::JoinHandle<()>,
    Arc<Session>,
    Arc<Broker>,
) {
    connected_through_as(Version::V5, keep_alive, pipe_bytes)
}

fn connected_through_as(
    version: Version,
    keep_alive: u16,
    pipe_bytes: usize,
) -> (
    Conn<tokio::io::DuplexStream>,
    tokio::task::JoinHandle<()>,
    Arc<Session>,
    Arc<Broker>,
) {
    let metrics = MqttMetrics::register(&prometheus::Registry::new()).unwrap();
    let broker = Arc::new(Broker::new(
        SharedSnapshot::new(),
        metrics,
        Limits::default(),
    ));
    let limits = NamespaceLimits::of(&Snapshot::default());
    let (client, server) = tokio::io::duplex(pipe_bytes);
    let server = Framed::new(server, Codec::new(version, 1 << 20));
    let connect = Connect {
        version,
        ..connect(keep_alive)
    };
    let attached = attach(&broker, &connect, "c1", limits, Default::default()).unwrap();
    let session = attached.0.session.clone();
    let task = tokio::spawn({
        let broker = broker.clone();
        async move {
            let Accepted {
                mut connection,
                connack,
            } = establish(
                server,
                broker,
                connect,
                development("c1"),
                Transport::Plaintext,
                attached,
                limits,
            );
            let end = connection.run(connack).await;
            connection.finish(end).await;
        }
    });
    let client = Framed::new(client, Codec::new(version, 1 << 20));
    (client, task, session, broker)
}

/// Queue `count` QoS 0 messages of 1 KiB for `session`, as the router would.
fn queue_messages(session: &Session, broker: &Broker, count: usize) {
    for _ in 0..count {
        session.enqueue(
            Message {
                topic: "t".into(),
                payload: bytes::Bytes::from(vec![b'x'; 1024]),
                qos: QoS::AtMostOnce,
                retain: false,
                properties: Default::default(),
            },
            broker.limits.queue,
            &broker.metrics,
        );
    }
}

fn disconnections(broker: &Broker, reason: &str) -> u64 {
    broker
        .metrics
        .disconnections
        .with_label_values(&[reason])
        .get()
}

#[tokio::test(start_paused = true)]
async fn a_client_that_reads_nothing_is_closed_after_one_and_a_half_keep_alives_though_it_pings() {
    let (mut client, task, session, broker) = connected_through(10, 4096);
    assert!(matches!(client.next().await, Some(Ok(Packet::ConnAck(_)))));
    // More than the pipe holds: the connection's writes stop being taken at once.
    queue_messages(&session, &broker, 200);
    tokio::time::sleep(Duration::from_millis(10)).await;
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_secs(5)).await;
        client.send(Packet::PingReq).await.unwrap();
    }
    // 14 s into the stall: its pings are read, so no keep-alive timeout.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!task.is_finished(), "closed before the write deadline");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(task.is_finished(), "still open 16 s into the stall");
    task.await.unwrap();
    assert_eq!(disconnections(&broker, "SessionOverflow"), 1);
    assert_eq!(
        disconnections(&broker, "ConnectionLost"),
        0,
        "not a keep-alive timeout"
    );
}

#[tokio::test(start_paused = true)]
async fn a_client_whose_socket_drains_slowly_stays_connected_while_it_pings() {
    use tokio::io::AsyncReadExt;
    let (mut client, task, session, broker) = connected_through(10, 4096);
    assert!(matches!(client.next().await, Some(Ok(Packet::ConnAck(_)))));
    queue_messages(&session, &broker, 200);
    let mut sip = [0u8; 512];
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_secs(5)).await;
        // Raw bytes: what the socket takes is progress, whatever they are.
        let read = client.get_mut().read(&mut sip).await.unwrap();
        assert!(read > 0);
        client.send(Packet::PingReq).await.unwrap();
    }
    assert!(!task.is_finished(), "closed after 60 s of slow progress");
    assert_eq!(disconnections(&broker, "SessionOverflow"), 0);
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_and_pinging_is_closed_within_one_and_a_half_keep_alives() {
    let (mut client, task, session, broker) = connected_through(10, 4096);
    assert!(matches!(client.next().await, Some(Ok(Packet::ConnAck(_)))));
    let start = Instant::now();
    queue_messages(&session, &broker, 200);
    task.await.unwrap();
    let elapsed = start.elapsed().as_secs();
    assert_eq!(elapsed, 15, "closed {elapsed} s after it went quiet");
    drop(client);
}

#[tokio::test(start_paused = true)]
async fn without_a_keep_alive_a_client_that_reads_nothing_is_closed_after_sixty_seconds() {
    // 3.1.1 keeps a keep-alive of 0 (MQTT 5 is granted the maximum instead).
    let (mut client, task, session, broker) = connected_through_as(Version::V311, 0, 4096);
    assert!(matches!(client.next().await, Some(Ok(Packet::ConnAck(_)))));
    let start = Instant::now();
    queue_messages(&session, &broker, 200);
    task.await.unwrap();
    assert_eq!(start.elapsed(), WRITE_STALL_WITHOUT_KEEP_ALIVE);
    assert_eq!(disconnections(&broker, "SessionOverflow"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_is_disconnected_after_one_and_a_half_keep_alives() {
    let (mut client, task) = connected(10);
    assert!(matches!(client.next().await, Some(Ok(Packet::ConnAck(a))) if a.reason == 0));
    let start = Instant::now();
    let packet = client.next().await;
    assert!(
        matches!(packet, Some(Ok(Packet::Disconnect(ref d))) if d.reason == reason::KEEP_ALIVE_TIMEOUT),
        "{packet:?}"
    );
    assert_eq!(start.elapsed().as_secs(), 15);
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn pings_keep_a_connection_alive() {
    let (mut client, _task) = connected(10);
    client.next().await.unwrap().unwrap();
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(12)).await;
        client.send(Packet::PingReq).await.unwrap();
        assert!(matches!(client.next().await, Some(Ok(Packet::PingResp))));
    }
}

#[tokio::test(start_paused = true)]
async fn a_keep_alive_over_the_limit_is_lowered_in_connack() {
    let (mut client, _task) = connected(u16::MAX);
    let Some(Ok(Packet::ConnAck(ack))) = client.next().await else {
        panic!()
    };
    assert_eq!(ack.server_keep_alive, Some(1160));
}

fn publish(topic: &str, alias: Option<u16>, packet_id: u16) -> Packet {
    Packet::Publish(Box::new(Publish {
        dup: false,
        packet_id: NonZeroU16::new(packet_id),
        topic_alias: alias.and_then(NonZeroU16::new),
        subscription_ids: Vec::new(),
        message: Message {
            topic: topic.into(),
            payload: bytes::Bytes::from_static(b"x"),
            qos: if packet_id == 0 {
                QoS::AtMostOnce
            } else {
                QoS::AtLeastOnce
            },
            retain: false,
            properties: Default::default(),
        },
    }))
}

#[tokio::test(start_paused = true)]
async fn connack_grants_topic_aliases_and_announces_subscription_identifiers() {
    let (mut client, _task) = connected(60);
    let Some(Ok(Packet::ConnAck(ack))) = client.next().await else {
        panic!()
    };
    assert_eq!(ack.topic_alias_maximum, TOPIC_ALIAS_MAXIMUM);
}

#[tokio::test(start_paused = true)]
async fn a_topic_alias_over_the_maximum_is_disconnected_with_0x94() {
    let (mut client, task) = connected(60);
    client.next().await.unwrap().unwrap();
    client
        .send(publish("lab/a", Some(TOPIC_ALIAS_MAXIMUM + 1), 1))
        .await
        .unwrap();
    let packet = client.next().await;
    assert!(
        matches!(packet, Some(Ok(Packet::Disconnect(ref d))) if d.reason == reason::TOPIC_ALIAS_INVALID),
        "{packet:?}"
    );
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_alias_never_set_is_a_protocol_error_and_a_set_one_is_resolved() {
    let (mut client, task) = connected(60);
    client.next().await.unwrap().unwrap();
    client.send(publish("lab/a", Some(3), 1)).await.unwrap();
    assert!(matches!(client.next().await, Some(Ok(Packet::PubAck(_)))));
    client.send(publish("", Some(3), 2)).await.unwrap();
    let ack = client.next().await;
    assert!(
        matches!(ack, Some(Ok(Packet::PubAck(ref a))) if a.packet_id.get() == 2),
        "the alias resolves: {ack:?}"
    );
    client.send(publish("", Some(4), 3)).await.unwrap();
    let packet = client.next().await;
    assert!(
        matches!(packet, Some(Ok(Packet::Disconnect(ref d))) if d.reason == reason::PROTOCOL_ERROR),
        "{packet:?}"
    );
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn over_the_message_rate_reading_pauses_until_the_bucket_refills() {
    let mut limits = NamespaceLimits::of(&Snapshot::default());
    limits.messages_per_second = 5;
    let (mut client, _task) = connected_with(60, limits);
    client.next().await.unwrap().unwrap();
    let start = Instant::now();
    for id in 1..=20u16 {
        client.send(publish("lab/a", None, id)).await.unwrap();
    }
    for _ in 1..=20u16 {
        assert!(matches!(client.next().await, Some(Ok(Packet::PubAck(_)))));
    }
    // A burst of 5 tokens (the 6th message is read, then reading pauses), then one
    // message every 0.2 s: the 20th is read 14 × 0.2 s in.
    let elapsed = start.elapsed().as_secs_f64();
    assert!((2.7..3.0).contains(&elapsed), "{elapsed}");
}
