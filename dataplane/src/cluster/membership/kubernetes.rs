//! The Kubernetes backend: this pod's member Lease (written by
//! `gridline_kubernetes::MemberLease`) and a watch of every member Lease of the Namespace,
//! judged live by `gridline_kubernetes::PeerLeases` on this pod's monotonic clock.

use super::error::MembershipError;
use crate::cluster::members::Member;
use crate::log_limit::LogLimiter;
use crate::pod::PodIdentity;
use futures::stream::{BoxStream, StreamExt};
use gridline_kubernetes::member_liveness::Observation;
use gridline_kubernetes::members::watch_member_leases;
use gridline_kubernetes::{MemberLease, MemberLeaseConfig, PeerLeases, Renewal};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::watcher;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tracing::warn;

/// Where this pod's member Lease lives.
#[derive(Clone)]
pub struct KubernetesTarget {
    pub client: kube::Client,
    /// The Kubernetes namespace of the pods and their Leases.
    pub k8s_namespace: String,
    /// The Gridline Namespace's name (the Leases' `gridline.dev/namespace` label).
    pub namespace: String,
}

impl std::fmt::Debug for KubernetesTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesTarget")
            .field("k8s_namespace", &self.k8s_namespace)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

pub struct KubernetesMembers {
    lease: MemberLease,
    watch: BoxStream<'static, Result<watcher::Event<Lease>, watcher::Error>>,
    peers: PeerLeases,
    log: LogLimiter,
}

impl KubernetesMembers {
    pub fn new(target: KubernetesTarget, this: &Member) -> Self {
        let watch = watch_member_leases(
            target.client.clone(),
            &target.k8s_namespace,
            &target.namespace,
        );
        let lease = MemberLease::new(
            target.client,
            MemberLeaseConfig {
                k8s_namespace: target.k8s_namespace,
                namespace: target.namespace,
                pod: this.name().to_string(),
                peer_address: this.peer_addr.clone(),
            },
        );
        Self {
            lease,
            watch,
            peers: PeerLeases::new(this.name()),
            log: LogLimiter::new(Duration::from_secs(30)),
        }
    }

    pub async fn renew(
        &mut self,
        lease_duration: Duration,
        connected: &BTreeSet<Arc<str>>,
    ) -> Result<(), MembershipError> {
        let renewal = Renewal {
            lease_duration,
            connected_peers: connected.iter().map(|p| p.to_string()).collect(),
        };
        Ok(self.lease.renew(&renewal).await?)
    }

    /// Wait for the next watch event (and take it in) or the next expiry of a live Lease.
    pub async fn watch(&mut self) {
        let expiry = self.peers.next_expiry(Instant::now());
        let event = tokio::select! {
            event = self.watch.next() => event,
            () = sleep_until(expiry) => return,
        };
        match event {
            Some(Ok(event)) => {
                for observation in self.peers.apply(event, Instant::now(), Timestamp::now()) {
                    if let Observation::Invalid(invalid) = observation
                        && let Some(suppressed) = self.log.allow()
                    {
                        warn!(%invalid, suppressed, "ignoring a member Lease that breaks the contract");
                    }
                }
            }
            Some(Err(error)) => {
                if let Some(suppressed) = self.log.allow() {
                    warn!(%error, suppressed, "watching the member Leases failed; retrying");
                }
            }
            // The watcher never ends on its own; if it did, expiries still apply.
            None => sleep_until(expiry).await,
        }
    }

    pub fn live_peers(&self) -> Vec<Member> {
        self.peers
            .live(Instant::now())
            .filter_map(|record| match PodIdentity::new(&record.pod) {
                Ok(pod) => Some(Member {
                    pod,
                    peer_addr: record.peer_address.clone(),
                }),
                Err(error) => {
                    if let Some(suppressed) = self.log.allow() {
                        warn!(peer = %record.pod, %error, suppressed, "ignoring a member Lease of an invalid pod name");
                    }
                    None
                }
            })
            .collect()
    }

    pub async fn leave(&mut self) -> Result<(), MembershipError> {
        Ok(self.lease.delete().await?)
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
#[path = "kubernetes_tests.rs"]
mod tests;
