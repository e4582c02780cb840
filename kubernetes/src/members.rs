//! Membership Leases: each data-plane pod of a Gridline Namespace holds a
//! `coordination.k8s.io/v1` Lease of its own, naming it and its peer address, and renews it;
//! the pods whose Leases are live are the Namespace's members. This module is the API-server
//! side: the contract (names, labels, annotations) that the data plane writes and the operator
//! reads, the writer of a pod's own Lease ([`MemberLease`]), and the watch of every member
//! Lease of a Namespace ([`watch_member_leases`]). Deciding which of the watched Leases are
//! live is [`crate::member_liveness`].
//!
//! Unlike [`crate::lease::LeaseLoop`] there is no contest: a pod's Lease is named after the pod,
//! and Kubernetes runs at most one pod of a name, so a starting pod takes its Lease over from
//! a previous incarnation at once. Every write still carries the resourceVersion read
//! (compare-and-swap), so a write that raced another is re-read and retried, never blind.

use crate::lease::LeaseError;
use futures::stream::{BoxStream, StreamExt};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tracing::{debug, info};

/// The prefix of a member Lease's name: `gridline-member-<pod-name>`.
pub const LEASE_NAME_PREFIX: &str = "gridline-member-";
/// Label: the Gridline Namespace whose member the pod is.
pub const NAMESPACE_LABEL: &str = "gridline.dev/namespace";
/// Label: what the Lease is for; member Leases carry [`MEMBER_LEASE`].
pub const LEASE_LABEL: &str = "gridline.dev/lease";
pub const MEMBER_LEASE: &str = "member";
/// Annotation: where the pod's peer link listens, `host:port`.
pub const PEER_ADDRESS_ANNOTATION: &str = "gridline.dev/peer-address";
/// Annotation: the pods this pod's peer links are connected to, sorted names joined by `,`
/// (empty when none), so that the operator can tell whether every pod sees every other.
pub const CONNECTED_PEERS_ANNOTATION: &str = "gridline.dev/connected-peers";

/// How many times a write that lost a compare-and-swap is re-read and retried in one renewal.
const CONFLICT_RETRIES: usize = 3;

/// The name of the member Lease of pod `pod`.
pub fn lease_name(pod: &str) -> String {
    format!("{LEASE_NAME_PREFIX}{pod}")
}

/// The label selector of every member Lease of Gridline Namespace `namespace`.
pub fn label_selector(namespace: &str) -> String {
    format!("{NAMESPACE_LABEL}={namespace},{LEASE_LABEL}={MEMBER_LEASE}")
}

/// One pod's member Lease as read back: what the contract says it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberRecord {
    /// The pod (`spec.holderIdentity`, also the end of the Lease's name).
    pub pod: String,
    pub peer_address: String,
    /// Sorted pod names.
    pub connected_peers: BTreeSet<String>,
    pub lease_duration: Duration,
    pub renew_time: Option<MicroTime>,
}

/// Why a Lease that carries the member labels is not a readable member Lease.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidMemberLease {
    #[error("Lease {lease}: no spec.holderIdentity")]
    NoHolder { lease: String },
    #[error("Lease {lease}: named for another pod than its holder {holder:?}")]
    NameMismatch { lease: String, holder: String },
    #[error("Lease {lease}: no {PEER_ADDRESS_ANNOTATION} annotation")]
    NoPeerAddress { lease: String },
    #[error("Lease {lease}: spec.leaseDurationSeconds is missing or not positive")]
    NoDuration { lease: String },
}

