//! The members of a Namespace, from the membership Leases its pods write (the operator only
//! reads them, and deletes the garbage of pods that are gone): which pods are in, whom each
//! has a live peer link to, and whether that makes the Namespace Ready.
//!
//! The Lease contract (shared with the data plane's `cluster` module; the names are constants
//! of `gridline_crds::types::namespace`): `coordination.k8s.io/v1`
//! Lease `gridline-member-<pod>`, labels [`NAMESPACE_LABEL`] = the Gridline Namespace and
//! [`LEASE_LABEL`] = `member`, annotations [`PEER_ADDRESS_ANNOTATION`] (`host:port`) and
//! [`CONNECTED_PEERS_ANNOTATION`] (comma-separated, sorted pod names), `holderIdentity` = the
//! pod, `leaseDurationSeconds`, `renewTime`.

use super::conditions::Desired;
use gridline_crds::types::{CONDITION_READY, ClusterMember, MAX_CLUSTER_MEMBERS};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use std::collections::BTreeSet;
use std::time::Duration;

/// The contract's names live in `gridline-crds`, which the data plane shares.
pub use gridline_crds::types::namespace::{
    CONNECTED_PEERS_ANNOTATION, MEMBER_LEASE_LABEL as LEASE_LABEL,
    MEMBER_LEASE_LABEL_VALUE as MEMBER_LEASE, MEMBER_LEASE_PREFIX,
    MEMBER_NAMESPACE_LABEL as NAMESPACE_LABEL, PEER_ADDRESS_ANNOTATION,
};
/// `gridline.dev/lease=member`: the selector of every watch and list of member Leases.
pub const MEMBER_LEASE_SELECTOR: &str = "gridline.dev/lease=member";

/// A Lease counts as live this long past `renewTime + leaseDurationSeconds`: the pod's clock
/// and the operator's are not the same clock.
pub const EXPIRY_GRACE: Duration = Duration::from_secs(5);
/// A member Lease expired this long, whose pod no longer exists, is deleted: the leftover of
/// a pod removed by a scale-down (a drained pod releases its Lease, a killed one cannot).
pub const GARBAGE_AFTER: Duration = Duration::from_secs(5 * 60);
/// How often a Namespace with an expired member Lease is looked at again: a renewal of an
/// expired Lease must bring its pod back, and the watch ignores renewals (they would mean
/// a status pass per pod every few seconds).
pub const EXPIRED_RECHECK: Duration = Duration::from_secs(15);

/// Longest name or address taken from a Lease into status (the CRD's bounds).
const MAX_NAME_CHARS: usize = 253;
const MAX_PEER_ADDRESS_CHARS: usize = 260;

/// One member Lease, as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberLease {
    /// The Lease's own name and resourceVersion (a delete is conditional on it).
    pub lease_name: String,
    pub resource_version: Option<String>,
    /// The Gridline Namespace (label [`NAMESPACE_LABEL`]).
    pub namespace: String,
    /// `holderIdentity`: the pod. `None` once the pod released the Lease.
    pub holder: Option<String>,
    pub peer_address: String,
    pub connected_peers: BTreeSet<String>,
    /// `renewTime + leaseDurationSeconds`; `None` when it was never renewed.
    pub expires_at: Option<Timestamp>,
    pub duration: Duration,
}

impl MemberLease {
    /// `None` when `lease` is not a member Lease (labels missing).
    pub fn from_lease(lease: &Lease) -> Option<Self> {
        let labels = lease.metadata.labels.as_ref()?;
        if labels.get(LEASE_LABEL).map(String::as_str) != Some(MEMBER_LEASE) {
            return None;
        }
        let namespace = labels.get(NAMESPACE_LABEL)?.clone();
        let annotation = |key: &str| {
            lease
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(key))
                .map(String::as_str)
                .unwrap_or_default()
        };
        let spec = lease.spec.as_ref();
        let duration_seconds = spec
            .and_then(|s| s.lease_duration_seconds)
            .map_or(0, |s| u64::try_from(s).unwrap_or(0));
        let duration = Duration::from_secs(duration_seconds);
        let renewed = spec
            .and_then(|s| s.renew_time.as_ref().or(s.acquire_time.as_ref()))
            .map(|t| t.0);
        Some(Self {
            lease_name: lease.metadata.name.clone().unwrap_or_default(),
            resource_version: lease.metadata.resource_version.clone(),
            namespace,
            holder: spec
                .and_then(|s| s.holder_identity.clone())
                .filter(|h| !h.is_empty()),
            peer_address: annotation(PEER_ADDRESS_ANNOTATION).to_string(),
            connected_peers: annotation(CONNECTED_PEERS_ANNOTATION)
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect(),
            expires_at: renewed.and_then(|t| t.checked_add(duration).ok()),
            duration,
        })
    }

    /// The pod the Lease is about: its holder, or, once released, the name after the prefix.
    pub fn pod(&self) -> &str {
        self.holder.as_deref().unwrap_or_else(|| {
            self.lease_name
                .strip_prefix(MEMBER_LEASE_PREFIX)
                .unwrap_or(&self.lease_name)
        })
    }

    /// Held and renewed recently enough at `now` (with [`EXPIRY_GRACE`]).
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.holder.is_some() && self.until_out(now).is_some()
    }

    /// How long until the Lease stops being live, when it is live.
    fn until_out(&self, now: Timestamp) -> Option<Duration> {
        let out = self.expires_at?.checked_add(EXPIRY_GRACE).ok()?;
        positive(out.duration_since(now))
    }

    /// How long the Lease has been expired at `now` (`None` while it is not expired). A
    /// released Lease (no holder) or one never renewed counts from its expiry too.
    pub fn expired_for(&self, now: Timestamp) -> Option<Duration> {
        let expires_at = self.expires_at.unwrap_or(Timestamp::UNIX_EPOCH);
        if self.holder.is_some() && self.until_out(now).is_some() {
            return None;
        }
        positive(now.duration_since(expires_at)).or(Some(Duration::ZERO))
    }
}

