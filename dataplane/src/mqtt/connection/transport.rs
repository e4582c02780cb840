//! What carries a connection's bytes, and so which listener it came through.

use crate::mqtt::authorize::Listener;
use crate::mqtt::tls::PeerCertificates;

/// What carries the connection's bytes.
#[derive(Clone, Debug)]
pub enum Transport {
    Plaintext,
    /// After the TLS handshake; the client's certificate chain (leaf first), empty when it
    /// sent none. Kept for certificate authentication (issue 6).
    Tls {
        client_certificates: PeerCertificates,
    },
    /// MQTT over WebSockets; over TLS (the WSS listener) with the client's certificate chain
    /// as for `Tls`, else none.
    WebSocket {
        client_certificates: PeerCertificates,
        /// Carried by TLS (the WSS listener), not `ws://` on the HTTP listener.
        tls: bool,
    },
}

impl Transport {
    /// The client's certificate chain (leaf first); empty when none was presented.
    pub(super) fn client_certificates(&self) -> &[rustls_pki_types::CertificateDer<'static>] {
        match self {
            Transport::Tls {
                client_certificates,
            }
            | Transport::WebSocket {
                client_certificates,
                ..
            } => client_certificates,
            Transport::Plaintext => &[],
        }
    }

    pub(super) fn listener(&self) -> Listener {
        match self {
            Transport::Plaintext => Listener::Plaintext,
            Transport::Tls { .. } => Listener::Tls,
            Transport::WebSocket { tls: false, .. } => Listener::WebSocket,
            Transport::WebSocket { tls: true, .. } => Listener::SecureWebSocket,
        }
    }
}
