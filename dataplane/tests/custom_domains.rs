//! Custom domain names (`spec.customDomains`): every TLS listener (MQTT over TLS, HTTPS, and
//! so WSS) presents the certificate of the domain a client names in SNI, the Namespace's own
//! certificate to any other name, and picks up a renewed Secret without a restart.

mod support;

use gridline_crds::types::namespace::TlsVersion;
use std::net::SocketAddr;
use std::time::Duration;
use support::pki::Ca;
use support::tls_client;
use support::*;

const ORDERS: &str = "orders.gridline.test";
const DEVICES: &str = "devices.gridline.test";

/// A Namespace with MQTT over TLS and HTTPS on, its own certificate for `localhost`, and two
/// custom domains, each with its certificate, all from `ca`.
fn workspace(ca: &Ca) -> Workspace {
    let workspace = Workspace::new();
    let namespace = support::mqtt::tls_namespace_manifest("dev", "default-tls", TlsVersion::Tls12)
        .custom_domain(ORDERS, "orders-tls")
        .custom_domain(DEVICES, "devices-tls")
        .https(true);
    workspace.write("namespace.yaml", &namespace.yaml());
    workspace.write("access.yaml", &support::mqtt::access("dev"));
    workspace.write(
        "default-tls.yaml",
        &ca.issue_server(&["localhost"]).tls_secret("default-tls"),
    );
    workspace.write(
        "orders-tls.yaml",
        &ca.issue_server(&[ORDERS]).tls_secret("orders-tls"),
    );
    workspace.write(
        "devices-tls.yaml",
        &ca.issue_server(&[DEVICES]).tls_secret("devices-tls"),
    );
    workspace
}

/// The CN of the certificate presented at `addr` to a client naming `server_name`.
async fn presented(addr: SocketAddr, server_name: &str, ca: &Ca) -> String {
    let stream = tls_client::connect(addr, server_name, &[&ca.pem()])
        .await
        .unwrap_or_else(|e| panic!("TLS to {server_name}: {e}"));
    tls_client::server_common_name(&stream)
}

#[tokio::test]
async fn each_tls_listener_presents_the_certificate_of_the_domain_named_in_sni() {
    let ca = Ca::new("domains CA");
    let workspace = workspace(&ca);
    let dataplane = workspace.start(&[]);
    for (listener, addr) in [
        ("mqtts", dataplane.mqtts_addr()),
        ("https", dataplane.https_addr()),
    ] {
        assert_eq!(presented(addr, ORDERS, &ca).await, ORDERS, "{listener}");
        assert_eq!(presented(addr, DEVICES, &ca).await, DEVICES, "{listener}");
        // Any other name, and a client that names none, get the Namespace's certificate.
        assert_eq!(
            presented(addr, "localhost", &ca).await,
            "localhost",
            "{listener}"
        );
    }
}

#[tokio::test]
async fn a_domain_whose_secret_is_missing_falls_back_to_the_namespace_certificate() {
    let ca = Ca::new("domains CA");
    let workspace = workspace(&ca);
    std::fs::remove_file(workspace.manifests().join("devices-tls.yaml")).unwrap();
    let dataplane = workspace.start(&[]);
    let https = dataplane.https_addr();
    assert_eq!(presented(https, ORDERS, &ca).await, ORDERS);
    // The client asked for devices.…: it gets `localhost`, which it refuses (name mismatch).
    assert!(
        tls_client::connect(https, DEVICES, &[&ca.pem()])
            .await
            .is_err()
    );
    let fallback = {
        // A client that skips name checks sees which certificate came.
        let stream = tls_client::connect(https, "localhost", &[&ca.pem()])
            .await
            .unwrap();
        tls_client::server_common_name(&stream)
    };
    assert_eq!(fallback, "localhost");
}

#[tokio::test]
async fn a_renewed_domain_certificate_is_presented_without_a_restart() {
    let ca = Ca::new("domains CA");
    let renewed_ca = Ca::new("renewing CA");
    let workspace = workspace(&ca);
    let dataplane = workspace.start(&[]);
    let mqtts = dataplane.mqtts_addr();
    assert_eq!(presented(mqtts, ORDERS, &ca).await, ORDERS);
    // An MQTT client connected through the domain before the renewal stays connected.
    let before = tls_client::connect(mqtts, ORDERS, &[&ca.pem()])
        .await
        .unwrap();
    workspace.write(
        "orders-tls.yaml",
        &renewed_ca.issue_server(&[ORDERS]).tls_secret("orders-tls"),
    );
    let renewed = poll_until(Duration::from_secs(10), || async {
        tls_client::connect(mqtts, ORDERS, &[&renewed_ca.pem()])
            .await
            .is_ok()
    })
    .await;
    assert!(
        renewed.is_some(),
        "renewed certificate presented\n{}",
        dataplane.logs()
    );
    // The connection from before is still served: its CONNECT is answered (refused, as it
    // proves no identity, but answered).
    let connect = support::mqtt::connect_packet(
        gridline_dataplane::mqtt::codec::Version::V5,
        "before-renewal",
        "sensor-1",
    );
    let (_client, ack) = support::mqtt::RawClient::connect_over(Box::new(before), connect).await;
    assert_eq!(ack.reason, 0x8C, "{ack:?}");
}
