//! Objects for tests, shaped as the API server returns them (uid, generation, namespace).

use gridline_crds::types::{
    Client, ClientGroup, EventSubscription, Namespace, PermissionBinding, Topic, TopicSpace,
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

pub const K8S_NS: &str = "shop";

fn object<K: DeserializeOwned>(kind: &str, name: &str, spec: Value) -> K {
    serde_json::from_value(json!({
        "apiVersion": "gridline.dev/v1alpha1",
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": K8S_NS,
            "uid": format!("uid-{kind}-{name}"),
            "generation": 1,
            "resourceVersion": "1",
        },
        "spec": spec,
    }))
    .expect("a valid test object")
}

/// A Namespace with TLS off (so it needs no Secret) and MQTT on.
pub fn namespace(name: &str) -> Namespace {
    object(
        "Namespace",
        name,
        json!({
            "topicSpacesConfiguration": {"state": "Enabled"},
            "listeners": {
                "mqttTls": {"enabled": false, "port": 8883},
                "https": {"enabled": false, "port": 443},
            },
        }),
    )
}

pub fn topic(name: &str, namespace: &str) -> Topic {
    object("Topic", name, json!({"namespaceRef": {"name": namespace}}))
}

pub fn queue_subscription(name: &str, topic: &str) -> EventSubscription {
    object(
        "EventSubscription",
        name,
        json!({
            "topicRef": {"name": topic},
            "deliveryConfiguration": {"deliveryMode": "Queue", "queue": {}},
        }),
    )
}

pub fn client(name: &str, namespace: &str) -> Client {
    object(
        "Client",
        name,
        json!({"namespaceRef": {"name": namespace}, "attributes": {"type": "sensor"}}),
    )
}

pub fn client_group(name: &str, namespace: &str, query: &str) -> ClientGroup {
    object(
        "ClientGroup",
        name,
        json!({"namespaceRef": {"name": namespace}, "query": query}),
    )
}

pub fn topic_space(name: &str, namespace: &str) -> TopicSpace {
    object(
        "TopicSpace",
        name,
        json!({"namespaceRef": {"name": namespace}, "topicTemplates": ["devices/+/telemetry"]}),
    )
}

pub fn permission_binding(
    name: &str,
    namespace: &str,
    group: &str,
    space: &str,
) -> PermissionBinding {
    object(
        "PermissionBinding",
        name,
        json!({
            "namespaceRef": {"name": namespace},
            "clientGroupName": group,
            "topicSpaceName": space,
            "permission": "Publisher",
        }),
    )
}

/// A `kubernetes.io/tls` Secret holding a self-signed certificate for `names` and its key.
pub fn tls_secret(name: &str, names: &[&str]) -> k8s_openapi::api::core::v1::Secret {
    let key = rcgen::KeyPair::generate().expect("a key");
    let params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("valid names");
    let certificate = params.self_signed(&key).expect("a certificate");
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": K8S_NS, "resourceVersion": "1"},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": certificate.pem(), "tls.key": key.serialize_pem()},
    }))
    .expect("a valid Secret")
}

/// `spec.customDomains` of (name, Secret name).
pub fn custom_domains(
    domains: &[(&str, &str)],
) -> Vec<gridline_crds::types::namespace::CustomDomain> {
    domains
        .iter()
        .map(|(name, secret)| {
            serde_json::from_value(
                json!({"fullyQualifiedDomainName": name, "tls": {"secretName": secret}}),
            )
            .expect("a valid custom domain")
        })
        .collect()
}

/// The membership Lease pod `pod` of Gridline Namespace `namespace` writes (the data plane's
/// contract): renewed at `renewed`, lasting 15 s, linked to `peers`.
pub fn member_lease(
    namespace: &str,
    pod: &str,
    renewed: k8s_openapi::jiff::Timestamp,
    peers: &[&str],
) -> k8s_openapi::api::coordination::v1::Lease {
    serde_json::from_value(json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {
            "name": format!("gridline-member-{pod}"), "namespace": K8S_NS,
            "uid": format!("uid-lease-{pod}"), "resourceVersion": "3",
            "labels": {"gridline.dev/lease": "member", "gridline.dev/namespace": namespace},
            "annotations": {
                "gridline.dev/peer-address": format!("{pod}.{namespace}-gridline-peers.{K8S_NS}.svc:7443"),
                "gridline.dev/connected-peers": peers.join(","),
            },
        },
        "spec": {"holderIdentity": pod, "leaseDurationSeconds": 15, "renewTime": renewed.to_string()},
    }))
    .expect("a valid Lease")
}

/// [`member_lease`] as the status pass reads it.
pub fn member(
    namespace: &str,
    pod: &str,
    renewed: k8s_openapi::jiff::Timestamp,
    peers: &[&str],
) -> crate::status::members::MemberLease {
    crate::status::members::MemberLease::from_lease(&member_lease(namespace, pod, renewed, peers))
        .expect("a member Lease")
}
