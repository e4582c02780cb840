//! The Namespace object: its settings, listeners, secrets and routing.

use super::{Compiler, ObjectProblems};
use crate::model::objects::{Kind, ObjectKey, SecretLookup};
use crate::model::snapshot::{CompiledCluster, CompiledJwtIssuer, CompiledNamespace, TlsMaterial};
use crate::types::Namespace;
use crate::types::namespace::{ClusterSettings, RoutingEnrichments};
use kube::ResourceExt;
use std::collections::{BTreeMap, BTreeSet};

/// CloudEvents context attributes an enrichment may not overwrite.
const RESERVED_ATTRIBUTES: [&str; 10] = [
    "id",
    "source",
    "type",
    "subject",
    "time",
    "specversion",
    "datacontenttype",
    "dataschema",
    "data",
    "data_base64",
];

/// Event Grid keeps extension names starting with this for itself.
const RESERVED_PREFIX: &str = "azsp";

/// Event Grid's bound on an enrichment value.
const MAX_ENRICHMENT_VALUE_CHARS: usize = 128;

/// `spec.cluster`: the CRD's ranges and its CEL rule (a peer link must be judged dead before
/// the peer's lease runs out), repeated for local mode.
fn check_cluster(problems: &mut ObjectProblems, cluster: &ClusterSettings) {
    problems.check_range(
        "spec.cluster.peerTimeoutSeconds",
        cluster.peer_timeout_seconds,
        1,
        120,
    );
    problems.check_range(
        "spec.cluster.memberLeaseSeconds",
        cluster.member_lease_seconds,
        5,
        300,
    );
    if cluster.peer_timeout_seconds >= cluster.member_lease_seconds {
        problems.add(
            "spec.cluster.peerTimeoutSeconds",
            format!(
                "{} must be less than memberLeaseSeconds ({}): a pod must notice a silent peer link before the peer's membership lease runs out",
                cluster.peer_timeout_seconds, cluster.member_lease_seconds
            ),
        );
    }
}

