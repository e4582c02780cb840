//! Pieces shared by every kind: references, status and conditions.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of every Gridline kind.
pub const GROUP: &str = "gridline.dev";
/// The served and stored version of every Gridline kind.
pub const VERSION: &str = "v1alpha1";

/// The longest name of a Kubernetes object (a DNS subdomain), and so the bound of every field
/// that names one: the API server prices CEL rules by the declared bounds of what they read.
pub const MAX_OBJECT_NAME_CHARS: u32 = 253;

/// A reference to another Gridline object by name, in the same Kubernetes namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    /// Name of the referenced object (in the same Kubernetes namespace).
    #[schemars(length(max = MAX_OBJECT_NAME_CHARS))]
    pub name: String,
}

impl ObjectRef {
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }
}

/// A key of a Kubernetes Secret in the same Kubernetes namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    pub name: String,
    /// Key inside the Secret's data.
    pub key: String,
}

/// Status shared by every Gridline kind: the generation last seen by the operator and the
/// `Accepted` / `Ready` conditions (kstatus-compatible, so Argo CD and Flux read health from it).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Accepted`: the object is valid and its references resolve. `Ready`: the data plane serves it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// Condition type: the object is valid and every reference resolves.
pub const CONDITION_ACCEPTED: &str = "Accepted";
/// Condition type: the data plane serves the object.
pub const CONDITION_READY: &str = "Ready";

/// Default for the `state` fields of Event Grid resources.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum State {
    #[default]
    Enabled,
    Disabled,
}

/// The longest Namespace name: the operator names its children after it, and the longest
/// derived name must fit Kubernetes' 63 characters — the StatefulSet's pods carry a
/// `controller-revision-hash` label `<name>-gridline-<10-character hash>`.
pub const MAX_NAMESPACE_NAME_CHARS: usize = 43;
/// [`MAX_NAMESPACE_NAME_CHARS`] as a CEL rule on the Namespace kind.
pub(crate) const NAMESPACE_NAME_RULE: &str = "size(self.metadata.name) <= 43";
pub(crate) const NAMESPACE_NAME_RULE_MESSAGE: &str = "a Namespace name is at most 43 characters: its StatefulSet, Services and pods are named after it within Kubernetes' 63";

/// Name rule shared by every kind (Event Grid: 3-50 characters, letters, digits and '-').
pub(crate) const NAME_RULE: &str = "self.metadata.name.matches('^[A-Za-z0-9-]{3,50}$')";
pub(crate) const NAME_RULE_MESSAGE: &str =
    "name must be 3-50 characters of letters, digits and '-' (an Event Grid resource name)";
