//! MQTT over WebSockets at `/mqtt` on the HTTP listener: a tokio-tungstenite client sending
//! raw MQTT frames, mosquitto on plaintext TCP on the other side.

mod support;

use futures::{SinkExt, StreamExt};
use std::time::Duration;
use support::mqtt::{access, namespace, publish};
use support::{Dataplane, Workspace};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn broker(websockets: bool) -> (Workspace, Dataplane) {
    let workspace = Workspace::new();
    let mut ns = namespace("dev");
    if !websockets {
        ns = ns.replacen("  listeners:\n", "  listeners:\n    websockets: false\n", 1);
    }
    workspace.write("namespace.yaml", &ns);
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

/// A raw CONNECT with `user` as username and client id: 3.1.1 (level 4) or 5 (level 5).
fn connect(user: &str, level: u8) -> Vec<u8> {
    let mut body = b"\x00\x04MQTT".to_vec();
    body.extend_from_slice(&[level, 0x82, 0x00, 0x3c]);
    if level == 5 {
        body.push(0); // no properties
    }
    for field in [user, user] {
        body.extend_from_slice(&(field.len() as u16).to_be_bytes());
        body.extend_from_slice(field.as_bytes());
    }
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend_from_slice(&body);
    packet
}

/// SUBSCRIBE (packet id 1, QoS 0) to `filter`.
fn subscribe(filter: &str, level: u8) -> Vec<u8> {
    let mut body = vec![0x00, 0x01];
    if level == 5 {
        body.push(0);
    }
    body.extend_from_slice(&(filter.len() as u16).to_be_bytes());
    body.extend_from_slice(filter.as_bytes());
    body.push(0);
    let mut packet = vec![0x82, body.len() as u8];
    packet.extend_from_slice(&body);
    packet
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
    for (level, version) in [(4u8, "mqttv311"), (5, "mqttv5")] {
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
