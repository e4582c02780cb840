//! `Topic`: a namespace topic that events are published to (Event Grid `namespaces/topics`).

use super::common::{ObjectRef, ResourceStatus};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A namespace topic. Events are published to it over HTTP, or routed to it from MQTT.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "gridline.dev",
    version = "v1alpha1",
    kind = "Topic",
    namespaced,
    status = "ResourceStatus",
    shortname = "gtopic",
    category = "gridline",
    validation = Rule::new(super::common::NAME_RULE).message(super::common::NAME_RULE_MESSAGE),
    printcolumn = r#"{"name":"Namespace","type":"string","jsonPath":".spec.namespaceRef.name"}"#,
    printcolumn = r#"{"name":"Retention","type":"integer","description":"event retention in days","jsonPath":".spec.eventRetentionInDays"}"#,
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct TopicSpec {
    /// The Gridline Namespace this topic belongs to. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("namespaceRef is immutable"))]
    pub namespace_ref: ObjectRef,
    /// Who publishes to the topic. Event Grid namespaces allow only `Custom`. Immutable.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("publisherType is immutable"))]
    pub publisher_type: PublisherType,
    /// The schema of published events. Only `CloudEventSchemaV1_0`. Immutable.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("inputSchema is immutable"))]
    pub input_schema: InputSchema,
    /// How long events are kept, in days (1-7).
    #[serde(default = "default_retention_days")]
    #[schemars(range(min = 1, max = 7))]
    pub event_retention_in_days: i32,
}

/// Event Grid's publisher types for namespace topics.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum PublisherType {
    #[default]
    Custom,
}

/// Event Grid's input schemas for namespace topics.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum InputSchema {
    #[default]
    #[serde(rename = "CloudEventSchemaV1_0")]
    CloudEventSchemaV1_0,
}

/// Event Grid's default retention: 7 days.
pub const DEFAULT_RETENTION_DAYS: i32 = 7;
/// Event Grid's allowed retention range, in days.
pub const RETENTION_DAYS_RANGE: std::ops::RangeInclusive<i32> = 1..=7;

fn default_retention_days() -> i32 {
    DEFAULT_RETENTION_DAYS
}
