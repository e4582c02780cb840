//! `Namespace`: one broker instance (Event Grid `namespaces`), with Gridline's deployment settings.

use super::common::{MAX_OBJECT_NAME_CHARS, ObjectRef, State};
pub use super::namespace_cluster::{
    CONNECTED_PEERS_ANNOTATION, ClusterMember, ClusterSettings, MAX_CLUSTER_MEMBERS,
    MEMBER_LEASE_LABEL, MEMBER_LEASE_LABEL_VALUE, MEMBER_LEASE_PREFIX, MEMBER_NAMESPACE_LABEL,
    NamespaceStatus, PEER_ADDRESS_ANNOTATION, PEER_CERTIFICATE_NAME,
};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A Gridline Namespace: an MQTT broker and a CloudEvents HTTP endpoint, run as a StatefulSet.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "gridline.dev",
    version = "v1alpha1",
    kind = "Namespace",
    plural = "namespaces",
    namespaced,
    status = "NamespaceStatus",
    shortname = "gns",
    category = "gridline",
    validation = Rule::new(super::common::NAME_RULE).message(super::common::NAME_RULE_MESSAGE),
    validation = Rule::new(super::common::NAMESPACE_NAME_RULE).message(super::common::NAMESPACE_NAME_RULE_MESSAGE),
    printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".spec.replicas"}"#,
    printcolumn = r#"{"name":"MQTT","type":"string","description":"topic spaces (MQTT broker) state","jsonPath":".spec.topicSpacesConfiguration.state"}"#,
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSpec {
    /// Number of data-plane pods (Event Grid: `sku.capacity`, the throughput units). 1-40.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 40))]
    pub replicas: i32,
    /// The MQTT broker: state, routing, session limits, authentication name sources, enrichments.
    #[serde(default)]
    pub topic_spaces_configuration: TopicSpacesConfiguration,
    /// Lowest TLS version accepted on TLS listeners: `1.2` (default) or `1.3`.
    #[serde(default)]
    pub minimum_tls_version_allowed: TlsVersion,
    /// The server certificate of the TLS listeners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfiguration>,
    /// Custom domain names of the MQTT and HTTP endpoints (Event Grid: custom domain names),
    /// at most 16. Every TLS listener presents the certificate of the domain a client names in
    /// SNI, and the `tls` certificate to any other name. A domain whose certificate is missing
    /// or does not cover it is served with the `tls` certificate and reported in the
    /// `CustomDomainsReady` condition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_CUSTOM_DOMAINS))]
    #[x_kube(validation = Rule::new("self.all(d, self.exists_one(e, e.fullyQualifiedDomainName == d.fullyQualifiedDomainName))").message("each fullyQualifiedDomainName may appear only once in customDomains"))]
    pub custom_domains: Vec<CustomDomain>,
    /// CA certificates that MQTT client certificates must chain to (Event Grid `caCertificates`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 2048))]
    pub ca_certificates: Vec<CaCertificate>,
    /// JWT issuers trusted for MQTT 5 `OAUTH2-JWT` authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtConfiguration>,
    /// The Secret holding the shared access keys (`key1`, `key2`) of the HTTP API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sas_keys: Option<SasKeysConfiguration>,
    /// Which listeners the data plane opens.
    #[serde(default)]
    pub listeners: Listeners,
    /// The data plane's event store.
    #[serde(default)]
    pub storage: Storage,
    /// How the Namespace's pods act as one: membership lease and peer link timing.
    #[serde(default)]
    // `has`: the API server fills both defaults before it validates, but a manifest checked
    // client-side (`gridline-dataplane check`) is raw; compile judges it with the defaults.
    #[x_kube(validation = Rule::new("!has(self.peerTimeoutSeconds) || !has(self.memberLeaseSeconds) || self.peerTimeoutSeconds < self.memberLeaseSeconds").message("cluster.peerTimeoutSeconds must be less than cluster.memberLeaseSeconds: a pod must notice a silent peer link before the peer's membership lease runs out"))]
    pub cluster: ClusterSettings,
    /// CPU and memory of each data-plane pod (Gridline setting). Unset: the operator's
    /// defaults (`gridline-operator run --help`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
}

fn default_replicas() -> i32 {
    1
}

