//! Everything the status pass reads: the shared reflectors over the seven kinds and Secrets
//! (`gridline_kubernetes::Reflectors`, Helm release Secrets left out, objects slimmed) and,
//! beside them, the operator's own StatefulSets, whose ready pods make a Namespace Ready.
//! Every watch marks the Kubernetes namespace of each change in one dirty set; a
//! StatefulSet's fingerprint is its pod counts, so only a rollout's progress marks it. The
//! member Leases of the pods (`gridline.dev/lease=member`) are watched too; their fingerprint
//! leaves out `renewTime`, so that pods renewing every few seconds do not mean a status pass
//! each: the status loop looks again when a Lease can run out (`members::next_recheck`).

use crate::children::{MANAGED_BY, MANAGED_BY_LABEL};
use crate::status::Pods;
use crate::status::members::{MEMBER_LEASE_SELECTOR, MemberLease};
use futures::StreamExt;
use futures::stream::{BoxStream, select_all};
use gridline_crds::model::Objects;
use gridline_kubernetes::reflectors::{Watch, live_objects};
use gridline_kubernetes::{Dirty, ReflectorOptions, Reflectors, WatchScope, scope};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Every store the status pass reads.
pub struct Stores {
    gridline: Reflectors,
    /// One per watched namespace (or one for all).
    statefulsets: Vec<Store<StatefulSet>>,
    /// The pods' member Leases, one store per watched namespace (or one for all).
    member_leases: Vec<Store<Lease>>,
}

impl Stores {
    /// Start the watches. The returned stream must be polled for the stores to fill.
    pub fn watch(
        client: &Client,
        scope: &WatchScope,
        dirty: Arc<Dirty>,
    ) -> (Self, BoxStream<'static, ()>) {
        let options = ReflectorOptions {
            skip_helm_release_secrets: true,
            slim: true,
            dirty: Some(dirty.clone()),
        };
        let (gridline, gridline_events) = Reflectors::start(client, scope, &options);
        let mut streams = vec![gridline_events];
        let owned = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
        let statefulsets = scope
            .watched()
            .iter()
            .map(|ns| {
                let (store, events) = Watch::new(scope::api(client, ns.as_deref()), owned.clone())
                    .slim(true)
                    .marking(replicas, dirty.clone())
                    .start();
                streams.push(events);
                store
            })
            .collect();
        let leases = watcher::Config::default().labels(MEMBER_LEASE_SELECTOR);
        let member_leases = scope
            .watched()
            .iter()
            .map(|ns| {
                let (store, events) = Watch::new(scope::api(client, ns.as_deref()), leases.clone())
                    .slim(true)
                    .marking(membership, dirty.clone())
                    .start();
                streams.push(events);
                store
            })
            .collect();
        let stores = Self {
            gridline,
            statefulsets,
            member_leases,
        };
        (stores, select_all(streams).boxed())
    }

    pub async fn wait_until_ready(&self) -> Result<(), reflector::store::WriterDropped> {
        self.gridline.wait_until_ready().await?;
        for statefulsets in &self.statefulsets {
            statefulsets.wait_until_ready().await?;
        }
        for leases in &self.member_leases {
            leases.wait_until_ready().await?;
        }
        Ok(())
    }

    /// Every Kubernetes namespace holding a Gridline object.
    pub fn k8s_namespaces(&self) -> BTreeSet<String> {
        self.gridline.k8s_namespaces()
    }

    /// The live objects of one Kubernetes namespace and its Namespaces' pods and Leases.
    pub fn gather(&self, k8s_namespace: &str) -> (Objects, BTreeMap<String, Pods>) {
        let objects = self.gridline.objects_in(k8s_namespace);
        let mut pods: BTreeMap<String, Pods> = BTreeMap::new();
        for statefulsets in &self.statefulsets {
            for sts in live_objects(statefulsets, k8s_namespace) {
                if let Some(instance) = sts.labels().get("app.kubernetes.io/instance") {
                    pods.insert(instance.clone(), pods_of(&sts));
                }
            }
        }
        for leases in &self.member_leases {
            for lease in live_objects(leases, k8s_namespace) {
                if let Some(member) = MemberLease::from_lease(&lease) {
                    pods.entry(member.namespace.clone())
                        .or_default()
                        .leases
                        .push(member);
                }
            }
        }
        (objects, pods)
    }
}

