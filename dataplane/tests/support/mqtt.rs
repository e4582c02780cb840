//! MQTT helpers: the example access manifests and `mosquitto_pub` / `mosquitto_sub`.

use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use super::NamespaceManifest;
use super::manifests::AccessModel;
use gridline_crds::types::namespace::{PlaintextMqttListener, TlsVersion};
use gridline_crds::types::permission_binding::Permission;
use gridline_crds::types::{
    Client, ClientSpec, ObjectRef, PermissionBinding, PermissionBindingSpec, State, TopicSpace,
    TopicSpaceSpec,
};

/// Sessions per authentication name in [`namespace`]: tests connect many clients under one
/// authentication name, often right after another left (the broker may not have seen that
/// close yet), so 100, not the default 1.
pub const SESSIONS_PER_NAME: i32 = 100;

/// A Namespace with the broker on and the development plaintext listener (port 1883, the
/// CONNECT username taken as the authentication name), [`SESSIONS_PER_NAME`] sessions per
/// name; the TLS listeners off ([`NamespaceManifest::local`]).
pub fn namespace_manifest(name: &str) -> NamespaceManifest {
    NamespaceManifest::local(name)
        .broker_enabled()
        .topic_spaces(|t| t.maximum_client_sessions_per_authentication_name = SESSIONS_PER_NAME)
        .mqtt_plaintext(PlaintextMqttListener {
            enabled: true,
            port: 1883,
            insecure_username_authentication: true,
        })
}

/// [`namespace_manifest`] as YAML.
pub fn namespace(name: &str) -> String {
    namespace_manifest(name).yaml()
}

/// The example manifests' access model (`deploy/examples/clients.yaml` and `access.yaml`:
/// sensors publish under their own name, apps read all telemetry) in Namespace `ns`, plus a
/// disabled client `retired` and a `lab` topic space everyone may publish and subscribe to.
pub fn access_model(ns: &str) -> AccessModel {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/examples/");
    let clients = std::fs::read_to_string(format!("{examples}clients.yaml")).unwrap();
    let access = std::fs::read_to_string(format!("{examples}access.yaml")).unwrap();
    let mut model = AccessModel::parse(&clients, ns);
    model.extend(AccessModel::parse(&access, ns));
    let namespace_ref = ObjectRef::new(ns);
    model.clients.push(Client::new(
        "retired",
        ClientSpec {
            state: State::Disabled,
            ..client_spec(ns)
        },
    ));
    model.topic_spaces.push(TopicSpace::new(
        "lab",
        TopicSpaceSpec {
            namespace_ref: namespace_ref.clone(),
            description: None,
            topic_templates: vec!["lab/#".to_string()],
        },
    ));
    for (name, permission) in [
        ("all-publish-lab", Permission::Publisher),
        ("all-read-lab", Permission::Subscriber),
    ] {
        model.permission_bindings.push(PermissionBinding::new(
            name,
            PermissionBindingSpec {
                namespace_ref: namespace_ref.clone(),
                description: None,
                topic_space_name: "lab".to_string(),
                permission,
                client_group_name: "$all".to_string(),
            },
        ));
    }
    model
}

/// [`access_model`] as YAML.
pub fn access(ns: &str) -> String {
    access_model(ns).yaml()
}

/// A Client of Namespace `ns` with every other field at its default: enabled, named by its
/// object name, no attributes.
pub fn client_spec(ns: &str) -> ClientSpec {
    ClientSpec {
        namespace_ref: ObjectRef::new(ns),
        authentication_name: None,
        description: None,
        client_certificate_authentication: None,
        state: State::Enabled,
        attributes: Default::default(),
    }
}

fn base(tool: &str, addr: SocketAddr, version: &str, user: &str) -> Command {
    let mut command = Command::new(tool);
    command
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(["-V", version, "-u", user]);
    command
}

