//! X.509 client-certificate authentication on the MQTT TLS listener (issue 6), against the
//! real binary: a Client per validation scheme, certificates made in the test, and
//! mosquitto's clients or a raw client over rustls checking the CONNACK reason codes.

mod support;

use gridline_crds::types::client::{ClientCertificateAuthentication, ValidationScheme};
use gridline_crds::types::namespace::{
    AlternativeAuthenticationNameSource, ClientAuthentication, TlsVersion,
};
use gridline_crds::types::{Client, ClientSpec, State};
use gridline_dataplane::mqtt::codec::Version;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use support::manifests::AccessModel;
use support::mqtt::{
    RawClient, TestPki, access, client_spec, connect_packet, publish, tls_namespace_manifest,
};
use support::pki::{Ca, ClientCert, Identity, tls_connect, wss_connect};
use support::{Dataplane, Workspace};

const ACCEPTED: u8 = 0x00;
const BAD_USER_NAME_OR_PASSWORD: u8 = 0x86;
const NOT_AUTHORIZED: u8 = 0x87;

struct AuthBroker {
    _workspace: Workspace,
    dataplane: Dataplane,
    addr: SocketAddr,
    /// The CA of the broker's server certificate (clients trust it).
    server_ca: String,
    server_ca_file: PathBuf,
    /// The CA registered in the Namespace for client certificates.
    client_ca: Ca,
    /// Certificates and keys written for mosquitto.
    dir: PathBuf,
}

/// One Client per validation scheme, a disabled one, and `thumb-device` accepting the
/// certificate whose thumbprint is `thumbprint`.
fn clients(thumbprint: &str) -> String {
    let client = |name: &str, authentication_name: &str, scheme: ValidationScheme| {
        Client::new(
            name,
            ClientSpec {
                authentication_name: Some(authentication_name.to_string()),
                client_certificate_authentication: Some(ClientCertificateAuthentication {
                    validation_scheme: scheme,
                    allowed_thumbprints: Vec::new(),
                }),
                ..client_spec("dev")
            },
        )
    };
    let mut thumb = client(
        "thumb-device",
        "thumb-device",
        ValidationScheme::ThumbprintMatch,
    );
    if let Some(authentication) = thumb.spec.client_certificate_authentication.as_mut() {
        authentication.allowed_thumbprints = vec![thumbprint.to_string()];
    }
    let mut disabled = client(
        "disabled-device",
        "disabled-device",
        ValidationScheme::SubjectMatchesAuthenticationName,
    );
    disabled.spec.state = State::Disabled;
    let clients = vec![
        client(
            "subject-device",
            "subject-device",
            ValidationScheme::SubjectMatchesAuthenticationName,
        ),
        client(
            "dns-device",
            "dns-device.example.com",
            ValidationScheme::DnsMatchesAuthenticationName,
        ),
        client(
            "uri-device",
            "spiffe://example.com/uri-device",
            ValidationScheme::UriMatchesAuthenticationName,
        ),
        client(
            "ip-device",
            "10.1.2.3",
            ValidationScheme::IpMatchesAuthenticationName,
        ),
        client(
            "email-device",
            "email-device@example.com",
            ValidationScheme::EmailMatchesAuthenticationName,
        ),
        thumb,
        disabled,
    ];
    AccessModel {
        clients,
        ..AccessModel::default()
    }
    .yaml()
}

/// The TLS listener without the development identity, `client_ca` registered, names from
/// the certificate's DNS SAN then its subject when the username is empty, and the Clients of
/// [`clients`]; beside the broker, the self-signed certificate `thumb-device` accepts.
fn auth_broker() -> (AuthBroker, Identity) {
    let thumbprinted = ClientCert::cn("thumb-device").self_signed();
    let pki = TestPki::new();
    let client_ca = Ca::new("Gridline client CA");
    let workspace = Workspace::new();
    let namespace = tls_namespace_manifest("dev", "broker-tls", TlsVersion::Tls12)
        .plaintext_listener(|l| l.insecure_username_authentication = false)
        .ca_certificate("client-ca", "client-ca")
        // The WSS listener (Event Grid's 443) rides on `https`.
        .https(true)
        .topic_spaces(|t| {
            t.client_authentication = Some(ClientAuthentication {
                alternative_authentication_name_sources: vec![
                    AlternativeAuthenticationNameSource::ClientCertificateDns,
                    AlternativeAuthenticationNameSource::ClientCertificateSubject,
                ],
            })
        });
    workspace.write("namespace.yaml", &namespace.yaml());
    workspace.write("secret.yaml", &pki.secret("broker-tls"));
    workspace.write("client-ca.yaml", &client_ca.secret("client-ca"));
    workspace.write("access.yaml", &access("dev"));
    workspace.write("clients.yaml", &clients(&thumbprinted.thumbprint()));
    let dir = workspace.data_dir().with_file_name("pki");
    std::fs::create_dir_all(&dir).unwrap();
    let server_ca_file = dir.join("server-ca.pem");
    std::fs::write(&server_ca_file, &pki.ca_pem).unwrap();
    let dataplane = workspace.start(&[]);
    let addr = dataplane.mqtts_addr();
    let broker = AuthBroker {
        _workspace: workspace,
        dataplane,
        addr,
        server_ca: pki.ca_pem,
        server_ca_file,
        client_ca,
        dir,
    };
    (broker, thumbprinted)
}

