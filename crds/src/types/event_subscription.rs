//! `EventSubscription`: how a topic's events reach consumers
//! (Event Grid `namespaces/topics/eventSubscriptions`).

use super::common::{ObjectRef, ResourceStatus, SecretKeyRef};
use super::filters::FiltersConfiguration;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A subscription to a Topic: `Queue` (consumers pull and settle with lock tokens) or
/// `Push` (Gridline delivers to a webhook).
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "gridline.dev",
    version = "v1alpha1",
    kind = "EventSubscription",
    namespaced,
    status = "ResourceStatus",
    shortname = "gsub",
    category = "gridline",
    validation = Rule::new(super::common::NAME_RULE).message(super::common::NAME_RULE_MESSAGE),
    printcolumn = r#"{"name":"Topic","type":"string","jsonPath":".spec.topicRef.name"}"#,
    printcolumn = r#"{"name":"Delivery","type":"string","jsonPath":".spec.deliveryConfiguration.deliveryMode"}"#,
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct EventSubscriptionSpec {
    /// The Topic this subscription reads. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("topicRef is immutable"))]
    pub topic_ref: ObjectRef,
    /// Queue or push delivery, and their settings.
    pub delivery_configuration: DeliveryConfiguration,
    /// The schema events are delivered in: only `CloudEventSchemaV1_0`.
    #[serde(default)]
    pub event_delivery_schema: DeliverySchema,
    /// Which events the subscription receives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters_configuration: Option<FiltersConfiguration>,
    /// After this time (RFC 3339, UTC) the subscription stops delivering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub expiration_time_utc: Option<String>,
}

/// Event Grid's delivery schemas for namespace subscriptions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeliverySchema {
    #[default]
    #[serde(rename = "CloudEventSchemaV1_0")]
    CloudEventSchemaV1_0,
}

/// Event Grid `deliveryConfiguration`.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.deliveryMode != 'Queue' || (has(self.queue) && !has(self.push))").message("deliveryMode Queue needs 'queue' settings and no 'push' settings"),
    validation = Rule::new("self.deliveryMode != 'Push' || (has(self.push) && !has(self.queue))").message("deliveryMode Push needs 'push' settings (with a destination) and no 'queue' settings"),
    validation = Rule::new("self.deliveryMode == oldSelf.deliveryMode").message("deliveryMode is immutable")
)]
pub struct DeliveryConfiguration {
    /// `Queue` (pull) or `Push` (webhook). Immutable.
    pub delivery_mode: DeliveryMode,
    /// Settings of a `Queue` subscription.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueInfo>,
    /// Settings of a `Push` subscription.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<PushInfo>,
}

/// How events reach consumers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeliveryMode {
    Queue,
    Push,
}

/// Event Grid `queue` settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueInfo {
    /// How long a received event stays locked, in seconds (60-300, default 60).
    #[serde(default = "default_lock_duration")]
    #[schemars(range(min = 60, max = 300))]
    pub receive_lock_duration_in_seconds: i32,
    /// Deliveries before an event is dead-lettered or dropped (1-10, default 10).
    #[serde(default = "default_max_delivery_count")]
    #[schemars(range(min = 1, max = 10))]
    pub max_delivery_count: i32,
    /// ISO 8601 duration (e.g. `P1D`, `PT30M`), at least one minute and at most the topic's
    /// retention; after it an undelivered event is dead-lettered or dropped. Default: the retention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^P(\d+D)?(T(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$"))]
    pub event_time_to_live: Option<String>,
    /// Where undeliverable and rejected events go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_destination_with_resource_identity: Option<DeadLetterWithResourceIdentity>,
}

impl Default for QueueInfo {
    fn default() -> Self {
        Self {
            receive_lock_duration_in_seconds: default_lock_duration(),
            max_delivery_count: default_max_delivery_count(),
            event_time_to_live: None,
            dead_letter_destination_with_resource_identity: None,
        }
    }
}

fn default_lock_duration() -> i32 {
    60
}
fn default_max_delivery_count() -> i32 {
    10
}

