//! X.509 client certificates (SPEC §D), as Event Grid judges them at CONNECT:
//! - the chain must lead to one of the Namespace's CA certificates (an intermediate
//!   registered there is a trust anchor of its own, as in Event Grid), verified by rustls'
//!   `WebPkiClientVerifier`; or, under `ThumbprintMatch`, the leaf's SHA-256 thumbprint must be
//!   one the Client lists (self-signed certificates welcome, no chain needed);
//! - the leaf must be within its validity dates;
//! - the certificate field the Client's `validationScheme` names must hold its
//!   authentication name: the subject CN, or a SAN of type DNS, URI, IP or e-mail.
//!
//! Names compare exactly, except DNS names (ASCII case-insensitive, as DNS is) and IP
//! addresses (compared as addresses, so `::1` and `0:0::1` are one).

use super::AuthFailure;
use gridline_crds::model::Snapshot;
use gridline_crds::types::client::ValidationScheme;
use gridline_crds::types::namespace::AlternativeAuthenticationNameSource;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Weak};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::server::danger::ClientCertVerifier;
use tokio_rustls::rustls::{self, CertificateError, RootCertStore};
use x509_parser::extensions::GeneralName;

/// What authentication needs from a client's leaf certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientCertificate {
    pub subject_common_name: Option<String>,
    pub dns_names: Vec<String>,
    pub uris: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub emails: Vec<String>,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// Lower-case hex SHA-256 of the DER certificate (Event Grid's thumbprint).
    pub thumbprint: String,
}

impl ClientCertificate {
    /// Parse a DER leaf certificate.
    pub fn parse(der: &[u8]) -> Result<Self, AuthFailure> {
        let (_, certificate) =
            x509_parser::parse_x509_certificate(der).map_err(|_| AuthFailure::BadCertificate)?;
        let mut parsed = Self {
            subject_common_name: certificate
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .filter(|cn| !cn.is_empty())
                .map(str::to_string),
            not_before: certificate.validity().not_before.timestamp(),
            not_after: certificate.validity().not_after.timestamp(),
            thumbprint: thumbprint(der),
            ..Self::default()
        };
        let names = certificate
            .subject_alternative_name()
            .map_err(|_| AuthFailure::BadCertificate)?;
        for name in names.iter().flat_map(|san| &san.value.general_names) {
            match name {
                GeneralName::DNSName(dns) => parsed.dns_names.push(dns.to_string()),
                GeneralName::URI(uri) => parsed.uris.push(uri.to_string()),
                GeneralName::RFC822Name(email) => parsed.emails.push(email.to_string()),
                GeneralName::IPAddress(bytes) => {
                    if let Some(ip) = ip_of(bytes) {
                        parsed.ip_addresses.push(ip);
                    }
                }
                _ => {}
            }
        }
        Ok(parsed)
    }

    /// The authentication name `source` gives: the subject CN or the first SAN of the type.
    pub fn name_from(&self, source: AlternativeAuthenticationNameSource) -> Option<String> {
        use AlternativeAuthenticationNameSource as Source;
        match source {
            Source::ClientCertificateSubject => self.subject_common_name.clone(),
            Source::ClientCertificateDns => self.dns_names.first().cloned(),
            Source::ClientCertificateUri => self.uris.first().cloned(),
            Source::ClientCertificateIp => self.ip_addresses.first().map(IpAddr::to_string),
            Source::ClientCertificateEmail => self.emails.first().cloned(),
        }
    }

    /// Event Grid's alternative sources: the first of `sources`, in order, that the
    /// certificate fills.
    pub fn name_from_sources(
        &self,
        sources: &[AlternativeAuthenticationNameSource],
    ) -> Option<String> {
        sources.iter().find_map(|source| self.name_from(*source))
    }

    /// Whether `now` (Unix seconds) is within the validity dates.
    pub fn check_validity(&self, now: i64) -> Result<(), AuthFailure> {
        if now < self.not_before {
            Err(AuthFailure::CertificateNotYetValid)
        } else if now > self.not_after {
            Err(AuthFailure::CertificateExpired)
        } else {
            Ok(())
        }
    }

