//! Reflector stores of everything the status pass reads (the seven kinds, Secrets, and the
//! operator's StatefulSets), and the change signal they raise: the Kubernetes namespace of
//! each change, coalesced in a dirty set.
//!
//! Not every event is a change: writing an object's status bumps its resourceVersion but not
//! its generation, so the operator's own status writes would otherwise trigger another pass
//! for every object written. Each watch remembers a fingerprint per object (generation for
//! the Gridline kinds, replicas for StatefulSets, resourceVersion for Secrets) and signals
//! only when it moves.

use crate::children::{MANAGED_BY, MANAGED_BY_LABEL};
use crate::options::WatchScope;
use crate::status::Pods;
use futures::StreamExt;
use futures::stream::{BoxStream, select_all};
use gridline_crds::model::Objects;
use gridline_crds::types::{
    Client as GridlineClient, ClientGroup, EventSubscription, Namespace, PermissionBinding, Topic,
    TopicSpace,
};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use tracing::warn;

/// Kubernetes namespaces with changes not yet processed.
#[derive(Debug, Default)]
pub struct Dirty {
    namespaces: Mutex<BTreeSet<String>>,
    notify: Notify,
}

impl Dirty {
    pub fn mark(&self, k8s_namespace: &str) {
        let mut namespaces = self.namespaces.lock().unwrap_or_else(|p| p.into_inner());
        if !namespaces.contains(k8s_namespace) {
            namespaces.insert(k8s_namespace.to_string());
        }
        drop(namespaces);
        // A permit is stored when nobody waits, so a mark during a pass is not lost.
        self.notify.notify_one();
    }