impl AuthBroker {
    /// A certificate signed by the registered client CA, with subject CN `common_name`.
    fn certificate(&self, common_name: &str) -> Identity {
        self.client_ca.issue(ClientCert::cn(common_name))
    }

    /// CONNECT over TLS presenting `identity`, as `username` (none: empty): the CONNACK's
    /// reason code (3.1.1 return codes read in MQTT 5 numbering: 4 → 0x86, 5 → 0x87).
    async fn connack(
        &self,
        identity: Option<&Identity>,
        version: Version,
        username: Option<&str>,
    ) -> u8 {
        let stream = tls_connect(self.addr, &self.server_ca, identity).await;
        let mut connect = connect_packet(version, &format!("c-{}", next_id()), "");
        connect.username = username.map(str::to_string);
        let (_client, ack) = RawClient::connect_over(Box::new(stream), connect).await;
        ack.reason
    }

    /// `mosquitto_pub` over TLS with `identity`'s certificate, as `username`, publishing
    /// one QoS 1 message to `lab/auth`.
    fn mosquitto_publish(
        &self,
        identity: &Identity,
        version: &str,
        username: &str,
    ) -> std::process::Output {
        let (certificate, key) = identity.write(&self.dir, &format!("client-{}", next_id()));
        publish(
            self.addr,
            version,
            username,
            &[
                "-h",
                "localhost",
                "--cafile",
                self.server_ca_file.to_str().unwrap(),
                "--cert",
                certificate.to_str().unwrap(),
                "--key",
                key.to_str().unwrap(),
                "-t",
                "lab/auth",
                "-m",
                "x509",
                "-q",
                "1",
            ],
        )
    }

    /// CONNECT over WebSockets over TLS (the listener at `addr`) presenting `identity`, as
    /// `username`: the CONNACK's reason code.
    async fn wss_connack(
        &self,
        addr: SocketAddr,
        identity: &Identity,
        version: Version,
        username: &str,
    ) -> u8 {
        let connect = connect_packet(version, &format!("wss-{}", next_id()), username);
        wss_connect(addr, &self.server_ca, Some(identity), connect)
            .await
            .reason
    }

    /// A client connected over TLS with `identity` as `name` (MQTT 5), kept open.
    async fn connected(&self, identity: &Identity, name: &str) -> RawClient {
        let stream = tls_connect(self.addr, &self.server_ca, Some(identity)).await;
        let connect = connect_packet(Version::V5, &format!("live-{}", next_id()), name);
        let (client, ack) = RawClient::connect_over(Box::new(stream), connect).await;
        assert_eq!(ack.reason, ACCEPTED, "{name}");
        client
    }

    async fn failures(&self, reason: &str) -> Option<f64> {
        self.dataplane
            .metric(&format!(
                "gridline_mqtt_auth_failures_total{{method=\"x509\",reason=\"{reason}\"}}"
            ))
            .await
    }
}

fn next_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[tokio::test]
async fn each_validation_scheme_admits_a_certificate_with_the_name_and_refuses_one_without() {
    let (broker, thumbprinted) = auth_broker();
    let ca = &broker.client_ca;
    // (authentication name, a certificate holding it in the scheme's field, one that does not)
    let cases = [
        (
            "subject-device",
            ca.issue(ClientCert::cn("subject-device")),
            ca.issue(ClientCert::cn("someone-else").dns("subject-device")),
        ),
        (
            "dns-device.example.com",
            ca.issue(
                ClientCert::cn("x")
                    .dns("other.example.com")
                    .dns("dns-device.example.com"),
            ),
            ca.issue(ClientCert::cn("dns-device.example.com")),
        ),
        (
            "spiffe://example.com/uri-device",
            ca.issue(ClientCert::cn("x").uri("spiffe://example.com/uri-device")),
            ca.issue(ClientCert::cn("x").uri("spiffe://example.com/other")),
        ),
        (
            "10.1.2.3",
            ca.issue(ClientCert::cn("x").ip("10.1.2.3")),
            ca.issue(ClientCert::cn("10.1.2.3").ip("10.1.2.4")),
        ),
        (
            "email-device@example.com",
            ca.issue(ClientCert::cn("x").email("email-device@example.com")),
            ca.issue(ClientCert::cn("x").email("other@example.com")),
        ),
        (
            "thumb-device",
            thumbprinted,
            ClientCert::cn("thumb-device").self_signed(),
        ),
    ];
    for (name, good, bad) in &cases {
        for version in [Version::V5, Version::V311] {
            assert_eq!(
                broker.connack(Some(good), version, Some(name)).await,
                ACCEPTED,
                "{name} {version:?} with its certificate"
            );
            assert_eq!(
                broker.connack(Some(bad), version, Some(name)).await,
                BAD_USER_NAME_OR_PASSWORD,
                "{name} {version:?} with a certificate without the name"
            );
        }
    }
    assert_eq!(broker.failures("name_mismatch").await, Some(10.0));
    assert_eq!(broker.failures("thumbprint_mismatch").await, Some(2.0));
    let successes = "gridline_mqtt_auth_successes_total{method=\"x509\"}";
    assert_eq!(broker.dataplane.metric(successes).await, Some(12.0));
}

