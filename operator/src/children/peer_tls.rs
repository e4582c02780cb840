//! The peer TLS material of a Namespace: a CA made once and kept in
//! `<ns-name>-gridline-peer-ca` (`ca.crt`, `ca.key`; never mounted into a pod), and one leaf
//! certificate for all the Namespace's pods in `<ns-name>-gridline-peer-tls` (`ca.crt`,
//! `tls.crt`, `tls.key`; mounted at [`PEER_TLS_DIR`](super::PEER_TLS_DIR)). Pods present the
//! leaf on every peer link, both as server and as client, and accept only a peer whose
//! certificate chains to `ca.crt` and names [`PEER_NAME`].
//!
//! Pure: the controller (`controller/peer_tls.rs`) reads the Secrets, asks [`judge_leaf`]
//! whether the leaf is still good, and writes what these functions build.

use super::conventions::*;
use gridline_crds::types::Namespace;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use x509_parser::certificate::X509Certificate;
use x509_parser::pem::Pem;

/// The DNS name in the leaf (its only SAN): the name every pod checks its peer's certificate
/// against, the same for all pods, since pods come and go but the CA is the Namespace's.
pub const PEER_NAME: &str = gridline_crds::types::namespace::PEER_CERTIFICATE_NAME;

/// Keys of the CA Secret.
pub const CA_CERT_KEY: &str = "ca.crt";
pub const CA_KEY_KEY: &str = "ca.key";
/// Keys of the leaf Secret (besides [`CA_CERT_KEY`]).
pub const TLS_CERT_KEY: &str = "tls.crt";
pub const TLS_KEY_KEY: &str = "tls.key";

/// How long the CA is valid: ten years. It is never replaced by the operator.
pub const CA_VALIDITY: Duration = Duration::from_secs(3650 * 24 * 60 * 60);
/// How long a leaf is valid: one year.
pub const LEAF_VALIDITY: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// A leaf expiring within this long is re-issued (a resync runs every 5 minutes, so it is
/// replaced weeks before it runs out).
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// Certificates start this long before they are made, for clocks a little behind ours.
const BACKDATE: Duration = Duration::from_secs(60 * 60);

/// What can go wrong making or reading peer TLS material.
#[derive(Debug, thiserror::Error)]
pub enum PeerTlsError {
    #[error("generating the peer {what}: {source}")]
    Generate {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
    #[error(
        "Secret {secret} holds no usable peer CA ({problem}); the operator never replaces a CA: delete the Secret to have a new one made"
    )]
    UnusableCa { secret: String, problem: String },
}

/// The Namespace's peer CA: its certificate and key, PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct PeerCa {
    pub cert_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for PeerCa {
    /// Never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerCa").finish_non_exhaustive()
    }
}

/// A leaf certificate and its key, PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct PeerLeaf {
    pub cert_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for PeerLeaf {
    /// Never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerLeaf").finish_non_exhaustive()
    }
}

