//! MQTT over WebSockets over TLS (Event Grid's 443): the WSS listener (`--wss-addr`), opened
//! when the Namespace enables `https` and `websockets`, driven by a tokio-tungstenite + rustls
//! client and by paho-mqtt (`transport="websockets"`, the test CA).

mod support;

use gridline_crds::types::namespace::TlsVersion;
use gridline_dataplane::mqtt::codec::{Packet, QoS, Version};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;
use support::mqtt::{RawClient, TestPki, access, connect_packet, message, tls_namespace_manifest};
use support::pki::{Ca, ClientCert, Identity};
use support::wss::{OfferedCertificate, WssClient};
use support::{Dataplane, Workspace, packets};

thread_local! {
    /// The CA the test Namespace trusts for client certificates: over TLS a client proves its
    /// name (SPEC §D; the development identity is for plaintext only). Per test thread, so
    /// one test's broker and clients share it.
    static CLIENT_CA: Ca = Ca::new("wss client CA");
}

/// A certificate naming `user` (subject CN), issued by the test Namespace's client CA.
fn client_identity(user: &str) -> Identity {
    CLIENT_CA.with(|ca| ca.issue(ClientCert::cn(user)))
}

/// The Namespace with its TLS certificate, the client CA and, when `https`, the HTTPS
/// listener (which carries WSS) on.
fn wss_namespace(https: bool) -> String {
    tls_namespace_manifest("dev", "broker-tls", TlsVersion::Tls12)
        .ca_certificate("client-ca", "client-ca")
        .https(https)
        .yaml()
}

fn wss_broker(https: bool) -> (Workspace, Dataplane, TestPki) {
    let pki = TestPki::new();
    let workspace = Workspace::new();
    workspace.write("namespace.yaml", &wss_namespace(https));
    workspace.write("secret.yaml", &pki.secret("broker-tls"));
    workspace.write(
        "client-ca.yaml",
        &CLIENT_CA.with(|ca| ca.secret("client-ca")),
    );
    workspace.write("access.yaml", &access("dev"));
    let dataplane = workspace.start(&[]);
    (workspace, dataplane, pki)
}

/// A WSS client connected as `user` with a certificate naming it; panics unless accepted.
async fn connected(addr: SocketAddr, pki: &TestPki, version: Version, user: &str) -> WssClient {
    let offered = OfferedCertificate::of(&client_identity(user));
    let mut client = WssClient::open(addr, &pki.ca_pem, offered, version)
        .await
        .unwrap();
    let id = format!("{user}-wss-{version:?}");
    client
        .send(Packet::Connect(Box::new(connect_packet(
            version, &id, user,
        ))))
        .await;
    match client.next(Duration::from_secs(5)).await {
        Some(Packet::ConnAck(ack)) => assert_eq!(ack.reason, 0, "{version:?}: {ack:?}"),
        other => panic!("{version:?}: expected CONNACK, got {other:?}"),
    }
    client
}

#[tokio::test]
async fn a_wss_client_of_either_version_exchanges_messages_with_a_tcp_client() {
    let (_w, dataplane, pki) = wss_broker(true);
    let wss = dataplane.wss_addr();
    let tcp = dataplane.mqtt_addr();
    for version in [Version::V311, Version::V5] {
        let mut over_wss = connected(wss, &pki, version, "dashboard").await;
        over_wss
            .send(packets::subscribe(1, &[("lab/wss/in", QoS::AtMostOnce)]))
            .await;
        let suback = over_wss.next(Duration::from_secs(5)).await;
        assert!(matches!(suback, Some(Packet::SubAck(_))), "{suback:?}");

        let (mut over_tcp, _) =
            RawClient::connect(tcp, connect_packet(version, "tcp-peer", "sensor-1")).await;
        assert_eq!(
            over_tcp.subscribe(1, None, &[("lab/wss/out", false)]).await,
            [1]
        );
        over_tcp.publish(0, "lab/wss/in", "to wss", None).await;
        match over_wss.next(Duration::from_secs(5)).await {
            Some(Packet::Publish(publish)) => {
                assert_eq!(&publish.message.payload[..], b"to wss", "{version:?}")
            }
            other => panic!("{version:?}: expected PUBLISH, got {other:?}"),
        }
        over_wss
            .send(packets::publish(
                0,
                message("lab/wss/out", "from wss", QoS::AtMostOnce),
            ))
            .await;
        let publish = over_tcp.next_publish(Duration::from_secs(5)).await;
        assert_eq!(
            publish.map(|p| p.message.payload),
            Some(bytes::Bytes::from_static(b"from wss")),
            "{version:?}"
        );
    }
}

#[tokio::test]
async fn the_wss_listener_asks_for_a_client_certificate_and_keeps_it_for_authentication() {
    let (_w, dataplane, pki) = wss_broker(true);
    let wss = dataplane.wss_addr();
    let offered = OfferedCertificate::new(Some("dashboard"));
    let mut client = WssClient::open(wss, &pki.ca_pem, offered.clone(), Version::V5)
        .await
        .unwrap();
    assert!(offered.requested.load(Ordering::SeqCst), "the server asked");
    client
        .send(Packet::Connect(Box::new(connect_packet(
            Version::V5,
            "with-certificate",
            "dashboard",
        ))))
        .await;
    // Kept on the connection for authentication at CONNECT, where X.509 judges it: a
    // self-signed certificate the Namespace's CA did not issue is refused.
    let ack = match client.next(Duration::from_secs(5)).await {
        Some(Packet::ConnAck(ack)) => ack,
        other => panic!("expected CONNACK, got {other:?}"),
    };
    assert_eq!(ack.reason, 0x86, "{ack:?}");
    let evidence = "listener=SecureWebSocket method=\"x509\"";
    let seen = support::poll_until(Duration::from_secs(5), || async {
        dataplane.logs().contains(evidence)
    })
    .await;
    assert!(
        seen.is_some(),
        "{ack:?}: no `{evidence}`\n{}",
        dataplane.logs()
    );
}