impl MemberRecord {
    /// Read a member Lease (the operator reads them with this too).
    pub fn from_lease(lease: &Lease) -> Result<MemberRecord, InvalidMemberLease> {
        let name = lease.metadata.name.clone().unwrap_or_default();
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec
            .holder_identity
            .filter(|h| !h.is_empty())
            .ok_or_else(|| InvalidMemberLease::NoHolder {
                lease: name.clone(),
            })?;
        if name != lease_name(&holder) {
            return Err(InvalidMemberLease::NameMismatch {
                lease: name,
                holder,
            });
        }
        let annotations = lease.metadata.annotations.clone().unwrap_or_default();
        let peer_address = annotations
            .get(PEER_ADDRESS_ANNOTATION)
            .filter(|a| !a.is_empty())
            .cloned()
            .ok_or_else(|| InvalidMemberLease::NoPeerAddress {
                lease: name.clone(),
            })?;
        let connected_peers = annotations
            .get(CONNECTED_PEERS_ANNOTATION)
            .map(|peers| {
                peers
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let lease_duration = spec
            .lease_duration_seconds
            .filter(|s| *s > 0)
            .map(|s| Duration::from_secs(s as u64))
            .ok_or(InvalidMemberLease::NoDuration { lease: name })?;
        Ok(MemberRecord {
            pod: holder,
            peer_address,
            connected_peers,
            lease_duration,
            renew_time: spec.renew_time,
        })
    }
}

/// Whose member Lease, where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberLeaseConfig {
    /// The Kubernetes namespace of the Leases (the pods' own).
    pub k8s_namespace: String,
    /// The Gridline Namespace the pod serves (the `gridline.dev/namespace` label).
    pub namespace: String,
    /// The pod's name: the holder, and the end of the Lease's name.
    pub pod: String,
    /// `host:port` other pods dial.
    pub peer_address: String,
}

/// What one renewal writes besides the time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Renewal {
    /// Written as `leaseDurationSeconds` (rounded up to whole seconds, at least 1).
    pub lease_duration: Duration,
    pub connected_peers: BTreeSet<String>,
}

/// A pod's own member Lease: created or taken over by the first renewal, renewed by the
/// following ones, deleted when the pod leaves.
pub struct MemberLease {
    api: Api<Lease>,
    config: MemberLeaseConfig,
    /// The Lease as our last write returned it: its resourceVersion is what the next write
    /// must match. `None` before the first write and after a conflict (re-read first).
    written: Option<Lease>,
    /// Whether a write of this process succeeded: later writes renew rather than take over.
    acquired: bool,
}

