//! Which Gridline Namespace this data plane serves, and which objects belong to it.
//!
//! `compile` takes the objects of exactly one Namespace, while a folder (or a Kubernetes
//! namespace) may hold several. The partition follows the references: `namespaceRef` for most
//! kinds, the Topic's Namespace for an EventSubscription, the Kubernetes namespace for Secrets.

use gridline_crds::model::{DEFAULT_K8S_NAMESPACE, Objects};
use gridline_crds::types::Namespace;
use kube::ResourceExt;
use std::collections::BTreeSet;
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

/// The Namespace chosen and the objects that belong to it.
#[derive(Clone, Debug)]
pub struct Selected {
    pub k8s_namespace: String,
    pub name: String,
    pub objects: Objects,
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

/// Choose the Namespace to serve and take its objects out of `objects`.
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
    let k8s_ns = k8s_namespace(namespace);
    let name = namespace.name_any();
    Ok(Selected {
        objects: objects_of(objects, &k8s_ns, &name),
        k8s_namespace: k8s_ns,
        name,
    })
}

/// Where an object lives.
trait HasMeta {
    fn lives_in(&self, k8s_ns: &str) -> bool;
}

impl<K: kube::Resource> HasMeta for K {
    fn lives_in(&self, k8s_ns: &str) -> bool {
        self.meta()
            .namespace
            .as_deref()
            .unwrap_or(DEFAULT_K8S_NAMESPACE)
            == k8s_ns
    }
}

/// The objects of Namespace `name` in Kubernetes namespace `k8s_ns`.
fn objects_of(all: &Objects, k8s_ns: &str, name: &str) -> Objects {
    macro_rules! owned_by_namespace {
        ($field:ident) => {
            all.$field
                .iter()
                .filter(|o| o.lives_in(k8s_ns) && o.spec.namespace_ref.name == name)
                .cloned()
                .collect()
        };
    }
    // A subscription belongs to its Topic's Namespace. One whose Topic exists nowhere is kept,
    // so `compile` reports the dangling reference instead of it vanishing silently.
    let topics_elsewhere: BTreeSet<&str> = all
        .topics
        .iter()
        .filter(|t| t.lives_in(k8s_ns) && t.spec.namespace_ref.name != name)
        .filter_map(|t| t.metadata.name.as_deref())
        .collect();
    let topics_here: BTreeSet<&str> = all
        .topics
        .iter()
        .filter(|t| t.lives_in(k8s_ns) && t.spec.namespace_ref.name == name)
        .filter_map(|t| t.metadata.name.as_deref())
        .collect();
    Objects {
        namespaces: all
            .namespaces
            .iter()
            .filter(|n| n.lives_in(k8s_ns) && n.name_any() == name)
            .cloned()
            .collect(),
        topics: owned_by_namespace!(topics),
        event_subscriptions: all
            .event_subscriptions
            .iter()
            .filter(|s| {
                let topic = s.spec.topic_ref.name.as_str();
                s.lives_in(k8s_ns)
                    && (topics_here.contains(topic) || !topics_elsewhere.contains(topic))
            })
            .cloned()
            .collect(),
        clients: owned_by_namespace!(clients),
        client_groups: owned_by_namespace!(client_groups),
        topic_spaces: owned_by_namespace!(topic_spaces),
        permission_bindings: owned_by_namespace!(permission_bindings),
        secrets: all
            .secrets
            .iter()
            .filter(|s| s.lives_in(k8s_ns))
            .cloned()
            .collect(),
    }
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

    fn names<K: kube::Resource>(objects: &[K]) -> Vec<String> {
        objects
            .iter()
            .map(|o| o.meta().name.clone().unwrap_or_default())
            .collect()
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
    fn a_named_namespace_takes_only_its_objects() {
        let selected = select(&two_namespaces(), &NamespaceSelection::Named("ns1".into())).unwrap();
        assert_eq!(names(&selected.objects.namespaces), ["ns1"]);
        // `far` names ns1 but lives in another Kubernetes namespace.
        assert_eq!(names(&selected.objects.topics), ["orders"]);
        assert_eq!(
            names(&selected.objects.event_subscriptions),
            ["on-orders", "dangling"]
        );
        assert_eq!(names(&selected.objects.secrets), ["keys"]);
    }

    #[test]
    fn a_namespace_can_be_named_with_its_kubernetes_namespace() {
        let mut objects = two_namespaces();
        objects.namespaces.push(namespace("other", "ns1"));
        let ambiguous = select(&objects, &NamespaceSelection::Named("ns1".into())).unwrap_err();
        assert!(ambiguous.is_ambiguous(), "{ambiguous}");
        let selected = select(&objects, &NamespaceSelection::Named("other/ns1".into())).unwrap();
        assert_eq!(selected.k8s_namespace, "other");
        assert_eq!(names(&selected.objects.topics), ["far"]);
        assert!(selected.objects.secrets.is_empty());
    }

    #[test]
    fn a_missing_named_namespace_is_not_found() {
        let error =
            select(&two_namespaces(), &NamespaceSelection::Named("ns9".into())).unwrap_err();
        assert_eq!(error, SelectionError::NotFound("ns9".into()));
    }
}