/// What a StatefulSet says about its pods.
pub fn pods_of(sts: &StatefulSet) -> Pods {
    Pods {
        desired: sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        ready: sts
            .status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0),
        leases: Vec::new(),
    }
}

/// A StatefulSet's fingerprint: its pod counts, the only part of it a status reads.
fn replicas(sts: &StatefulSet) -> String {
    let pods = pods_of(sts);
    format!("{}/{}", pods.desired, pods.ready)
}

/// A member Lease's fingerprint: who holds it and what it says, not when it was renewed.
fn membership(lease: &Lease) -> String {
    match MemberLease::from_lease(lease) {
        Some(member) => format!(
            "{}|{}|{}|{}",
            member.holder.as_deref().unwrap_or_default(),
            member.duration.as_secs(),
            member.peer_address,
            member
                .connected_peers
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(",")
        ),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::K8S_NS;
    use gridline_kubernetes::changes::Changes;

    #[test]
    fn a_statefulset_marks_its_namespace_only_when_its_pod_counts_move() {
        let dirty = Arc::new(Dirty::default());
        let mut changes = Changes::new(replicas, dirty.clone());
        let mut sts: StatefulSet = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "orders-gridline", "namespace": K8S_NS, "uid": "x", "resourceVersion": "1"},
            "spec": {"replicas": 3, "selector": {}, "template": {}, "serviceName": "p"},
            "status": {"replicas": 3, "readyReplicas": 2},
        }))
        .unwrap();
        changes.observe(&watcher::Event::Apply(sts.clone()));
        dirty.take();
        sts.metadata.resource_version = Some("2".into());
        sts.status.as_mut().unwrap().observed_generation = Some(4);
        changes.observe(&watcher::Event::Apply(sts.clone()));
        assert!(dirty.take().is_empty());
        sts.status.as_mut().unwrap().ready_replicas = Some(3);
        changes.observe(&watcher::Event::Apply(sts));
        assert_eq!(dirty.take().len(), 1);
    }

    #[test]
    fn a_member_lease_marks_its_namespace_when_its_peers_move_not_when_it_is_renewed() {
        let dirty = Arc::new(Dirty::default());
        let mut changes = Changes::new(membership, dirty.clone());
        let lease = |renewed: &str, peers: &str| -> Lease {
            serde_json::from_value(serde_json::json!({
                "metadata": {
                    "name": "gridline-member-orders-gridline-0", "namespace": K8S_NS, "uid": "l0",
                    "labels": {"gridline.dev/lease": "member", "gridline.dev/namespace": "orders"},
                    "annotations": {
                        "gridline.dev/peer-address": "orders-gridline-0.orders-gridline-peers.shop.svc:7443",
                        "gridline.dev/connected-peers": peers,
                    },
                },
                "spec": {"holderIdentity": "orders-gridline-0", "leaseDurationSeconds": 15, "renewTime": renewed},
            }))
            .unwrap()
        };
        changes.observe(&watcher::Event::Apply(lease(
            "2026-12-07T21:00:00.000000Z",
            "",
        )));
        assert_eq!(dirty.take().len(), 1);
        changes.observe(&watcher::Event::Apply(lease(
            "2026-12-07T21:00:05.000000Z",
            "",
        )));
        assert!(dirty.take().is_empty(), "a renewal alone");
        changes.observe(&watcher::Event::Apply(lease(
            "2026-12-07T21:00:05.000000Z",
            "orders-gridline-1",
        )));
        assert_eq!(dirty.take().len(), 1);
    }
}