/// Event Grid `topicSpacesConfiguration`: the MQTT broker of the namespace.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicSpacesConfiguration {
    /// `Enabled` turns the MQTT broker on. Default `Disabled`, as in Event Grid.
    #[serde(default = "disabled")]
    pub state: State,
    /// The Topic every MQTT message is routed to as a CloudEvent (Event Grid:
    /// `routeTopicResourceId`). Unset: no routing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_topic_ref: Option<ObjectRef>,
    /// Longest session expiry a client may ask for, in hours (1-8, default 1).
    #[serde(default = "default_session_expiry_hours")]
    #[schemars(range(min = 1, max = 8))]
    pub maximum_session_expiry_in_hours: i32,
    /// Concurrent sessions allowed per authentication name (1-100, default 1).
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 100))]
    pub maximum_client_sessions_per_authentication_name: i32,
    /// Subscriptions one connection may hold (Gridline setting; 1-1000, default 100).
    #[serde(default = "default_subscriptions_per_connection")]
    #[schemars(range(min = 1, max = 1000))]
    pub maximum_subscriptions_per_connection: i32,
    /// Messages per second one connection may publish (Gridline setting; 1-10000000, default
    /// 1000 as Event Grid per session).
    #[serde(default = "default_messages_per_second")]
    #[schemars(range(min = 1, max = 10000000))]
    pub maximum_messages_per_second_per_connection: i32,
    /// Where the authentication name comes from besides the CONNECT username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_authentication: Option<ClientAuthentication>,
    /// Extension attributes added to every routed CloudEvent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_enrichments: Option<RoutingEnrichments>,
    /// Where client lifecycle events (session connected / disconnected, client created or
    /// updated / deleted) are published. Event Grid sends them to a system topic; in
    /// Gridline a Topic of the Namespace stands in for it. Unset: no lifecycle events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_lifecycle_events: Option<ClientLifecycleEvents>,
}

impl Default for TopicSpacesConfiguration {
    fn default() -> Self {
        Self {
            state: State::Disabled,
            route_topic_ref: None,
            maximum_session_expiry_in_hours: default_session_expiry_hours(),
            maximum_client_sessions_per_authentication_name: 1,
            maximum_subscriptions_per_connection: default_subscriptions_per_connection(),
            maximum_messages_per_second_per_connection: default_messages_per_second(),
            client_authentication: None,
            routing_enrichments: None,
            client_lifecycle_events: None,
        }
    }
}

fn disabled() -> State {
    State::Disabled
}
fn one() -> i32 {
    1
}
fn default_session_expiry_hours() -> i32 {
    1
}
fn default_subscriptions_per_connection() -> i32 {
    100
}
fn default_messages_per_second() -> i32 {
    1000
}

/// Gridline's stand-in for Event Grid's system topic of MQTT client lifecycle events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientLifecycleEvents {
    /// The Topic of this Namespace that receives the events.
    pub topic_ref: ObjectRef,
}

/// Event Grid `clientAuthentication`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientAuthentication {
    /// Certificate fields tried, in order, as the authentication name when the CONNECT has no username.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alternative_authentication_name_sources: Vec<AlternativeAuthenticationNameSource>,
}

/// Event Grid's alternative authentication name sources.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AlternativeAuthenticationNameSource {
    ClientCertificateSubject,
    ClientCertificateDns,
    ClientCertificateUri,
    ClientCertificateIp,
    ClientCertificateEmail,
}

/// Event Grid `routingEnrichments`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoutingEnrichments {
    /// Fixed extension attributes.
    #[serde(default, rename = "static", skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub static_enrichments: Vec<StaticEnrichment>,
    /// Extension attributes taken from the client or the message, e.g. `${client.authenticationName}`.
    #[serde(default, rename = "dynamic", skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub dynamic_enrichments: Vec<DynamicEnrichment>,
}

/// A static routing enrichment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StaticEnrichment {
    /// The CloudEvents extension attribute name: lowercase letters and digits, at most 20.
    #[schemars(regex(pattern = r"^[a-z0-9]{1,20}$"))]
    pub key: String,
    /// The value.
    pub value: String,
    /// The value's type; only `String`.
    #[serde(default)]
    pub value_type: EnrichmentValueType,
}

/// The type of a static enrichment's value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum EnrichmentValueType {
    #[default]
    String,
}

