//! What every child of a Namespace agrees on: the names, labels and owner reference of its
//! objects, and the data plane's ports, data directory and user. A leaf: each builder
//! (`network.rs`, `rbac.rs`, `statefulset.rs`) uses it; `mod.rs` re-exports it.

use gridline_crds::types::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use std::collections::BTreeMap;

/// Container ports of the data plane: what `gridline-dataplane run` is told to listen on.
pub const HTTP_PORT: i32 = 8080;
pub const MQTT_PORT: i32 = 1883;
pub const MQTTS_PORT: i32 = 8883;
/// HTTPS: the Event Grid API and MQTT over WebSockets over TLS (`wss://…/mqtt`), what Event
/// Grid serves on 443.
pub const HTTPS_PORT: i32 = 8443;

/// The peer port: the pods' links to each other, mutual TLS from the Namespace's peer CA.
pub const PEER_PORT: i32 = 7443;
/// Where the peer-tls Secret (`ca.crt`, `tls.crt`, `tls.key`) is mounted, read-only.
pub const PEER_TLS_DIR: &str = "/etc/gridline/peer-tls";

/// Where each pod's volume is mounted and the data plane keeps its store.
pub const DATA_DIR: &str = "/var/lib/gridline";
/// The data plane's user and group: a fixed non-root id so the volume's fsGroup matches.
pub const DATAPLANE_UID: i64 = 10001;

/// `<ns-name>-gridline`: the StatefulSet, client Service, PDB and RBAC objects.
pub fn base_name(ns: &Namespace) -> String {
    format!("{}-gridline", ns.name_any())
}

/// `<ns-name>-gridline-peers`: the headless Service the pods find each other through.
pub fn peers_name(ns: &Namespace) -> String {
    format!("{}-gridline-peers", ns.name_any())
}

/// `<ns-name>-gridline-peer-ca`: the Secret holding the Namespace's peer CA (`ca.crt`,
/// `ca.key`). Never mounted into a pod.
pub fn peer_ca_secret_name(ns: &Namespace) -> String {
    format!("{}-gridline-peer-ca", ns.name_any())
}

/// `<ns-name>-gridline-peer-tls`: the certificate every pod of the Namespace presents on its
/// peer links (`ca.crt`, `tls.crt`, `tls.key`), mounted at [`PEER_TLS_DIR`].
pub fn peer_tls_secret_name(ns: &Namespace) -> String {
    format!("{}-gridline-peer-tls", ns.name_any())
}

/// The labels that select a Namespace's pods (stable: a StatefulSet selector is immutable).
pub fn selector_labels(ns: &Namespace) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            "gridline-dataplane".to_string(),
        ),
        ("app.kubernetes.io/instance".to_string(), ns.name_any()),
    ])
}

/// The label every object the operator creates carries; its watches select on it.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "gridline-operator";

/// Selector labels plus `managed-by`.
pub fn labels(ns: &Namespace) -> BTreeMap<String, String> {
    let mut labels = selector_labels(ns);
    labels.insert(MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string());
    labels
}

/// Metadata of a child: its name, the Namespace's Kubernetes namespace, labels, and an owner
/// reference so that deleting the Namespace garbage-collects it.
pub fn child_meta(ns: &Namespace, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: ns.namespace(),
        labels: Some(labels(ns)),
        owner_references: owner_reference(ns).map(|r| vec![r]),
        ..ObjectMeta::default()
    }
}

/// `controller: true` so that kube-runtime's `owns` maps child events back to the Namespace.
fn owner_reference(ns: &Namespace) -> Option<OwnerReference> {
    ns.controller_owner_ref(&()).map(|r| OwnerReference {
        block_owner_deletion: Some(true),
        ..r
    })
}

/// Whether the plaintext MQTT listener is on.
pub fn plaintext_mqtt_enabled(ns: &Namespace) -> bool {
    ns.spec
        .listeners
        .mqtt_plaintext
        .as_ref()
        .is_some_and(|l| l.enabled)
}

#[cfg(test)]
mod tests {
    use super::super::test_namespaces::namespace;
    use super::*;
    use crate::status::members::MEMBER_LEASE_PREFIX;
    use gridline_crds::types::MAX_NAMESPACE_NAME_CHARS;
    use serde_json::json;

    /// What the API server will refuse, checked here since no mock enforces it: for the
    /// longest Namespace name the CRD allows, every name the operator and its pods make fits.
    #[test]
    fn every_name_made_for_the_longest_namespace_fits_kubernetes_limits() {
        let mut ns = namespace(json!({"replicas": 40}));
        ns.metadata.name = Some("n".repeat(MAX_NAMESPACE_NAME_CHARS));
        let dns_label = |name: &str| name.len() <= 63;
        let dns_subdomain = |name: &str| name.len() <= 253;
        // Services are DNS-1035 labels; the StatefulSet's pods carry the label
        // `controller-revision-hash: <statefulset>-<10 characters>`, at most 63.
        assert!(dns_label(&base_name(&ns)));
        assert!(dns_label(&peers_name(&ns)));
        assert!(dns_label(&format!("{}-{}", base_name(&ns), "x".repeat(10))));
        let last_pod = format!("{}-39", base_name(&ns));
        // The pod's peer address: `<pod>.<peers>.<k8s-namespace>.svc`, each a DNS label.
        assert!(dns_label(&last_pod));
        for secret in [peer_ca_secret_name(&ns), peer_tls_secret_name(&ns)] {
            assert!(dns_subdomain(&secret), "{secret}");
        }
        assert!(dns_subdomain(&format!("{MEMBER_LEASE_PREFIX}{last_pod}")));
        // Label values (`app.kubernetes.io/instance`, `gridline.dev/namespace`).
        assert!(labels(&ns).values().all(|v| dns_label(v)));
    }
}
