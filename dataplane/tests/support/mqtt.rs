//! MQTT helpers: the example access manifests and `mosquitto_pub` / `mosquitto_sub`.

use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// A Namespace with the broker on and the development plaintext listener.
pub fn namespace(name: &str) -> String {
    super::namespace(name).replacen(
        "spec:\n",
        "spec:\n  topicSpacesConfiguration:\n    state: Enabled\n",
        1,
    ) + "    mqttPlaintext:\n      port: 1883\n      insecureUsernameAuthentication: true\n"
}

/// Clients, groups, topic spaces and bindings for Namespace `ns`: the example manifests'
/// access model (sensors publish under their own name, apps read all telemetry), plus a
/// disabled client and a `lab` topic space everyone may use.
pub fn access(ns: &str) -> String {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/examples/");
    let clients = std::fs::read_to_string(format!("{examples}clients.yaml")).unwrap();
    let access = std::fs::read_to_string(format!("{examples}access.yaml")).unwrap();
    let extra = format!(
        "apiVersion: gridline.dev/v1alpha1
kind: Client
metadata:
  name: retired
spec:
  namespaceRef: {{name: {ns}}}
  state: Disabled
---
apiVersion: gridline.dev/v1alpha1
kind: TopicSpace
metadata:
  name: lab
spec:
  namespaceRef: {{name: {ns}}}
  topicTemplates: ['lab/#']
---
apiVersion: gridline.dev/v1alpha1
kind: PermissionBinding
metadata:
  name: all-publish-lab
spec:
  namespaceRef: {{name: {ns}}}
  clientGroupName: $all
  topicSpaceName: lab
  permission: Publisher
---
apiVersion: gridline.dev/v1alpha1
kind: PermissionBinding
metadata:
  name: all-read-lab
spec:
  namespaceRef: {{name: {ns}}}
  clientGroupName: $all
  topicSpaceName: lab
  permission: Subscriber
"
    );
    format!(
        "{}\n---\n{}\n---\n{extra}",
        clients.replace("name: dev", &format!("name: {ns}")),
        access.replace("name: dev", &format!("name: {ns}")),
    )
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

/// [`namespace`] with the TLS listener on, its certificate from Secret `secret`, and
/// `minimumTlsVersionAllowed: <minimum>`.
pub fn tls_namespace(name: &str, secret: &str, minimum: &str) -> String {
    namespace(name)
        .replacen(
            "spec:\n",
            &format!(
                "spec:\n  tls:\n    secretName: {secret}\n  minimumTlsVersionAllowed: \"{minimum}\"\n"
            ),
            1,
        )
        .replacen(
            "    mqttTls:\n      enabled: false\n",
            "    mqttTls:\n      enabled: true\n",
            1,
        )
}
