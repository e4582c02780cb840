//! `TopicSpace`: a set of MQTT topic templates (Event Grid `namespaces/topicSpaces`).

use super::common::{ObjectRef, ResourceStatus};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Topic templates that permission bindings grant access to, e.g.
/// `devices/${client.authenticationName}/telemetry/#`.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "gridline.dev",
    version = "v1alpha1",
    kind = "TopicSpace",
    namespaced,
    status = "ResourceStatus",
    shortname = "gts",
    category = "gridline",
    validation = Rule::new(super::common::NAME_RULE).message(super::common::NAME_RULE_MESSAGE),
    printcolumn = r#"{"name":"Namespace","type":"string","jsonPath":".spec.namespaceRef.name"}"#,
    printcolumn = r#"{"name":"Templates","type":"string","jsonPath":".spec.topicTemplates"}"#,
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct TopicSpaceSpec {
    /// The Gridline Namespace this topic space belongs to. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("namespaceRef is immutable"))]
    pub namespace_ref: ObjectRef,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub description: Option<String>,
    /// 1-10 MQTT topic filters (`+`, `#`), each level possibly a variable:
    /// `${client.authenticationName}` or `${client.attributes.<name>}`.
    #[schemars(length(min = 1, max = 10), inner(length(min = 1, max = 256)))]
    pub topic_templates: Vec<String>,
}
