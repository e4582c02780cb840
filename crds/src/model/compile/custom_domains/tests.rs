use super::*;
use crate::model::{NamespaceId, ObjectError, Objects, Snapshot, compile_all};
use k8s_openapi::api::core::v1::Secret;
use serde_json::json;

/// A self-signed certificate for `names` and its key, PEM.
fn certificate(names: &[&str]) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
}

fn tls_secret(name: &str, crt: &str, key: &str) -> Secret {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": crt, "tls.key": key}
    }))
    .unwrap()
}

/// A Namespace serving `spec.tls` from `ns1-tls` (for `default.example.net`) and the custom
/// domains given as (name, Secret name).
fn objects(domains: &[(&str, &str)], secrets: Vec<Secret>) -> Objects {
    let domains: Vec<_> = domains
        .iter()
        .map(|(name, secret)| {
            json!({"fullyQualifiedDomainName": name, "tls": {"secretName": secret}})
        })
        .collect();
    let namespace = serde_json::from_value(json!({
        "apiVersion": "gridline.dev/v1alpha1", "kind": "Namespace",
        "metadata": {"name": "ns1"},
        "spec": {"tls": {"secretName": "ns1-tls"}, "customDomains": domains}
    }))
    .unwrap();
    let (crt, key) = certificate(&["default.example.net"]);
    let mut all_secrets = vec![tls_secret("ns1-tls", &crt, &key)];
    all_secrets.extend(secrets);
    Objects {
        namespaces: vec![namespace],
        secrets: all_secrets,
        ..Objects::default()
    }
}

fn compile(objects: &Objects) -> (Snapshot, Vec<ObjectError>) {
    let (mut snapshots, errors) = compile_all(objects);
    let key: NamespaceId = ("default".into(), "ns1".into());
    (snapshots.remove(&key).unwrap(), errors)
}

fn domains(objects: &Objects) -> Vec<CompiledCustomDomain> {
    let (snapshot, errors) = compile(objects);
    assert_eq!(errors, vec![], "the Namespace stays valid");
    snapshot
        .namespace
        .expect("the Namespace compiles")
        .custom_domains
}

#[test]
fn a_domain_whose_certificate_covers_it_is_served_with_that_certificate() {
    let (crt, key) = certificate(&["mqtt.contoso.com"]);
    let objects = objects(
        &[("mqtt.contoso.com", "mqtt-tls")],
        vec![tls_secret("mqtt-tls", &crt, &key)],
    );
    let compiled = domains(&objects);
    assert_eq!(compiled.len(), 1);
    assert_eq!(compiled[0].fully_qualified_domain_name, "mqtt.contoso.com");
    assert_eq!(compiled[0].problem, None);
    let material = compiled[0].certificate.as_ref().expect("a certificate");
    assert_eq!(material.certificate_chain_pem, crt.into_bytes());
    assert_eq!(material.private_key_pem, key.into_bytes());
}

#[test]
fn domains_keep_spec_order_and_a_wildcard_certificate_covers_one_label() {
    let (crt, key) = certificate(&["*.contoso.com"]);
    let objects = objects(
        &[
            ("http.contoso.com", "wildcard"),
            ("mqtt.contoso.com", "wildcard"),
            ("a.b.contoso.com", "wildcard"),
        ],
        vec![tls_secret("wildcard", &crt, &key)],
    );
    let compiled = domains(&objects);
    let names: Vec<_> = compiled
        .iter()
        .map(|d| {
            (
                d.fully_qualified_domain_name.as_str(),
                d.certificate.is_some(),
            )
        })
        .collect();
    assert_eq!(
        names,
        vec![
            ("http.contoso.com", true),
            ("mqtt.contoso.com", true),
            ("a.b.contoso.com", false)
        ]
    );
    assert_eq!(
        compiled[2].problem.as_deref(),
        Some(
            "the certificate in Secret 'wildcard' does not cover a.b.contoso.com (it names *.contoso.com)"
        )
    );
    assert!(compiled[2].certificate_mismatch());
}

