use super::*;
use gridline_crds::types::namespace::AlternativeAuthenticationNameSource as Source;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType,
    date_time_ymd,
};

/// A CA (its PEM, to register with a Namespace) that signs leaves.
pub(crate) fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A leaf with subject CN `cn` and `sans`, signed by `issuer` (self-signed without one),
/// valid from 2020 to 2999 unless `expired`.
pub(crate) fn leaf(
    cn: &str,
    sans: Vec<SanType>,
    issuer: Option<&CertifiedIssuer<'static, KeyPair>>,
    expired: bool,
) -> CertificateDer<'static> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.subject_alt_names = sans;
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = if expired {
        date_time_ymd(2021, 1, 1)
    } else {
        date_time_ymd(2999, 1, 1)
    };
    let key = KeyPair::generate().unwrap();
    let certificate = match issuer {
        Some(issuer) => params.signed_by(&key, issuer).unwrap(),
        None => params.self_signed(&key).unwrap(),
    };
    certificate.der().clone()
}

pub(crate) fn dns(name: &str) -> SanType {
    SanType::DnsName(name.try_into().unwrap())
}

fn every_san() -> Vec<SanType> {
    vec![
        dns("device-1.example.com"),
        dns("second.example.com"),
        SanType::URI("spiffe://example.com/device-1".try_into().unwrap()),
        SanType::IpAddress("10.0.0.7".parse().unwrap()),
        SanType::IpAddress("fd00::7".parse().unwrap()),
        SanType::Rfc822Name("device-1@example.com".try_into().unwrap()),
    ]
}

const NOW: i64 = 1_800_000_000;

fn now() -> UnixTime {
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(NOW as u64))
}