/// `mosquitto_pub`, waited for.
pub fn publish(addr: SocketAddr, version: &str, user: &str, args: &[&str]) -> Output {
    base("mosquitto_pub", addr, version, user)
        .args(args)
        .output()
        .expect("run mosquitto_pub (apt-get install mosquitto-clients)")
}

/// `mosquitto_sub -v` in the background; read it with [`finish`].
pub fn subscribe(addr: SocketAddr, version: &str, user: &str, args: &[&str]) -> Child {
    let child = base("mosquitto_sub", addr, version, user)
        .arg("-v")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mosquitto_sub (apt-get install mosquitto-clients)");
    // Give it time to CONNECT and SUBSCRIBE before anything is published.
    std::thread::sleep(Duration::from_millis(300));
    child
}

/// Wait for a subscriber started with `-C`/`-W` to end; its stdout and stderr.
pub fn finish(child: Child) -> (String, String) {
    let output = child.wait_with_output().expect("mosquitto_sub output");
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A test CA and a server certificate it signed for `localhost` and `127.0.0.1`, PEM.
pub struct TestPki {
    pub ca_pem: String,
    pub server_chain_pem: String,
    pub server_key_pem: String,
}

impl TestPki {
    pub fn new() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Gridline test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let server_key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let server = params.signed_by(&server_key, &issuer).unwrap();
        Self {
            ca_pem: ca.pem(),
            server_chain_pem: server.pem(),
            server_key_pem: server_key.serialize_pem(),
        }
    }

    /// A `kubernetes.io/tls` Secret with the server certificate and key.
    pub fn secret(&self, name: &str) -> String {
        let indent = |pem: &str| {
            pem.lines()
                .map(|l| format!("    {l}\n"))
                .collect::<String>()
        };
        format!(
            "apiVersion: v1
kind: Secret
metadata:
  name: {name}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{}  tls.key: |
{}",
            indent(&self.server_chain_pem),
            indent(&self.server_key_pem)
        )
    }
}

/// [`namespace_manifest`] with the MQTT TLS listener on, its certificate from Secret
/// `secret`, and `minimumTlsVersionAllowed: <minimum>`.
pub fn tls_namespace_manifest(name: &str, secret: &str, minimum: TlsVersion) -> NamespaceManifest {
    namespace_manifest(name)
        .tls_secret(secret)
        .minimum_tls_version(minimum)
        .mqtt_tls(true)
}

/// [`tls_namespace_manifest`] as YAML.
pub fn tls_namespace(name: &str, secret: &str, minimum: TlsVersion) -> String {
    tls_namespace_manifest(name, secret, minimum).yaml()
}

/// A raw MQTT client over the broker's own codec, for what mosquitto's clients cannot express
/// (will delay, take-over, topic aliases without a topic, subscription identifiers, AUTH).
pub struct RawClient {
    framed: tokio_util::codec::Framed<Box<dyn RawStream>, gridline_dataplane::mqtt::codec::Codec>,
}

/// What a [`RawClient`] runs over: TCP, or TLS (`support::pki::tls_connect`).
pub trait RawStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> RawStream for S {}

/// The CONNECT and application message most tests start from (see [`super::packets`]).
// A test binary that uses neither would warn: each binary compiles `support` on its own.
#[allow(unused_imports)]
pub use super::packets::{connect as connect_packet, message};

impl RawClient {
    /// Connect and read the CONNACK.
    pub async fn connect(
        addr: SocketAddr,
        connect: gridline_dataplane::mqtt::codec::Connect,
    ) -> (Self, gridline_dataplane::mqtt::codec::ConnAck) {
        let socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
        Self::connect_over(Box::new(socket), connect).await
    }

