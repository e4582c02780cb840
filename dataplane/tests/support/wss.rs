//! MQTT over WebSockets over TLS from the test side: a rustls client trusting the test CA
//! (optionally offering a client certificate and noting whether the server asked for one)
//! and a tokio-tungstenite WebSocket carrying packets encoded with the broker's own codec.

use bytes::BytesMut;
use futures::{SinkExt, StreamExt};
use gridline_dataplane::mqtt::codec::{Codec, Packet, Version};
use rustls::client::ResolvesClientCert;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_util::codec::{Decoder, Encoder};

/// Offers `key` when the server asks for a client certificate, and remembers that it asked.
#[derive(Debug)]
pub struct OfferedCertificate {
    key: Option<Arc<CertifiedKey>>,
    pub requested: AtomicBool,
}

impl OfferedCertificate {
    /// `identity` (a certificate issued by a CA the Namespace trusts, say) and its key.
    pub fn of(identity: &super::pki::Identity) -> Arc<Self> {
        let chain = CertificateDer::pem_slice_iter(identity.certificate_pem.as_bytes())
            .map(|c| c.unwrap())
            .collect();
        let der = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes()).unwrap();
        let signing = rustls::crypto::ring::sign::any_supported_type(&der).unwrap();
        Arc::new(Self {
            key: Some(Arc::new(CertifiedKey::new(chain, signing))),
            requested: AtomicBool::new(false),
        })
    }

    /// A self-signed certificate for `common_name` (None: none offered, asks still noted).
    pub fn new(common_name: Option<&str>) -> Arc<Self> {
        let key = common_name.map(|name| {
            let pair = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name);
            let certificate = params.self_signed(&pair).unwrap();
            let der = PrivateKeyDer::from_pem_slice(pair.serialize_pem().as_bytes()).unwrap();
            let signing = rustls::crypto::ring::sign::any_supported_type(&der).unwrap();
            Arc::new(CertifiedKey::new(vec![certificate.der().clone()], signing))
        });
        Arc::new(Self {
            key,
            requested: AtomicBool::new(false),
        })
    }
}

impl ResolvesClientCert for OfferedCertificate {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _schemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.requested.store(true, Ordering::SeqCst);
        self.key.clone()
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A TLS connection to `addr` as `localhost`, trusting `ca_pem`, with `offered` answering
/// a certificate request.
pub async fn tls_connect(
    addr: SocketAddr,
    ca_pem: &str,
    offered: Arc<OfferedCertificate>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(certificate.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_cert_resolver(offered);
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await?;
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// An MQTT client over `wss://localhost:<port>/mqtt` (subprotocol `mqtt`).
pub struct WssClient {
    socket: WebSocketStream<TlsStream<TcpStream>>,
    codec: Codec,
    received: BytesMut,
}

impl WssClient {
    /// TLS, then the WebSocket upgrade; an error names what failed.
    pub async fn open(
        addr: SocketAddr,
        ca_pem: &str,
        offered: Arc<OfferedCertificate>,
        version: Version,
    ) -> Result<Self, String> {
        let tls = tls_connect(addr, ca_pem, offered)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        let mut request = format!("wss://localhost:{}/mqtt", addr.port())
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
        let (socket, _) = tokio_tungstenite::client_async(request, tls)
            .await
            .map_err(|e| format!("WebSocket: {e}"))?;
        Ok(Self {
            socket,
            codec: Codec::new(version, 1 << 20),
            received: BytesMut::new(),
        })
    }

    pub async fn send(&mut self, packet: Packet) {
        let mut bytes = BytesMut::new();
        self.codec.encode(packet, &mut bytes).expect("encode");
        self.socket
            .send(Message::binary(bytes.freeze()))
            .await
            .expect("send");
    }

    /// The next packet within `wait`; None on timeout or when the socket closed.
    pub async fn next(&mut self, wait: Duration) -> Option<Packet> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(packet) = self.codec.decode(&mut self.received).expect("decode") {
                return Some(packet);
            }
            let message = tokio::time::timeout_at(deadline, self.socket.next()).await;
            match message {
                Ok(Some(Ok(Message::Binary(bytes)))) => self.received.extend_from_slice(&bytes),
                Ok(Some(Ok(_))) => continue,
                _ => return None,
            }
        }
    }
}
