//! Mutual TLS between the pods of one Namespace. Every pod presents the same leaf certificate
//! (DNS SAN [`PEER_CERTIFICATE_NAME`], serverAuth and clientAuth), signed by the Namespace's
//! peer CA; a server requires a client certificate that chains to the CA, a client checks the
//! server's chain and name. TLS 1.3 only, ALPN [`ALPN`].
//!
//! The material is three PEM files, named as the keys of the Kubernetes Secret the operator
//! makes (`<namespace>-gridline-peer-tls`): `ca.crt`, `tls.crt`, `tls.key`. They are re-read
//! at most once a minute (on the next handshake after that) and a change applies to links
//! made afterwards; links already up keep the material they were made with.
//!
//! Local mode makes its own CA and leaf in the cluster directory ([`LinkTls::ensure_local`]),
//! with [`issue_peer_material`], the function the operator uses for the Secret.

use arc_swap::ArcSwap;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use tracing::{info, warn};

/// The DNS name in the peer leaf certificate, and the name a dialling pod verifies. Shared
/// with the operator, which issues the certificate.
pub const PEER_CERTIFICATE_NAME: &str = "gridline-peer";

/// The ALPN protocol of peer links. A connection that does not negotiate it is refused.
pub const ALPN: &[u8] = b"gridline-peer/1";

/// The files (and Secret keys) of the material.
pub const CA_FILE: &str = "ca.crt";
pub const CERT_FILE: &str = "tls.crt";
pub const KEY_FILE: &str = "tls.key";

/// The folder of the cluster directory where local mode keeps its material.
pub const LOCAL_DIR: &str = "peer-tls";

/// How long locally generated material is valid.
const LOCAL_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// How often the files are checked for a rotated certificate.
const RELOAD_CHECK: Duration = Duration::from_secs(60);

/// Why peer TLS material could not be read, made or used.
#[derive(Debug, thiserror::Error)]
pub enum LinkTlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} is not valid PEM: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("{path}: the CA certificate is unusable: {reason}")]
    Ca { path: PathBuf, reason: String },
    #[error("rustls refused the peer material in {dir}: {source}")]
    Rustls { dir: PathBuf, source: rustls::Error },
    #[error("cannot issue peer certificates: {0}")]
    Issue(#[from] rcgen::Error),
}

/// The peer material in use, re-read from its folder when it changes. Cheap to clone.
#[derive(Clone)]
pub struct LinkTls {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    provider: Arc<CryptoProvider>,
    loaded: ArcSwap<Loaded>,
    last_check: parking_lot::Mutex<Instant>,
}

struct Loaded {
    /// The files' bytes, to tell a rotation from a touch.
    files: [Vec<u8>; 3],
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

impl std::fmt::Debug for LinkTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkTls")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

impl LinkTls {
    /// The material in `dir` (`ca.crt`, `tls.crt`, `tls.key`: a mounted Secret).
    pub fn from_dir(dir: impl Into<PathBuf>) -> Result<LinkTls, LinkTlsError> {
        let dir = dir.into();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let files = read_files(&dir)?;
        let loaded = load(&dir, files, &provider)?;
        Ok(LinkTls {
            inner: Arc::new(Inner {
                dir,
                provider,
                loaded: ArcSwap::from_pointee(loaded),
                last_check: parking_lot::Mutex::new(Instant::now()),
            }),
        })
    }

    /// Local mode: the material in `cluster_dir/peer-tls/`, made there first if it is not.
    /// Processes starting together race safely: each builds in a folder of its own and
    /// renames it into place; the first rename wins and the others use what it put there.
    pub fn ensure_local(cluster_dir: &Path) -> Result<LinkTls, LinkTlsError> {
        let target = cluster_dir.join(LOCAL_DIR);
        if !target.exists() {
            make_local(cluster_dir, &target)?;
        }
        LinkTls::from_dir(target)
    }

    /// Where the material is read from.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Re-read the files now; `Ok(true)` when they changed and new links use them.
    pub fn reload(&self) -> Result<bool, LinkTlsError> {
        *self.inner.last_check.lock() = Instant::now();
        let files = read_files(&self.inner.dir)?;
        if files == self.inner.loaded.load().files {
            return Ok(false);
        }
        let loaded = load(&self.inner.dir, files, &self.inner.provider)?;
        self.inner.loaded.store(Arc::new(loaded));
        info!(dir = %self.inner.dir.display(), "peer TLS material changed: new links use it");
        Ok(true)
    }

    /// The configuration accepting links.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.check_due();
        self.inner.loaded.load().server.clone()
    }

