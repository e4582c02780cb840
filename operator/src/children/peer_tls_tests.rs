use super::super::test_namespaces::namespace;
use super::*;
use rustls_pki_types::{CertificateDer, DnsName, ServerName, UnixTime};
use serde_json::json;
use webpki::{EndEntityCert, KeyUsage};

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

fn now() -> SystemTime {
    // A fixed instant (2026-12-07), so that validity arithmetic is exact.
    UNIX_EPOCH + Duration::from_secs(1_796_601_600)
}

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from(single_pem(pem).expect("PEM").contents)
}

/// What a pod's rustls (WebPkiServerVerifier / WebPkiClientVerifier) checks of a peer's
/// certificate, at `at`: the chain to the CA, the name, and the given usage.
fn verify(ca: &PeerCa, leaf: &PeerLeaf, usage: KeyUsage, at: SystemTime) -> Result<(), String> {
    let ca_der = der(&ca.cert_pem);
    let anchor = webpki::anchor_from_trusted_cert(&ca_der).map_err(|e| e.to_string())?;
    let leaf_der = der(&leaf.cert_pem);
    let leaf_cert = EndEntityCert::try_from(&leaf_der).map_err(|e| e.to_string())?;
    let time = UnixTime::since_unix_epoch(at.duration_since(UNIX_EPOCH).unwrap());
    leaf_cert
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &[anchor],
            &[],
            time,
            usage,
            None,
            None,
        )
        .map_err(|e| e.to_string())?;
    let name = ServerName::DnsName(DnsName::try_from(PEER_NAME).unwrap());
    leaf_cert
        .verify_is_valid_for_subject_name(&name)
        .map_err(|e| e.to_string())
}

fn secret_from(value: serde_json::Value) -> Secret {
    serde_json::from_value(value).expect("a Secret")
}

#[test]
fn the_leaf_chains_to_the_ca_for_both_server_and_client_authentication() {
    let ca = PeerCa::generate("orders", now()).unwrap();
    let leaf = ca.issue_leaf(now()).unwrap();
    verify(&ca, &leaf, KeyUsage::server_auth(), now()).expect("a server certificate");
    verify(&ca, &leaf, KeyUsage::client_auth(), now()).expect("a client certificate");
    let other = PeerCa::generate("orders", now()).unwrap();
    assert!(
        verify(&other, &leaf, KeyUsage::server_auth(), now()).is_err(),
        "another CA of the same name does not vouch for it"
    );
}

#[test]
fn the_leaf_names_only_gridline_peer_is_p256_and_lives_a_year() {
    let ca = PeerCa::generate("orders", now()).unwrap();
    let leaf = ca.issue_leaf(now()).unwrap();
    let pem = single_pem(&leaf.cert_pem).unwrap();
    let certificate = pem.parse_x509().unwrap();
    let names: Vec<String> = certificate
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(names, ["DNSName(gridline-peer)"]);
    assert_eq!(
        certificate
            .public_key()
            .algorithm
            .parameters
            .as_ref()
            .map(|p| p.as_oid().unwrap().to_id_string()),
        Some("1.2.840.10045.3.1.7".to_string()),
        "P-256"
    );
    let now_seconds = now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    assert_eq!(
        certificate.validity().not_after.timestamp() - now_seconds,
        365 * 86_400
    );
    assert!(!certificate.is_ca());
    // A year and a day later, rustls refuses it.
    assert!(
        verify(
            &ca,
            &leaf,
            KeyUsage::server_auth(),
            now() + LEAF_VALIDITY + DAY
        )
        .is_err()
    );
}

#[test]
fn the_ca_is_a_ca_for_ten_years_and_reads_back_from_its_secret() {
    let ns = namespace(json!({}));
    let ca = PeerCa::generate("orders", now()).unwrap();
    let pem = single_pem(&ca.cert_pem).unwrap();
    let certificate = pem.parse_x509().unwrap();
    assert!(certificate.is_ca());
    let now_seconds = now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    assert_eq!(
        certificate.validity().not_after.timestamp() - now_seconds,
        3650 * 86_400
    );
    let secret = ca_secret(&ns, &ca);
    assert_eq!(
        secret.metadata.name.as_deref(),
        Some("orders-gridline-peer-ca")
    );
    assert_eq!(
        secret.metadata.owner_references.as_ref().unwrap()[0].name,
        "orders"
    );
    assert_eq!(
        secret.metadata.labels.as_ref().unwrap()["app.kubernetes.io/managed-by"],
        "gridline-operator"
    );
    let keys: Vec<_> = secret.data.as_ref().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["ca.crt", "ca.key"]);
    // Through JSON, as the API server hands it back.
    let read = secret_from(serde_json::to_value(&secret).unwrap());
    assert_eq!(PeerCa::from_secret(&read).unwrap(), ca);
}

#[test]
fn a_ca_secret_without_its_key_or_with_another_key_is_refused_and_named() {
    let ns = namespace(json!({}));
    let ca = PeerCa::generate("orders", now()).unwrap();
    let mut secret = ca_secret(&ns, &ca);
    secret.data.as_mut().unwrap().remove("ca.key");
    let error = PeerCa::from_secret(&secret).unwrap_err();
    assert!(
        error.to_string().starts_with(
            "Secret shop/orders-gridline-peer-ca holds no usable peer CA (no key ca.key)"
        ),
        "{error}"
    );
    let other = PeerCa::generate("orders", now()).unwrap();
    let mut mixed = ca_secret(&ns, &ca);
    mixed.data.as_mut().unwrap().insert(
        "ca.key".into(),
        ByteString(other.key_pem.clone().into_bytes()),
    );
    let error = PeerCa::from_secret(&mixed).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("ca.key is not the key of ca.crt"),
        "{error}"
    );
}