/// A dynamic routing enrichment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DynamicEnrichment {
    /// The CloudEvents extension attribute name: lowercase letters and digits, at most 20.
    #[schemars(regex(pattern = r"^[a-z0-9]{1,20}$"))]
    pub key: String,
    /// One of `${client.authenticationName}`, `${client.attributes.<name>}`,
    /// `${mqtt.message.userProperties.<name>}`, `${mqtt.message.topicName}`,
    /// `${mqtt.message.responseTopic}`, `${mqtt.message.correlationData}`.
    pub value: String,
}

/// TLS versions Gridline can require.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TlsVersion {
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

/// The server certificate of the TLS listeners.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsConfiguration {
    /// A `kubernetes.io/tls` Secret (`tls.crt`, `tls.key`).
    #[schemars(length(max = MAX_OBJECT_NAME_CHARS))]
    pub secret_name: String,
}

/// At most this many custom domains per Namespace: each is a certificate the TLS listeners
/// hold and match against every handshake's SNI.
pub const MAX_CUSTOM_DOMAINS: u32 = 16;

/// What a custom domain name must look like: lowercase DNS labels (letters, digits, `-`, not
/// starting or ending with `-`), at least two, the last starting with a letter. No wildcard:
/// a custom domain is one name, though its certificate may be a wildcard certificate.
pub const FULLY_QUALIFIED_DOMAIN_NAME_PATTERN: &str =
    r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]([-a-z0-9]{0,61}[a-z0-9])?$";

/// A custom domain name and its certificate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomDomain {
    /// The domain name clients connect to, e.g. `mqtt.contoso.com`: lowercase, at most 253
    /// characters, no wildcard.
    #[schemars(length(max = 253), regex(pattern = FULLY_QUALIFIED_DOMAIN_NAME_PATTERN))]
    pub fully_qualified_domain_name: String,
    /// The certificate presented for this name: a `kubernetes.io/tls` Secret (`tls.crt`,
    /// `tls.key`) whose certificate covers the name (a SAN DNS name, wildcards allowed).
    /// Renewing the Secret (e.g. by cert-manager) takes effect without a restart.
    pub tls: TlsConfiguration,
}

/// A CA certificate trusted for client certificates.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaCertificate {
    /// Name of this CA certificate (Event Grid: the caCertificates resource name).
    pub name: String,
    /// Secret holding the PEM certificate.
    pub secret_name: String,
    /// Key inside the Secret (default `ca.crt`).
    #[serde(default = "default_ca_key")]
    pub key: String,
}

fn default_ca_key() -> String {
    "ca.crt".to_string()
}

/// JWT issuers for MQTT authentication.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JwtConfiguration {
    /// Trusted issuers.
    #[serde(default)]
    #[schemars(length(max = 10))]
    pub issuers: Vec<JwtIssuer>,
}

/// One trusted JWT issuer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JwtIssuer {
    /// The `iss` claim tokens must carry.
    pub issuer: String,
    /// Accepted `aud` values (at least one).
    #[schemars(length(min = 1))]
    pub audiences: Vec<String>,
    /// Secret holding the issuer's verification keys as a JWKS document (key `jwks.json`).
    pub keys_secret_name: String,
}

/// Shared access keys of the HTTP API.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SasKeysConfiguration {
    /// A Secret with keys `key1` and `key2`; either authenticates, so keys rotate without downtime.
    pub secret_name: String,
}

/// The data plane's listeners.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Listeners {
    /// MQTT over TLS (Event Grid: 8883).
    #[serde(default = "default_mqtt_tls")]
    pub mqtt_tls: Listener,
    /// Plaintext MQTT, for local development only (off by default; Event Grid has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt_plaintext: Option<PlaintextMqttListener>,
    /// MQTT over WebSockets at path `/mqtt`, served on the HTTPS listener.
    #[serde(default = "enabled")]
    pub websockets: bool,
    /// The HTTPS listener of the CloudEvents API (Event Grid: 443).
    #[serde(default = "default_https")]
    pub https: Listener,
    /// A plaintext HTTP listener, for local development and in-cluster traffic behind a mesh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<Listener>,
    /// Whether push subscriptions may deliver to `http://` endpoints.
    #[serde(default)]
    pub allow_insecure_webhooks: bool,
}

