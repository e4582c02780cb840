//! The MQTT TLS listener, driven by mosquitto's clients with `--cafile` against the real
//! binary, its certificate from a Secret made in the test.

mod support;

use gridline_crds::types::namespace::TlsVersion;
use gridline_dataplane::mqtt::codec::{Packet, Version};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use support::mqtt::{TestPki, access, finish, publish, subscribe, tls_namespace_manifest};
use support::pki::{Ca, ClientCert};
use support::{Dataplane, Workspace, packets};

const V311: &str = "mqttv311";
const V5: &str = "mqttv5";

struct TlsBroker {
    workspace: Workspace,
    dataplane: Dataplane,
    addr: SocketAddr,
    cafile: PathBuf,
    /// The CA the Namespace trusts for client certificates.
    client_ca: Ca,
}

impl TlsBroker {
    /// `--cafile <ca> -h localhost` (the name the certificate carries) and `extra`.
    fn args<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["-h", "localhost", "--cafile", self.cafile.to_str().unwrap()];
        args.extend_from_slice(extra);
        args
    }

    /// [`TlsBroker::args`] with `--cert`/`--key` of a certificate naming `user`: over TLS a
    /// client proves its name (SPEC §D; the development identity is for plaintext only).
    fn args_as(&self, user: &str, extra: &[&str]) -> Vec<String> {
        let (cert, key) = self
            .client_ca
            .issue(ClientCert::cn(user))
            .write(&self.cafile.with_file_name("clients"), user);
        let mut args: Vec<String> = self.args(extra).iter().map(|s| s.to_string()).collect();
        args.extend([
            "--cert".to_string(),
            cert.display().to_string(),
            "--key".to_string(),
            key.display().to_string(),
        ]);
        args
    }
}

fn tls_broker(minimum: TlsVersion, development_identity: bool) -> TlsBroker {
    let pki = TestPki::new();
    let workspace = Workspace::new();
    let client_ca = Ca::new("Gridline client CA");
    let namespace = tls_namespace_manifest("dev", "broker-tls", minimum)
        .ca_certificate("client-ca", "client-ca")
        .plaintext_listener(|l| l.insecure_username_authentication = development_identity);
    workspace.write("namespace.yaml", &namespace.yaml());
    workspace.write("secret.yaml", &pki.secret("broker-tls"));
    workspace.write("client-ca.yaml", &client_ca.secret("client-ca"));
    workspace.write("access.yaml", &access("dev"));
    // Outside the manifests folder: a PEM file is no manifest.
    let cafile = workspace.data_dir().with_file_name("ca.pem");
    std::fs::write(&cafile, &pki.ca_pem).unwrap();
    let dataplane = workspace.start(&[]);
    let addr = dataplane.mqtts_addr();
    TlsBroker {
        workspace,
        dataplane,
        addr,
        cafile,
        client_ca,
    }
}

