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
