//! Objects for this crate's tests, shaped as the API server returns them (uid, generation,
//! namespace, resourceVersion).

use gridline_crds::types::{Namespace, Topic};
use k8s_openapi::api::core::v1::Secret;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

pub const K8S_NS: &str = "shop";

fn object<K: DeserializeOwned>(kind: &str, k8s_namespace: &str, name: &str, spec: Value) -> K {
    serde_json::from_value(json!({
        "apiVersion": "gridline.dev/v1alpha1",
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": k8s_namespace,
            "uid": format!("uid-{kind}-{k8s_namespace}-{name}"),
            "generation": 1,
            "resourceVersion": "1",
        },
        "spec": spec,
    }))
    .expect("a valid test object")
}

pub fn namespace(name: &str) -> Namespace {
    object("Namespace", K8S_NS, name, json!({}))
}

pub fn topic(name: &str, namespace: &str) -> Topic {
    topic_in(K8S_NS, name, namespace)
}

pub fn topic_in(k8s_namespace: &str, name: &str, namespace: &str) -> Topic {
    object(
        "Topic",
        k8s_namespace,
        name,
        json!({"namespaceRef": {"name": namespace}}),
    )
}

pub fn secret(name: &str, resource_version: &str) -> Secret {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": K8S_NS, "uid": format!("uid-Secret-{name}"),
                     "resourceVersion": resource_version},
    }))
    .expect("a valid Secret")
}