#[test]
fn a_missing_secret_or_key_is_the_domains_problem_not_the_namespaces() {
    let (crt, _) = certificate(&["http.contoso.com"]);
    let no_key: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "no-key"},
        "stringData": {"tls.crt": crt}
    }))
    .unwrap();
    let objects = objects(
        &[
            ("mqtt.contoso.com", "absent"),
            ("http.contoso.com", "no-key"),
        ],
        vec![no_key],
    );
    let compiled = domains(&objects);
    assert_eq!(
        compiled
            .iter()
            .map(|d| (d.problem.clone().unwrap(), d.certificate_mismatch()))
            .collect::<Vec<_>>(),
        vec![
            ("Secret 'absent' not found".to_string(), false),
            ("Secret 'no-key' has no key 'tls.key'".to_string(), false)
        ]
    );
    assert!(compiled.iter().all(|d| d.certificate.is_none()));
}

#[test]
fn a_secret_without_a_parseable_certificate_has_no_usable_pem() {
    let (_, key) = certificate(&["mqtt.contoso.com"]);
    let garbage =
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n";
    let objects = objects(
        &[("mqtt.contoso.com", "garbage")],
        vec![tls_secret("garbage", garbage, &key)],
    );
    let compiled = domains(&objects);
    let problem = compiled[0].problem.as_deref().unwrap();
    assert!(
        problem.starts_with(
            "key 'tls.crt' of Secret 'garbage': the first certificate is not valid X.509"
        ),
        "{problem}"
    );
    assert!(!compiled[0].certificate_mismatch());
}

#[test]
fn an_invalid_or_repeated_domain_name_is_a_problem_of_the_namespace() {
    let (crt, key) = certificate(&["mqtt.contoso.com"]);
    let objects = objects(
        &[
            ("MQTT.contoso.com", "mqtt-tls"),
            ("*.contoso.com", "mqtt-tls"),
            ("mqtt.contoso.com", "mqtt-tls"),
            ("mqtt.contoso.com", "mqtt-tls"),
        ],
        vec![tls_secret("mqtt-tls", &crt, &key)],
    );
    let (snapshot, errors) = compile(&objects);
    assert!(snapshot.namespace.is_none());
    let problems: Vec<_> = errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect();
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(problems[0].starts_with(
        "spec.customDomains[0].fullyQualifiedDomainName: 'MQTT.contoso.com' is not a fully qualified domain name"
    ));
    assert!(
        problems[1].starts_with("spec.customDomains[1].fullyQualifiedDomainName: '*.contoso.com'")
    );
    assert_eq!(
        problems[2],
        "spec.customDomains[3].fullyQualifiedDomainName: custom domain 'mqtt.contoso.com' is listed twice"
    );
}

#[test]
fn wildcards_cover_exactly_one_whole_left_most_label() {
    assert!(covers("mqtt.contoso.com", "MQTT.Contoso.com"));
    assert!(covers("*.contoso.com", "mqtt.contoso.com"));
    assert!(covers("*.Contoso.COM", "mqtt.contoso.com"));
    assert!(!covers("*.contoso.com", "contoso.com"));
    assert!(!covers("*.contoso.com", "a.mqtt.contoso.com"));
    assert!(!covers("*.com", "contoso.com"));
    assert!(!covers("m*.contoso.com", "mqtt.contoso.com"));
    assert!(!covers("mqtt.*.com", "mqtt.contoso.com"));
    assert!(!covers("other.contoso.com", "mqtt.contoso.com"));
}

#[test]
fn domain_names_follow_the_schema_pattern() {
    let pattern =
        regex::Regex::new(crate::types::namespace::FULLY_QUALIFIED_DOMAIN_NAME_PATTERN).unwrap();
    let long_label = "a".repeat(64);
    let too_long = format!("{}.com", vec!["a".repeat(63); 4].join("."));
    for name in [
        "mqtt.contoso.com",
        "a.b",
        "xn--bcher-kva.example",
        "1.2.3.example",
        "contoso",
        "MQTT.contoso.com",
        "*.contoso.com",
        "-a.contoso.com",
        "a-.contoso.com",
        "1.2.3.4",
        "a..b",
        &format!("{long_label}.com"),
        &too_long,
    ] {
        let by_schema = pattern.is_match(name) && name.len() <= 253;
        assert_eq!(is_domain_name(name), by_schema, "{name}");
    }
    assert!(is_domain_name("mqtt.contoso.com"));
    assert!(!is_domain_name("1.2.3.4"));
}
