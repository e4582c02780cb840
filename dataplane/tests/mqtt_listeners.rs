//! Listeners follow the served Snapshot in local mode: enabling one in the manifests opens it
//! without a restart, disabling it closes its socket and ends its connections (MQTT 5:
//! DISCONNECT 0x8B; 3.1.1: closed).

mod support;

use gridline_crds::types::namespace::TlsVersion;
use gridline_dataplane::mqtt::codec::{Packet, Version, reason};
use std::time::Duration;
use support::Workspace;
use support::mqtt::{
    RawClient, TestPki, access, connect_packet, namespace_manifest, tls_namespace_manifest,
};
use support::wss::{OfferedCertificate, tls_connect};

/// The test Namespace with the plaintext listener on or off.
fn with_plaintext(enabled: bool) -> String {
    namespace_manifest("dev")
        .plaintext_listener(|l| l.enabled = enabled)
        .yaml()
}

/// Until a TCP connection to `addr` is refused (up to 5 s).
async fn refused(addr: std::net::SocketAddr) -> bool {
    support::poll_until(Duration::from_secs(5), || async {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await
    .is_some()
}

#[tokio::test]
async fn the_plaintext_listener_opens_and_closes_as_the_namespace_enables_and_disables_it() {
    let workspace = Workspace::new();
    workspace.write("namespace.yaml", &with_plaintext(false));
    workspace.write("access.yaml", &access("dev"));
    let dataplane = workspace.start(&[]);
    dataplane.wait_ready().await;

    workspace.write("namespace.yaml", &with_plaintext(true));
    let addr = dataplane.mqtt_addr();
    let (mut v5, ack) =
        RawClient::connect(addr, connect_packet(Version::V5, "v5", "dashboard")).await;
    assert_eq!(ack.reason, 0);
    let (mut v311, _) =
        RawClient::connect(addr, connect_packet(Version::V311, "v311", "dashboard")).await;

    workspace.write("namespace.yaml", &with_plaintext(false));
    match v5.next(Duration::from_secs(5)).await {
        Some(Packet::Disconnect(disconnect)) => {
            assert_eq!(disconnect.reason, reason::SERVER_SHUTTING_DOWN)
        }
        other => panic!(
            "expected DISCONNECT 0x8B, got {other:?}\n{}",
            dataplane.logs()
        ),
    }
    assert!(v311.next(Duration::from_secs(5)).await.is_none(), "closed");
    assert!(
        refused(addr).await,
        "the socket is closed\n{}",
        dataplane.logs()
    );

    workspace.write("namespace.yaml", &with_plaintext(true));
    let addr = dataplane.mqtt_addr();
    let (_, ack) = RawClient::connect(addr, connect_packet(Version::V5, "back", "dashboard")).await;
    assert_eq!(ack.reason, 0, "open again");
}

#[tokio::test]
async fn the_tls_listener_opens_when_the_namespace_enables_it_after_start() {
    let pki = TestPki::new();
    let workspace = Workspace::new();
    let tls_on = tls_namespace_manifest("dev", "broker-tls", TlsVersion::Tls12);
    let tls_off = tls_on.clone().mqtt_tls(false).yaml();
    let tls_on = tls_on.yaml();
    workspace.write("namespace.yaml", &tls_off);
    workspace.write("secret.yaml", &pki.secret("broker-tls"));
    workspace.write("access.yaml", &access("dev"));
    let dataplane = workspace.start(&[]);
    dataplane.mqtt_addr(); // the first Snapshot is served, without TLS

    workspace.write("namespace.yaml", &tls_on);
    let addr = dataplane.mqtts_addr();
    let handshake = tls_connect(addr, &pki.ca_pem, OfferedCertificate::new(None)).await;
    assert!(handshake.is_ok(), "{handshake:?}");

    workspace.write("namespace.yaml", &tls_off);
    assert!(
        refused(addr).await,
        "the socket is closed\n{}",
        dataplane.logs()
    );
}