impl Default for Listeners {
    fn default() -> Self {
        Self {
            mqtt_tls: default_mqtt_tls(),
            mqtt_plaintext: None,
            websockets: true,
            https: default_https(),
            http: None,
            allow_insecure_webhooks: false,
        }
    }
}

fn enabled() -> bool {
    true
}
fn default_mqtt_tls() -> Listener {
    Listener {
        enabled: true,
        port: 8883,
    }
}
fn default_https() -> Listener {
    Listener {
        enabled: true,
        port: 443,
    }
}

/// One listener.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    /// Whether the listener is open.
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// TCP port (1-65535).
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
}

/// The plaintext MQTT listener.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlaintextMqttListener {
    /// Whether the listener is open.
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// TCP port (1-65535, default 1883).
    #[serde(default = "default_mqtt_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Development identity: take the CONNECT username as the authentication name without
    /// proof. Clients, groups and bindings still apply. Never use it in production.
    #[serde(default)]
    pub insecure_username_authentication: bool,
}

fn default_mqtt_port() -> i32 {
    1883
}

/// The event store of each data-plane pod.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Storage {
    /// Volume size per pod (a Kubernetes quantity, default `10Gi`). Immutable.
    #[serde(default = "default_storage_size")]
    #[schemars(length(max = MAX_QUANTITY_CHARS))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("storage.size is immutable (it sizes the StatefulSet's volume claims)"))]
    pub size: String,
    /// Storage class of the volumes (default: the cluster's default). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_OBJECT_NAME_CHARS))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("storage.storageClassName is immutable"))]
    pub storage_class_name: Option<String>,
    /// When an append is made durable: `Always` (fsync before acknowledging, default) or
    /// `Interval` (fsync every `fsyncIntervalMilliseconds`).
    #[serde(default)]
    pub fsync_policy: FsyncPolicy,
    /// The fsync period under the `Interval` policy (1-10000 ms, default 100).
    #[serde(default = "default_fsync_interval")]
    #[schemars(range(min = 1, max = 10000))]
    pub fsync_interval_milliseconds: i32,
    /// What happens to the pods' volume claims (the StatefulSet's
    /// `persistentVolumeClaimRetentionPolicy`) when the Namespace scales down and when it is
    /// deleted. `Retain` (default) keeps them; `Delete` removes them.
    #[serde(default)]
    pub volume_claim_retention: VolumeClaimRetention,
}

/// The StatefulSet's `persistentVolumeClaimRetentionPolicy`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeClaimRetention {
    /// The volume of a pod removed by a scale-down. `Retain` (default) keeps it, and a later
    /// scale-up reuses it with the events and sessions it holds. `Delete` removes it: a pod
    /// stopping does not yet hand its undelivered events and persistent MQTT sessions to its
    /// peers, so they go with the volume.
    #[serde(default)]
    pub when_scaled: VolumeClaimRetentionPolicy,
    /// The volumes when the Namespace is deleted: `Retain` (default) keeps them (a Namespace
    /// created again under the same name takes them up, events and all), `Delete` removes
    /// them with it.
    #[serde(default)]
    pub when_deleted: VolumeClaimRetentionPolicy,
}

/// Keep or delete a volume claim.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum VolumeClaimRetentionPolicy {
    #[default]
    Retain,
    Delete,
}

impl VolumeClaimRetentionPolicy {
    /// The StatefulSet API's spelling, which is the same.
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeClaimRetentionPolicy::Retain => "Retain",
            VolumeClaimRetentionPolicy::Delete => "Delete",
        }
    }
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            size: default_storage_size(),
            storage_class_name: None,
            fsync_policy: FsyncPolicy::Always,
            fsync_interval_milliseconds: default_fsync_interval(),
            volume_claim_retention: VolumeClaimRetention::default(),
        }
    }
}

/// Bound of `storage.size`: a Kubernetes quantity (`10Gi`, `1.5Ti`) is a few characters; 64
/// leaves room for any spelling the API server accepts.
const MAX_QUANTITY_CHARS: u32 = 64;

fn default_storage_size() -> String {
    "10Gi".to_string()
}
fn default_fsync_interval() -> i32 {
    100
}

/// When the store fsyncs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum FsyncPolicy {
    #[default]
    Always,
    Interval,
}
