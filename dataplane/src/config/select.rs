//! Which Gridline Namespace this data plane serves. A folder (or a Kubernetes namespace) may
//! hold several; `compile_all` compiles them all, keyed by Namespace, and the data plane serves
//! the Snapshot of the one chosen here.

use gridline_crds::model::{DEFAULT_K8S_NAMESPACE, Objects};
use gridline_crds::types::Namespace;
use kube::ResourceExt;
use std::fmt;

/// How the Namespace to serve is chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamespaceSelection {
    /// The Namespace of this name: `name`, or `k8s-namespace/name` when the name alone is
    /// ambiguous.
    Named(String),
    /// The only Namespace there is.
    Only,
}

impl NamespaceSelection {
    /// `--namespace` if given, else the only Namespace.
    pub fn from_option(name: Option<String>) -> Self {
        name.map_or(Self::Only, Self::Named)
    }
}

/// The Namespace chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selected {
    pub k8s_namespace: String,
    pub name: String,
}

/// Why no Namespace was chosen.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    #[error("the configuration holds no valid Namespace")]
    NoNamespace,
    #[error("the configuration holds no valid Namespace named {0:?}")]
    NotFound(String),
    #[error("the configuration holds several Namespaces ({}): choose one with --namespace", .0.join(", "))]
    Several(Vec<String>),
    #[error("several Namespaces are named {name:?} ({}): choose one as <k8s-namespace>/<name>", .candidates.join(", "))]
    Ambiguous {
        name: String,
        candidates: Vec<String>,
    },
}

impl SelectionError {
    /// Whether the configuration is wrong, rather than merely without the Namespace (which a
    /// later change may add).
    pub fn is_ambiguous(&self) -> bool {
        matches!(self, Self::Several(_) | Self::Ambiguous { .. })
    }
}

/// A Namespace's `<k8s-namespace>/<name>`.
struct QualifiedName<'a>(&'a Namespace);

impl fmt::Display for QualifiedName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", k8s_namespace(self.0), self.0.name_any())
    }
}

fn k8s_namespace<K: kube::Resource>(object: &K) -> String {
    object
        .meta()
        .namespace
        .clone()
        .unwrap_or_else(|| DEFAULT_K8S_NAMESPACE.to_string())
}

/// Choose the Namespace to serve.
pub fn select(
    objects: &Objects,
    selection: &NamespaceSelection,
) -> Result<Selected, SelectionError> {
    let namespace = match selection {
        NamespaceSelection::Only => match objects.namespaces.as_slice() {
            [] => return Err(SelectionError::NoNamespace),
            [only] => only,
            several => {
                return Err(SelectionError::Several(
                    several
                        .iter()
                        .map(|n| QualifiedName(n).to_string())
                        .collect(),
                ));
            }
        },
        NamespaceSelection::Named(wanted) => {
            let candidates: Vec<&Namespace> = objects
                .namespaces
                .iter()
                .filter(|n| n.name_any() == *wanted || QualifiedName(n).to_string() == *wanted)
                .collect();
            match candidates.as_slice() {
                [] => return Err(SelectionError::NotFound(wanted.clone())),
                [only] => *only,
                several => {
                    return Err(SelectionError::Ambiguous {
                        name: wanted.clone(),
                        candidates: several
                            .iter()
                            .map(|n| QualifiedName(n).to_string())
                            .collect(),
                    });
                }
            }
        }
    };
    Ok(Selected {
        k8s_namespace: k8s_namespace(namespace),
        name: namespace.name_any(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridline_crds::types::{
        EventSubscription, EventSubscriptionSpec, NamespaceSpec, Topic, TopicSpec,
    };
    use k8s_openapi::api::core::v1::Secret;

    fn namespace(k8s_ns: &str, name: &str) -> Namespace {
        let mut n = Namespace::new(name, serde_json::from_str::<NamespaceSpec>("{}").unwrap());
        n.metadata.namespace = Some(k8s_ns.into());
        n
    }

    fn topic(k8s_ns: &str, name: &str, namespace: &str) -> Topic {
        let spec: TopicSpec =
            serde_json::from_value(serde_json::json!({"namespaceRef": {"name": namespace}}))
                .unwrap();
        let mut t = Topic::new(name, spec);
        t.metadata.namespace = Some(k8s_ns.into());
        t
    }

    fn subscription(name: &str, topic: &str) -> EventSubscription {
        let spec: EventSubscriptionSpec = serde_json::from_value(serde_json::json!({
            "topicRef": {"name": topic},
            "deliveryConfiguration": {"deliveryMode": "Queue", "queue": {}}
        }))
        .unwrap();
        let mut s = EventSubscription::new(name, spec);
        s.metadata.namespace = Some("default".into());
        s
    }

    fn two_namespaces() -> Objects {
        let mut secret = Secret::default();
        secret.metadata.name = Some("keys".into());
        Objects {
            namespaces: vec![namespace("default", "ns1"), namespace("default", "ns2")],
            topics: vec![
                topic("default", "orders", "ns1"),
                topic("default", "invoices", "ns2"),
                topic("other", "far", "ns1"),
            ],
            event_subscriptions: vec![
                subscription("on-orders", "orders"),
                subscription("on-invoices", "invoices"),
                subscription("dangling", "nowhere"),
            ],
            secrets: vec![secret],
            ..Objects::default()
        }
    }

    #[test]
    fn the_only_namespace_is_chosen_without_a_name() {
        let mut objects = two_namespaces();
        objects.namespaces.pop();
        let selected = select(&objects, &NamespaceSelection::Only).unwrap();
        assert_eq!(selected.name, "ns1");
        assert_eq!(selected.k8s_namespace, "default");
    }

    #[test]
    fn several_namespaces_without_a_name_are_an_error() {
        let error = select(&two_namespaces(), &NamespaceSelection::Only).unwrap_err();
        assert_eq!(
            error,
            SelectionError::Several(vec!["default/ns1".into(), "default/ns2".into()])
        );
        assert!(error.is_ambiguous());
    }

    #[test]
    fn no_namespace_is_not_ambiguous() {
        let error = select(&Objects::default(), &NamespaceSelection::Only).unwrap_err();
        assert_eq!(error, SelectionError::NoNamespace);
        assert!(!error.is_ambiguous());
    }

    #[test]
    fn a_namespace_is_chosen_by_name() {
        let selected = select(&two_namespaces(), &NamespaceSelection::Named("ns2".into())).unwrap();
        assert_eq!(
            selected,
            Selected {
                k8s_namespace: "default".into(),
                name: "ns2".into()
            }
        );
    }

    #[test]
    fn a_namespace_can_be_named_with_its_kubernetes_namespace() {
        let mut objects = two_namespaces();
        objects.namespaces.push(namespace("other", "ns1"));
        let ambiguous = select(&objects, &NamespaceSelection::Named("ns1".into())).unwrap_err();
        assert!(ambiguous.is_ambiguous(), "{ambiguous}");
        let selected = select(&objects, &NamespaceSelection::Named("other/ns1".into())).unwrap();
        assert_eq!(selected.k8s_namespace, "other");
        assert_eq!(selected.name, "ns1");
    }

    #[test]
    fn a_missing_named_namespace_is_not_found() {
        let error =
            select(&two_namespaces(), &NamespaceSelection::Named("ns9".into())).unwrap_err();
        assert_eq!(error, SelectionError::NotFound("ns9".into()));
    }
}