impl MemberLease {
    pub fn new(client: Client, config: MemberLeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.k8s_namespace),
            config,
            written: None,
            acquired: false,
        }
    }

    pub fn config(&self) -> &MemberLeaseConfig {
        &self.config
    }

    pub fn name(&self) -> String {
        lease_name(&self.config.pod)
    }

    fn error(&self, source: kube::Error) -> LeaseError {
        LeaseError {
            namespace: self.config.k8s_namespace.clone(),
            name: self.name(),
            source: Box::new(source),
        }
    }

    /// Write the Lease with renewTime now: create it when missing, take it over from a
    /// previous incarnation of this pod (new acquireTime, transitions + 1) on the first write,
    /// renew it after. A write that loses the compare-and-swap (409) is re-read and retried;
    /// after [`CONFLICT_RETRIES`] the conflict is the error.
    pub async fn renew(&mut self, renewal: &Renewal) -> Result<(), LeaseError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = match self.written.take() {
                Some(current) => {
                    let renewed = self.desired(Some(&current), renewal, false);
                    self.api
                        .replace(&self.name(), &PostParams::default(), &renewed)
                        .await
                }
                None => match self.api.get_opt(&self.name()).await {
                    Err(source) => return Err(self.error(source)),
                    Ok(None) => {
                        let created = self.desired(None, renewal, !self.acquired);
                        self.api.create(&PostParams::default(), &created).await
                    }
                    Ok(Some(current)) => {
                        if !self.acquired {
                            info!(lease = %self.name(), "taking over this pod's member Lease");
                        }
                        let taken = self.desired(Some(&current), renewal, !self.acquired);
                        self.api
                            .replace(&self.name(), &PostParams::default(), &taken)
                            .await
                    }
                },
            };
            match result {
                Ok(lease) => {
                    self.written = Some(lease);
                    self.acquired = true;
                    return Ok(());
                }
                // 409: someone wrote since we read (or created it first); 404: it was deleted
                // under us. Either way, read again and write on what is there.
                Err(kube::Error::Api(status))
                    if (status.code == 409 || status.code == 404) && attempt < CONFLICT_RETRIES =>
                {
                    debug!(lease = %self.name(), code = status.code, "member Lease changed under us; re-reading");
                }
                Err(source) => return Err(self.error(source)),
            }
        }
    }

    /// Delete the Lease, so that peers drop this pod at once instead of after the duration.
    /// Only the object this process wrote (uid precondition); a missing Lease is fine.
    pub async fn delete(&mut self) -> Result<(), LeaseError> {
        let uid = self
            .written
            .take()
            .and_then(|lease| lease.metadata.uid)
            .filter(|uid| !uid.is_empty());
        let params = DeleteParams {
            preconditions: uid.map(|uid| Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self.api.delete(&self.name(), &params).await {
            Ok(_) => Ok(()),
            // Gone already, or replaced by an object we did not write: nothing of ours left.
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
            Err(source) => Err(self.error(source)),
        }
    }

    /// The Lease to write over `current` (or to create). `acquire`: this is this process's
    /// first write, so acquireTime is now and a takeover counts as a transition.
    fn desired(&self, current: Option<&Lease>, renewal: &Renewal, acquire: bool) -> Lease {
        let now = MicroTime(Timestamp::now());
        let previous = current.and_then(|l| l.spec.clone()).unwrap_or_default();
        let mut metadata = current
            .map(|l| l.metadata.clone())
            .unwrap_or_else(|| ObjectMeta {
                name: Some(self.name()),
                namespace: Some(self.config.k8s_namespace.clone()),
                ..ObjectMeta::default()
            });
        // The server's bookkeeping is not ours to send back.
        metadata.managed_fields = None;
        let labels = metadata.labels.get_or_insert_with(BTreeMap::new);
        labels.insert(NAMESPACE_LABEL.into(), self.config.namespace.clone());
        labels.insert(LEASE_LABEL.into(), MEMBER_LEASE.into());
        let annotations = metadata.annotations.get_or_insert_with(BTreeMap::new);
        annotations.insert(
            PEER_ADDRESS_ANNOTATION.into(),
            self.config.peer_address.clone(),
        );
        annotations.insert(
            CONNECTED_PEERS_ANNOTATION.into(),
            renewal
                .connected_peers
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(","),
        );
        let transitions = previous.lease_transitions.unwrap_or(0);
        let (acquire_time, transitions) = match (acquire, current) {
            (true, Some(_)) => (now.clone(), transitions + 1),
            (true, None) => (now.clone(), 0),
            (false, _) => (
                previous.acquire_time.clone().unwrap_or_else(|| now.clone()),
                transitions,
            ),
        };
        Lease {
            metadata,
            spec: Some(LeaseSpec {
                holder_identity: Some(self.config.pod.clone()),
                lease_duration_seconds: Some(whole_seconds(renewal.lease_duration)),
                acquire_time: Some(acquire_time),
                renew_time: Some(now),
                lease_transitions: Some(transitions),
                ..LeaseSpec::default()
            }),
        }
    }
}

/// A duration as the whole seconds a Lease holds, rounded up, at least 1.
fn whole_seconds(duration: Duration) -> i32 {
    let seconds = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    seconds.clamp(1, i32::MAX as u64) as i32
}

/// The events of every member Lease of Gridline Namespace `namespace` in `k8s_namespace`
/// (kube-runtime's watcher: list, then watch, re-listing with backoff after an error).
pub fn watch_member_leases(
    client: Client,
    k8s_namespace: &str,
    namespace: &str,
) -> BoxStream<'static, Result<watcher::Event<Lease>, watcher::Error>> {
    let api: Api<Lease> = Api::namespaced(client, k8s_namespace);
    let config = watcher::Config::default().labels(&label_selector(namespace));
    watcher(api, config).default_backoff().boxed()
}

#[cfg(test)]
#[path = "members_tests.rs"]
mod tests;