    /// Whether the field `scheme` names holds `name`; under `ThumbprintMatch`, whether the
    /// thumbprint is one of `allowed_thumbprints` (lower-case hex, as compiled).
    pub fn check_scheme(
        &self,
        scheme: ValidationScheme,
        name: &str,
        allowed_thumbprints: &[String],
    ) -> Result<(), AuthFailure> {
        let matches = match scheme {
            ValidationScheme::SubjectMatchesAuthenticationName => {
                self.subject_common_name.as_deref() == Some(name)
            }
            ValidationScheme::DnsMatchesAuthenticationName => {
                self.dns_names.iter().any(|d| d.eq_ignore_ascii_case(name))
            }
            ValidationScheme::UriMatchesAuthenticationName => self.uris.iter().any(|u| u == name),
            ValidationScheme::IpMatchesAuthenticationName => name
                .parse::<IpAddr>()
                .is_ok_and(|ip| self.ip_addresses.contains(&ip)),
            ValidationScheme::EmailMatchesAuthenticationName => {
                self.emails.iter().any(|e| e == name)
            }
            ValidationScheme::ThumbprintMatch => {
                return if allowed_thumbprints
                    .iter()
                    .any(|t| t.eq_ignore_ascii_case(&self.thumbprint))
                {
                    Ok(())
                } else {
                    Err(AuthFailure::ThumbprintMismatch)
                };
            }
        };
        if matches {
            Ok(())
        } else {
            Err(AuthFailure::NameMismatch)
        }
    }
}