#[test]
fn a_fresh_leaf_of_the_ca_is_current() {
    let ns = namespace(json!({}));
    let ca = PeerCa::generate("orders", now()).unwrap();
    let leaf = ca.issue_leaf(now()).unwrap();
    let secret = leaf_secret(&ns, &ca, &leaf);
    assert_eq!(
        secret.metadata.name.as_deref(),
        Some("orders-gridline-peer-tls")
    );
    assert_eq!(
        secret.metadata.owner_references.as_ref().unwrap()[0].name,
        "orders"
    );
    let keys: Vec<_> = secret.data.as_ref().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["ca.crt", "tls.crt", "tls.key"]);
    let read = secret_from(serde_json::to_value(&secret).unwrap());
    assert_eq!(judge_leaf(Some(&read), &ca, now()), LeafVerdict::Current);
    // Still current 334 days on: 31 days left.
    assert_eq!(
        judge_leaf(Some(&read), &ca, now() + 334 * DAY),
        LeafVerdict::Current
    );
}

#[test]
fn a_missing_leaf_is_issued() {
    let ca = PeerCa::generate("orders", now()).unwrap();
    assert_eq!(judge_leaf(None, &ca, now()), LeafVerdict::Missing);
}

#[test]
fn a_leaf_expiring_within_thirty_days_is_reissued() {
    let ns = namespace(json!({}));
    let ca = PeerCa::generate("orders", now()).unwrap();
    let secret = leaf_secret(&ns, &ca, &ca.issue_leaf(now()).unwrap());
    assert_eq!(
        judge_leaf(Some(&secret), &ca, now() + 336 * DAY),
        LeafVerdict::Expiring {
            seconds_left: 29 * 86_400
        }
    );
    assert!(matches!(
        judge_leaf(Some(&secret), &ca, now() + 400 * DAY),
        LeafVerdict::Expiring { seconds_left } if seconds_left < 0
    ));
}

#[test]
fn a_leaf_of_another_ca_is_reissued() {
    let ns = namespace(json!({}));
    let ca = PeerCa::generate("orders", now()).unwrap();
    let other = PeerCa::generate("orders", now()).unwrap();
    // Signed by the other CA and carrying its ca.crt: the CA Secret was replaced.
    let foreign = leaf_secret(&ns, &other, &other.issue_leaf(now()).unwrap());
    assert_eq!(judge_leaf(Some(&foreign), &ca, now()), LeafVerdict::OtherCa);
    // Carrying our ca.crt but signed by the other (same subject name): the signature decides.
    let forged = leaf_secret(&ns, &ca, &other.issue_leaf(now()).unwrap());
    assert_eq!(judge_leaf(Some(&forged), &ca, now()), LeafVerdict::OtherCa);
}

#[test]
fn an_unparsable_or_mismatched_leaf_is_reissued() {
    let ns = namespace(json!({}));
    let ca = PeerCa::generate("orders", now()).unwrap();
    let leaf = ca.issue_leaf(now()).unwrap();
    let mut garbage = leaf_secret(&ns, &ca, &leaf);
    garbage
        .data
        .as_mut()
        .unwrap()
        .insert("tls.crt".into(), ByteString(b"not a certificate".to_vec()));
    assert!(matches!(
        judge_leaf(Some(&garbage), &ca, now()),
        LeafVerdict::Unusable(_)
    ));
    let mut keyless = leaf_secret(&ns, &ca, &leaf);
    keyless.data.as_mut().unwrap().remove("tls.key");
    assert_eq!(
        judge_leaf(Some(&keyless), &ca, now()),
        LeafVerdict::Unusable("no key tls.key".into())
    );
    let another = ca.issue_leaf(now()).unwrap();
    let mut mismatched = leaf_secret(&ns, &ca, &leaf);
    mismatched
        .data
        .as_mut()
        .unwrap()
        .insert("tls.key".into(), ByteString(another.key_pem.into_bytes()));
    assert_eq!(
        judge_leaf(Some(&mismatched), &ca, now()),
        LeafVerdict::Unusable("tls.key is not the key of tls.crt".into())
    );
}

#[test]
fn a_leaf_without_the_peer_name_or_client_usage_is_reissued() {
    let ns = namespace(json!({}));
    let ca = PeerCa::generate("orders", now()).unwrap();
    let issuer = ca.issuer().unwrap();
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(vec![PEER_NAME.to_string()]).unwrap();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = offset_date_time(now());
    params.not_after = offset_date_time(now() + LEAF_VALIDITY);
    let server_only = PeerLeaf {
        cert_pem: params.signed_by(&key, &issuer).unwrap().pem(),
        key_pem: key.serialize_pem(),
    };
    assert_eq!(
        judge_leaf(Some(&leaf_secret(&ns, &ca, &server_only)), &ca, now()),
        LeafVerdict::Unusable("tls.crt lacks serverAuth or clientAuth usage".into())
    );
}
