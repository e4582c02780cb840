//! Everything the status pass reads: the shared reflectors over the seven kinds and Secrets
//! (`gridline_kubernetes::Reflectors`, Helm release Secrets left out, objects slimmed) and,
//! beside them, the operator's own StatefulSets, whose ready pods make a Namespace Ready.
//! Every watch marks the Kubernetes namespace of each change in one dirty set; a
//! StatefulSet's fingerprint is its pod counts, so only a rollout's progress marks it.

use crate::children::{MANAGED_BY, MANAGED_BY_LABEL};
use crate::status::Pods;
use futures::StreamExt;
use futures::stream::{BoxStream, select_all};
use gridline_crds::model::Objects;
use gridline_kubernetes::reflectors::{Watch, live_objects};
use gridline_kubernetes::{Dirty, ReflectorOptions, Reflectors, WatchScope, scope};
use k8s_openapi::api::apps::v1::StatefulSet;
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
        let stores = Self {
            gridline,
            statefulsets,
        };
        (stores, select_all(streams).boxed())
    }

    pub async fn wait_until_ready(&self) -> Result<(), reflector::store::WriterDropped> {
        self.gridline.wait_until_ready().await?;
        for statefulsets in &self.statefulsets {
            statefulsets.wait_until_ready().await?;
        }
        Ok(())
    }

    /// Every Kubernetes namespace holding a Gridline object.
    pub fn k8s_namespaces(&self) -> BTreeSet<String> {
        self.gridline.k8s_namespaces()
    }

    /// The live objects of one Kubernetes namespace and its Namespaces' pods.
    pub fn gather(&self, k8s_namespace: &str) -> (Objects, BTreeMap<String, Pods>) {
        let objects = self.gridline.objects_in(k8s_namespace);
        let mut pods = BTreeMap::new();
        for statefulsets in &self.statefulsets {
            for sts in live_objects(statefulsets, k8s_namespace) {
                if let Some(instance) = sts.labels().get("app.kubernetes.io/instance") {
                    pods.insert(instance.clone(), pods_of(&sts));
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
    }
}

/// A StatefulSet's fingerprint: its pod counts, the only part of it a status reads.
fn replicas(sts: &StatefulSet) -> String {
    let pods = pods_of(sts);
    format!("{}/{}", pods.desired, pods.ready)
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
}