/// Lower-case hex SHA-256 of `der`.
pub fn thumbprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn ip_of(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// Chains remembered as verified, per CA set (see [`CaTrust`]).
const VERIFIED_CHAINS: usize = 10_000;

/// Chain verification against the Namespace's CA certificates, with the verifier built once
/// per set of CAs (CA certificates change without a restart; the next CONNECT sees them).
///
/// A chain that verified is remembered (by the SHA-256 of its certificates) until the
/// earliest `notAfter` in it, so that a device reconnecting with the same certificate — a
/// reconnect storm after a restart is when the connection rate matters — costs no second
/// chain verification, the costliest step of CONNECT after the handshake itself. The memory
/// goes with the CA set (a removed CA is not trusted from the next CONNECT on) and holds at
/// most `VERIFIED_CHAINS` chains (then it starts over). The leaf's dates, the Client and the
/// scheme are still checked at every CONNECT; only the signature path is remembered.
pub struct CaTrust {
    provider: Arc<rustls::crypto::CryptoProvider>,
    cached: parking_lot::Mutex<Option<CachedVerifier>>,
    /// Chain verifications run (not answered from memory); for tests.
    verifications: std::sync::atomic::AtomicU64,
}

struct CachedVerifier {
    /// The Snapshot `cas` was last read from: while it is the one served, its CAs are not
    /// compared again (up to 2,048 PEM certificates). The `Weak` keeps the allocation, so its
    /// address cannot be reused by another Snapshot.
    source: Option<Weak<Snapshot>>,
    cas: BTreeMap<String, Vec<u8>>,
    /// `None`: no CA certificate parses, so no chain can verify.
    verifier: Option<Arc<dyn ClientCertVerifier>>,
    /// SHA-256 of a verified chain → until when (Unix seconds) the verification holds.
    verified: std::collections::HashMap<[u8; 32], i64>,
}

impl Default for CaTrust {
    fn default() -> Self {
        Self {
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            cached: parking_lot::Mutex::new(None),
            verifications: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl CaTrust {
    /// Whether `chain` (leaf first, as the client sent it) leads to one of the CA
    /// certificates of the Namespace `snapshot` serves, at `now`.
    pub fn verify_served(
        &self,
        snapshot: &Arc<Snapshot>,
        chain: &[CertificateDer<'static>],
        now: UnixTime,
    ) -> Result<(), AuthFailure> {
        let cas = snapshot
            .namespace
            .as_ref()
            .map(|n| &n.ca_certificates)
            .ok_or(AuthFailure::NoCaCertificates)?;
        self.verify_with(Some(snapshot), cas, chain, now)
    }

    /// Whether `chain` (leaf first, as the client sent it) leads to one of `cas` (PEM, by
    /// CA name) at `now`.
    pub fn verify(
        &self,
        cas: &BTreeMap<String, Vec<u8>>,
        chain: &[CertificateDer<'static>],
        now: UnixTime,
    ) -> Result<(), AuthFailure> {
        self.verify_with(None, cas, chain, now)
    }

    fn verify_with(
        &self,
        source: Option<&Arc<Snapshot>>,
        cas: &BTreeMap<String, Vec<u8>>,
        chain: &[CertificateDer<'static>],
        now: UnixTime,
    ) -> Result<(), AuthFailure> {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return Err(AuthFailure::NoCertificate);
        };
        let key = chain_key(chain);
        let now_secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let (verifier, verified_until) = {
            let mut cached = self.cached.lock();
            let current = self.current(&mut cached, source, cas);
            (
                current.verifier.clone(),
                current.verified.get(&key).copied(),
            )
        };
        let verifier = verifier.ok_or(AuthFailure::NoCaCertificates)?;
        if verified_until.is_some_and(|until| now_secs <= until) {
            return Ok(());
        }
        // Verified outside the lock: connections on other cores do not wait for it.
        self.verifications
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        verifier
            .verify_client_cert(leaf, intermediates, now)
            .map_err(|error| match error {
                rustls::Error::InvalidCertificate(error) => failure_of(&error),
                _ => AuthFailure::UntrustedCertificate,
            })?;
        if let Some(until) = earliest_not_after(chain) {
            let mut cached = self.cached.lock();
            if let Some(current) = cached.as_mut()
                && current
                    .verifier
                    .as_ref()
                    .is_some_and(|v| Arc::ptr_eq(v, &verifier))
            {
                if current.verified.len() >= VERIFIED_CHAINS {
                    current.verified.clear();
                }
                current.verified.insert(key, until);
            }
        }
        Ok(())
    }

    /// Chain verifications run so far (not answered from memory).
    pub fn verifications(&self) -> u64 {
        self.verifications
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The verifier of `cas` (read from `source`): the cached one, or a new one (forgetting
    /// verified chains) when the CAs changed.
    fn current<'a>(
        &self,
        cached: &'a mut Option<CachedVerifier>,
        source: Option<&Arc<Snapshot>>,
        cas: &BTreeMap<String, Vec<u8>>,
    ) -> &'a mut CachedVerifier {
        let same_source = source.is_some_and(|served| {
            cached
                .as_ref()
                .and_then(|c| c.source.as_ref())
                .is_some_and(|seen| std::ptr::eq(seen.as_ptr(), Arc::as_ptr(served)))
        });
        if !same_source && cached.as_ref().is_some_and(|c| &c.cas != cas) {
            *cached = None;
        }
        let current = cached.get_or_insert_with(|| CachedVerifier {
            source: None,
            cas: cas.clone(),
            verifier: self.build_verifier(cas),
            verified: std::collections::HashMap::new(),
        });
        if !same_source {
            current.source = source.map(Arc::downgrade);
        }
        current
    }

    fn build_verifier(
        &self,
        cas: &BTreeMap<String, Vec<u8>>,
    ) -> Option<Arc<dyn ClientCertVerifier>> {
        let mut roots = RootCertStore::empty();
        for pem in cas.values() {
            for certificate in CertificateDer::pem_slice_iter(pem).flatten() {
                // A certificate webpki cannot use as an anchor is skipped; the others still
                // count (the compiler already checked each holds a PEM block).
                let _ = roots.add(certificate);
            }
        }
        (!roots.is_empty())
            .then(|| {
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                    .allow_unauthenticated()
                    .build()
                    .ok()
            })
            .flatten()
    }
}

/// SHA-256 over the chain's certificates, each prefixed with its length.
fn chain_key(chain: &[CertificateDer<'static>]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for certificate in chain {
        hasher.update((certificate.len() as u64).to_be_bytes());
        hasher.update(certificate.as_ref());
    }
    hasher.finalize().into()
}

/// The earliest `notAfter` of the chain's certificates (Unix seconds); `None` if one does not
/// parse (such a chain is not remembered).
fn earliest_not_after(chain: &[CertificateDer<'static>]) -> Option<i64> {
    chain
        .iter()
        .map(|der| {
            x509_parser::parse_x509_certificate(der)
                .ok()
                .map(|(_, c)| c.validity().not_after.timestamp())
        })
        .try_fold(i64::MAX, |earliest, not_after| {
            not_after.map(|n| earliest.min(n))
        })
}

fn failure_of(error: &CertificateError) -> AuthFailure {
    match error {
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            AuthFailure::CertificateExpired
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            AuthFailure::CertificateNotYetValid
        }
        CertificateError::BadEncoding => AuthFailure::BadCertificate,
        _ => AuthFailure::UntrustedCertificate,
    }
}

#[cfg(test)]
pub(crate) mod tests;
