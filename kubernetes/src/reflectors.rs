//! Reflector stores of what the model compiles: the seven Gridline kinds and Secrets, per
//! watched Kubernetes namespace (or cluster-wide).
//!
//! Both binaries read the same objects: the operator to write every object's status, the
//! data plane to serve its Namespace. Each store is filled by a kube-runtime watcher whose
//! stream must be polled; [`Reflectors::start`] returns the merged stream, one item per watch
//! event, and the caller polls it (that stream is also the plainest change signal). A caller
//! that wants to know *where* something changed passes a [`Dirty`] set, marked by
//! [`Changes`] only when an event moves something the model reads.

use crate::changes::{Changes, Dirty, generation, resource_version};
use crate::scope::{WatchScope, api};
use futures::stream::{BoxStream, StreamExt, select_all};
use gridline_crds::model::Objects;
use gridline_crds::types::{
    Client as GridlineClient, ClientGroup, EventSubscription, Namespace, PermissionBinding, Topic,
    TopicSpace,
};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::Arc;
use tracing::warn;

/// The field selector that leaves Helm release Secrets out: Helm keeps whole releases in
/// Secrets of this type, and the model never reads them.
pub const NOT_HELM_RELEASES: &str = "type!=helm.sh/release.v1";

/// What the reflectors keep, and whom they tell.
#[derive(Clone, Debug, Default)]
pub struct ReflectorOptions {
    /// Leave Helm release Secrets out of the Secrets watch ([`NOT_HELM_RELEASES`]).
    pub skip_helm_release_secrets: bool,
    /// Drop managed fields and kubectl's last-applied copy from cached objects ([`slim`]).
    pub slim: bool,
    /// Mark the namespace of every change the model reads here (see [`Changes`]): a new
    /// generation or deletion of a Gridline object, a new version of a Secret.
    pub dirty: Option<Arc<Dirty>>,
}

/// One reflector store per kind, for one watch scope (a namespace, or all).
struct ScopeStores {
    namespaces: Store<Namespace>,
    topics: Store<Topic>,
    event_subscriptions: Store<EventSubscription>,
    clients: Store<GridlineClient>,
    client_groups: Store<ClientGroup>,
    topic_spaces: Store<TopicSpace>,
    permission_bindings: Store<PermissionBinding>,
    secrets: Store<Secret>,
}

/// The reflectors of the seven Gridline kinds and Secrets over a [`WatchScope`].
pub struct Reflectors {
    scopes: Vec<ScopeStores>,
}

/// Everything the stores hold at one moment.
#[derive(Clone, Debug, Default)]
pub struct StoreState {
    pub namespaces: Vec<Arc<Namespace>>,
    pub topics: Vec<Arc<Topic>>,
    pub event_subscriptions: Vec<Arc<EventSubscription>>,
    pub clients: Vec<Arc<GridlineClient>>,
    pub client_groups: Vec<Arc<ClientGroup>>,
    pub topic_spaces: Vec<Arc<TopicSpace>>,
    pub permission_bindings: Vec<Arc<PermissionBinding>>,
    pub secrets: Vec<Arc<Secret>>,
}

impl Reflectors {
    /// Start a watch per kind and watched namespace. The returned stream yields one item per
    /// watch event and must be polled for the stores to fill.
    pub fn start(
        client: &Client,
        scope: &WatchScope,
        options: &ReflectorOptions,
    ) -> (Self, BoxStream<'static, ()>) {
        let mut streams = Vec::new();
        let gridline = watcher::Config::default();
        let secrets = if options.skip_helm_release_secrets {
            watcher::Config::default().fields(NOT_HELM_RELEASES)
        } else {
            watcher::Config::default()
        };
        let scopes = scope
            .watched()
            .iter()
            .map(|ns| {
                let ns = ns.as_deref();
                ScopeStores {
                    namespaces: reflect(client, ns, &gridline, options, generation, &mut streams),
                    topics: reflect(client, ns, &gridline, options, generation, &mut streams),
                    event_subscriptions: reflect(
                        client,
                        ns,
                        &gridline,
                        options,
                        generation,
                        &mut streams,
                    ),
                    clients: reflect(client, ns, &gridline, options, generation, &mut streams),
                    client_groups: reflect(
                        client,
                        ns,
                        &gridline,
                        options,
                        generation,
                        &mut streams,
                    ),
                    topic_spaces: reflect(client, ns, &gridline, options, generation, &mut streams),
                    permission_bindings: reflect(
                        client,
                        ns,
                        &gridline,
                        options,
                        generation,
                        &mut streams,
                    ),
                    secrets: reflect(
                        client,
                        ns,
                        &secrets,
                        options,
                        resource_version,
                        &mut streams,
                    ),
                }
            })
            .collect();
        (Self { scopes }, select_all(streams).boxed())
    }