fn offset_date_time(at: SystemTime) -> time::OffsetDateTime {
    let seconds = at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    time::OffsetDateTime::from_unix_timestamp(seconds).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

fn p256_key(what: &'static str) -> Result<KeyPair, PeerTlsError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|source| PeerTlsError::Generate { what, source })
}

impl PeerCa {
    /// A new CA for the Namespace `ns_name`: ECDSA P-256, valid ten years from `now`.
    pub fn generate(ns_name: &str, now: SystemTime) -> Result<Self, PeerTlsError> {
        let generate = |source| PeerTlsError::Generate { what: "CA", source };
        let key = p256_key("CA key")?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(generate)?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("gridline peer CA {ns_name}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = offset_date_time(now - BACKDATE);
        params.not_after = offset_date_time(now + CA_VALIDITY);
        let certificate = params.self_signed(&key).map_err(generate)?;
        Ok(Self {
            cert_pem: certificate.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The CA kept in `secret` (`ca.crt`, `ca.key`), checked to be a certificate and a key
    /// that can sign with it.
    pub fn from_secret(secret: &Secret) -> Result<Self, PeerTlsError> {
        let unusable = |problem: String| PeerTlsError::UnusableCa {
            secret: secret_name(secret),
            problem,
        };
        let cert_pem = text(secret, CA_CERT_KEY).map_err(unusable)?;
        let key_pem = text(secret, CA_KEY_KEY).map_err(unusable)?;
        let ca = Self { cert_pem, key_pem };
        ca.issuer()
            .map_err(|error| unusable(format!("{CA_CERT_KEY} / {CA_KEY_KEY}: {error}")))?;
        let pem = single_pem(&ca.cert_pem).map_err(unusable)?;
        let certificate = pem
            .parse_x509()
            .map_err(|error| unusable(format!("{CA_CERT_KEY}: {error}")))?;
        if !public_key_matches(&certificate, &ca.key_pem) {
            return Err(unusable(format!(
                "{CA_KEY_KEY} is not the key of {CA_CERT_KEY}"
            )));
        }
        Ok(ca)
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>, rcgen::Error> {
        let key = KeyPair::from_pem(&self.key_pem)?;
        Issuer::from_ca_cert_pem(&self.cert_pem, key)
    }

    /// A new leaf for every pod of the Namespace: ECDSA P-256, DNS SAN [`PEER_NAME`], server
    /// and client authentication, valid one year from `now`, signed by this CA.
    pub fn issue_leaf(&self, now: SystemTime) -> Result<PeerLeaf, PeerTlsError> {
        let generate = |source| PeerTlsError::Generate {
            what: "certificate",
            source,
        };
        let issuer = self.issuer().map_err(generate)?;
        let key = p256_key("certificate key")?;
        let mut params = CertificateParams::new(vec![PEER_NAME.to_string()]).map_err(generate)?;
        params
            .distinguished_name
            .push(DnType::CommonName, PEER_NAME);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = offset_date_time(now - BACKDATE);
        params.not_after = offset_date_time(now + LEAF_VALIDITY);
        let certificate = params.signed_by(&key, &issuer).map_err(generate)?;
        Ok(PeerLeaf {
            cert_pem: certificate.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Why the leaf Secret must be (re-)issued, or that it need not be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeafVerdict {
    /// Signed by the CA, matching its key, [`PEER_NAME`], more than 30 days left: keep it.
    Current,
    Missing,
    /// A key is absent, or the certificate or key does not parse, or they do not belong
    /// together, or it lacks the name or a usage: the reason says which.
    Unusable(String),
    /// Signed by another CA (the CA Secret was replaced), or carrying another `ca.crt`.
    OtherCa,
    /// Expires within 30 days (or has).
    Expiring {
        seconds_left: i64,
    },
}

/// Whether `secret` (the leaf Secret, if it exists) holds a leaf of `ca` good for at least
/// 30 more days at `now`.
pub fn judge_leaf(secret: Option<&Secret>, ca: &PeerCa, now: SystemTime) -> LeafVerdict {
    let Some(secret) = secret else {
        return LeafVerdict::Missing;
    };
    let (ca_pem, cert_pem, key_pem) = match (
        text(secret, CA_CERT_KEY),
        text(secret, TLS_CERT_KEY),
        text(secret, TLS_KEY_KEY),
    ) {
        (Ok(ca_pem), Ok(cert_pem), Ok(key_pem)) => (ca_pem, cert_pem, key_pem),
        (Err(problem), _, _) | (_, Err(problem), _) | (_, _, Err(problem)) => {
            return LeafVerdict::Unusable(problem);
        }
    };
    if ca_pem.trim() != ca.cert_pem.trim() {
        return LeafVerdict::OtherCa;
    }
    let (leaf_pem, ca_cert_pem) = match (single_pem(&cert_pem), single_pem(&ca.cert_pem)) {
        (Ok(leaf), Ok(ca)) => (leaf, ca),
        (Err(problem), _) | (_, Err(problem)) => return LeafVerdict::Unusable(problem),
    };
    let (leaf, ca_certificate) = match (leaf_pem.parse_x509(), ca_cert_pem.parse_x509()) {
        (Ok(leaf), Ok(ca)) => (leaf, ca),
        (Err(error), _) | (_, Err(error)) => {
            return LeafVerdict::Unusable(format!("{TLS_CERT_KEY}: {error}"));
        }
    };
    if leaf.issuer() != ca_certificate.subject()
        || leaf
            .verify_signature(Some(ca_certificate.public_key()))
            .is_err()
    {
        return LeafVerdict::OtherCa;
    }
    if !public_key_matches(&leaf, &key_pem) {
        return LeafVerdict::Unusable(format!("{TLS_KEY_KEY} is not the key of {TLS_CERT_KEY}"));
    }
    if let Some(problem) = missing_name_or_usage(&leaf) {
        return LeafVerdict::Unusable(problem);
    }
    let now_seconds = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let seconds_left = leaf.validity().not_after.timestamp() - now_seconds;
    let renew_before = i64::try_from(RENEW_BEFORE.as_secs()).unwrap_or(i64::MAX);
    if seconds_left <= renew_before {
        return LeafVerdict::Expiring { seconds_left };
    }
    LeafVerdict::Current
}

/// What a leaf written by an older operator, or by hand, might lack.
fn missing_name_or_usage(leaf: &X509Certificate<'_>) -> Option<String> {
    let names_peer = leaf
        .subject_alternative_name()
        .ok()
        .flatten()
        .is_some_and(|san| {
            san.value.general_names.iter().any(|name| {
            matches!(name, x509_parser::extensions::GeneralName::DNSName(dns) if *dns == PEER_NAME)
        })
        });
    if !names_peer {
        return Some(format!("{TLS_CERT_KEY} does not name {PEER_NAME}"));
    }
    let usages = leaf.extended_key_usage().ok().flatten();
    if !usages.is_some_and(|eku| eku.value.server_auth && eku.value.client_auth) {
        return Some(format!(
            "{TLS_CERT_KEY} lacks serverAuth or clientAuth usage"
        ));
    }
    None
}

/// Whether `key_pem` is the private key of `certificate`'s public key.
fn public_key_matches(certificate: &X509Certificate<'_>, key_pem: &str) -> bool {
    KeyPair::from_pem(key_pem).is_ok_and(|key| {
        certificate.public_key().subject_public_key.data.as_ref() == key.public_key_raw()
    })
}

fn single_pem(text: &str) -> Result<Pem, String> {
    Pem::iter_from_buffer(text.as_bytes())
        .next()
        .ok_or_else(|| "no PEM block".to_string())?
        .map_err(|error| format!("not PEM: {error}"))
}

fn text(secret: &Secret, key: &str) -> Result<String, String> {
    let bytes = secret
        .data
        .as_ref()
        .and_then(|data| data.get(key))
        .ok_or_else(|| format!("no key {key}"))?;
    String::from_utf8(bytes.0.clone()).map_err(|_| format!("{key} is not UTF-8 PEM"))
}

fn secret_name(secret: &Secret) -> String {
    format!(
        "{}/{}",
        secret.metadata.namespace.as_deref().unwrap_or_default(),
        secret.metadata.name.as_deref().unwrap_or_default()
    )
}

fn data(entries: [(&str, &str); 2]) -> BTreeMap<String, ByteString> {
    entries
        .into_iter()
        .map(|(key, value)| (key.to_string(), ByteString(value.as_bytes().to_vec())))
        .collect()
}

/// The CA Secret `<ns-name>-gridline-peer-ca`, owned by the Namespace.
pub fn ca_secret(ns: &Namespace, ca: &PeerCa) -> Secret {
    Secret {
        metadata: child_meta(ns, peer_ca_secret_name(ns)),
        type_: Some("Opaque".to_string()),
        data: Some(data([
            (CA_CERT_KEY, &ca.cert_pem),
            (CA_KEY_KEY, &ca.key_pem),
        ])),
        ..Secret::default()
    }
}

/// The leaf Secret `<ns-name>-gridline-peer-tls`, owned by the Namespace.
pub fn leaf_secret(ns: &Namespace, ca: &PeerCa, leaf: &PeerLeaf) -> Secret {
    let mut entries = data([(TLS_CERT_KEY, &leaf.cert_pem), (TLS_KEY_KEY, &leaf.key_pem)]);
    entries.insert(
        CA_CERT_KEY.to_string(),
        ByteString(ca.cert_pem.as_bytes().to_vec()),
    );
    Secret {
        metadata: child_meta(ns, peer_tls_secret_name(ns)),
        type_: Some("kubernetes.io/tls".to_string()),
        data: Some(entries),
        ..Secret::default()
    }
}

#[cfg(test)]
#[path = "peer_tls_tests.rs"]
mod tests;
