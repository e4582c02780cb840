//! Graceful shutdown: on SIGTERM every MQTT 5 client gets DISCONNECT 0x8B (server shutting
//! down) before its socket closes, 3.1.1 clients are just closed, and the final state is
//! written before the process exits.

mod support;

use gridline_dataplane::mqtt::codec::{Packet, Version, reason};
use std::time::Duration;
use support::Workspace;
use support::mqtt::{RawClient, access, connect_packet, namespace};

fn workspace() -> Workspace {
    let workspace = Workspace::new();
    workspace.write("namespace.yaml", &namespace("dev"));
    workspace.write("access.yaml", &access("dev"));
    workspace
}

#[tokio::test]
async fn on_sigterm_mqtt5_clients_get_disconnect_0x8b_and_311_clients_are_closed() {
    let workspace = workspace();
    let mut dataplane = workspace.start(&[]);
    let addr = dataplane.mqtt_addr();
    let (mut v5, ack) =
        RawClient::connect(addr, connect_packet(Version::V5, "v5", "dashboard")).await;
    assert_eq!(ack.reason, 0);
    let (mut v311, ack) =
        RawClient::connect(addr, connect_packet(Version::V311, "v311", "dashboard")).await;
    assert_eq!(ack.reason, 0);

    let status = dataplane.terminate();
    assert!(status.success(), "{status:?}\n{}", dataplane.logs());
    match v5.next(Duration::from_secs(5)).await {
        Some(Packet::Disconnect(disconnect)) => {
            assert_eq!(
                disconnect.reason,
                reason::SERVER_SHUTTING_DOWN,
                "{disconnect:?}"
            );
        }
        other => panic!(
            "expected DISCONNECT 0x8B, got {other:?}\n{}",
            dataplane.logs()
        ),
    }
    assert!(
        v5.next(Duration::from_secs(5)).await.is_none(),
        "then closed"
    );
    assert!(
        v311.next(Duration::from_secs(5)).await.is_none(),
        "3.1.1: closed"
    );
}

#[tokio::test]
async fn what_was_acknowledged_just_before_sigterm_is_in_the_final_state() {
    let workspace = workspace();
    let mut dataplane = workspace.start(&[]);
    let addr = dataplane.mqtt_addr();
    let mut keeper = connect_packet(Version::V5, "keeper", "dashboard");
    keeper.session_expiry_interval = 3600;
    let (mut subscriber, _) = RawClient::connect(addr, keeper.clone()).await;
    assert_eq!(
        subscriber.subscribe(1, None, &[("lab/last", false)]).await,
        [1]
    );
    drop(subscriber);
    let (mut publisher, _) =
        RawClient::connect(addr, connect_packet(Version::V5, "publisher", "sensor-1")).await;
    // Acknowledged, then SIGTERM at once: well within the persister's 200 ms interval, so
    // only the final write can have kept it.
    assert_eq!(
        publisher.publish(1, "lab/last", "last words", None).await,
        Some(0)
    );
    assert!(dataplane.terminate().success(), "{}", dataplane.logs());

    let dataplane = workspace.start(&[]);
    let addr = dataplane.mqtt_addr();
    keeper.clean_start = false;
    let (mut subscriber, ack) = RawClient::connect(addr, keeper).await;
    assert!(ack.session_present, "{}", dataplane.logs());
    let publish = subscriber.next_publish(Duration::from_secs(5)).await;
    let publish = publish.unwrap_or_else(|| panic!("no message; logs:\n{}", dataplane.logs()));
    assert_eq!(
        (&*publish.message.topic, &publish.message.payload[..]),
        ("lab/last", &b"last words"[..])
    );
}

#[test]
fn on_sigterm_paho_mqtt_reads_the_disconnect_reason_0x8b() {
    let workspace = workspace();
    let mut dataplane = workspace.start(&[]);
    let addr = dataplane.mqtt_addr();
    support::paho::run_phase_with(&mut dataplane, addr, "shutdown", "CONNECTED", |dataplane| {
        assert!(dataplane.terminate().success(), "{}", dataplane.logs());
    });
}

#[tokio::test]
async fn on_sigterm_a_websocket_client_on_the_http_listener_gets_disconnect_0x8b() {
    use futures::{SinkExt, StreamExt};
    use gridline_dataplane::mqtt::codec::Codec;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_util::codec::{Decoder, Encoder};

    let workspace = Workspace::new();
    workspace.write("namespace.yaml", &namespace("dev"));
    workspace.write("access.yaml", &access("dev"));
    let mut dataplane = workspace.start(&[]);
    dataplane.mqtt_addr();
    let mut request = format!("ws://{}/mqtt", dataplane.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let mut codec = Codec::new(Version::V5, 1 << 20);
    let mut bytes = bytes::BytesMut::new();
    let connect = connect_packet(Version::V5, "over-ws", "dashboard");
    codec
        .encode(Packet::Connect(Box::new(connect)), &mut bytes)
        .unwrap();
    socket
        .send(Message::binary(bytes.split().freeze()))
        .await
        .unwrap();

    let mut next = async || loop {
        if let Some(packet) = codec.decode(&mut bytes).unwrap() {
            return Some(packet);
        }
        match tokio::time::timeout(Duration::from_secs(5), socket.next()).await {
            Ok(Some(Ok(Message::Binary(data)))) => bytes.extend_from_slice(&data),
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    };
    assert!(matches!(next().await, Some(Packet::ConnAck(a)) if a.reason == 0));
    // The process exits without this client answering the WebSocket Close (the test is
    // waiting for the exit): the shutdown grace bounds that wait.
    assert!(dataplane.terminate().success(), "{}", dataplane.logs());
    match next().await {
        Some(Packet::Disconnect(disconnect)) => {
            assert_eq!(disconnect.reason, reason::SERVER_SHUTTING_DOWN)
        }
        other => panic!(
            "expected DISCONNECT 0x8B, got {other:?}\n{}",
            dataplane.logs()
        ),
    }
}