#[test]
fn paho_mqtt_authenticates_with_each_validation_scheme_in_both_versions() {
    let (broker, thumbprinted) = auth_broker();
    let ca = &broker.client_ca;
    // (authentication name, certificate, the reason code paho must read)
    let cases = [
        (
            "subject-device",
            ca.issue(ClientCert::cn("subject-device")),
            ACCEPTED,
        ),
        (
            "subject-device",
            ca.issue(ClientCert::cn("someone-else")),
            BAD_USER_NAME_OR_PASSWORD,
        ),
        (
            "dns-device.example.com",
            ca.issue(ClientCert::cn("x").dns("dns-device.example.com")),
            ACCEPTED,
        ),
        (
            "spiffe://example.com/uri-device",
            ca.issue(ClientCert::cn("x").uri("spiffe://example.com/uri-device")),
            ACCEPTED,
        ),
        (
            "10.1.2.3",
            ca.issue(ClientCert::cn("x").ip("10.1.2.3")),
            ACCEPTED,
        ),
        (
            "10.1.2.3",
            ca.issue(ClientCert::cn("x").ip("10.1.2.4")),
            BAD_USER_NAME_OR_PASSWORD,
        ),
        (
            "email-device@example.com",
            ca.issue(ClientCert::cn("x").email("email-device@example.com")),
            ACCEPTED,
        ),
        ("thumb-device", thumbprinted, ACCEPTED),
        (
            "thumb-device",
            ClientCert::cn("thumb-device").self_signed(),
            BAD_USER_NAME_OR_PASSWORD,
        ),
        (
            "disabled-device",
            ca.issue(ClientCert::cn("disabled-device")),
            NOT_AUTHORIZED,
        ),
    ];
    let port = broker.addr.port().to_string();
    for (name, certificate, expected) in &cases {
        let (cert, key) = certificate.write(&broker.dir, &format!("paho-{}", next_id()));
        for version in ["v5", "v3.1.1"] {
            let answer = support::paho::connect_auth(&[
                "--port",
                &port,
                "--ca",
                broker.server_ca_file.to_str().unwrap(),
                "--cert",
                cert.to_str().unwrap(),
                "--key",
                key.to_str().unwrap(),
                "--username",
                name,
                "--version",
                version,
            ]);
            assert_eq!(answer, Ok(*expected), "{name} {version}");
        }
    }
}

#[test]
fn mosquitto_clients_of_both_versions_authenticate_with_a_certificate() {
    let (broker, _) = auth_broker();
    let good = broker.certificate("subject-device");
    let bad = broker.certificate("someone-else");
    for version in ["mqttv5", "mqttv311"] {
        let out = broker.mosquitto_publish(&good, version, "subject-device");
        assert!(out.status.success(), "{version}: {out:?}");
        let out = broker.mosquitto_publish(&bad, version, "subject-device");
        let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert!(!out.status.success(), "{version}: {out:?}");
        assert!(
            stderr.contains("bad user name or password"),
            "{version}: {stderr}"
        );
    }
}

#[tokio::test]
async fn a_certificate_from_an_unknown_ca_is_refused_and_counted() {
    let (broker, _) = auth_broker();
    let stranger = Ca::new("Someone else's CA").issue(ClientCert::cn("subject-device"));
    for version in [Version::V5, Version::V311] {
        assert_eq!(
            broker
                .connack(Some(&stranger), version, Some("subject-device"))
                .await,
            BAD_USER_NAME_OR_PASSWORD,
            "{version:?}"
        );
    }
    assert_eq!(broker.failures("untrusted_certificate").await, Some(2.0));
    let logs = broker.dataplane.logs();
    assert!(
        logs.contains("reason=\"untrusted_certificate\""),
        "one line says why: {logs}"
    );
}