impl Compiler<'_> {
    pub(super) fn compile_namespace_object(&mut self, namespace: &Namespace) {
        let mut problems = ObjectProblems::new(ObjectKey::of(Kind::Namespace, namespace));
        problems.check_name();
        let name = namespace.name_any();
        if name.len() > crate::types::common::MAX_NAMESPACE_NAME_CHARS {
            problems.add(
                "metadata.name",
                format!(
                    "'{name}' is too long for a Namespace: at most {} characters (its StatefulSet, Services and pods are named after it)",
                    crate::types::common::MAX_NAMESPACE_NAME_CHARS
                ),
            );
        }
        let spec = &namespace.spec;
        problems.check_range("spec.replicas", spec.replicas, 1, 40);

        let mqtt = &spec.topic_spaces_configuration;
        let field = "spec.topicSpacesConfiguration";
        problems.check_range(
            &format!("{field}.maximumSessionExpiryInHours"),
            mqtt.maximum_session_expiry_in_hours,
            1,
            8,
        );
        problems.check_range(
            &format!("{field}.maximumClientSessionsPerAuthenticationName"),
            mqtt.maximum_client_sessions_per_authentication_name,
            1,
            100,
        );
        problems.check_range(
            &format!("{field}.maximumSubscriptionsPerConnection"),
            mqtt.maximum_subscriptions_per_connection,
            1,
            1000,
        );
        problems.check_range(
            &format!("{field}.maximumMessagesPerSecondPerConnection"),
            mqtt.maximum_messages_per_second_per_connection,
            1,
            10_000_000,
        );
        let route_topic = mqtt.route_topic_ref.as_ref().and_then(|topic| {
            match self.topic_reference(&topic.name) {
                Ok(()) => Some(topic.name.clone()),
                Err(message) => {
                    problems.add(format!("{field}.routeTopicRef.name"), message);
                    None
                }
            }
        });
        let lifecycle_topic = mqtt.client_lifecycle_events.as_ref().and_then(|events| {
            match self.topic_reference(&events.topic_ref.name) {
                Ok(()) => Some(events.topic_ref.name.clone()),
                Err(message) => {
                    problems.add(
                        format!("{field}.clientLifecycleEvents.topicRef.name"),
                        message,
                    );
                    None
                }
            }
        });
        let routing_enrichments = mqtt.routing_enrichments.clone().unwrap_or_default();
        check_enrichments(&mut problems, &routing_enrichments);

        self.check_listeners(&mut problems, namespace);
        problems.check_range(
            "spec.storage.fsyncIntervalMilliseconds",
            spec.storage.fsync_interval_milliseconds,
            1,
            10_000,
        );
        if !is_quantity(&spec.storage.size) {
            problems.add(
                "spec.storage.size",
                format!(
                    "'{}' is not a Kubernetes quantity (e.g. 10Gi, 500Mi)",
                    spec.storage.size
                ),
            );
        }

        check_cluster(&mut problems, &spec.cluster);

        let sas_keys = self.sas_keys(&mut problems, namespace);
        let tls_certificate = self.tls_material(&mut problems, namespace);
        let custom_domains = self.custom_domains(&mut problems, namespace);
        let ca_certificates = self.ca_certificates(&mut problems, namespace);
        let jwt_issuers = self.jwt_issuers(&mut problems, namespace);

        if problems.finish(&mut self.errors) {
            self.snapshot.namespace = Some(CompiledNamespace {
                name: namespace.name_any(),
                k8s_namespace: self.scope.k8s_namespace.clone(),
                spec: spec.clone(),
                sas_keys,
                route_topic,
                lifecycle_topic,
                routing_enrichments,
                tls_certificate,
                custom_domains,
                ca_certificates,
                jwt_issuers,
                cluster: CompiledCluster::from(&spec.cluster),
            });
        }
    }

    fn check_listeners(&self, problems: &mut ObjectProblems, namespace: &Namespace) {
        let listeners = &namespace.spec.listeners;
        let mut ports: BTreeMap<i32, &str> = BTreeMap::new();
        let mut claim = |problems: &mut ObjectProblems, name: &'static str, port: i32| {
            let field = format!("spec.listeners.{name}.port");
            problems.check_range(&field, port, 1, 65_535);
            if let Some(other) = ports.insert(port, name) {
                problems.add(
                    field,
                    format!("port {port} is already used by the {other} listener"),
                );
            }
        };
        if listeners.mqtt_tls.enabled {
            claim(problems, "mqttTls", listeners.mqtt_tls.port);
        }
        if let Some(plaintext) = listeners.mqtt_plaintext.as_ref().filter(|l| l.enabled) {
            claim(problems, "mqttPlaintext", plaintext.port);
        }
        if listeners.https.enabled {
            claim(problems, "https", listeners.https.port);
        }
        if let Some(http) = listeners.http.as_ref().filter(|l| l.enabled) {
            claim(problems, "http", http.port);
        }
        let needs_certificate = listeners.mqtt_tls.enabled || listeners.https.enabled;
        if needs_certificate && namespace.spec.tls.is_none() {
            problems.add(
                "spec.tls",
                "the mqttTls and https listeners need a server certificate: set tls.secretName, or disable those listeners",
            );
        }
    }

    fn sas_keys(&self, problems: &mut ObjectProblems, namespace: &Namespace) -> Vec<String> {
        let Some(sas) = &namespace.spec.sas_keys else {
            return Vec::new();
        };
        let field = "spec.sasKeys.secretName";
        let mut keys = Vec::new();
        for key in ["key1", "key2"] {
            match self.scope.secret(&sas.secret_name, key) {
                SecretLookup::Found(value) => match String::from_utf8(value) {
                    Ok(value) if !value.trim().is_empty() => keys.push(value.trim().to_string()),
                    Ok(_) => problems.add(
                        field,
                        format!("key '{key}' of Secret '{}' is empty", sas.secret_name),
                    ),
                    Err(_) => problems.add(
                        field,
                        format!(
                            "key '{key}' of Secret '{}' is not UTF-8 text",
                            sas.secret_name
                        ),
                    ),
                },
                SecretLookup::NoSecret => {
                    problems.add(field, format!("Secret '{}' not found", sas.secret_name));
                    return Vec::new();
                }
                SecretLookup::NoKey => {}
            }
        }
        if keys.is_empty() && problems.is_ok() {
            problems.add(
                field,
                format!("Secret '{}' has neither 'key1' nor 'key2'", sas.secret_name),
            );
        }
        keys
    }

    fn tls_material(
        &self,
        problems: &mut ObjectProblems,
        namespace: &Namespace,
    ) -> Option<TlsMaterial> {
        let tls = namespace.spec.tls.as_ref()?;
        let field = "spec.tls.secretName";
        let certificate =
            self.pem_from_secret(problems, field, &tls.secret_name, "tls.crt", "CERTIFICATE");
        let key = self.pem_from_secret(problems, field, &tls.secret_name, "tls.key", "PRIVATE KEY");
        Some(TlsMaterial {
            certificate_chain_pem: certificate?,
            private_key_pem: key?,
        })
    }

    fn ca_certificates(
        &self,
        problems: &mut ObjectProblems,
        namespace: &Namespace,
    ) -> BTreeMap<String, Vec<u8>> {
        let mut certificates = BTreeMap::new();
        for (index, ca) in namespace.spec.ca_certificates.iter().enumerate() {
            let field = format!("spec.caCertificates[{index}]");
            if !super::is_valid_resource_name(&ca.name) {
                problems.add(
                    format!("{field}.name"),
                    format!(
                        "'{}' is not a valid name: use 3-50 characters of letters, digits and '-'",
                        ca.name
                    ),
                );
            }
            if certificates.contains_key(&ca.name) {
                problems.add(
                    format!("{field}.name"),
                    format!("CA certificate name '{}' is used twice", ca.name),
                );
            }
            if let Some(pem) = self.pem_from_secret(
                problems,
                &format!("{field}.secretName"),
                &ca.secret_name,
                &ca.key,
                "CERTIFICATE",
            ) {
                certificates.insert(ca.name.clone(), pem);
            }
        }
        certificates
    }

    fn jwt_issuers(
        &self,
        problems: &mut ObjectProblems,
        namespace: &Namespace,
    ) -> Vec<CompiledJwtIssuer> {
        let mut compiled = Vec::new();
        let Some(jwt) = &namespace.spec.jwt else {
            return compiled;
        };
        for (index, issuer) in jwt.issuers.iter().enumerate() {
            let field = format!("spec.jwt.issuers[{index}]");
            if issuer.issuer.trim().is_empty() {
                problems.add(format!("{field}.issuer"), "issuer must not be empty");
            }
            if issuer.audiences.is_empty() || issuer.audiences.iter().any(|a| a.is_empty()) {
                problems.add(
                    format!("{field}.audiences"),
                    "list at least one audience, none of them empty",
                );
            }
            match self.scope.secret(&issuer.keys_secret_name, "jwks.json") {
                SecretLookup::Found(value) => {
                    let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&value);
                    if matches!(parsed, Ok(ref doc) if doc.get("keys").is_some_and(|k| k.is_array()))
                    {
                        compiled.push(CompiledJwtIssuer {
                            issuer: issuer.issuer.clone(),
                            audiences: issuer.audiences.clone(),
                            jwks_json: value,
                        });
                    } else {
                        problems.add(
                            format!("{field}.keysSecretName"),
                            format!(
                                "key 'jwks.json' of Secret '{}' is not a JWKS document (a JSON object with a 'keys' array)",
                                issuer.keys_secret_name
                            ),
                        );
                    }
                }
                SecretLookup::NoSecret => problems.add(
                    format!("{field}.keysSecretName"),
                    format!("Secret '{}' not found", issuer.keys_secret_name),
                ),
                SecretLookup::NoKey => problems.add(
                    format!("{field}.keysSecretName"),
                    format!(
                        "Secret '{}' has no key 'jwks.json'",
                        issuer.keys_secret_name
                    ),
                ),
            }
        }
        compiled
    }

    /// A PEM value from a Secret, checked to hold at least one block of the expected label;
    /// a problem of `field` when it does not.
    pub(super) fn pem_from_secret(
        &self,
        problems: &mut ObjectProblems,
        field: &str,
        secret: &str,
        key: &str,
        label: &str,
    ) -> Option<Vec<u8>> {
        self.pem(secret, key, label)
            .map_err(|message| problems.add(field, message))
            .ok()
    }

    /// A PEM value from a Secret, checked to hold at least one block of the expected label.
    pub(super) fn pem(&self, secret: &str, key: &str, label: &str) -> Result<Vec<u8>, String> {
        match self.scope.secret(secret, key) {
            SecretLookup::Found(value) => {
                let text = String::from_utf8_lossy(&value);
                let has_block = text
                    .lines()
                    .any(|line| line.starts_with("-----BEGIN ") && line.contains(label));
                if has_block {
                    Ok(value)
                } else {
                    Err(format!(
                        "key '{key}' of Secret '{secret}' holds no PEM {label} block"
                    ))
                }
            }
            SecretLookup::NoSecret => Err(format!("Secret '{secret}' not found")),
            SecretLookup::NoKey => Err(format!("Secret '{secret}' has no key '{key}'")),
        }
    }
}

