//! OAuth 2.0 JWT authentication (MQTT 5 `OAUTH2-JWT`, issue 6) against the real binary: a
//! raw MQTT 5 client over rustls sends the token as Authentication Data, re-authenticates
//! with AUTH, and is disconnected when its token expires.

mod support;

use bytes::Bytes;
use gridline_crds::types::namespace::TlsVersion;
use gridline_dataplane::mqtt::codec::{ConnAck, Packet, Version};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::mqtt::{RawClient, TestPki, access, connect_packet, tls_namespace_manifest};
use support::pki::{JwtIssuer, tls_connect, wss_connect};
use support::{Dataplane, Workspace};

const ISSUER: &str = "https://issuer.gridline.test";
const AUDIENCE: &str = "gridline-dev";
const METHOD: &str = "OAUTH2-JWT";

struct JwtBroker {
    _workspace: Workspace,
    dataplane: Dataplane,
    addr: SocketAddr,
    plaintext: SocketAddr,
    wss: SocketAddr,
    server_ca: String,
    issuer: JwtIssuer,
}

fn jwt_broker() -> JwtBroker {
    let pki = TestPki::new();
    let issuer = JwtIssuer::new(ISSUER);
    let workspace = Workspace::new();
    let namespace = tls_namespace_manifest("dev", "broker-tls", TlsVersion::Tls12)
        .plaintext_listener(|l| l.insecure_username_authentication = false)
        // The WSS listener rides on `https`.
        .https(true)
        .jwt_issuer(ISSUER, &[AUDIENCE], "jwt-keys");
    workspace.write("namespace.yaml", &namespace.yaml());
    workspace.write("secret.yaml", &pki.secret("broker-tls"));
    workspace.write("jwt-keys.yaml", &issuer.secret("jwt-keys"));
    workspace.write("access.yaml", &access("dev"));
    let dataplane = workspace.start(&[]);
    let addr = dataplane.mqtts_addr();
    let plaintext = dataplane.mqtt_addr();
    let wss = dataplane.wss_addr();
    JwtBroker {
        _workspace: workspace,
        dataplane,
        addr,
        plaintext,
        wss,
        server_ca: pki.ca_pem,
        issuer,
    }
}

impl JwtBroker {
    /// An MQTT 5 CONNECT as `user` with `method` and `token`, over TLS.
    async fn connect(&self, user: &str, method: &str, token: &str) -> (RawClient, ConnAck) {
        let stream = tls_connect(self.addr, &self.server_ca, None).await;
        RawClient::connect_over(Box::new(stream), jwt_connect(user, method, token)).await
    }

    async fn failures(&self, reason: &str) -> Option<f64> {
        self.dataplane
            .metric(&format!(
                "gridline_mqtt_auth_failures_total{{method=\"jwt\",reason=\"{reason}\"}}"
            ))
            .await
    }
}

fn jwt_connect(user: &str, method: &str, token: &str) -> gridline_dataplane::mqtt::codec::Connect {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut connect = connect_packet(Version::V5, &format!("jwt-{user}-{id}"), user);
    connect.authentication_method = Some(method.into());
    connect.authentication_data = Some(Bytes::copy_from_slice(token.as_bytes()));
    connect
}

fn reauthenticate(token: &str) -> Packet {
    Packet::Auth {
        reason: 0x19,
        method: Some(METHOD.into()),
        data: Some(Bytes::copy_from_slice(token.as_bytes())),
    }
}

#[tokio::test]
async fn a_good_token_connects_and_the_connack_repeats_the_method() {
    let broker = jwt_broker();
    let token = broker.issuer.token(AUDIENCE, 600);
    let (mut client, ack) = broker.connect("sensor-1", METHOD, &token).await;
    assert_eq!(ack.reason, 0x00);
    assert_eq!(ack.authentication_method.as_deref(), Some(METHOD));
    // Authorization still applies to the authenticated name.
    assert_eq!(
        client.publish(1, "lab/jwt", "hello", None).await,
        Some(0x00)
    );
    let successes = "gridline_mqtt_auth_successes_total{method=\"jwt\"}";
    assert_eq!(broker.dataplane.metric(successes).await, Some(1.0));
}

#[tokio::test]
async fn a_token_with_a_wrong_issuer_audience_or_signature_or_expired_is_refused() {
    let broker = jwt_broker();
    let stranger = JwtIssuer::new(ISSUER);
    let now = support::pki::unix_now();
    let claims =
        |iss: &str, aud: &str, exp: i64| serde_json::json!({"iss": iss, "aud": aud, "exp": exp});
    let cases = [
        (
            broker
                .issuer
                .sign(&claims("https://other.test", AUDIENCE, now + 600)),
            "unknown_issuer",
        ),
        (
            broker
                .issuer
                .sign(&claims(ISSUER, "someone-else", now + 600)),
            "wrong_audience",
        ),
        (stranger.token(AUDIENCE, 600), "bad_signature"),
        (broker.issuer.token(AUDIENCE, -60), "token_expired"),
        ("garbage".to_string(), "malformed_token"),
    ];
    for (token, reason) in &cases {
        let (_, ack) = broker.connect("sensor-1", METHOD, token).await;
        assert_eq!(ack.reason, 0x86, "{reason}");
        assert_eq!(broker.failures(reason).await, Some(1.0), "{reason}");
    }
    assert!(
        !broker.dataplane.logs().contains(&cases[0].0),
        "a token never reaches the log"
    );
}

