//! A Namespace's pods acting as one (issue 15): the timing of membership leases and peer
//! links (`spec.cluster`), the members the operator reports (`status.members`), and the names
//! the pods and the operator agree on (the member Leases the pods write and the operator
//! reads; the peer certificate the operator writes and the pods mount).

use super::common::{MAX_OBJECT_NAME_CHARS, ResourceStatus};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Prefix of a pod's member Lease (`coordination.k8s.io/v1`): `gridline-member-<pod>`.
pub const MEMBER_LEASE_PREFIX: &str = "gridline-member-";
/// Label of a member Lease: the Gridline Namespace it belongs to.
pub const MEMBER_NAMESPACE_LABEL: &str = "gridline.dev/namespace";
/// Label of a member Lease, with value [`MEMBER_LEASE_LABEL_VALUE`].
pub const MEMBER_LEASE_LABEL: &str = "gridline.dev/lease";
pub const MEMBER_LEASE_LABEL_VALUE: &str = "member";
/// Annotation of a member Lease: where peers reach the pod (`host:port`).
pub const PEER_ADDRESS_ANNOTATION: &str = "gridline.dev/peer-address";
/// Annotation of a member Lease: the pods this pod has a live peer link to, comma-separated
/// and sorted.
pub const CONNECTED_PEERS_ANNOTATION: &str = "gridline.dev/connected-peers";
/// The DNS name of the peer certificate every pod of a Namespace presents and checks.
pub const PEER_CERTIFICATE_NAME: &str = "gridline-peer";

/// `spec.cluster`: how fast the pods of a Namespace notice that one of them is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSettings {
    /// A peer link silent (no frame, no pong) this many seconds is treated as out by the pod
    /// at its other end (1-120, default 10). Less than `memberLeaseSeconds`.
    #[serde(default = "default_peer_timeout_seconds")]
    #[schemars(range(min = 1, max = 120))]
    pub peer_timeout_seconds: i32,
    /// A pod whose membership Lease is not renewed for this many seconds is out of the
    /// Namespace (5-300, default 15); pods renew every third of it.
    #[serde(default = "default_member_lease_seconds")]
    #[schemars(range(min = 5, max = 300))]
    pub member_lease_seconds: i32,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            peer_timeout_seconds: default_peer_timeout_seconds(),
            member_lease_seconds: default_member_lease_seconds(),
        }
    }
}

fn default_peer_timeout_seconds() -> i32 {
    10
}
fn default_member_lease_seconds() -> i32 {
    15
}

/// At most this many members are listed: `spec.replicas` is at most 40.
pub const MAX_CLUSTER_MEMBERS: u32 = 40;

/// Bound of a member's peer address (`host:port`: a DNS name of at most 253 characters, a
/// colon and a port).
const MAX_PEER_ADDRESS_CHARS: u32 = 260;

/// A Namespace's status: the generation last seen by the operator, the `Accepted` / `Ready`
/// conditions every kind has (kstatus-compatible), and the pods that are members.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceStatus {
    #[serde(flatten)]
    pub resource: ResourceStatus,
    /// The pods holding a live membership Lease (renewed within its duration), sorted by
    /// name, each with the peers it has a live link to. `Ready` needs every member to see
    /// every other.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_CLUSTER_MEMBERS))]
    pub members: Vec<ClusterMember>,
}

/// One member of a Namespace, from its membership Lease.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterMember {
    /// The pod's name.
    #[schemars(length(max = MAX_OBJECT_NAME_CHARS))]
    pub name: String,
    /// Where its peers reach it (`host:port`).
    #[serde(default)]
    #[schemars(length(max = MAX_PEER_ADDRESS_CHARS))]
    pub peer_address: String,
    /// The pods it has a live peer link to, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_CLUSTER_MEMBERS), inner(length(max = MAX_OBJECT_NAME_CHARS)))]
    pub connected_peers: Vec<String>,
}
