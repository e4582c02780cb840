//! The in-cluster configuration source: the seven Gridline kinds and the Secrets of one
//! Kubernetes namespace, kept in the reflector stores the operator uses too
//! (`gridline_kubernetes::Reflectors`).
//!
//! Each change to any store (debounced) rebuilds the whole [`Objects`] from the stores and
//! hands it on: `compile` always sees a complete, consistent set rather than a stream of
//! deltas to patch in. The API server has already validated each object (schema and CEL), so
//! this source reports no problems of its own.

use super::debounce::next_settled_change;
use super::loaded::{LoadedConfig, Origin};
use anyhow::Context;
use futures::stream::StreamExt;
use gridline_crds::model::{Kind, ObjectKey, Objects};
use gridline_kubernetes::{ReflectorOptions, Reflectors, StoreState, WatchScope};
use kube::{Client, Resource, ResourceExt};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::mpsc;
use tracing::{debug, info};

/// The objects of one Kubernetes namespace, watched.
pub struct KubernetesSource {
    client: Client,
    k8s_namespace: String,
}

impl KubernetesSource {
    /// Watch `k8s_namespace`, or the client's default namespace (the pod's own, in-cluster).
    pub fn new(client: Client, k8s_namespace: Option<String>) -> Self {
        let k8s_namespace = k8s_namespace.unwrap_or_else(|| client.default_namespace().to_string());
        Self {
            client,
            k8s_namespace,
        }
    }

    /// The API client (the data plane writes push subscriptions' delivery conditions with it).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The Kubernetes namespace watched.
    pub fn k8s_namespace(&self) -> &str {
        &self.k8s_namespace
    }

    /// Connect with the in-cluster service account, or the local kubeconfig.
    pub async fn connect(k8s_namespace: Option<String>) -> anyhow::Result<Self> {
        let client = Client::try_default()
            .await
            .context("cannot reach the Kubernetes API (no in-cluster config or kubeconfig)")?;
        Ok(Self::new(client, k8s_namespace))
    }

    /// Send the namespace's configuration once every store has its initial list, then after
    /// every change.
    pub async fn run(self, updates: mpsc::Sender<LoadedConfig>) -> anyhow::Result<()> {
        info!(k8s_namespace = %self.k8s_namespace, "watching Gridline objects and Secrets");
        // Every Secret, objects kept whole, no dirty set: each event is a change signal, and
        // a reload compares resource versions (below).
        let (stores, events) = Reflectors::start(
            &self.client,
            &WatchScope::namespace(self.k8s_namespace.clone()),
            &ReflectorOptions::default(),
        );

        // The reflectors fill their stores only while their streams are polled: this task
        // polls them all and turns each event into a change signal (one slot: they coalesce).
        let (changes_tx, mut changes) = mpsc::channel(1);
        let pump = tokio::spawn(async move {
            let mut events = events;
            while events.next().await.is_some() {
                let _ = changes_tx.try_send(());
            }
        });

        let result = async {
            stores
                .wait_until_ready()
                .await
                .context("a Kubernetes watch stopped before its first list")?;
            // The initial lists produced change signals of their own; the state read next
            // already includes them.
            while changes.try_recv().is_ok() {}
            let mut last_versions = None;
            loop {
                let state = stores.state();
                let versions = resource_versions(&state);
                if last_versions.as_ref() != Some(&versions) {
                    last_versions = Some(versions);
                    if updates.send(loaded_from_state(&state)).await.is_err() {
                        return Ok(());
                    }
                } else {
                    // A re-list after a watch timeout: same objects, nothing to apply.
                    debug!("Kubernetes objects unchanged; not reloading");
                }
                if !next_settled_change(&mut changes).await {
                    anyhow::bail!("the Kubernetes watches stopped");
                }
            }
        }
        .await;
        pump.abort();
        result
    }
}