fn cas(issuers: &[&CertifiedIssuer<'static, KeyPair>]) -> BTreeMap<String, Vec<u8>> {
    issuers
        .iter()
        .enumerate()
        .map(|(i, ca)| (format!("ca-{i}"), ca.pem().into_bytes()))
        .collect()
}

#[test]
fn parsing_reads_the_subject_common_name_every_san_type_and_the_thumbprint() {
    let der = leaf("device-1", every_san(), None, false);
    let certificate = ClientCertificate::parse(&der).unwrap();
    assert_eq!(certificate.subject_common_name.as_deref(), Some("device-1"));
    assert_eq!(
        certificate.dns_names,
        ["device-1.example.com", "second.example.com"]
    );
    assert_eq!(certificate.uris, ["spiffe://example.com/device-1"]);
    assert_eq!(
        certificate.ip_addresses,
        [
            "10.0.0.7".parse::<IpAddr>().unwrap(),
            "fd00::7".parse().unwrap()
        ]
    );
    assert_eq!(certificate.emails, ["device-1@example.com"]);
    assert_eq!(certificate.thumbprint.len(), 64);
    assert_eq!(certificate.thumbprint, thumbprint(&der));
}

#[test]
fn garbage_is_a_bad_certificate() {
    assert_eq!(
        ClientCertificate::parse(b"not a certificate"),
        Err(AuthFailure::BadCertificate)
    );
}

#[test]
fn each_validation_scheme_compares_its_own_field() {
    let certificate =
        ClientCertificate::parse(&leaf("device-1", every_san(), None, false)).unwrap();
    let cases = [
        (
            ValidationScheme::SubjectMatchesAuthenticationName,
            "device-1",
            true,
        ),
        (
            ValidationScheme::SubjectMatchesAuthenticationName,
            "device-2",
            false,
        ),
        (
            ValidationScheme::SubjectMatchesAuthenticationName,
            "device-1.example.com",
            false,
        ),
        (
            ValidationScheme::DnsMatchesAuthenticationName,
            "second.example.com",
            true,
        ),
        (
            ValidationScheme::DnsMatchesAuthenticationName,
            "Device-1.Example.COM",
            true,
        ),
        (
            ValidationScheme::DnsMatchesAuthenticationName,
            "device-1",
            false,
        ),
        (
            ValidationScheme::UriMatchesAuthenticationName,
            "spiffe://example.com/device-1",
            true,
        ),
        (
            ValidationScheme::UriMatchesAuthenticationName,
            "spiffe://example.com/other",
            false,
        ),
        (
            ValidationScheme::IpMatchesAuthenticationName,
            "10.0.0.7",
            true,
        ),
        (
            ValidationScheme::IpMatchesAuthenticationName,
            "fd00:0::7",
            true,
        ),
        (
            ValidationScheme::IpMatchesAuthenticationName,
            "10.0.0.8",
            false,
        ),
        (
            ValidationScheme::IpMatchesAuthenticationName,
            "not-an-ip",
            false,
        ),
        (
            ValidationScheme::EmailMatchesAuthenticationName,
            "device-1@example.com",
            true,
        ),
        (
            ValidationScheme::EmailMatchesAuthenticationName,
            "device-1",
            false,
        ),
    ];
    for (scheme, name, expected) in cases {
        let outcome = certificate.check_scheme(scheme, name, &[]);
        assert_eq!(outcome.is_ok(), expected, "{scheme:?} {name}: {outcome:?}");
        if !expected {
            assert_eq!(outcome, Err(AuthFailure::NameMismatch));
        }
    }
}

#[test]
fn thumbprint_match_compares_the_sha256_of_the_certificate_in_either_case() {
    let certificate = ClientCertificate::parse(&leaf("anything", vec![], None, false)).unwrap();
    let upper = certificate.thumbprint.to_uppercase();
    let scheme = ValidationScheme::ThumbprintMatch;
    assert_eq!(
        certificate.check_scheme(scheme, "name", std::slice::from_ref(&upper)),
        Ok(())
    );
    let other = "0".repeat(64);
    assert_eq!(
        certificate.check_scheme(scheme, "name", &[other]),
        Err(AuthFailure::ThumbprintMismatch)
    );
}

#[test]
fn alternative_sources_are_tried_in_order_and_skip_empty_fields() {
    let without_dns = ClientCertificate::parse(&leaf(
        "device-1",
        vec![SanType::Rfc822Name("d@example.com".try_into().unwrap())],
        None,
        false,
    ))
    .unwrap();
    let order = [
        Source::ClientCertificateDns,
        Source::ClientCertificateSubject,
    ];
    assert_eq!(
        without_dns.name_from_sources(&order).as_deref(),
        Some("device-1")
    );
    let with_dns = ClientCertificate::parse(&leaf("device-1", every_san(), None, false)).unwrap();
    assert_eq!(
        with_dns.name_from_sources(&order).as_deref(),
        Some("device-1.example.com")
    );
    assert_eq!(
        with_dns
            .name_from_sources(&[Source::ClientCertificateIp])
            .as_deref(),
        Some("10.0.0.7")
    );
    assert_eq!(
        without_dns.name_from_sources(&[Source::ClientCertificateUri]),
        None
    );
    assert_eq!(without_dns.name_from_sources(&[]), None);
}

#[test]
fn validity_dates_are_checked() {
    let valid = ClientCertificate::parse(&leaf("d", vec![], None, false)).unwrap();
    assert_eq!(valid.check_validity(NOW), Ok(()));
    let expired = ClientCertificate::parse(&leaf("d", vec![], None, true)).unwrap();
    assert_eq!(
        expired.check_validity(NOW),
        Err(AuthFailure::CertificateExpired)
    );
    assert_eq!(
        valid.check_validity(1_500_000_000),
        Err(AuthFailure::CertificateNotYetValid)
    );
}

#[test]
fn a_chain_to_a_registered_ca_verifies_and_one_to_another_does_not() {
    let trusted = ca("trusted");
    let stranger = ca("stranger");
    let trust = CaTrust::default();
    let registered = cas(&[&trusted]);
    let good = leaf("d", vec![], Some(&trusted), false);
    assert_eq!(trust.verify(&registered, &[good], now()), Ok(()));
    let foreign = leaf("d", vec![], Some(&stranger), false);
    assert_eq!(
        trust.verify(&registered, &[foreign], now()),
        Err(AuthFailure::UntrustedCertificate)
    );
    let self_signed = leaf("d", vec![], None, false);
    assert_eq!(
        trust.verify(&registered, &[self_signed], now()),
        Err(AuthFailure::UntrustedCertificate)
    );
}

#[test]
fn an_expired_leaf_of_a_registered_ca_is_expired() {
    let trusted = ca("trusted");
    let expired = leaf("d", vec![], Some(&trusted), true);
    assert_eq!(
        CaTrust::default().verify(&cas(&[&trusted]), &[expired], now()),
        Err(AuthFailure::CertificateExpired)
    );
}

#[test]
fn without_ca_certificates_no_chain_verifies() {
    let trusted = ca("trusted");
    let good = leaf("d", vec![], Some(&trusted), false);
    assert_eq!(
        CaTrust::default().verify(&BTreeMap::new(), &[good], now()),
        Err(AuthFailure::NoCaCertificates)
    );
}

#[test]
fn a_registered_intermediate_is_enough_and_a_sent_intermediate_leads_to_the_root() {
    let root = ca("root");
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "intermediate");
    let intermediate =
        CertifiedIssuer::signed_by(params, KeyPair::generate().unwrap(), &root).unwrap();
    let device = leaf("d", vec![], Some(&intermediate), false);
    let trust = CaTrust::default();
    // Event Grid: registering the intermediate that signed the leaf is enough.
    assert_eq!(
        trust.verify(&cas(&[&intermediate]), std::slice::from_ref(&device), now()),
        Ok(())
    );
    // With only the root registered, the client sends the intermediate.
    let chain = [device.clone(), intermediate.der().clone()];
    assert_eq!(trust.verify(&cas(&[&root]), &chain, now()), Ok(()));
    assert_eq!(
        trust.verify(&cas(&[&root]), &[device], now()),
        Err(AuthFailure::UntrustedCertificate)
    );
}

