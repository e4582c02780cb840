//! The TLS side of the MQTT TLS listener: a rustls server configuration built from the
//! served Namespace (server certificate from its TLS Secret, `minimumTlsVersionAllowed`),
//! rebuilt only when those change, and a client-certificate policy that *requests* a
//! certificate without requiring one.
//!
//! Client certificates are not validated against CAs during the handshake: that is decided
//! at CONNECT time against the Snapshot served then (CA certificates and Clients change
//! without a restart, and `ThumbprintMatch` accepts self-signed certificates). The handshake
//! only proves the client holds the certificate's key (the CertificateVerify signature).

use gridline_crds::model::{Snapshot, TlsMaterial};
use gridline_crds::types::namespace::TlsVersion;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use std::sync::Arc;
use tokio_rustls::rustls::client::danger::HandshakeSignatureValid;
use tokio_rustls::rustls::crypto::{self, CryptoProvider, WebPkiSupportedAlgorithms};
use tokio_rustls::rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tokio_rustls::rustls::{
    self, DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme,
};

/// Why no TLS configuration could be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("the Namespace names no TLS Secret (spec.tls.secretName)")]
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

/// The rustls configuration of the served Namespace, cached by what it was built from.
pub struct TlsConfigs {
    provider: Arc<CryptoProvider>,
    cached: parking_lot::Mutex<Option<Cached>>,
}

struct Cached {
    material: TlsMaterial,
    minimum: TlsVersion,
    config: Arc<ServerConfig>,
}

impl Default for TlsConfigs {
    fn default() -> Self {
        Self {
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            cached: parking_lot::Mutex::new(None),
        }
    }
}

impl TlsConfigs {
    /// The server configuration for `snapshot`: the cached one when its certificate and
    /// minimum version are unchanged, else a new one (certificate rotation needs no restart).
    pub fn config_for(&self, snapshot: &Snapshot) -> Result<Arc<ServerConfig>, TlsError> {
        let namespace = snapshot.namespace.as_ref().ok_or(TlsError::NoCertificate)?;
        let material = namespace
            .tls_certificate
            .as_ref()
            .ok_or(TlsError::NoCertificate)?;
        let minimum = namespace.spec.minimum_tls_version_allowed;
        let mut cached = self.cached.lock();
        if let Some(c) = cached.as_ref()
            && c.minimum == minimum
            && &c.material == material
        {
            return Ok(c.config.clone());
        }
        let config = Arc::new(server_config(material, minimum, self.provider.clone())?);
        *cached = Some(Cached {
            material: material.clone(),
            minimum,
            config: config.clone(),
        });
        Ok(config)
    }
}

/// A rustls server configuration: the chain and key of `material`, TLS 1.3 only when
/// `minimum` says so (else 1.2 and 1.3), client certificates requested, not required.
pub fn server_config(
    material: &TlsMaterial,
    minimum: TlsVersion,
    provider: Arc<CryptoProvider>,
) -> Result<ServerConfig, TlsError> {
    let chain = CertificateDer::pem_slice_iter(&material.certificate_chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::Certificate("no CERTIFICATE block".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(&material.private_key_pem)
        .map_err(|e| TlsError::Key(e.to_string()))?;
    let versions: &[&rustls::SupportedProtocolVersion] = match minimum {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let verifier = Arc::new(RequestClientCertificate {
        algorithms: provider.signature_verification_algorithms,
    });
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    Ok(config)
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
