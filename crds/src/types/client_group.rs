//! `ClientGroup`: the clients whose attributes satisfy a query (Event Grid `namespaces/clientGroups`).

use super::common::{ObjectRef, ResourceStatus};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A group of clients selected by a query over their attributes, e.g.
/// `attributes.type IN ['sensor', 'gateway'] AND attributes.floor <= 3`.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "gridline.dev",
    version = "v1alpha1",
    kind = "ClientGroup",
    namespaced,
    status = "ResourceStatus",
    shortname = "gcg",
    category = "gridline",
    validation = Rule::new(super::common::NAME_RULE).message(super::common::NAME_RULE_MESSAGE),
    printcolumn = r#"{"name":"Namespace","type":"string","jsonPath":".spec.namespaceRef.name"}"#,
    printcolumn = r#"{"name":"Query","type":"string","jsonPath":".spec.query"}"#,
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClientGroupSpec {
    /// The Gridline Namespace this group belongs to. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("namespaceRef is immutable"))]
    pub namespace_ref: ObjectRef,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub description: Option<String>,
    /// The query over client attributes; `$all` selects every client.
    #[schemars(length(min = 1, max = 2048))]
    pub query: String,
}