fn check_enrichments(problems: &mut ObjectProblems, enrichments: &RoutingEnrichments) {
    let field = "spec.topicSpacesConfiguration.routingEnrichments";
    let mut keys = BTreeSet::new();
    let static_keys = enrichments
        .static_enrichments
        .iter()
        .enumerate()
        .map(|(i, e)| (format!("{field}.static[{i}].key"), &e.key));
    let dynamic_keys = enrichments
        .dynamic_enrichments
        .iter()
        .enumerate()
        .map(|(i, e)| (format!("{field}.dynamic[{i}].key"), &e.key));
    for (key_field, key) in static_keys.chain(dynamic_keys) {
        let valid = (1..=20).contains(&key.len())
            && key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !valid {
            problems.add(
                &key_field,
                format!("'{key}' is not a CloudEvents extension name: use 1-20 lowercase letters and digits"),
            );
        } else if RESERVED_ATTRIBUTES.contains(&key.as_str()) {
            problems.add(
                &key_field,
                format!("'{key}' is a CloudEvents context attribute and cannot be an enrichment"),
            );
        } else if key.starts_with(RESERVED_PREFIX) {
            problems.add(
                &key_field,
                format!("'{key}' starts with '{RESERVED_PREFIX}', which Event Grid reserves"),
            );
        }
        if !keys.insert(key.clone()) {
            problems.add(&key_field, format!("enrichment key '{key}' is used twice"));
        }
    }
    for (index, enrichment) in enrichments.static_enrichments.iter().enumerate() {
        if enrichment.value.chars().count() > MAX_ENRICHMENT_VALUE_CHARS {
            problems.add(
                format!("{field}.static[{index}].value"),
                format!("an enrichment value is at most {MAX_ENRICHMENT_VALUE_CHARS} characters"),
            );
        }
    }
    for (index, enrichment) in enrichments.dynamic_enrichments.iter().enumerate() {
        if let Err(message) = check_dynamic_enrichment_value(&enrichment.value) {
            problems.add(format!("{field}.dynamic[{index}].value"), message);
        }
    }
}

/// The variables Event Grid allows in dynamic routing enrichments.
fn check_dynamic_enrichment_value(value: &str) -> Result<(), String> {
    const FIXED: [&str; 4] = [
        "${client.authenticationName}",
        "${mqtt.message.topicName}",
        "${mqtt.message.responseTopic}",
        "${mqtt.message.correlationData}",
    ];
    if FIXED.contains(&value) {
        return Ok(());
    }
    for prefix in ["${client.attributes.", "${mqtt.message.userProperties."] {
        if let Some(name) = value.strip_prefix(prefix).and_then(|r| r.strip_suffix('}'))
            && !name.is_empty()
            && !name.contains(['{', '}', '$'])
        {
            return Ok(());
        }
    }
    Err(format!(
        "'{value}' is not a dynamic enrichment value: use one of {}, ${{client.attributes.<name>}} or ${{mqtt.message.userProperties.<name>}}",
        FIXED.join(", ")
    ))
}

/// A Kubernetes resource quantity such as `10Gi` or `500M`.
fn is_quantity(text: &str) -> bool {
    let digits_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(digits_end);
    !number.is_empty()
        && number.parse::<f64>().is_ok()
        && [
            "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "k", "M", "G", "T", "P", "E",
        ]
        .contains(&suffix)
}
