//! TLS for every listener that serves it: MQTT over TLS, and HTTPS (the Event Grid API and
//! MQTT over WebSockets at `/mqtt`). One [`ServerTls`] serves them all from the served
//! Namespace: the certificate of the custom domain a client names in SNI
//! (`spec.customDomains`), else the Namespace's own (`spec.tls`), and the lowest version
//! `minimumTlsVersionAllowed` allows.
//!
//! Certificates are chosen per handshake by a resolver whose certificate set is swapped
//! atomically when the Snapshot's material changes; the rustls configurations hold the
//! resolver, not the certificates, so a certificate renewed in its Secret (cert-manager) is
//! presented to the next handshake while every established connection carries on.
//!
//! Client certificates are requested, not required, and not validated against CAs during the
//! handshake: MQTT decides at CONNECT against the Snapshot served then (CA certificates and
//! Clients change without a restart, and `ThumbprintMatch` accepts self-signed certificates).
//! The handshake only proves the client holds the certificate's key (the CertificateVerify
//! signature).

use arc_swap::ArcSwap;
use gridline_crds::model::{Snapshot, TlsMaterial};
use gridline_crds::types::namespace::TlsVersion;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::rustls::client::danger::HandshakeSignatureValid;
use tokio_rustls::rustls::crypto::{self, CryptoProvider, WebPkiSupportedAlgorithms};
use tokio_rustls::rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{
    self, DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme,
};
use tokio_rustls::server::TlsStream;
use tracing::warn;

/// Why no TLS configuration could be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "the Namespace names no TLS Secret (spec.tls.secretName) and no custom domain with a usable certificate"
    )]
    NoCertificate,
    #[error("the TLS Secret's tls.crt holds no certificate: {0}")]
    Certificate(String),
    #[error("the TLS Secret's tls.key holds no usable private key: {0}")]
    Key(String),
    #[error("rustls refused the certificate and key: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A client certificate chain as presented in the handshake (leaf first, DER).
pub type PeerCertificates = Vec<CertificateDer<'static>>;

/// What a listener speaks inside TLS; it decides the ALPN protocols offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// MQTT over TLS: no ALPN (clients that offer one still connect).
    Mqtt,
    /// HTTP/1.1 (the API and the WebSocket upgrade at `/mqtt`).
    Https,
}

/// The rustls configurations of the served Namespace, made from what the Snapshot holds and
/// remade only when that changes.
pub struct ServerTls {
    provider: Arc<CryptoProvider>,
    resolver: Arc<SniResolver>,
    cached: parking_lot::Mutex<Cached>,
}

#[derive(Default)]
struct Cached {
    /// What the resolver's certificates were made from.
    material: Option<Material>,
    /// The configurations for the minimum version they were made for.
    configs: Option<(TlsVersion, Arc<ServerConfig>, Arc<ServerConfig>)>,
}

/// The certificate material of a Namespace: the default, and per custom domain.
#[derive(Clone, PartialEq, Eq)]
struct Material {
    default: Option<TlsMaterial>,
    domains: Vec<(String, TlsMaterial)>,
    /// Domains served with the default certificate instead, and why (the operator reports
    /// them in status; local mode has only this log).
    unserved: Vec<(String, String)>,
}

impl Material {
    fn of(snapshot: &Snapshot) -> Option<Self> {
        let namespace = snapshot.namespace.as_ref()?;
        Some(Self {
            default: namespace.tls_certificate.clone(),
            domains: namespace
                .custom_domains
                .iter()
                .filter_map(|domain| {
                    let certificate = domain.certificate.clone()?;
                    Some((
                        domain.fully_qualified_domain_name.to_ascii_lowercase(),
                        certificate,
                    ))
                })
                .collect(),
            unserved: namespace
                .custom_domains
                .iter()
                .filter(|domain| domain.certificate.is_none())
                .map(|domain| {
                    let problem = domain.problem.clone().unwrap_or_default();
                    (domain.fully_qualified_domain_name.clone(), problem)
                })
                .collect(),
        })
    }
}

impl Default for ServerTls {
    fn default() -> Self {
        Self {
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            resolver: Arc::new(SniResolver::default()),
            cached: parking_lot::Mutex::new(Cached::default()),
        }
    }
}