#[tokio::test]
async fn a_disabled_client_an_unknown_method_or_the_plaintext_listener_are_refused() {
    let broker = jwt_broker();
    let token = broker.issuer.token(AUDIENCE, 600);
    let (_, ack) = broker.connect("retired", METHOD, &token).await;
    assert_eq!(ack.reason, 0x87, "disabled Client");
    let (_, ack) = broker.connect("sensor-1", "SCRAM-SHA-256", &token).await;
    assert_eq!(ack.reason, 0x8C, "unknown method");
    let (_, ack) =
        RawClient::connect(broker.plaintext, jwt_connect("sensor-1", METHOD, &token)).await;
    assert_eq!(ack.reason, 0x8C, "no token in clear");
}

#[tokio::test]
async fn an_expired_token_disconnects_the_session_with_maximum_connect_time() {
    let broker = jwt_broker();
    let token = broker.issuer.token(AUDIENCE, 1);
    let started = Instant::now();
    let (mut client, ack) = broker.connect("sensor-1", METHOD, &token).await;
    assert_eq!(ack.reason, 0x00);
    let packet = client.next(Duration::from_secs(15)).await;
    assert!(
        matches!(packet, Some(Packet::Disconnect(ref d)) if d.reason == 0xA0),
        "{packet:?}"
    );
    // `exp` plus the 5 s leeway.
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_secs(4), "{elapsed:?}");
}

#[tokio::test]
async fn re_authentication_before_expiry_extends_the_session() {
    let broker = jwt_broker();
    let (mut client, ack) = broker
        .connect("sensor-1", METHOD, &broker.issuer.token(AUDIENCE, 1))
        .await;
    assert_eq!(ack.reason, 0x00);
    client
        .send(reauthenticate(&broker.issuer.token(AUDIENCE, 600)))
        .await;
    let answer = client.next(Duration::from_secs(5)).await;
    assert!(
        matches!(answer, Some(Packet::Auth { reason: 0x00, ref method, .. }) if method.as_deref() == Some(METHOD)),
        "{answer:?}"
    );
    // Past the first token's expiry (1 s + 5 s leeway) the session is still there.
    tokio::time::sleep(Duration::from_secs(8)).await;
    client.send(Packet::PingReq).await;
    let pong = client.next(Duration::from_secs(5)).await;
    assert!(matches!(pong, Some(Packet::PingResp)), "{pong:?}");
}

#[tokio::test]
async fn a_failed_re_authentication_disconnects_with_not_authorized() {
    let broker = jwt_broker();
    let (mut client, ack) = broker
        .connect("sensor-1", METHOD, &broker.issuer.token(AUDIENCE, 600))
        .await;
    assert_eq!(ack.reason, 0x00);
    let forged = JwtIssuer::new(ISSUER).token(AUDIENCE, 600);
    client.send(reauthenticate(&forged)).await;
    let packet = client.next(Duration::from_secs(5)).await;
    assert!(
        matches!(packet, Some(Packet::Disconnect(ref d)) if d.reason == 0x87),
        "{packet:?}"
    );
    assert_eq!(broker.failures("bad_signature").await, Some(1.0));
}

#[tokio::test]
async fn auth_with_another_method_is_a_protocol_error() {
    let broker = jwt_broker();
    let (mut client, _) = broker
        .connect("sensor-1", METHOD, &broker.issuer.token(AUDIENCE, 600))
        .await;
    client
        .send(Packet::Auth {
            reason: 0x19,
            method: Some("CUSTOM-JWT".into()),
            data: None,
        })
        .await;
    let packet = client.next(Duration::from_secs(5)).await;
    assert!(
        matches!(packet, Some(Packet::Disconnect(ref d)) if d.reason == 0x82),
        "{packet:?}"
    );
}

#[tokio::test]
async fn a_token_authenticates_over_websockets_over_tls_too() {
    let broker = jwt_broker();
    let good = jwt_connect("sensor-1", METHOD, &broker.issuer.token(AUDIENCE, 600));
    let ack = wss_connect(broker.wss, &broker.server_ca, None, good).await;
    assert_eq!(ack.reason, 0x00);
    assert_eq!(ack.authentication_method.as_deref(), Some(METHOD));
    let forged = JwtIssuer::new(ISSUER).token(AUDIENCE, 600);
    let bad = jwt_connect("sensor-1", METHOD, &forged);
    let ack = wss_connect(broker.wss, &broker.server_ca, None, bad).await;
    assert_eq!(ack.reason, 0x86);
}

#[test]
fn paho_mqtt_connects_with_a_good_token_and_is_refused_an_expired_one() {
    let broker = jwt_broker();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("server-ca.pem");
    std::fs::write(&ca, &broker.server_ca).unwrap();
    let port = broker.addr.port().to_string();
    let connect = |token: &str| {
        support::paho::connect_auth(&[
            "--port",
            &port,
            "--ca",
            ca.to_str().unwrap(),
            "--username",
            "sensor-1",
            "--jwt",
            token,
        ])
    };
    assert_eq!(connect(&broker.issuer.token(AUDIENCE, 600)), Ok(0x00));
    assert_eq!(connect(&broker.issuer.token(AUDIENCE, -600)), Ok(0x86));
    assert_eq!(connect(&broker.issuer.token("someone-else", 600)), Ok(0x86));
}
