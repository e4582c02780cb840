//! The compiled, immutable view of one Gridline Namespace that the data plane serves from.
//! Everything in it is valid and every reference in it resolves.

use super::filter::CompiledFilter;
use super::objects::Kind;
use super::query::ClientGroupQuery;
use super::topic::TopicTemplate;
use crate::attributes::Attributes;
use crate::types::client::ValidationScheme;
use crate::types::namespace::{NamespaceSpec, RoutingEnrichments};
use crate::types::permission_binding::Permission;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::time::Duration;

/// The name of the built-in client group that holds every client.
pub const ALL_CLIENTS_GROUP: &str = "$all";

/// Event Grid counts at most this many client groups per client.
pub const MAX_GROUPS_PER_CLIENT: usize = 10;

/// One compiled Namespace.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// The Namespace itself; `None` when no valid Namespace was found.
    pub namespace: Option<CompiledNamespace>,
    pub topics: BTreeMap<String, CompiledTopic>,
    /// Keyed by (topic name, subscription name).
    pub subscriptions: BTreeMap<(String, String), CompiledSubscription>,
    /// Keyed by object name.
    pub clients: BTreeMap<String, CompiledClient>,
    /// Object name of the Client for each authentication name.
    pub clients_by_authentication_name: BTreeMap<String, String>,
    pub client_groups: BTreeMap<String, CompiledClientGroup>,
    pub topic_spaces: BTreeMap<String, CompiledTopicSpace>,
    pub permission_bindings: BTreeMap<String, CompiledPermissionBinding>,
}

impl Snapshot {
    /// How many objects of each kind made it into the Snapshot.
    pub fn object_counts(&self) -> BTreeMap<Kind, usize> {
        BTreeMap::from([
            (Kind::Namespace, usize::from(self.namespace.is_some())),
            (Kind::Topic, self.topics.len()),
            (Kind::EventSubscription, self.subscriptions.len()),
            (Kind::Client, self.clients.len()),
            (Kind::ClientGroup, self.client_groups.len()),
            (Kind::TopicSpace, self.topic_spaces.len()),
            (Kind::PermissionBinding, self.permission_bindings.len()),
        ])
    }

    /// The subscriptions of one topic.
    pub fn subscriptions_of<'a>(
        &'a self,
        topic: &'a str,
    ) -> impl Iterator<Item = &'a CompiledSubscription> + 'a {
        self.subscriptions
            .range((topic.to_string(), String::new())..)
            .take_while(move |((t, _), _)| t == topic)
            .map(|(_, s)| s)
    }

    /// The Client that authenticates as `authentication_name`.
    pub fn client_by_authentication_name(
        &self,
        authentication_name: &str,
    ) -> Option<&CompiledClient> {
        self.clients_by_authentication_name
            .get(authentication_name)
            .and_then(|name| self.clients.get(name))
    }
}

/// A compiled Namespace: its settings plus the secrets it resolved.
#[derive(Clone, Debug)]
pub struct CompiledNamespace {
    pub name: String,
    /// The Kubernetes namespace the Namespace and all its objects live in.
    pub k8s_namespace: String,
    pub spec: NamespaceSpec,
    /// Shared access keys (from `sasKeys.secretName`: `key1`, then `key2`).
    pub sas_keys: Vec<String>,
    /// The Topic MQTT messages are routed to.
    pub route_topic: Option<String>,
    /// The Topic client lifecycle events are published to
    /// (`topicSpacesConfiguration.clientLifecycleEvents.topicRef`).
    pub lifecycle_topic: Option<String>,
    pub routing_enrichments: RoutingEnrichments,
    /// PEM server certificate chain and key, when `tls` names a Secret.
    pub tls_certificate: Option<TlsMaterial>,
    /// Custom domain names (`spec.customDomains`), in spec order: a TLS listener presents the
    /// certificate of the domain a client names in SNI, else `tls_certificate`.
    pub custom_domains: Vec<CompiledCustomDomain>,
    /// PEM CA certificates for client certificates, by CA name.
    pub ca_certificates: BTreeMap<String, Vec<u8>>,
    /// Trusted JWT issuers (`jwt.issuers`) with their keys, in spec order.
    pub jwt_issuers: Vec<CompiledJwtIssuer>,
    /// How fast the pods notice that one of them is gone (`spec.cluster`).
    pub cluster: CompiledCluster,
}

/// `spec.cluster` as durations: what `dataplane::cluster::timing::ClusterTiming` is made of.
/// Compile guarantees `peer_timeout < member_lease`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompiledCluster {
    /// A peer link silent this long is treated as out (`peerTimeoutSeconds`).
    pub peer_timeout: Duration,
    /// A membership lease not renewed for this long puts its pod out (`memberLeaseSeconds`).
    pub member_lease: Duration,
}

impl Default for CompiledCluster {
    /// The CRD's defaults (10 s and 15 s), for Namespaces that never set `spec.cluster`.
    fn default() -> Self {
        Self::from(&crate::types::namespace::ClusterSettings::default())
    }
}

impl From<&crate::types::namespace::ClusterSettings> for CompiledCluster {
    /// Out-of-range values (refused by compile) are clamped to zero rather than wrapped.
    fn from(settings: &crate::types::namespace::ClusterSettings) -> Self {
        let seconds = |value: i32| Duration::from_secs(u64::try_from(value).unwrap_or(0));
        Self {
            peer_timeout: seconds(settings.peer_timeout_seconds),
            member_lease: seconds(settings.member_lease_seconds),
        }
    }
}