impl ServerTls {
    /// The server configuration of `protocol` for `snapshot`. A change of certificates (the
    /// Namespace's or a custom domain's) reaches the next handshake without making a new
    /// configuration; a change of the minimum version makes new ones.
    pub fn config_for(
        &self,
        snapshot: &Snapshot,
        protocol: Protocol,
    ) -> Result<Arc<ServerConfig>, TlsError> {
        let namespace = snapshot.namespace.as_ref().ok_or(TlsError::NoCertificate)?;
        let minimum = namespace.spec.minimum_tls_version_allowed;
        let material = Material::of(snapshot).ok_or(TlsError::NoCertificate)?;
        let mut cached = self.cached.lock();
        if cached.material.as_ref() != Some(&material) {
            for (domain, problem) in &material.unserved {
                warn!(%domain, %problem, "custom domain served with the Namespace's certificate");
            }
            let certificates = self.certificates(&material)?;
            self.resolver.certificates.store(Arc::new(certificates));
            cached.material = Some(material);
        }
        let configs = match &cached.configs {
            Some((version, mqtt, https)) if *version == minimum => (mqtt.clone(), https.clone()),
            _ => {
                let mqtt = Arc::new(self.server_config(minimum, &[])?);
                let https = Arc::new(self.server_config(minimum, &[b"http/1.1"])?);
                cached.configs = Some((minimum, mqtt.clone(), https.clone()));
                (mqtt, https)
            }
        };
        Ok(match protocol {
            Protocol::Mqtt => configs.0,
            Protocol::Https => configs.1,
        })
    }

    /// The resolver's certificate set for `material`. A custom domain whose certificate
    /// cannot be used is left out (its clients get the default) and logged; the set is an
    /// error only when nothing at all can be served.
    fn certificates(&self, material: &Material) -> Result<Certificates, TlsError> {
        let default = match &material.default {
            Some(default) => Some(certified_key(default, &self.provider)?),
            None => None,
        };
        let mut certificates = Certificates {
            default,
            ..Certificates::default()
        };
        for (name, domain) in &material.domains {
            match certified_key(domain, &self.provider) {
                Ok(key) => certificates.insert(name, key),
                Err(error) => {
                    warn!(domain = %name, %error, "custom domain certificate unusable: its clients get the Namespace's certificate")
                }
            }
        }
        if certificates.is_empty() {
            return Err(TlsError::NoCertificate);
        }
        Ok(certificates)
    }

    fn server_config(&self, minimum: TlsVersion, alpn: &[&[u8]]) -> Result<ServerConfig, TlsError> {
        let versions: &[&rustls::SupportedProtocolVersion] = match minimum {
            TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let verifier = Arc::new(RequestClientCertificate {
            algorithms: self.provider.signature_verification_algorithms,
        });
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(versions)?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(self.resolver.clone());
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }
}

/// Why a TLS handshake did not complete.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeFailure {
    #[error("the TLS handshake failed: {0}")]
    Failed(std::io::Error),
    #[error("no TLS handshake within the handshake timeout")]
    TimedOut,
}

impl HandshakeFailure {
    /// The metrics label of the failure.
    pub fn label(&self) -> &'static str {
        match self {
            HandshakeFailure::Failed(_) => "tls_failed",
            HandshakeFailure::TimedOut => "tls_timeout",
        }
    }
}

/// The server side of a TLS handshake on `stream` with `config`, within `timeout`: the
/// stream, and the certificate chain the client presented (empty when none).
pub async fn accept(
    stream: TcpStream,
    config: Arc<ServerConfig>,
    timeout: Duration,
) -> Result<(TlsStream<TcpStream>, PeerCertificates), HandshakeFailure> {
    let accepting = tokio_rustls::TlsAcceptor::from(config).accept(stream);
    let stream = tokio::time::timeout(timeout, accepting)
        .await
        .map_err(|_| HandshakeFailure::TimedOut)?
        .map_err(HandshakeFailure::Failed)?;
    let client_certificates = stream
        .get_ref()
        .1
        .peer_certificates()
        .map(|chain| chain.iter().map(|c| c.clone().into_owned()).collect())
        .unwrap_or_default();
    Ok((stream, client_certificates))
}