fn positive(duration: SignedDuration) -> Option<Duration> {
    Duration::try_from(duration).ok().filter(|d| !d.is_zero())
}

/// The live members among `leases`, as the status lists them: sorted by pod name, at most
/// [`MAX_CLUSTER_MEMBERS`], names and addresses cut to the CRD's bounds so that a stray
/// Lease cannot make the status write fail.
pub fn live_members(leases: &[MemberLease], now: Timestamp) -> Vec<ClusterMember> {
    let mut members: Vec<ClusterMember> = leases
        .iter()
        .filter(|lease| lease.is_live(now))
        .filter(|lease| lease.pod().len() <= MAX_NAME_CHARS)
        .map(|lease| ClusterMember {
            name: lease.pod().to_string(),
            peer_address: truncate(&lease.peer_address, MAX_PEER_ADDRESS_CHARS),
            connected_peers: lease
                .connected_peers
                .iter()
                .filter(|p| p.len() <= MAX_NAME_CHARS)
                .take(MAX_CLUSTER_MEMBERS as usize)
                .cloned()
                .collect(),
        })
        .collect();
    members.sort_by(|a, b| a.name.cmp(&b.name));
    members.dedup_by(|a, b| a.name == b.name);
    members.truncate(MAX_CLUSTER_MEMBERS as usize);
    members
}

fn truncate(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// At most this many missing members or unseen pairs are named in a message.
const MAX_NAMED: usize = 5;

/// Whether the members of Namespace `ns_name` with `replicas` pods act as one: each of its
/// pods `<ns-name>-gridline-<ordinal>` is a live member (not needed with one pod, which has no
/// one to see), and every live member has a link to every other. `None` when they do; else
/// the `Ready` condition saying who is missing or who does not see whom.
pub fn membership_problem(
    ns_name: &str,
    replicas: i32,
    members: &[ClusterMember],
) -> Option<Desired> {
    let names: BTreeSet<&str> = members.iter().map(|m| m.name.as_str()).collect();
    if replicas > 1 {
        let missing: Vec<String> = (0..replicas)
            .map(|ordinal| format!("{ns_name}-gridline-{ordinal}"))
            .filter(|pod| !names.contains(pod.as_str()))
            .collect();
        if !missing.is_empty() {
            return Some(Desired::new(
                CONDITION_READY,
                false,
                "MembersMissing",
                format!(
                    "{} of {replicas} pods hold a live membership Lease; missing: {}",
                    replicas as usize - missing.len(),
                    named(&missing)
                ),
            ));
        }
    }
    let unseen: Vec<String> = members
        .iter()
        .flat_map(|member| {
            members
                .iter()
                .filter(move |other| {
                    other.name != member.name && !member.connected_peers.contains(&other.name)
                })
                .map(move |other| format!("{} does not see {}", member.name, other.name))
        })
        .collect();
    if unseen.is_empty() {
        return None;
    }
    Some(Desired::new(
        CONDITION_READY,
        false,
        "PeersNotConnected",
        named(&unseen),
    ))
}

fn named(items: &[String]) -> String {
    let mut text = items
        .iter()
        .take(MAX_NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if items.len() > MAX_NAMED {
        text.push_str(&format!("; and {} more", items.len() - MAX_NAMED));
    }
    text
}

/// When the status of a Namespace with these Leases may change without a watch event: when
/// the first live Lease runs out, or, while one is expired but still held, after
/// [`EXPIRED_RECHECK`] (its pod may renew it again). `None`: nothing to wait for.
pub fn next_recheck(leases: &[MemberLease], now: Timestamp) -> Option<Duration> {
    leases
        .iter()
        .filter(|lease| lease.holder.is_some())
        .map(|lease| {
            lease
                .until_out(now)
                // A second after it runs out, so that the pass sees it out.
                .map_or(EXPIRED_RECHECK, |d| d + Duration::from_secs(1))
        })
        .min()
}

#[cfg(test)]
#[path = "members_tests.rs"]
mod tests;
