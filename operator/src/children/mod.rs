//! The Kubernetes objects a Gridline Namespace runs as, built by pure functions from the
//! Namespace and the operator's options. The controller applies them as they come out.

mod conventions;
mod network;
pub mod peer_tls;
mod rbac;
mod statefulset;

pub use conventions::{
    DATA_DIR, DATAPLANE_UID, HTTP_PORT, HTTPS_PORT, MANAGED_BY, MANAGED_BY_LABEL, MQTT_PORT,
    MQTTS_PORT, PEER_PORT, PEER_TLS_DIR, base_name, child_meta, labels, peer_ca_secret_name,
    peer_tls_secret_name, peers_name, plaintext_mqtt_enabled, selector_labels,
};
pub use network::{client_service, peers_service, pod_disruption_budget};
pub use rbac::{role, role_binding, service_account};
pub use statefulset::statefulset;

#[cfg(test)]
pub(crate) mod test_namespaces {
    use gridline_crds::types::Namespace;
    use serde_json::json;

    /// A Namespace as the API server returns it: defaults filled in, uid set.
    pub fn namespace(spec: serde_json::Value) -> Namespace {
        serde_json::from_value(json!({
            "apiVersion": "gridline.dev/v1alpha1",
            "kind": "Namespace",
            "metadata": {"name": "orders", "namespace": "shop", "uid": "uid-orders", "generation": 3},
            "spec": spec,
        }))
        .expect("a valid Namespace")
    }
}