#[tokio::test]
async fn an_idle_socket_on_the_wss_listener_does_not_hold_up_others() {
    let (_w, dataplane, pki) = wss_broker(true);
    let wss = dataplane.wss_addr();
    // Never starts its TLS handshake: it waits in its own task, not in the accept loop.
    let _idle = tokio::net::TcpStream::connect(wss).await.unwrap();
    let started = std::time::Instant::now();
    connected(wss, &pki, Version::V5, "dashboard").await;
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn paho_mqtt_over_wss_with_the_test_ca_in_both_versions() {
    let (workspace, dataplane, pki) = wss_broker(true);
    let wss = dataplane.wss_addr();
    let mqtt = dataplane.mqtt_addr();
    // Outside the manifests folder: a PEM file is no manifest.
    let ca = workspace.data_dir().with_file_name("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let (cert, key) = client_identity("dashboard").write(&ca.with_file_name("pki"), "dashboard");
    let env = [
        ("GRIDLINE_WSS", wss.to_string()),
        ("GRIDLINE_CA", ca.display().to_string()),
        ("GRIDLINE_CERT_DASHBOARD", cert.display().to_string()),
        ("GRIDLINE_KEY_DASHBOARD", key.display().to_string()),
    ];
    support::paho::run_phase(&dataplane, mqtt, "wss", &env).await;
}

#[tokio::test]
async fn the_wss_listener_opens_and_closes_with_the_namespaces_https_listener() {
    let (workspace, dataplane, pki) = wss_broker(false);
    dataplane.mqtts_addr(); // the first Snapshot is served: TLS yes, WSS no
    workspace.write("namespace.yaml", &wss_namespace(true));
    let wss = dataplane.wss_addr();
    connected(wss, &pki, Version::V5, "dashboard").await;

    workspace.write("namespace.yaml", &wss_namespace(false));
    let closed = support::poll_until(Duration::from_secs(5), || async {
        tokio::net::TcpStream::connect(wss).await.is_err()
    })
    .await;
    assert!(
        closed.is_some(),
        "the WSS socket is closed\n{}",
        dataplane.logs()
    );
}

#[tokio::test]
async fn a_tls_client_that_never_asks_for_the_upgrade_is_closed_after_the_handshake_timeout() {
    use tokio::io::AsyncReadExt;
    let (_w, dataplane, pki) = wss_broker(true);
    let wss = dataplane.wss_addr();
    let mut stream = support::wss::tls_connect(wss, &pki.ca_pem, OfferedCertificate::new(None))
        .await
        .unwrap();
    // The handshake timeout is 10 s; the server ends the connection (EOF or a reset).
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(15), stream.read(&mut byte)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "{read:?}\n{}",
        dataplane.logs()
    );
}

#[tokio::test]
async fn a_half_sent_upgrade_request_does_not_hold_up_the_shutdown() {
    use tokio::io::AsyncWriteExt;
    let (workspace, mut dataplane, pki) = wss_broker(true);
    let wss = dataplane.wss_addr();
    let tcp = dataplane.mqtt_addr();
    let (mut client, _) =
        RawClient::connect(tcp, connect_packet(Version::V5, "v5", "sensor-1")).await;
    let mut stream = support::wss::tls_connect(wss, &pki.ca_pem, OfferedCertificate::new(None))
        .await
        .unwrap();
    // The request line and a header, not the blank line that ends the request.
    stream
        .write_all(b"GET /mqtt HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    stream.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut retained = message("lab/at-shutdown", "kept", QoS::AtLeastOnce);
    retained.retain = true;
    client.send(packets::publish(1, retained)).await;
    assert!(matches!(
        client.next(Duration::from_secs(5)).await,
        Some(Packet::PubAck(_))
    ));

    assert!(dataplane.terminate().success(), "{}", dataplane.logs());
    let packet = client.next(Duration::from_secs(1)).await;
    assert!(
        matches!(packet, Some(Packet::Disconnect(ref d)) if d.reason == 0x8B),
        "{packet:?}\n{}",
        dataplane.logs()
    );
    // The final state was written within the data plane's shutdown time.
    let dataplane = workspace.start(&[]);
    let (mut reader, _) = RawClient::connect(
        dataplane.mqtt_addr(),
        connect_packet(Version::V5, "reader", "dashboard"),
    )
    .await;
    assert_eq!(
        reader
            .subscribe(1, None, &[("lab/at-shutdown", false)])
            .await,
        [1]
    );
    let publish = reader.next_publish(Duration::from_secs(5)).await;
    assert_eq!(
        publish.map(|p| p.message.payload),
        Some(bytes::Bytes::from_static(b"kept")),
        "{}",
        dataplane.logs()
    );
}
