//! Credentials for the authentication tests: client CAs and client certificates (rcgen),
//! TLS connections that present them (rustls), and a JWT issuer (a P-256 key, its JWKS and
//! signed tokens). The broker's own server certificate is `mqtt::TestPki`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType,
    date_time_ymd,
};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Indent `text` for a YAML block scalar under a key at two spaces.
fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

/// A CA that client certificates chain to.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        Self {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A Secret holding the CA certificate as `ca.crt`.
    pub fn secret(&self, name: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\nstringData:\n  ca.crt: |\n{}",
            indent(&self.pem())
        )
    }

    /// A client certificate this CA signs.
    pub fn issue(&self, spec: ClientCert) -> Identity {
        spec.make(Some(&self.issuer))
    }

    /// A server certificate for `names` (DNS names or IP addresses; the first is the CN).
    pub fn issue_server(&self, names: &[&str]) -> Identity {
        let spec = names.iter().fold(ClientCert::cn(names[0]), |spec, name| {
            if name.parse::<std::net::IpAddr>().is_ok() {
                spec.ip(name)
            } else {
                spec.dns(name)
            }
        });
        self.issue(spec)
    }
}

/// What a client certificate holds: a subject CN and SANs, valid from 2020 to 2999 (or
/// expired in 2021).
#[derive(Default)]
pub struct ClientCert {
    common_name: String,
    sans: Vec<SanType>,
    expired: bool,
}

impl ClientCert {
    pub fn cn(common_name: &str) -> Self {
        Self {
            common_name: common_name.into(),
            ..Self::default()
        }
    }

    pub fn dns(mut self, name: &str) -> Self {
        self.sans.push(SanType::DnsName(name.try_into().unwrap()));
        self
    }

    pub fn uri(mut self, uri: &str) -> Self {
        self.sans.push(SanType::URI(uri.try_into().unwrap()));
        self
    }

    pub fn ip(mut self, ip: &str) -> Self {
        self.sans.push(SanType::IpAddress(ip.parse().unwrap()));
        self
    }

    pub fn email(mut self, email: &str) -> Self {
        self.sans
            .push(SanType::Rfc822Name(email.try_into().unwrap()));
        self
    }

    pub fn expired(mut self) -> Self {
        self.expired = true;
        self
    }

    /// Self-signed, as `ThumbprintMatch` clients may have.
    pub fn self_signed(self) -> Identity {
        self.make(None)
    }

    fn make(self, issuer: Option<&CertifiedIssuer<'static, KeyPair>>) -> Identity {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, self.common_name.as_str());
        params.subject_alt_names = self.sans;
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = if self.expired {
            date_time_ymd(2021, 1, 1)
        } else {
            date_time_ymd(2999, 1, 1)
        };
        let key = KeyPair::generate().unwrap();
        let certificate = match issuer {
            Some(issuer) => params.signed_by(&key, issuer).unwrap(),
            None => params.self_signed(&key).unwrap(),
        };
        Identity {
            certificate_pem: certificate.pem(),
            key_pem: key.serialize_pem(),
            der: certificate.der().to_vec(),
        }
    }
}

/// A client certificate and its key.
pub struct Identity {
    pub certificate_pem: String,
    pub key_pem: String,
    der: Vec<u8>,
}

impl Identity {
    /// A `kubernetes.io/tls` Secret named `name` holding the certificate and key (a server
    /// certificate for the Namespace or a custom domain).
    pub fn tls_secret(&self, name: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
            indent(&self.certificate_pem),
            indent(&self.key_pem)
        )
    }

    /// The SHA-256 thumbprint, upper-case hex (as Azure's portal shows it).
    pub fn thumbprint(&self) -> String {
        use sha2::Digest;
        sha2::Sha256::digest(&self.der)
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect()
    }

    /// Write `<name>.crt` and `<name>.key` into `dir` for mosquitto's `--cert`/`--key`.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        std::fs::create_dir_all(dir).unwrap();
        let certificate = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&certificate, &self.certificate_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (certificate, key)
    }
}

/// A TLS connection to `addr` (as `localhost`) trusting `server_ca_pem`, presenting
/// `identity` when given.
pub async fn tls_connect(
    addr: SocketAddr,
    server_ca_pem: &str,
    identity: Option<&Identity>,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(server_ca_pem.as_bytes()) {
        roots.add(certificate.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(identity) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(identity.certificate_pem.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake")
}

/// `connect` over WebSockets over TLS (`wss://localhost:<port>/mqtt`, subprotocol `mqtt`),
/// presenting `identity` when given: the CONNACK.
pub async fn wss_connect(
    addr: SocketAddr,
    server_ca_pem: &str,
    identity: Option<&Identity>,
    connect: gridline_dataplane::mqtt::codec::Connect,
) -> gridline_dataplane::mqtt::codec::ConnAck {
    use bytes::BytesMut;
    use futures::{SinkExt, StreamExt};
    use gridline_dataplane::mqtt::codec::{Codec, Packet};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_util::codec::{Decoder, Encoder};
    let tls = tls_connect(addr, server_ca_pem, identity).await;
    let mut request = format!("wss://localhost:{}/mqtt", addr.port())
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::client_async(request, tls).await.unwrap();
    let mut codec = Codec::new(connect.version, 1 << 20);
    let mut bytes = BytesMut::new();
    codec
        .encode(Packet::Connect(Box::new(connect)), &mut bytes)
        .unwrap();
    socket.send(Message::binary(bytes.freeze())).await.unwrap();
    let mut received = BytesMut::new();
    loop {
        if let Some(Packet::ConnAck(ack)) = codec.decode(&mut received).unwrap() {
            return ack;
        }
        match tokio::time::timeout(std::time::Duration::from_secs(5), socket.next()).await {
            Ok(Some(Ok(Message::Binary(data)))) => received.extend_from_slice(&data),
            other => panic!("no CONNACK over WSS: {other:?}"),
        }
    }
}

/// A JWT issuer: a P-256 key, published as a JWKS.
pub struct JwtIssuer {
    pub issuer: String,
    key: jsonwebtoken::EncodingKey,
    jwk: serde_json::Value,
}

impl JwtIssuer {
    pub fn new(issuer: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let raw = key.public_key_raw();
        let jwk = serde_json::json!({
            "kty": "EC",
            "crv": "P-256",
            "use": "sig",
            "kid": "test-key",
            "x": URL_SAFE_NO_PAD.encode(&raw[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&raw[33..65]),
        });
        Self {
            issuer: issuer.into(),
            key: jsonwebtoken::EncodingKey::from_ec_der(&key.serialize_der()),
            jwk,
        }
    }

    /// A Secret holding the JWKS as `jwks.json`.
    pub fn secret(&self, name: &str) -> String {
        let jwks = serde_json::json!({ "keys": [self.jwk] });
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\nstringData:\n  jwks.json: '{jwks}'\n"
        )
    }

    /// A token with `claims`, signed with this issuer's key.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some("test-key".into());
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }

    /// A token of this issuer for `audience`, expiring `lifetime_secs` from now.
    pub fn token(&self, audience: &str, lifetime_secs: i64) -> String {
        self.sign(&serde_json::json!({
            "iss": self.issuer,
            "aud": audience,
            "sub": "test",
            "exp": unix_now() + lifetime_secs,
        }))
    }
}

pub fn unix_now() -> i64 {
    let elapsed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(elapsed.as_secs()).unwrap()
}