    /// The configuration dialling links.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.check_due();
        self.inner.loaded.load().client.clone()
    }

    /// The name a dialling pod verifies in the server's certificate.
    pub fn server_name() -> ServerName<'static> {
        ServerName::try_from(PEER_CERTIFICATE_NAME).expect("a valid DNS name")
    }

    fn check_due(&self) {
        {
            let mut last = self.inner.last_check.lock();
            if last.elapsed() < RELOAD_CHECK {
                return;
            }
            *last = Instant::now();
        }
        if let Err(error) = self.reload() {
            warn!(dir = %self.inner.dir.display(), %error, "peer TLS material unreadable: new links keep the previous one");
        }
    }
}

fn read_files(dir: &Path) -> Result<[Vec<u8>; 3], LinkTlsError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).map_err(|source| LinkTlsError::Read { path, source })
    };
    Ok([read(CA_FILE)?, read(CERT_FILE)?, read(KEY_FILE)?])
}

fn certificates(path: PathBuf, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, LinkTlsError> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| LinkTlsError::Pem {
            path: path.clone(),
            reason: error.to_string(),
        })?;
    if certificates.is_empty() {
        return Err(LinkTlsError::NoCertificate { path });
    }
    Ok(certificates)
}

fn load(
    dir: &Path,
    files: [Vec<u8>; 3],
    provider: &Arc<CryptoProvider>,
) -> Result<Loaded, LinkTlsError> {
    let [ca, chain, key] = &files;
    let ca_path = dir.join(CA_FILE);
    let mut roots = RootCertStore::empty();
    for certificate in certificates(ca_path.clone(), ca)? {
        roots.add(certificate).map_err(|error| LinkTlsError::Ca {
            path: ca_path.clone(),
            reason: error.to_string(),
        })?;
    }
    let roots = Arc::new(roots);
    let chain = certificates(dir.join(CERT_FILE), chain)?;
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|error| LinkTlsError::Pem {
        path: dir.join(KEY_FILE),
        reason: error.to_string(),
    })?;
    let rustls_error = |source| LinkTlsError::Rustls {
        dir: dir.to_path_buf(),
        source,
    };
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|error| LinkTlsError::Ca {
            path: ca_path.clone(),
            reason: error.to_string(),
        })?;
    let mut server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(rustls_error)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(rustls_error)?;
    server.alpn_protocols = vec![ALPN.to_vec()];
    let mut client = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(rustls_error)?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(rustls_error)?;
    client.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Loaded {
        files,
        server: Arc::new(server),
        client: Arc::new(client),
    })
}

/// A Namespace's peer CA and the leaf every one of its pods presents, PEM-encoded.
#[derive(Clone)]
pub struct PeerMaterial {
    /// `ca.crt`: what both sides verify against.
    pub ca_cert_pem: String,
    /// The CA's private key: to issue the next leaf with the same CA (keep it out of the pods'
    /// Secret).
    pub ca_key_pem: String,
    /// `tls.crt` and `tls.key`: the leaf.
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for PeerMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerMaterial").finish_non_exhaustive()
    }
}

/// A new peer CA for the Namespace `namespace` (its identity, in the CA's common name) and a
/// leaf it signs, both valid from an hour ago (clock skew between nodes) for `validity`.
/// ECDSA P-256 keys. The CA may sign certificates only (keyCertSign, cRLSign); the leaf has
/// the DNS SAN [`PEER_CERTIFICATE_NAME`], key usage digitalSignature and the extended key
/// usages serverAuth and clientAuth, so one leaf serves both ends of every link.
pub fn issue_peer_material(
    namespace: &str,
    validity: Duration,
) -> Result<PeerMaterial, LinkTlsError> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
        .distinguished_name
        .push(DnType::CommonName, format!("gridline peer CA {namespace}"));
    set_validity(&mut params, validity);
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
    let ca_cert_pem = ca.pem();
    let ca_key_pem = ca.key().serialize_pem();
    let (cert_pem, key_pem) = issue_peer_leaf(&ca_cert_pem, &ca_key_pem, validity)?;
    Ok(PeerMaterial {
        ca_cert_pem,
        ca_key_pem,
        cert_pem,
        key_pem,
    })
}

/// A new leaf (certificate PEM, key PEM) from an existing peer CA, valid from an hour ago for
/// `validity`: how a leaf is renewed without changing the CA the pods trust.
pub fn issue_peer_leaf(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    validity: Duration,
) -> Result<(String, String), LinkTlsError> {
    use rcgen::{
        CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose,
    };
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, KeyPair::from_pem(ca_key_pem)?)?;
    let mut params = CertificateParams::new(vec![PEER_CERTIFICATE_NAME.to_string()])?;
    params
        .distinguished_name
        .push(DnType::CommonName, PEER_CERTIFICATE_NAME);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    set_validity(&mut params, validity);
    let key = KeyPair::generate()?;
    let certificate = params.signed_by(&key, &issuer)?;
    Ok((certificate.pem(), key.serialize_pem()))
}

