//! MQTT over WebSockets at `/mqtt` on the HTTP listener: a tokio-tungstenite client sending
//! raw MQTT frames, mosquitto on plaintext TCP on the other side.

mod support;

use futures::{SinkExt, StreamExt};
use gridline_dataplane::mqtt::codec::{Packet, QoS, Version};
use std::time::Duration;
use support::mqtt::{access, namespace_manifest, publish};
use support::packets;
use support::{Dataplane, Workspace};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn broker(websockets: bool) -> (Workspace, Dataplane) {
    let workspace = Workspace::new();
    let ns = namespace_manifest("dev").websockets(websockets);
    workspace.write("namespace.yaml", &ns.yaml());
    workspace.write("access.yaml", &access("dev"));
    let dataplane = workspace.start(&[]);
    (workspace, dataplane)
}

async fn open(dataplane: &Dataplane, subprotocol: Option<&str>) -> Result<Socket, String> {
    let mut request = format!("ws://{}/mqtt", dataplane.addr)
        .into_client_request()
        .unwrap();
    if let Some(protocol) = subprotocol {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
    }
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(socket, response)| {
            if subprotocol.is_some() {
                assert_eq!(
                    response.headers().get("Sec-WebSocket-Protocol").unwrap(),
                    "mqtt"
                );
            }
            socket
        })
        .map_err(|e| e.to_string())
}

/// The bytes of a CONNECT of `version` with `user` as username and client id.
fn connect(user: &str, version: Version) -> Vec<u8> {
    let connect = packets::connect(version, user, user);
    packets::encode(version, Packet::Connect(Box::new(connect)))
}

/// The bytes of a SUBSCRIBE (packet id 1, QoS 0) to `filter`.
fn subscribe(filter: &str, version: Version) -> Vec<u8> {
    packets::encode(version, packets::subscribe(1, &[(filter, QoS::AtMostOnce)]))
}

/// The next binary message's bytes (within 5 s).
async fn next_bytes(socket: &mut Socket) -> Vec<u8> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("a message within 5 s")
            .expect("the socket open")
            .expect("no socket error");
        if let Message::Binary(bytes) = message {
            return bytes.to_vec();
        }
    }
}

#[tokio::test]
async fn a_websocket_client_of_either_version_receives_what_a_tcp_client_publishes() {
    let (_w, dataplane) = broker(true);
    let tcp = dataplane.mqtt_addr();
    for (level, version) in [(Version::V311, "mqttv311"), (Version::V5, "mqttv5")] {
        let mut socket = open(&dataplane, Some("mqtt")).await.unwrap();
        // The CONNECT split across two messages: the bridge carries a byte stream.
        let connect = connect("dashboard", level);
        let (first, second) = connect.split_at(5);
        socket.send(Message::binary(first.to_vec())).await.unwrap();
        socket.send(Message::binary(second.to_vec())).await.unwrap();
        let connack = next_bytes(&mut socket).await;
        assert_eq!(&connack[..1], &[0x20], "{version}: CONNACK");
        assert_eq!(connack[3], 0, "{version}: accepted ({connack:?})");
        socket
            .send(Message::binary(subscribe("devices/+/telemetry", level)))
            .await
            .unwrap();
        let suback = next_bytes(&mut socket).await;
        assert_eq!(suback[0], 0x90, "{version}: SUBACK {suback:?}");
        assert_eq!(*suback.last().unwrap(), 0, "{version}: granted QoS 0");
        let out = publish(
            tcp,
            version,
            "sensor-1",
            &["-t", "devices/sensor-1/telemetry", "-m", "over-ws"],
        );
        assert!(out.status.success(), "{out:?}");
        let packet = next_bytes(&mut socket).await;
        assert_eq!(packet[0] & 0xf0, 0x30, "{version}: PUBLISH {packet:?}");
        let text = String::from_utf8_lossy(&packet);
        assert!(text.contains("devices/sensor-1/telemetry"), "{text}");
        assert!(text.ends_with("over-ws"), "{text}");
        socket.close(None).await.unwrap();
    }
}

#[tokio::test]
async fn an_upgrade_without_the_mqtt_subprotocol_is_refused() {
    let (_w, dataplane) = broker(true);
    dataplane.mqtt_addr();
    let refused = open(&dataplane, None).await;
    assert!(refused.unwrap_err().contains("400"));
    let refused = open(&dataplane, Some("chat")).await;
    assert!(refused.unwrap_err().contains("400"));
}

#[tokio::test]
async fn websockets_off_in_the_namespace_means_no_mqtt_path() {
    let (_w, dataplane) = broker(false);
    dataplane.mqtt_addr();
    let refused = open(&dataplane, Some("mqtt")).await;
    assert!(refused.unwrap_err().contains("404"));
}
