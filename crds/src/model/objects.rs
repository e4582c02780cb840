//! The input of `compile`: every object of one Gridline Namespace, typed.

use crate::types::*;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use std::fmt;

/// The Gridline kinds, plus the Kubernetes Secrets they read keys and certificates from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Namespace,
    Topic,
    EventSubscription,
    Client,
    ClientGroup,
    TopicSpace,
    PermissionBinding,
    Secret,
}

impl Kind {
    /// Every kind, in a stable order (the order metrics and reports use).
    pub const ALL: [Kind; 8] = [
        Kind::Namespace,
        Kind::Topic,
        Kind::EventSubscription,
        Kind::Client,
        Kind::ClientGroup,
        Kind::TopicSpace,
        Kind::PermissionBinding,
        Kind::Secret,
    ];

    /// The `kind` field of a manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::Topic => "Topic",
            Kind::EventSubscription => "EventSubscription",
            Kind::Client => "Client",
            Kind::ClientGroup => "ClientGroup",
            Kind::TopicSpace => "TopicSpace",
            Kind::PermissionBinding => "PermissionBinding",
            Kind::Secret => "Secret",
        }
    }

    /// The kind named by a manifest's `apiVersion` and `kind`, if Gridline reads it.
    pub fn from_manifest(api_version: &str, kind: &str) -> Option<Kind> {
        if api_version == "v1" && kind == "Secret" {
            return Some(Kind::Secret);
        }
        if api_version != format!("{GROUP}/{VERSION}") {
            return None;
        }
        Kind::ALL
            .into_iter()
            .find(|k| *k != Kind::Secret && k.as_str() == kind)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which object a problem belongs to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub kind: Kind,
    /// The Kubernetes namespace (`default` when a manifest names none).
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(kind: Kind, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key of a typed object.
    pub fn of<K: kube::Resource>(kind: Kind, object: &K) -> Self {
        Self::new(
            kind,
            object
                .namespace()
                .unwrap_or_else(|| DEFAULT_K8S_NAMESPACE.to_string()),
            object.name_any(),
        )
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// The Kubernetes namespace of a manifest that names none (as `kubectl apply` does).
pub const DEFAULT_K8S_NAMESPACE: &str = "default";

/// A problem in one field of one object. The object is left out of the Snapshot.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectError {
    pub object: ObjectKey,
    /// Path of the field inside the object, e.g. `spec.filtersConfiguration.filters[1].values`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ObjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.object, self.field, self.message)
    }
}

impl std::error::Error for ObjectError {}

/// Every object `compile` reads.
#[derive(Clone, Debug, Default)]
pub struct Objects {
    pub namespaces: Vec<Namespace>,
    pub topics: Vec<Topic>,
    pub event_subscriptions: Vec<EventSubscription>,
    pub clients: Vec<Client>,
    pub client_groups: Vec<ClientGroup>,
    pub topic_spaces: Vec<TopicSpace>,
    pub permission_bindings: Vec<PermissionBinding>,
    pub secrets: Vec<Secret>,
}

impl Objects {
    /// How many objects of a kind there are.
    pub fn count(&self, kind: Kind) -> usize {
        match kind {
            Kind::Namespace => self.namespaces.len(),
            Kind::Topic => self.topics.len(),
            Kind::EventSubscription => self.event_subscriptions.len(),
            Kind::Client => self.clients.len(),
            Kind::ClientGroup => self.client_groups.len(),
            Kind::TopicSpace => self.topic_spaces.len(),
            Kind::PermissionBinding => self.permission_bindings.len(),
            Kind::Secret => self.secrets.len(),
        }
    }

    /// The value of `key` in a Secret, merging `stringData` over `data` as the API server
    /// does on write (local-mode manifests often use `stringData`).
    pub fn secret_value(&self, k8s_namespace: &str, name: &str, key: &str) -> SecretLookup {
        let Some(secret) = self.secrets.iter().find(|s| {
            s.name_any() == name
                && s.namespace().as_deref().unwrap_or(DEFAULT_K8S_NAMESPACE) == k8s_namespace
        }) else {
            return SecretLookup::NoSecret;
        };
        if let Some(value) = secret.string_data.as_ref().and_then(|d| d.get(key)) {
            return SecretLookup::Found(value.as_bytes().to_vec());
        }
        match secret.data.as_ref().and_then(|d| d.get(key)) {
            Some(value) => SecretLookup::Found(value.0.clone()),
            None => SecretLookup::NoKey,
        }
    }
}

/// The outcome of looking a key up in a Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretLookup {
    Found(Vec<u8>),
    NoSecret,
    NoKey,
}