/// Valid from an hour ago (clock skew between nodes) for `validity`. rcgen's dates are the
/// `time` crate's, reached through rcgen so that this crate does not depend on `time` itself.
fn set_validity(params: &mut rcgen::CertificateParams, validity: Duration) {
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let since_epoch = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_sub(Duration::from_secs(3600));
    params.not_before = epoch + since_epoch;
    params.not_after = epoch + since_epoch + validity;
}

/// Build the local material in a fresh folder beside `target`, then rename it into place.
fn make_local(cluster_dir: &Path, target: &Path) -> Result<(), LinkTlsError> {
    let write_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| LinkTlsError::Write { path, source }
    };
    std::fs::create_dir_all(cluster_dir).map_err(write_error(cluster_dir))?;
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).expect("the OS random source works");
    let building = cluster_dir.join(format!(
        ".{LOCAL_DIR}-{}-{}",
        std::process::id(),
        u64::from_le_bytes(nonce)
    ));
    std::fs::create_dir(&building).map_err(write_error(&building))?;
    let result = (|| {
        let material = issue_peer_material("local", LOCAL_VALIDITY)?;
        write_file(&building.join(CA_FILE), &material.ca_cert_pem, 0o644)?;
        write_file(&building.join(CERT_FILE), &material.cert_pem, 0o644)?;
        write_file(&building.join(KEY_FILE), &material.key_pem, 0o600)?;
        match std::fs::rename(&building, target) {
            Ok(()) => {
                info!(dir = %target.display(), "made the local peer CA and certificate");
                Ok(())
            }
            // Another process renamed its folder first: use that one.
            Err(_) if target.join(KEY_FILE).exists() => Ok(()),
            Err(source) => Err(LinkTlsError::Write {
                path: target.to_path_buf(),
                source,
            }),
        }
    })();
    if building.exists() {
        let _ = std::fs::remove_dir_all(&building);
    }
    result
}

fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), LinkTlsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()
    };
    write().map_err(|source| LinkTlsError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_material_is_made_once_and_its_key_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let first = LinkTls::ensure_local(dir.path()).unwrap();
        let key = std::fs::read(first.dir().join(KEY_FILE)).unwrap();
        let mode = std::fs::metadata(first.dir().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let second = LinkTls::ensure_local(dir.path()).unwrap();
        assert_eq!(std::fs::read(second.dir().join(KEY_FILE)).unwrap(), key);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, [LOCAL_DIR], "no building folder is left behind");
    }

    #[test]
    fn processes_starting_together_end_with_one_material() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let tls = LinkTls::ensure_local(&path).unwrap();
                    std::fs::read(tls.dir().join(CA_FILE)).unwrap()
                })
            })
            .collect();
        let cas: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert!(cas.windows(2).all(|pair| pair[0] == pair[1]));
    }

    #[test]
    fn a_rotated_certificate_is_picked_up_and_a_touch_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let tls = LinkTls::ensure_local(dir.path()).unwrap();
        assert!(!tls.reload().unwrap(), "nothing changed");
        let other = issue_peer_material("other", Duration::from_secs(3600)).unwrap();
        for (name, pem) in [
            (CA_FILE, &other.ca_cert_pem),
            (CERT_FILE, &other.cert_pem),
            (KEY_FILE, &other.key_pem),
        ] {
            std::fs::write(tls.dir().join(name), pem).unwrap();
        }
        assert!(tls.reload().unwrap());
    }

    #[test]
    fn a_leaf_renewed_from_the_same_ca_is_accepted_as_material() {
        let material = issue_peer_material("default/orders", Duration::from_secs(3600)).unwrap();
        let (cert, key) = issue_peer_leaf(
            &material.ca_cert_pem,
            &material.ca_key_pem,
            Duration::from_secs(60),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CA_FILE), &material.ca_cert_pem).unwrap();
        std::fs::write(dir.path().join(CERT_FILE), cert).unwrap();
        std::fs::write(dir.path().join(KEY_FILE), key).unwrap();
        LinkTls::from_dir(dir.path()).unwrap();
    }

    #[test]
    fn missing_or_broken_files_say_which() {
        let dir = tempfile::tempdir().unwrap();
        let error = LinkTls::from_dir(dir.path()).unwrap_err();
        assert!(error.to_string().contains(CA_FILE), "{error}");
        std::fs::write(dir.path().join(CA_FILE), "not pem").unwrap();
        std::fs::write(dir.path().join(CERT_FILE), "").unwrap();
        std::fs::write(dir.path().join(KEY_FILE), "").unwrap();
        let error = LinkTls::from_dir(dir.path()).unwrap_err();
        assert!(
            matches!(error, LinkTlsError::NoCertificate { ref path } if path.ends_with(CA_FILE)),
            "{error}"
        );
    }
}