/// A certificate chain and its signing key from PEM, checked to belong together.
fn certified_key(
    material: &TlsMaterial,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(&material.certificate_chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::Certificate("no CERTIFICATE block".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(&material.private_key_pem)
        .map_err(|e| TlsError::Key(e.to_string()))?;
    let key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::Key(e.to_string()))?;
    let certified = CertifiedKey::new(chain, key);
    certified.keys_match()?;
    Ok(Arc::new(certified))
}

/// The certificates a handshake may be answered with.
#[derive(Debug, Default)]
struct Certificates {
    /// `spec.tls`: for clients that name no custom domain (or none at all).
    default: Option<Arc<CertifiedKey>>,
    /// Custom domains by name, lowercase (a domain is one name; its certificate may be a
    /// wildcard certificate, which compile checked covers it).
    domains: HashMap<String, Arc<CertifiedKey>>,
}

impl Certificates {
    fn insert(&mut self, name: &str, key: Arc<CertifiedKey>) {
        self.domains.insert(name.to_string(), key);
    }

    fn is_empty(&self) -> bool {
        self.default.is_none() && self.domains.is_empty()
    }

    /// The certificate for a client that named `server_name`: that custom domain's, else the
    /// default.
    fn choose(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        server_name
            // rustls hands SNI over lowercased already; a trailing dot names the same host.
            .and_then(|name| self.domains.get(name.trim_end_matches('.')))
            .or(self.default.as_ref())
            .cloned()
    }
}

/// Picks a certificate by SNI from the current set (swapped whole when it changes).
#[derive(Debug, Default)]
struct SniResolver {
    certificates: ArcSwap<Certificates>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.certificates.load().choose(client_hello.server_name())
    }
}

/// Asks every client for a certificate, accepts none or any (see the module comment), and
/// checks the handshake signature so that a presented certificate is one the client holds.
#[derive(Debug)]
struct RequestClientCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for RequestClientCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate for `names` (the first is the CN), as PEM material.
    fn material(names: &[&str]) -> TlsMaterial {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let certificate = params.self_signed(&key).unwrap();
        TlsMaterial {
            certificate_chain_pem: certificate.pem().into_bytes(),
            private_key_pem: key.serialize_pem().into_bytes(),
        }
    }

    fn key(names: &[&str]) -> Arc<CertifiedKey> {
        let provider = rustls::crypto::ring::default_provider();
        certified_key(&material(names), &provider).unwrap()
    }

    fn set(
        default: Option<&Arc<CertifiedKey>>,
        domains: &[(&str, &Arc<CertifiedKey>)],
    ) -> Certificates {
        let mut certificates = Certificates {
            default: default.cloned(),
            ..Certificates::default()
        };
        for (name, key) in domains {
            certificates.insert(name, (*key).clone());
        }
        certificates
    }

    #[test]
    fn a_client_naming_a_custom_domain_gets_that_domains_certificate() {
        let default = key(&["gridline.local"]);
        let orders = key(&["orders.example.com"]);
        let devices = key(&["devices.example.com"]);
        let certificates = set(
            Some(&default),
            &[
                ("orders.example.com", &orders),
                ("devices.example.com", &devices),
            ],
        );
        let chosen = certificates.choose(Some("devices.example.com")).unwrap();
        assert!(Arc::ptr_eq(&chosen, &devices));
        let chosen = certificates.choose(Some("orders.example.com.")).unwrap();
        assert!(Arc::ptr_eq(&chosen, &orders));
    }

    #[test]
    fn an_unknown_name_or_no_name_falls_back_to_the_namespace_certificate() {
        let default = key(&["gridline.local"]);
        let orders = key(&["orders.example.com"]);
        let certificates = set(Some(&default), &[("orders.example.com", &orders)]);
        assert!(Arc::ptr_eq(
            &certificates.choose(Some("other.example.com")).unwrap(),
            &default
        ));
        assert!(Arc::ptr_eq(&certificates.choose(None).unwrap(), &default));
    }

    #[test]
    fn without_a_namespace_certificate_only_the_custom_domains_are_answered() {
        let orders = key(&["*.example.com"]);
        let certificates = set(None, &[("orders.example.com", &orders)]);
        assert!(certificates.choose(Some("orders.example.com")).is_some());
        assert!(certificates.choose(Some("other.example.com")).is_none());
        assert!(
            certificates.choose(None).is_none(),
            "no default: the handshake fails"
        );
    }

    #[test]
    fn a_key_that_does_not_match_its_certificate_is_refused() {
        let mut mismatched = material(&["a.example.com"]);
        mismatched.private_key_pem = material(&["b.example.com"]).private_key_pem;
        let provider = rustls::crypto::ring::default_provider();
        assert!(certified_key(&mismatched, &provider).is_err());
    }
}