/// The configuration the stores describe. Objects being deleted (a deletion timestamp set,
/// finalizers pending) are left out: they are on their way out and must stop being served
/// now, not when the last finalizer is removed.
pub fn loaded_from_state(state: &StoreState) -> LoadedConfig {
    let mut provenance = BTreeMap::new();
    let objects = Objects {
        namespaces: live(&state.namespaces, Kind::Namespace, &mut provenance),
        topics: live(&state.topics, Kind::Topic, &mut provenance),
        event_subscriptions: live(
            &state.event_subscriptions,
            Kind::EventSubscription,
            &mut provenance,
        ),
        clients: live(&state.clients, Kind::Client, &mut provenance),
        client_groups: live(&state.client_groups, Kind::ClientGroup, &mut provenance),
        topic_spaces: live(&state.topic_spaces, Kind::TopicSpace, &mut provenance),
        permission_bindings: live(
            &state.permission_bindings,
            Kind::PermissionBinding,
            &mut provenance,
        ),
        secrets: live(&state.secrets, Kind::Secret, &mut provenance),
    };
    LoadedConfig {
        objects,
        provenance,
        problems: Vec::new(),
    }
}

/// The live objects of one kind, sorted by name (stores hold them in hash order; a stable
/// order keeps compile's output, and its error messages, stable).
fn live<K: Resource + Clone>(
    objects: &[Arc<K>],
    kind: Kind,
    provenance: &mut BTreeMap<ObjectKey, Origin>,
) -> Vec<K> {
    let mut live: Vec<K> = objects
        .iter()
        .filter(|o| o.meta().deletion_timestamp.is_none())
        .map(|o| K::clone(o))
        .collect();
    live.sort_by_key(|o| (o.meta().namespace.clone(), o.meta().name.clone()));
    for object in &live {
        provenance.insert(ObjectKey::of(kind, object), Origin::Kubernetes);
    }
    live
}