#[test]
fn tls_clients_of_both_versions_publish_and_subscribe_with_the_namespace_certificate() {
    let broker = tls_broker(TlsVersion::Tls12, true);
    for (sub_version, pub_version) in [(V5, V311), (V311, V5)] {
        let sub_args = broker.args_as(
            "dashboard",
            &["-t", "devices/+/telemetry", "-q", "1", "-C", "1", "-W", "5"],
        );
        let sub = subscribe(
            broker.addr,
            sub_version,
            "dashboard",
            &sub_args.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        let pub_args = broker.args_as(
            "sensor-1",
            &["-t", "devices/sensor-1/telemetry", "-m", "tls", "-q", "1"],
        );
        let out = publish(
            broker.addr,
            pub_version,
            "sensor-1",
            &pub_args.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        assert!(out.status.success(), "{pub_version}: {out:?}");
        let (stdout, stderr) = finish(sub);
        assert_eq!(
            stdout.trim(),
            "devices/sensor-1/telemetry tls",
            "{sub_version}: {stderr}"
        );
    }
    let _ = &broker.workspace;
}

#[test]
fn a_client_that_does_not_trust_the_certificate_cannot_connect() {
    let broker = tls_broker(TlsVersion::Tls12, true);
    let stranger = TestPki::new();
    let other_ca = broker.cafile.with_file_name("other-ca.pem");
    std::fs::write(&other_ca, &stranger.ca_pem).unwrap();
    let out = publish(
        broker.addr,
        V5,
        "sensor-1",
        &[
            "-h",
            "localhost",
            "--cafile",
            other_ca.to_str().unwrap(),
            "-t",
            "lab/x",
            "-m",
            "x",
        ],
    );
    assert!(!out.status.success(), "{out:?}");
}

/// A rustls client of `versions` trusting `ca_pem`, optionally presenting a certificate: the
/// handshake's outcome, and the stream.
async fn rustls_handshake(
    addr: SocketAddr,
    ca_pem: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
    client_certificate: Option<(String, String)>,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(certificate.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let config = match client_certificate {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(chain.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// The bytes of an MQTT 3.1.1 CONNECT (clean session) with `user` as username and client id.
fn connect_311(user: &str) -> Vec<u8> {
    let connect = packets::connect(Version::V311, user, user);
    packets::encode(Version::V311, Packet::Connect(Box::new(connect)))
}

#[tokio::test]
async fn minimum_tls_version_1_3_refuses_a_tls_1_2_client() {
    let broker = tls_broker(TlsVersion::Tls13, true);
    let ca = std::fs::read_to_string(&broker.cafile).unwrap();
    let old = rustls_handshake(broker.addr, &ca, &[&rustls::version::TLS12], None).await;
    assert!(old.is_err(), "TLS 1.2 refused");
    let new = rustls_handshake(broker.addr, &ca, &[&rustls::version::TLS13], None).await;
    assert!(new.is_ok(), "TLS 1.3 accepted: {:?}", new.err());
}

#[tokio::test]
async fn tls_1_2_is_accepted_when_the_minimum_is_1_2() {
    let broker = tls_broker(TlsVersion::Tls12, true);
    let ca = std::fs::read_to_string(&broker.cafile).unwrap();
    let stream = rustls_handshake(broker.addr, &ca, &[&rustls::version::TLS12], None).await;
    assert!(stream.is_ok(), "{:?}", stream.err());
}

#[tokio::test]
async fn a_client_certificate_is_requested_not_required_and_judged_when_presented() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let broker = tls_broker(TlsVersion::Tls12, true);
    let ca = std::fs::read_to_string(&broker.cafile).unwrap();
    // Self-signed and unknown to the Namespace: the handshake does not judge it, CONNECT
    // does (X.509 decides when a certificate is presented). Without one the handshake
    // succeeds too, and CONNECT is refused: over TLS the development identity does not
    // apply (SPEC §D), so there is no credential (0x8C, 3.1.1 return code 5).
    let client = rcgen::generate_simple_self_signed(vec!["sensor-1".to_string()]).unwrap();
    let certificate = (client.cert.pem(), client.signing_key.serialize_pem());
    for (user, presented, return_code) in
        [("sensor-1", Some(certificate), 4), ("sensor-2", None, 5)]
    {
        let mut stream = rustls_handshake(broker.addr, &ca, &[&rustls::version::TLS13], presented)
            .await
            .unwrap();
        stream.write_all(&connect_311(user)).await.unwrap();
        let mut connack = [0u8; 4];
        stream.read_exact(&mut connack).await.unwrap();
        assert_eq!(connack, [0x20, 2, 0, return_code], "{user}");
    }
    let logged = "listener=Tls method=\"none\" reason=\"no_credentials\"";
    let found = support::poll_until(Duration::from_secs(5), || {
        let logs = broker.dataplane.logs();
        async move { logs.contains(logged) }
    })
    .await;
    assert!(found.is_some(), "{logged}\n{}", broker.dataplane.logs());
    let refused = "method=\"x509\" reason=\"untrusted_certificate\"";
    assert!(
        broker.dataplane.logs().contains(refused),
        "{}",
        broker.dataplane.logs()
    );
}

#[test]
fn without_the_development_identity_a_tls_connect_is_refused_with_bad_authentication_method() {
    let broker = tls_broker(TlsVersion::Tls12, false);
    let out = publish(
        broker.addr,
        V5,
        "sensor-1",
        &broker.args(&["-t", "lab/x", "-m", "x"]),
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(!out.status.success(), "{out:?}");
    assert!(stderr.contains("authentication method"), "0x8C: {stderr}");
}

#[test]
fn an_idle_socket_that_never_starts_the_tls_handshake_does_not_stall_the_listener() {
    let mut broker = tls_broker(TlsVersion::Tls12, true);
    let _idle = TcpStream::connect(broker.addr).unwrap();
    // Half a ClientHello: the handshake starts and stops.
    let mut half = TcpStream::connect(broker.addr).unwrap();
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();
    let started = Instant::now();
    let args = broker.args_as("sensor-1", &["-t", "lab/x", "-m", "x"]);
    let out = publish(
        broker.addr,
        V5,
        "sensor-1",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "served before the idle sockets' handshake timeout"
    );
    assert!(broker.dataplane.is_running());
}