    /// Send `connect` over an open `stream` and read the CONNACK.
    pub async fn connect_over(
        stream: Box<dyn RawStream>,
        connect: gridline_dataplane::mqtt::codec::Connect,
    ) -> (Self, gridline_dataplane::mqtt::codec::ConnAck) {
        use gridline_dataplane::mqtt::codec::{Codec, Packet};
        let codec = Codec::new(connect.version, 1 << 20);
        let mut client = Self {
            framed: tokio_util::codec::Framed::new(stream, codec),
        };
        client.send(Packet::Connect(Box::new(connect))).await;
        match client.next(Duration::from_secs(5)).await {
            Some(Packet::ConnAck(ack)) => (client, ack),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    pub async fn send(&mut self, packet: gridline_dataplane::mqtt::codec::Packet) {
        use futures::SinkExt;
        self.framed.send(packet).await.expect("send");
    }

    /// [`RawClient::send`] that reports a closed connection instead of panicking.
    pub async fn try_send(
        &mut self,
        packet: gridline_dataplane::mqtt::codec::Packet,
    ) -> Result<(), gridline_dataplane::mqtt::codec::CodecError> {
        use futures::SinkExt;
        self.framed.send(packet).await
    }

    /// The next packet within `wait`; None on timeout or when the connection closed.
    pub async fn next(
        &mut self,
        wait: Duration,
    ) -> Option<gridline_dataplane::mqtt::codec::Packet> {
        use futures::StreamExt;
        match tokio::time::timeout(wait, self.framed.next()).await {
            Ok(Some(Ok(packet))) => Some(packet),
            _ => None,
        }
    }

    /// SUBSCRIBE (QoS 1) and the SUBACK's reason codes.
    pub async fn subscribe(
        &mut self,
        packet_id: u16,
        subscription_id: Option<u32>,
        filters: &[(&str, bool)],
    ) -> Vec<u8> {
        use gridline_dataplane::mqtt::codec::{Packet, QoS, Subscribe, SubscriptionOptions};
        let filters = filters
            .iter()
            .map(|(filter, no_local)| {
                let options = SubscriptionOptions {
                    no_local: *no_local,
                    ..super::packets::options(QoS::AtLeastOnce)
                };
                (filter.to_string(), options)
            })
            .collect();
        self.send(Packet::Subscribe(Subscribe {
            packet_id: std::num::NonZeroU16::new(packet_id).expect("packet id"),
            subscription_id: subscription_id.and_then(std::num::NonZeroU32::new),
            filters,
        }))
        .await;
        match self.next(Duration::from_secs(5)).await {
            Some(Packet::SubAck(ack)) => ack.reasons,
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// PUBLISH at QoS 0 (packet id 0) or 1, optionally with a topic alias; at QoS 1 the
    /// PUBACK's reason code.
    pub async fn publish(
        &mut self,
        packet_id: u16,
        topic: &str,
        payload: &str,
        topic_alias: Option<u16>,
    ) -> Option<u8> {
        use gridline_dataplane::mqtt::codec::{Packet, Publish, QoS};
        let qos = if packet_id == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        self.send(Packet::Publish(Box::new(Publish {
            dup: false,
            packet_id: std::num::NonZeroU16::new(packet_id),
            topic_alias: topic_alias.and_then(std::num::NonZeroU16::new),
            subscription_ids: Vec::new(),
            message: message(topic, payload, qos),
        })))
        .await;
        if packet_id == 0 {
            return None;
        }
        loop {
            match self.next(Duration::from_secs(5)).await {
                Some(Packet::PubAck(ack)) => return Some(ack.reason),
                Some(_) => continue,
                None => panic!("no PUBACK"),
            }
        }
    }

    /// The next PUBLISH within `wait` (acknowledged when QoS 1), skipping other packets.
    pub async fn next_publish(
        &mut self,
        wait: Duration,
    ) -> Option<gridline_dataplane::mqtt::codec::Publish> {
        use gridline_dataplane::mqtt::codec::{Ack, Packet};
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await? {
                Packet::Publish(publish) => {
                    if let Some(packet_id) = publish.packet_id {
                        self.send(Packet::PubAck(Ack {
                            packet_id,
                            reason: 0,
                            reason_string: None,
                        }))
                        .await;
                    }
                    return Some(*publish);
                }
                _ => continue,
            }
        }
    }
}