/// The resource version of every object, to tell a real change from a re-list.
fn resource_versions(state: &StoreState) -> BTreeMap<ObjectKey, Option<String>> {
    fn add<K: Resource>(
        out: &mut BTreeMap<ObjectKey, Option<String>>,
        kind: Kind,
        objects: &[Arc<K>],
    ) {
        for object in objects {
            out.insert(
                ObjectKey::of(kind, object.as_ref()),
                object.resource_version(),
            );
        }
    }
    let mut out = BTreeMap::new();
    add(&mut out, Kind::Namespace, &state.namespaces);
    add(&mut out, Kind::Topic, &state.topics);
    add(
        &mut out,
        Kind::EventSubscription,
        &state.event_subscriptions,
    );
    add(&mut out, Kind::Client, &state.clients);
    add(&mut out, Kind::ClientGroup, &state.client_groups);
    add(&mut out, Kind::TopicSpace, &state.topic_spaces);
    add(
        &mut out,
        Kind::PermissionBinding,
        &state.permission_bindings,
    );
    add(&mut out, Kind::Secret, &state.secrets);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridline_crds::types::Topic;
    use http::{Request, Response};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kube::client::Body;
    use serde_json::json;
    use std::time::Duration;

    fn topic(name: &str, version: &str) -> Topic {
        serde_json::from_value(json!({
            "apiVersion": "gridline.dev/v1alpha1",
            "kind": "Topic",
            "metadata": {"name": name, "namespace": "gridline", "resourceVersion": version},
            "spec": {"namespaceRef": {"name": "ns1"}}
        }))
        .unwrap()
    }

    #[test]
    fn the_stores_become_objects_sorted_by_name_with_provenance() {
        let state = StoreState {
            topics: vec![Arc::new(topic("b", "1")), Arc::new(topic("a", "2"))],
            ..StoreState::default()
        };
        let loaded = loaded_from_state(&state);
        let names: Vec<_> = loaded.objects.topics.iter().map(|t| t.name_any()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(
            loaded.provenance[&ObjectKey::new(Kind::Topic, "gridline", "a")],
            Origin::Kubernetes
        );
        assert!(loaded.problems.is_empty());
    }

    #[test]
    fn objects_being_deleted_are_left_out() {
        let mut leaving = topic("leaving", "3");
        leaving.metadata.deletion_timestamp = Some(Time(Default::default()));
        let state = StoreState {
            topics: vec![Arc::new(topic("staying", "1")), Arc::new(leaving)],
            ..StoreState::default()
        };
        let loaded = loaded_from_state(&state);
        assert_eq!(loaded.objects.topics.len(), 1);
        assert_eq!(loaded.provenance.len(), 1);
    }

    #[test]
    fn resource_versions_tell_a_change_from_a_relist() {
        let before = StoreState {
            topics: vec![Arc::new(topic("a", "1"))],
            ..StoreState::default()
        };
        let relisted = before.clone();
        let changed = StoreState {
            topics: vec![Arc::new(topic("a", "2"))],
            ..StoreState::default()
        };
        assert_eq!(resource_versions(&before), resource_versions(&relisted));
        assert_ne!(resource_versions(&before), resource_versions(&changed));
    }

    /// The plural of each kind's resource in a request path, and a list of it to answer with.
    fn list_for(path: &str) -> serde_json::Value {
        let items = if path.ends_with("/topics") {
            vec![serde_json::to_value(topic("orders", "5")).unwrap()]
        } else if path.ends_with("/namespaces") {
            vec![json!({
                "apiVersion": "gridline.dev/v1alpha1",
                "kind": "Namespace",
                "metadata": {"name": "ns1", "namespace": "gridline", "resourceVersion": "4"},
                "spec": {}
            })]
        } else {
            vec![]
        };
        json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "10"}, "items": items})
    }

    #[tokio::test]
    async fn the_initial_lists_become_the_first_configuration() {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let server = tokio::spawn(async move {
            let mut seen_paths = Vec::new();
            // Watch requests are held open, unanswered, as a quiet API server would.
            let mut open_watches = Vec::new();
            while let Some((request, respond)) = handle.next_request().await {
                let path = request.uri().path().to_string();
                let query = request.uri().query().unwrap_or_default().to_string();
                if query.contains("watch=true") {
                    open_watches.push(respond);
                    continue;
                }
                seen_paths.push(path.clone());
                let body = serde_json::to_vec(&list_for(&path)).unwrap();
                respond.send_response(Response::builder().body(Body::from(body)).unwrap());
                if seen_paths.len() == 8 {
                    seen_paths.sort();
                    return seen_paths;
                }
            }
            seen_paths
        });

        let client = Client::new(service, "gridline");
        let (tx, mut updates) = mpsc::channel(1);
        let source = tokio::spawn(KubernetesSource::new(client, None).run(tx));
        let loaded = tokio::time::timeout(Duration::from_secs(10), updates.recv())
            .await
            .expect("a configuration within 10 s")
            .expect("the source is running");

        assert_eq!(loaded.objects.namespaces.len(), 1);
        assert_eq!(loaded.objects.topics.len(), 1);
        assert_eq!(loaded.objects.topics[0].name_any(), "orders");
        assert!(loaded.problems.is_empty());
        let paths = server.await.unwrap();
        assert_eq!(
            paths,
            [
                "/api/v1/namespaces/gridline/secrets",
                "/apis/gridline.dev/v1alpha1/namespaces/gridline/clientgroups",
                "/apis/gridline.dev/v1alpha1/namespaces/gridline/clients",
                "/apis/gridline.dev/v1alpha1/namespaces/gridline/eventsubscriptions",
                "/apis/gridline.dev/v1alpha1/namespaces/gridline/namespaces",
                "/apis/gridline.dev/v1alpha1/namespaces/gridline/permissionbindings",
                "/apis/gridline.dev/v1alpha1/namespaces/gridline/topics",
                "/apis/gridline.dev/v1alpha1/namespaces/gridline/topicspaces",
            ]
        );
        source.abort();
    }
}