/// A JWT issuer trusted for MQTT 5 `OAUTH2-JWT` authentication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledJwtIssuer {
    /// The `iss` claim a token must carry.
    pub issuer: String,
    /// Accepted `aud` values.
    pub audiences: Vec<String>,
    /// The JWKS document from `keysSecretName` (key `jwks.json`): checked to be a JSON object
    /// with a `keys` array, the keys themselves parsed by the data plane. Public keys only,
    /// so it may be logged.
    pub jwks_json: Vec<u8>,
}

/// A custom domain name (`spec.customDomains[]`) and the certificate to present for it.
///
/// A domain without a usable certificate does not make its Namespace invalid: the listeners
/// present `tls_certificate` for it, and the operator reports it in the Namespace's
/// `CustomDomainsReady` condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledCustomDomain {
    /// Lowercase. Compare an SNI name with it after lowercasing the SNI name (DNS names are
    /// case-insensitive).
    pub fully_qualified_domain_name: String,
    /// None when the Secret is missing, holds no usable PEM, or its certificate does not cover
    /// the name (then `problem` says why).
    pub certificate: Option<TlsMaterial>,
    pub problem: Option<String>,
}

impl CompiledCustomDomain {
    /// Whether the Secret holds a certificate, but one that does not cover the name (as
    /// opposed to no usable certificate at all).
    pub fn certificate_mismatch(&self) -> bool {
        self.problem
            .as_deref()
            .is_some_and(|problem| problem.contains(CERTIFICATE_MISMATCH))
    }
}

/// The phrase every "certificate does not cover the name" problem carries, and no other.
pub(crate) const CERTIFICATE_MISMATCH: &str = "does not cover";

/// A server certificate and its private key, PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsMaterial {
    pub certificate_chain_pem: Vec<u8>,
    pub private_key_pem: Vec<u8>,
}

// The key is a secret: keep it out of logs and debug output.
impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field(
                "certificate_chain_pem",
                &format!("{} bytes", self.certificate_chain_pem.len()),
            )
            .field("private_key_pem", &"<redacted>")
            .finish()
    }
}

/// A compiled Topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledTopic {
    pub name: String,
    pub event_retention: Duration,
}

/// A compiled EventSubscription.
#[derive(Clone, Debug)]
pub struct CompiledSubscription {
    pub name: String,
    pub topic: String,
    pub delivery: Delivery,
    pub filter: CompiledFilter,
    pub expiration_time: Option<DateTime<Utc>>,
}

/// How a subscription's events reach consumers.
#[derive(Clone, Debug, PartialEq)]
pub enum Delivery {
    Queue(QueueDelivery),
    Push(PushDelivery),
}

/// A compiled queue (pull) subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueDelivery {
    pub receive_lock_duration: Duration,
    pub max_delivery_count: u32,
    pub event_time_to_live: Duration,
    pub dead_letter_topic: Option<String>,
}

/// A compiled push (webhook) subscription.
#[derive(Clone, Debug, PartialEq)]
pub struct PushDelivery {
    pub endpoint_url: String,
    pub max_events_per_batch: u32,
    pub preferred_batch_size_bytes: u32,
    pub max_delivery_count: u32,
    pub event_time_to_live: Duration,
    pub dead_letter_topic: Option<String>,
    pub headers: Vec<DeliveryHeader>,
    /// PEM CA the endpoint's certificate must chain to; `None`: the system roots.
    pub ca_certificate_pem: Option<Vec<u8>>,
}

/// One extra header on each push delivery.
#[derive(Clone, PartialEq)]
pub struct DeliveryHeader {
    pub name: String,
    pub value: HeaderValueSource,
}

/// Where a delivery header's value comes from.
#[derive(Clone, PartialEq)]
pub enum HeaderValueSource {
    Static(String),
    /// A secret value: never logged.
    Secret(String),
    /// An event attribute (`subject`, `data.x`, ...).
    EventAttribute(String),
}

impl std::fmt::Debug for DeliveryHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {:?}", self.name, self.value)
    }
}

// Secret values must never reach a log line through `{:?}`.
impl std::fmt::Debug for HeaderValueSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderValueSource::Static(value) => write!(f, "static {value:?}"),
            HeaderValueSource::Secret(_) => f.write_str("<secret>"),
            HeaderValueSource::EventAttribute(name) => write!(f, "from event attribute {name:?}"),
        }
    }
}

/// A compiled Client.
#[derive(Clone, Debug, PartialEq)]
pub struct CompiledClient {
    pub name: String,
    pub authentication_name: String,
    pub enabled: bool,
    pub attributes: Attributes,
    pub validation_scheme: ValidationScheme,
    /// Lower-case hex SHA-256 thumbprints accepted under `ThumbprintMatch`.
    pub allowed_thumbprints: Vec<String>,
    /// The client groups the client belongs to (at most ten counted, in name order), plus `$all`.
    pub groups: Vec<String>,
}

/// A compiled ClientGroup.
#[derive(Clone, Debug, PartialEq)]
pub struct CompiledClientGroup {
    pub name: String,
    pub query: ClientGroupQuery,
}

/// A compiled TopicSpace.
#[derive(Clone, Debug, PartialEq)]
pub struct CompiledTopicSpace {
    pub name: String,
    pub templates: Vec<TopicTemplate>,
}

/// A compiled PermissionBinding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledPermissionBinding {
    pub name: String,
    /// A ClientGroup name or `$all`.
    pub client_group: String,
    pub topic_space: String,
    pub permission: Permission,
}