/// Event Grid `push` settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PushInfo {
    /// Delivery attempts before an event is dead-lettered or dropped (1-10, default 10).
    #[serde(default = "default_max_delivery_count")]
    #[schemars(range(min = 1, max = 10))]
    pub max_delivery_count: i32,
    /// ISO 8601 duration, at least one minute, at most 7 days and the topic's retention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^P(\d+D)?(T(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$"))]
    pub event_time_to_live: Option<String>,
    /// The webhook events are delivered to.
    pub destination: PushDestination,
    /// Where undeliverable events go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_destination_with_resource_identity: Option<DeadLetterWithResourceIdentity>,
}

/// Event Grid `deadLetterDestinationWithResourceIdentity`; Gridline dead-letters into a Topic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterWithResourceIdentity {
    /// The dead-letter destination.
    pub dead_letter_destination: DeadLetterDestination,
}

/// A dead-letter destination: a Topic of the same Namespace. Dead-lettered events carry the
/// reason, delivery count and last error as CloudEvents extension attributes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterDestination {
    /// Event Grid names a storage blob here; Gridline takes only `Topic`.
    #[serde(default)]
    pub endpoint_type: DeadLetterEndpointType,
    /// The Topic that receives dead-lettered events.
    pub topic_ref: ObjectRef,
}

/// Dead-letter destination types.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeadLetterEndpointType {
    #[default]
    Topic,
}

/// Event Grid push `destination`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PushDestination {
    /// Only `WebHook`.
    #[serde(default)]
    pub endpoint_type: PushEndpointType,
    /// The webhook's settings.
    pub properties: WebHookProperties,
}

/// Push destination types.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PushEndpointType {
    #[default]
    WebHook,
}

/// Event Grid `WebHookEventSubscriptionDestinationProperties`.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebHookProperties {
    /// `https://` URL (or `http://` when the Namespace allows insecure webhooks).
    #[schemars(length(max = MAX_ENDPOINT_URL_CHARS))]
    #[x_kube(validation = Rule::new("self.startsWith('https://') || self.startsWith('http://')").message("endpointUrl must be an http:// or https:// URL"))]
    pub endpoint_url: String,
    /// Events per request (1-5000, default 1).
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 5000))]
    pub max_events_per_batch: i32,
    /// Preferred request size in kilobytes (1-1024, default 64).
    #[serde(default = "default_batch_kilobytes")]
    #[schemars(range(min = 1, max = 1024))]
    pub preferred_batch_size_in_kilobytes: i32,
    /// Extra HTTP headers on every delivery: static, from a Secret, or from an event attribute.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub delivery_attribute_mappings: Vec<DeliveryAttributeMapping>,
    /// A Secret holding the PEM CA (key `ca.crt`) that the endpoint's certificate chains to,
    /// instead of the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificate_secret_name: Option<String>,
}

/// Bound of a webhook URL: twice what browsers and most servers take (2048), so that a URL
/// carrying a long query (a function key, a SAS token) fits.
const MAX_ENDPOINT_URL_CHARS: u32 = 4096;

fn one() -> i32 {
    1
}
fn default_batch_kilobytes() -> i32 {
    64
}

/// Event Grid `deliveryAttributeMappings` entry: an HTTP header on each delivery.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.type != 'Static' || has(self.properties.value) || has(self.properties.secretKeyRef)").message("a Static mapping needs properties.value or properties.secretKeyRef"),
    validation = Rule::new("self.type != 'Dynamic' || has(self.properties.sourceField)").message("a Dynamic mapping needs properties.sourceField")
)]
pub struct DeliveryAttributeMapping {
    /// The header name.
    #[schemars(regex(pattern = r"^[A-Za-z0-9-]{1,128}$"))]
    pub name: String,
    /// `Static` (a fixed or secret value) or `Dynamic` (from an event attribute).
    #[serde(rename = "type")]
    pub mapping_type: DeliveryAttributeMappingType,
    /// The value's source.
    pub properties: DeliveryAttributeProperties,
}

/// Kinds of delivery attribute mappings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeliveryAttributeMappingType {
    Static,
    Dynamic,
}

/// The value of a delivery attribute mapping.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryAttributeProperties {
    /// Static: the header value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Static: whether the value is a secret (never logged, never shown in status).
    #[serde(default)]
    pub is_secret: bool,
    /// Static (Gridline): take the value from a Secret instead of writing it here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,
    /// Dynamic: the event attribute whose value becomes the header (e.g. `subject`, `data.a`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_field: Option<String>,
}