#[tokio::test]
async fn an_expired_certificate_is_refused() {
    let (broker, _) = auth_broker();
    let expired = broker
        .client_ca
        .issue(ClientCert::cn("subject-device").expired());
    assert_eq!(
        broker
            .connack(Some(&expired), Version::V5, Some("subject-device"))
            .await,
        BAD_USER_NAME_OR_PASSWORD
    );
    assert_eq!(broker.failures("certificate_expired").await, Some(1.0));
}

#[tokio::test]
async fn a_self_signed_certificate_is_refused_where_a_ca_is_required() {
    let (broker, _) = auth_broker();
    let self_signed = ClientCert::cn("subject-device").self_signed();
    assert_eq!(
        broker
            .connack(Some(&self_signed), Version::V5, Some("subject-device"))
            .await,
        BAD_USER_NAME_OR_PASSWORD
    );
}

#[tokio::test]
async fn a_disabled_client_is_refused_as_not_authorized() {
    let (broker, _) = auth_broker();
    let certificate = broker.certificate("disabled-device");
    for version in [Version::V5, Version::V311] {
        assert_eq!(
            broker
                .connack(Some(&certificate), version, Some("disabled-device"))
                .await,
            NOT_AUTHORIZED,
            "{version:?}"
        );
    }
    assert_eq!(broker.failures("client_disabled").await, Some(2.0));
}

#[tokio::test]
async fn without_a_username_the_certificate_names_the_client_in_the_configured_order() {
    let (broker, _) = auth_broker();
    let ca = &broker.client_ca;
    // The DNS SAN comes first; without one, the subject CN.
    let by_dns = ca.issue(ClientCert::cn("subject-device").dns("dns-device.example.com"));
    let by_subject = ca.issue(ClientCert::cn("subject-device"));
    assert_eq!(
        broker.connack(Some(&by_dns), Version::V5, None).await,
        ACCEPTED
    );
    assert_eq!(
        broker.connack(Some(&by_subject), Version::V311, None).await,
        ACCEPTED
    );
    for name in ["dns-device.example.com", "subject-device"] {
        let logged = format!("authentication_name=\"{name}\"");
        let found = support::poll_until(Duration::from_secs(5), || {
            let logs = broker.dataplane.logs();
            let logged = logged.clone();
            async move { logs.contains(&logged) }
        })
        .await;
        assert!(found.is_some(), "{logged}");
    }
    let nameless = ca.issue(ClientCert::cn("").uri("spiffe://example.com/x"));
    assert_eq!(
        broker.connack(Some(&nameless), Version::V5, None).await,
        BAD_USER_NAME_OR_PASSWORD
    );
}

#[tokio::test]
async fn a_certificate_over_websockets_over_tls_is_judged_as_over_tls() {
    let (broker, _) = auth_broker();
    let good = broker.certificate("subject-device");
    let bad = broker.certificate("someone-else");
    let wss = broker.dataplane.wss_addr();
    for version in [Version::V5, Version::V311] {
        assert_eq!(
            broker
                .wss_connack(wss, &good, version, "subject-device")
                .await,
            ACCEPTED,
            "{version:?}"
        );
        assert_eq!(
            broker
                .wss_connack(wss, &bad, version, "subject-device")
                .await,
            BAD_USER_NAME_OR_PASSWORD,
            "{version:?}"
        );
    }
}

#[tokio::test]
async fn a_certificate_revoked_while_connected_ends_the_session() {
    use gridline_dataplane::mqtt::codec::Packet;
    let (broker, thumb) = auth_broker();
    let subject = broker.certificate("subject-device");
    let mut thumb_client = broker.connected(&thumb, "thumb-device").await;
    let mut subject_client = broker.connected(&subject, "subject-device").await;
    let disconnected = |packet: Option<Packet>| match packet {
        Some(Packet::Disconnect(disconnect)) => Some(disconnect.reason),
        _ => None,
    };

    // The thumbprint comes off the Client's list: that session ends, the other goes on.
    broker
        ._workspace
        .write("clients.yaml", &clients(&"ab".repeat(32)));
    assert_eq!(
        disconnected(thumb_client.next(Duration::from_secs(10)).await),
        Some(NOT_AUTHORIZED)
    );
    assert!(
        subject_client.next(Duration::from_secs(1)).await.is_none(),
        "a certificate still accepted keeps its session"
    );

    // The Namespace's client CA is replaced: certificates it signed no longer chain.
    broker._workspace.write(
        "client-ca.yaml",
        &Ca::new("another client CA").secret("client-ca"),
    );
    assert_eq!(
        disconnected(subject_client.next(Duration::from_secs(10)).await),
        Some(NOT_AUTHORIZED)
    );
}
