//! `PermissionBinding`: grants a client group access to a topic space
//! (Event Grid `namespaces/permissionBindings`).

use super::common::{ObjectRef, ResourceStatus};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Grants the clients of a ClientGroup `Publisher` or `Subscriber` access to a TopicSpace.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "gridline.dev",
    version = "v1alpha1",
    kind = "PermissionBinding",
    namespaced,
    status = "ResourceStatus",
    shortname = "gpb",
    category = "gridline",
    validation = Rule::new(super::common::NAME_RULE).message(super::common::NAME_RULE_MESSAGE),
    printcolumn = r#"{"name":"Namespace","type":"string","jsonPath":".spec.namespaceRef.name"}"#,
    printcolumn = r#"{"name":"Client Group","type":"string","jsonPath":".spec.clientGroupName"}"#,
    printcolumn = r#"{"name":"Permission","type":"string","jsonPath":".spec.permission"}"#,
    printcolumn = r#"{"name":"Topic Space","type":"string","jsonPath":".spec.topicSpaceName"}"#,
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct PermissionBindingSpec {
    /// The Gridline Namespace this binding belongs to. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("namespaceRef is immutable"))]
    pub namespace_ref: ObjectRef,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub description: Option<String>,
    /// The TopicSpace granted (its name; `$all`-style wildcards are not allowed).
    #[schemars(length(min = 3, max = 50))]
    pub topic_space_name: String,
    /// `Publisher` or `Subscriber`.
    pub permission: Permission,
    /// The ClientGroup the permission is granted to; `$all` means every client.
    #[schemars(length(min = 3, max = 50))]
    pub client_group_name: String,
}

/// What a binding allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Permission {
    Publisher,
    Subscriber,
}