#[test]
fn a_changed_ca_set_is_used_at_once() {
    let first = ca("first");
    let second = ca("second");
    let trust = CaTrust::default();
    let device = leaf("d", vec![], Some(&second), false);
    assert!(
        trust
            .verify(&cas(&[&first]), std::slice::from_ref(&device), now())
            .is_err()
    );
    assert_eq!(
        trust.verify(&cas(&[&first, &second]), &[device], now()),
        Ok(())
    );
}

#[test]
fn a_verified_chain_is_remembered_until_its_earliest_expiry_and_forgotten_with_the_ca_set() {
    let trusted = ca("trusted");
    let other = ca("other");
    let trust = CaTrust::default();
    let device = leaf("d", vec![], Some(&trusted), false);
    let registered = cas(&[&trusted]);
    for _ in 0..3 {
        assert_eq!(
            trust.verify(&registered, std::slice::from_ref(&device), now()),
            Ok(())
        );
    }
    assert_eq!(trust.verifications(), 1, "verified once, then remembered");
    let after_expiry = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        date_time_ymd(2999, 1, 2).unix_timestamp() as u64,
    ));
    assert_eq!(
        trust.verify(&registered, std::slice::from_ref(&device), after_expiry),
        Err(AuthFailure::CertificateExpired),
        "not past the certificate's notAfter"
    );
    assert_eq!(
        trust.verify(&cas(&[&other]), std::slice::from_ref(&device), now()),
        Err(AuthFailure::UntrustedCertificate),
        "a CA removed is not trusted from memory"
    );
    assert_eq!(
        trust.verify(&cas(&[&trusted, &other]), &[device], now()),
        Ok(())
    );
    assert_eq!(trust.verifications(), 4);
}

#[test]
fn a_failed_chain_is_not_remembered() {
    let stranger = ca("stranger");
    let trust = CaTrust::default();
    let foreign = leaf("d", vec![], Some(&stranger), false);
    for _ in 0..2 {
        assert!(
            trust
                .verify(
                    &cas(&[&ca("trusted")]),
                    std::slice::from_ref(&foreign),
                    now()
                )
                .is_err()
        );
    }
    assert_eq!(trust.verifications(), 2);
}