    pub fn take(&self) -> BTreeSet<String> {
        std::mem::take(&mut *self.namespaces.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub async fn changed(&self) {
        self.notify.notified().await;
    }
}

/// The stores of one watch scope (all namespaces, or one).
struct ScopeStores {
    namespaces: Store<Namespace>,
    topics: Store<Topic>,
    event_subscriptions: Store<EventSubscription>,
    clients: Store<GridlineClient>,
    client_groups: Store<ClientGroup>,
    topic_spaces: Store<TopicSpace>,
    permission_bindings: Store<PermissionBinding>,
    secrets: Store<Secret>,
    statefulsets: Store<StatefulSet>,
}

/// Every store the status pass reads, per watch scope.
pub struct Stores {
    scopes: Vec<ScopeStores>,
}

impl Stores {
    /// Start the watches. The returned stream must be polled for the stores to fill.
    pub fn watch(
        client: &Client,
        scope: &WatchScope,
        dirty: Arc<Dirty>,
    ) -> (Self, BoxStream<'static, ()>) {
        let mut streams = Vec::new();
        let namespaces: Vec<Option<String>> = match scope {
            WatchScope::All => vec![None],
            WatchScope::Namespaces(list) => list.iter().cloned().map(Some).collect(),
        };
        let gridline = watcher::Config::default();
        // Helm keeps whole releases in Secrets of this type; the model never reads them.
        let secrets = watcher::Config::default().fields("type!=helm.sh/release.v1");
        let owned = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
        let scopes = namespaces
            .iter()
            .map(|ns| {
                let ns = ns.as_deref();
                let watch = |wc: &watcher::Config| Watch {
                    client,
                    k8s_namespace: ns,
                    config: wc.clone(),
                    dirty: dirty.clone(),
                };
                ScopeStores {
                    namespaces: watch(&gridline).reflect(generation, &mut streams),
                    topics: watch(&gridline).reflect(generation, &mut streams),
                    event_subscriptions: watch(&gridline).reflect(generation, &mut streams),
                    clients: watch(&gridline).reflect(generation, &mut streams),
                    client_groups: watch(&gridline).reflect(generation, &mut streams),
                    topic_spaces: watch(&gridline).reflect(generation, &mut streams),
                    permission_bindings: watch(&gridline).reflect(generation, &mut streams),
                    secrets: watch(&secrets).reflect(resource_version, &mut streams),
                    statefulsets: watch(&owned).reflect(replicas, &mut streams),
                }
            })
            .collect();
        (Self { scopes }, select_all(streams).boxed())
    }

    pub async fn wait_until_ready(&self) -> Result<(), reflector::store::WriterDropped> {
        for s in &self.scopes {
            s.namespaces.wait_until_ready().await?;
            s.topics.wait_until_ready().await?;
            s.event_subscriptions.wait_until_ready().await?;
            s.clients.wait_until_ready().await?;
            s.client_groups.wait_until_ready().await?;
            s.topic_spaces.wait_until_ready().await?;
            s.permission_bindings.wait_until_ready().await?;
            s.secrets.wait_until_ready().await?;
            s.statefulsets.wait_until_ready().await?;
        }
        Ok(())
    }

    /// Every Kubernetes namespace holding a Gridline object.
    pub fn k8s_namespaces(&self) -> BTreeSet<String> {
        fn add<K: Resource<DynamicType = ()> + Clone>(
            out: &mut BTreeSet<String>,
            store: &Store<K>,
        ) {
            out.extend(store.state().iter().filter_map(|o| o.namespace()));
        }
        let mut out = BTreeSet::new();
        for s in &self.scopes {
            add(&mut out, &s.namespaces);
            add(&mut out, &s.topics);
            add(&mut out, &s.event_subscriptions);
            add(&mut out, &s.clients);
            add(&mut out, &s.client_groups);
            add(&mut out, &s.topic_spaces);
            add(&mut out, &s.permission_bindings);
        }
        out
    }

    /// The live objects of one Kubernetes namespace and its Namespaces' pods.
    pub fn gather(&self, k8s_namespace: &str) -> (Objects, BTreeMap<String, Pods>) {
        let mut objects = Objects::default();
        let mut pods = BTreeMap::new();
        for s in &self.scopes {
            objects
                .namespaces
                .extend(live(&s.namespaces, k8s_namespace));
            objects.topics.extend(live(&s.topics, k8s_namespace));
            objects
                .event_subscriptions
                .extend(live(&s.event_subscriptions, k8s_namespace));
            objects.clients.extend(live(&s.clients, k8s_namespace));
            objects
                .client_groups
                .extend(live(&s.client_groups, k8s_namespace));
            objects
                .topic_spaces
                .extend(live(&s.topic_spaces, k8s_namespace));
            objects
                .permission_bindings
                .extend(live(&s.permission_bindings, k8s_namespace));
            objects.secrets.extend(live(&s.secrets, k8s_namespace));
            for sts in live(&s.statefulsets, k8s_namespace) {
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

/// The objects of `k8s_namespace` not being deleted, by name: compile's messages stay stable.
fn live<K: Resource<DynamicType = ()> + Clone>(store: &Store<K>, k8s_namespace: &str) -> Vec<K> {
    let mut objects: Vec<K> = store
        .state()
        .iter()
        .filter(|o| o.meta().namespace.as_deref() == Some(k8s_namespace))
        .filter(|o| o.meta().deletion_timestamp.is_none())
        .map(|o| K::clone(o))
        .collect();
    objects.sort_by(|a, b| a.meta().name.cmp(&b.meta().name));
    objects
}

fn generation<K: Resource>(object: &K) -> String {
    let meta = object.meta();
    format!(
        "{:?}/{}",
        meta.generation,
        meta.deletion_timestamp.is_some()
    )
}

fn resource_version<K: Resource>(object: &K) -> String {
    object.meta().resource_version.clone().unwrap_or_default()
}

fn replicas(sts: &StatefulSet) -> String {
    let pods = pods_of(sts);
    format!("{}/{}", pods.desired, pods.ready)
}

struct Watch<'a> {
    client: &'a Client,
    k8s_namespace: Option<&'a str>,
    config: watcher::Config,
    dirty: Arc<Dirty>,
}

impl Watch<'_> {
    fn reflect<K>(
        self,
        fingerprint: fn(&K) -> String,
        streams: &mut Vec<BoxStream<'static, ()>>,
    ) -> Store<K>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
        K: Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    {
        let (store, writer) = reflector::store::<K>();
        let api: Api<K> = match self.k8s_namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        let mut changes = Changes::new(fingerprint, self.dirty);
        let stream = watcher(api, self.config)
            .default_backoff()
            .modify(slim)
            .reflect(writer)
            .map(move |event| match event {
                Ok(event) => changes.observe(&event),
                Err(error) => warn!(kind = %K::kind(&()), %error, "watch failed; retrying"),
            })
            .boxed();
        streams.push(stream);
        store
    }
}

/// Drop what the operator never reads but which can be most of an object's size: managed
/// fields, and the copy of the whole object kubectl keeps in an annotation (which, for a
/// Secret, also holds its data in clear).
fn slim<K: Resource>(object: &mut K) {
    object.managed_fields_mut().clear();
    object
        .annotations_mut()
        .remove("kubectl.kubernetes.io/last-applied-configuration");
}

/// Turns one watch's events into dirty marks, skipping those that change nothing the status
/// depends on.
pub struct Changes<K> {
    fingerprint: fn(&K) -> String,
    dirty: Arc<Dirty>,
    /// uid → (Kubernetes namespace, fingerprint).
    seen: HashMap<String, (String, String)>,
    /// During a re-list: the uids listed so far.
    relisted: Option<HashSet<String>>,
}

impl<K: Resource> Changes<K> {
    pub fn new(fingerprint: fn(&K) -> String, dirty: Arc<Dirty>) -> Self {
        Self {
            fingerprint,
            dirty,
            seen: HashMap::new(),
            relisted: None,
        }
    }

    pub fn observe(&mut self, event: &watcher::Event<K>) {
        match event {
            watcher::Event::Init => self.relisted = Some(HashSet::new()),
            watcher::Event::InitApply(object) => {
                if let Some(relisted) = self.relisted.as_mut() {
                    relisted.insert(uid(object));
                }
                self.applied(object);
            }
            watcher::Event::Apply(object) => self.applied(object),
            watcher::Event::Delete(object) => {
                self.seen.remove(&uid(object));
                self.dirty.mark(&namespace(object));
            }
            watcher::Event::InitDone => {
                // Objects deleted while the watch was down produce no Delete: whatever was
                // not re-listed is gone, and its namespace must be looked at again.
                let relisted = self.relisted.take().unwrap_or_default();
                let dirty = &self.dirty;
                self.seen.retain(|uid, (ns, _)| {
                    let kept = relisted.contains(uid);
                    if !kept {
                        dirty.mark(ns);
                    }
                    kept
                });
            }
        }
    }

    fn applied(&mut self, object: &K) {
        let k8s_namespace = namespace(object);
        let fingerprint = (self.fingerprint)(object);
        let previous = self
            .seen
            .insert(uid(object), (k8s_namespace.clone(), fingerprint.clone()));
        if previous.is_none_or(|(_, before)| before != fingerprint) {
            self.dirty.mark(&k8s_namespace);
        }
    }
}

fn uid<K: Resource>(object: &K) -> String {
    let meta = object.meta();
    meta.uid
        .clone()
        .unwrap_or_else(|| format!("{:?}/{:?}", meta.namespace, meta.name))
}

fn namespace<K: Resource>(object: &K) -> String {
    object.meta().namespace.clone().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{K8S_NS, topic};

    fn changes() -> (Changes<Topic>, Arc<Dirty>) {
        let dirty = Arc::new(Dirty::default());
        (Changes::new(generation, dirty.clone()), dirty)
    }

    #[test]
    fn a_new_object_or_a_new_generation_marks_its_namespace() {
        let (mut changes, dirty) = changes();
        let mut t = topic("placed", "orders");
        changes.observe(&watcher::Event::Apply(t.clone()));
        assert_eq!(dirty.take(), BTreeSet::from([K8S_NS.to_string()]));
        t.metadata.generation = Some(2);
        changes.observe(&watcher::Event::Apply(t));
        assert_eq!(dirty.take().len(), 1);
    }

    #[test]
    fn a_status_write_marks_nothing() {
        let (mut changes, dirty) = changes();
        let mut t = topic("placed", "orders");
        changes.observe(&watcher::Event::Apply(t.clone()));
        dirty.take();
        t.metadata.resource_version = Some("2".into());
        t.status = Some(Default::default());
        changes.observe(&watcher::Event::Apply(t));
        assert!(dirty.take().is_empty());
    }

    #[test]
    fn a_deletion_marks_its_namespace() {
        let (mut changes, dirty) = changes();
        let t = topic("placed", "orders");
        changes.observe(&watcher::Event::Apply(t.clone()));
        dirty.take();
        changes.observe(&watcher::Event::Delete(t));
        assert_eq!(dirty.take().len(), 1);
    }

    #[test]
    fn an_object_missing_from_a_relist_counts_as_deleted() {
        let (mut changes, dirty) = changes();
        let kept = topic("kept", "orders");
        changes.observe(&watcher::Event::Apply(kept.clone()));
        changes.observe(&watcher::Event::Apply(topic("gone", "orders")));
        dirty.take();
        changes.observe(&watcher::Event::Init);
        changes.observe(&watcher::Event::InitApply(kept));
        assert!(
            dirty.take().is_empty(),
            "an unchanged object re-listed is no change"
        );
        changes.observe(&watcher::Event::InitDone);
        assert_eq!(dirty.take().len(), 1);
        assert_eq!(changes.seen.len(), 1);
    }

    #[test]
    fn slimming_drops_managed_fields_and_the_last_applied_copy() {
        let mut t = topic("placed", "orders");
        t.annotations_mut().insert(
            "kubectl.kubernetes.io/last-applied-configuration".into(),
            "{...}".into(),
        );
        t.annotations_mut().insert("team".into(), "a".into());
        t.managed_fields_mut().push(Default::default());
        slim(&mut t);
        assert!(t.managed_fields().is_empty());
        assert_eq!(t.annotations().len(), 1);
    }
}

#[cfg(test)]
mod secret_tests {
    use super::*;
    use crate::testing::K8S_NS;

    fn secret(version: &str) -> Secret {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "keys", "namespace": K8S_NS, "uid": "s1", "resourceVersion": version},
        }))
        .unwrap()
    }

    #[test]
    fn any_new_version_of_a_secret_marks_its_namespace() {
        // Secrets have no generation: a rotated key only shows in the resourceVersion.
        let dirty = Arc::new(Dirty::default());
        let mut changes = Changes::new(resource_version, dirty.clone());
        changes.observe(&watcher::Event::Apply(secret("1")));
        assert_eq!(dirty.take().len(), 1);
        changes.observe(&watcher::Event::Apply(secret("1")));
        assert!(dirty.take().is_empty());
        changes.observe(&watcher::Event::Apply(secret("2")));
        assert_eq!(dirty.take(), BTreeSet::from([K8S_NS.to_string()]));
    }

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
