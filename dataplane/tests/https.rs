//! The HTTPS listener (`--https-addr`, Event Grid's 443): the whole Event Grid API over TLS
//! with the Namespace's certificate, and certificate rotation without dropping connections.

mod support;

use std::time::Duration;
use support::pki::{Ca, Identity};
use support::tls_client;
use support::*;

const KEY: &str = "https-test-key";

/// Namespace `dev` with keys and the certificate in Secret `server-tls`, HTTPS on or off; a
/// topic and a queue subscription.
fn namespace_documents(https: bool) -> String {
    documents(&[
        NamespaceManifest::local("dev")
            .sas_keys("keys")
            .tls_secret("server-tls")
            .https(https)
            .yaml(),
        sas_keys_secret("keys", KEY, "unused-second-key"),
        topic("orders", "dev", 1),
        queue_subscription("inbox", "orders"),
    ])
}

/// A Namespace with keys, a topic and a queue subscription, served over HTTPS with the
/// certificate in Secret `server-tls`.
fn https_workspace(certificate: &Identity) -> Workspace {
    let workspace = Workspace::new();
    workspace.write("namespace.yaml", &namespace_documents(true));
    workspace.write("server-tls.yaml", &certificate.tls_secret("server-tls"));
    workspace
}

fn https_client(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn event(id: &str) -> serde_json::Value {
    serde_json::json!({"specversion": "1.0", "id": id, "source": "/tests", "type": "test.https", "data": {"n": 1}})
}

#[tokio::test]
async fn publish_receive_and_acknowledge_work_over_https_with_only_the_test_ca_trusted() {
    let ca = Ca::new("https test CA");
    let workspace = https_workspace(&ca.issue_server(&["localhost", "127.0.0.1"]));
    let dataplane = workspace.start(&[]);
    let https = dataplane.https_addr();
    let base = format!("https://localhost:{}", https.port());
    let client = https_client(&ca.pem());

    let published = client
        .post(format!(
            "{base}/topics/orders:publish?api-version=2024-06-01"
        ))
        .header("Authorization", format!("SharedAccessKey {KEY}"))
        .header(
            "Content-Type",
            "application/cloudevents-batch+json; charset=utf-8",
        )
        .json(&serde_json::json!([event("over-tls")]))
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 200, "{}", dataplane.logs());

    let received: serde_json::Value = client
        .post(format!(
            "{base}/topics/orders/eventsubscriptions/inbox:receive?api-version=2024-06-01&maxWaitTime=10"
        ))
        .header("Authorization", format!("SharedAccessKey {KEY}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        received["value"][0]["event"]["id"], "over-tls",
        "{received}"
    );
    let token = received["value"][0]["brokerProperties"]["lockToken"].clone();
    let settled: serde_json::Value = client
        .post(format!(
            "{base}/topics/orders/eventsubscriptions/inbox:acknowledge?api-version=2024-06-01"
        ))
        .header("Authorization", format!("SharedAccessKey {KEY}"))
        .json(&serde_json::json!({"lockTokens": [token]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(settled["succeededLockTokens"][0], token, "{settled}");

    // Health is served there too; a client that does not trust the CA gets no answer.
    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let untrusting = https_client(&Ca::new("another CA").pem());
    assert!(
        untrusting
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn https_opens_and_closes_with_the_namespaces_listener_setting() {
    let ca = Ca::new("https test CA");
    let certificate = ca.issue_server(&["localhost"]);
    let workspace = https_workspace(&certificate);
    let dataplane = workspace.start(&[]);
    let https = dataplane.https_addr();
    workspace.write("namespace.yaml", &namespace_documents(false));
    let closed = poll_until(Duration::from_secs(10), || async {
        tokio::net::TcpStream::connect(https).await.is_err()
    })
    .await;
    assert!(closed.is_some(), "HTTPS closed\n{}", dataplane.logs());
    // Plain HTTP keeps serving.
    assert_eq!(dataplane.get("/healthz").await.0, 200);
}

#[tokio::test]
async fn a_rotated_certificate_reaches_new_handshakes_while_open_connections_carry_on() {
    let old_ca = Ca::new("old CA");
    let new_ca = Ca::new("new CA");
    let workspace = https_workspace(&old_ca.issue_server(&["localhost"]));
    let dataplane = workspace.start(&[]);
    let https = dataplane.https_addr();
    let auth = format!("SharedAccessKey {KEY}");
    let publish = |id: &str| {
        (
            "/topics/orders:publish?api-version=2024-06-01".to_string(),
            serde_json::to_string(&event(id)).unwrap(),
        )
    };

    let mut open = tls_client::connect(https, "localhost", &[&old_ca.pem()])
        .await
        .unwrap();
    let (path, body) = publish("before");
    let headers = [
        ("Authorization", auth.as_str()),
        (
            "Content-Type",
            "application/cloudevents+json; charset=utf-8",
        ),
    ];
    assert_eq!(
        tls_client::request(&mut open, "POST", &path, &headers, &body)
            .await
            .0,
        200
    );

    workspace.write(
        "server-tls.yaml",
        &new_ca.issue_server(&["localhost"]).tls_secret("server-tls"),
    );
    let rotated = poll_until(Duration::from_secs(10), || async {
        tls_client::connect(https, "localhost", &[&new_ca.pem()])
            .await
            .is_ok()
    })
    .await;
    assert!(
        rotated.is_some(),
        "the new certificate is served\n{}",
        dataplane.logs()
    );
    assert!(
        tls_client::connect(https, "localhost", &[&old_ca.pem()])
            .await
            .is_err(),
        "the old certificate is no longer presented"
    );

    // The connection made before the rotation is still served (within the idle timeout).
    let (path, body) = publish("after");
    assert_eq!(
        tls_client::request(&mut open, "POST", &path, &headers, &body)
            .await
            .0,
        200
    );
}