    /// Wait until every store holds its first list.
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
        }
        Ok(())
    }

    /// Every object of every store, in the stores' (hash) order.
    pub fn state(&self) -> StoreState {
        fn all<K: Resource<DynamicType = ()> + Clone>(
            scopes: &[ScopeStores],
            store: fn(&ScopeStores) -> &Store<K>,
        ) -> Vec<Arc<K>> {
            scopes.iter().flat_map(|s| store(s).state()).collect()
        }
        let scopes = &self.scopes;
        StoreState {
            namespaces: all(scopes, |s| &s.namespaces),
            topics: all(scopes, |s| &s.topics),
            event_subscriptions: all(scopes, |s| &s.event_subscriptions),
            clients: all(scopes, |s| &s.clients),
            client_groups: all(scopes, |s| &s.client_groups),
            topic_spaces: all(scopes, |s| &s.topic_spaces),
            permission_bindings: all(scopes, |s| &s.permission_bindings),
            secrets: all(scopes, |s| &s.secrets),
        }
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

    /// The live objects of one Kubernetes namespace (see [`live_objects`]).
    pub fn objects_in(&self, k8s_namespace: &str) -> Objects {
        let mut objects = Objects::default();
        for s in &self.scopes {
            objects
                .namespaces
                .extend(live_objects(&s.namespaces, k8s_namespace));
            objects
                .topics
                .extend(live_objects(&s.topics, k8s_namespace));
            objects
                .event_subscriptions
                .extend(live_objects(&s.event_subscriptions, k8s_namespace));
            objects
                .clients
                .extend(live_objects(&s.clients, k8s_namespace));
            objects
                .client_groups
                .extend(live_objects(&s.client_groups, k8s_namespace));
            objects
                .topic_spaces
                .extend(live_objects(&s.topic_spaces, k8s_namespace));
            objects
                .permission_bindings
                .extend(live_objects(&s.permission_bindings, k8s_namespace));
            objects
                .secrets
                .extend(live_objects(&s.secrets, k8s_namespace));
        }
        objects
    }
}

/// The objects of `k8s_namespace` not being deleted, by name: compile's messages stay stable.
pub fn live_objects<K: Resource<DynamicType = ()> + Clone>(
    store: &Store<K>,
    k8s_namespace: &str,
) -> Vec<K> {
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

/// One of the set's watches, as [`ReflectorOptions`] say.
fn reflect<K>(
    client: &Client,
    k8s_namespace: Option<&str>,
    config: &watcher::Config,
    options: &ReflectorOptions,
    fingerprint: fn(&K) -> String,
    streams: &mut Vec<BoxStream<'static, ()>>,
) -> Store<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
    K: Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    let mut watch = Watch::new(api(client, k8s_namespace), config.clone()).slim(options.slim);
    if let Some(dirty) = &options.dirty {
        watch = watch.marking(fingerprint, dirty.clone());
    }
    let (store, events) = watch.start();
    streams.push(events);
    store
}

/// One watch of kind `K` feeding a reflector store: the building block of [`Reflectors`],
/// public for the watches a binary adds of its own (the operator's StatefulSets).
pub struct Watch<K: Resource> {
    api: Api<K>,
    config: watcher::Config,
    slim: bool,
    changes: Option<Changes<K>>,
}

impl<K> Watch<K>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    pub fn new(api: Api<K>, config: watcher::Config) -> Self {
        Self {
            api,
            config,
            slim: false,
            changes: None,
        }
    }

    /// Whether to [`slim`] each object before it is stored.
    pub fn slim(mut self, slim: bool) -> Self {
        self.slim = slim;
        self
    }

    /// Mark `dirty` with the namespace of each event that moves `fingerprint`.
    pub fn marking(mut self, fingerprint: fn(&K) -> String, dirty: Arc<Dirty>) -> Self {
        self.changes = Some(Changes::new(fingerprint, dirty));
        self
    }

    /// The store, and the stream that fills it: one item per event. Watch errors are logged
    /// and retried with kube's default backoff.
    pub fn start(self) -> (Store<K>, BoxStream<'static, ()>) {
        let (store, writer) = reflector::store::<K>();
        let slimming = self.slim;
        let mut changes = self.changes;
        let events = watcher(self.api, self.config)
            .default_backoff()
            .modify(move |object| {
                if slimming {
                    slim(object);
                }
            })
            .reflect(writer)
            .filter_map(move |event| {
                let item = match event {
                    Ok(event) => {
                        if let Some(changes) = changes.as_mut() {
                            changes.observe(&event);
                        }
                        Some(())
                    }
                    Err(error) => {
                        warn!(kind = %K::kind(&()), %error, "Kubernetes watch failed; retrying");
                        None
                    }
                };
                std::future::ready(item)
            })
            .boxed();
        (store, events)
    }
}

/// Drop what neither binary reads but which can be most of an object's size: managed
/// fields, and the copy of the whole object kubectl keeps in an annotation (which, for a
/// Secret, also holds its data in clear).
pub fn slim<K: Resource>(object: &mut K) {
    object.managed_fields_mut().clear();
    object
        .annotations_mut()
        .remove("kubectl.kubernetes.io/last-applied-configuration");
}

#[cfg(test)]
#[path = "reflectors_tests.rs"]
mod tests;
