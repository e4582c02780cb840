use super::*;
use crate::testing::{K8S_NS, namespace, secret, topic, topic_in};
use http::{Request, Response};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::client::Body;
use serde_json::{Value, json};
use std::sync::Mutex;
use std::time::Duration;

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

/// A list request: its path and query.
type Requested = Arc<Mutex<Vec<(String, String)>>>;

/// An API server that answers each list with `world(path)` and holds every watch open, as a
/// quiet API server would. Records the list requests.
fn api_server(world: fn(&str) -> Vec<Value>) -> (Client, Requested) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let requested = Requested::default();
    let record = requested.clone();
    tokio::spawn(async move {
        let mut open_watches = Vec::new();
        while let Some((request, respond)) = handle.next_request().await {
            let path = request.uri().path().to_string();
            let query = request.uri().query().unwrap_or_default().to_string();
            if query.contains("watch=true") {
                open_watches.push(respond);
                continue;
            }
            let items = world(&path);
            record.lock().unwrap().push((path, query));
            let list = json!({"apiVersion": "v1", "kind": "List",
                              "metadata": {"resourceVersion": "10"}, "items": items});
            let body = serde_json::to_vec(&list).unwrap();
            respond.send_response(Response::builder().body(Body::from(body)).unwrap());
        }
    });
    (Client::new(service, "default"), requested)
}

fn nothing(_: &str) -> Vec<Value> {
    Vec::new()
}

/// Start the reflectors, poll their events, and wait for every first list.
async fn started(
    client: &Client,
    scope: &WatchScope,
    options: &ReflectorOptions,
) -> (Reflectors, tokio::task::JoinHandle<()>) {
    let (reflectors, events) = Reflectors::start(client, scope, options);
    let pump = tokio::spawn(events.for_each(|()| async {}));
    tokio::time::timeout(Duration::from_secs(10), reflectors.wait_until_ready())
        .await
        .expect("every store listed within 10 s")
        .expect("no writer dropped");
    (reflectors, pump)
}

fn paths(requested: &Requested) -> Vec<String> {
    let mut paths: Vec<String> = requested
        .lock()
        .unwrap()
        .iter()
        .map(|(p, _)| p.clone())
        .collect();
    paths.sort();
    paths
}

const KINDS: [&str; 7] = [
    "clientgroups",
    "clients",
    "eventsubscriptions",
    "namespaces",
    "permissionbindings",
    "topics",
    "topicspaces",
];

#[tokio::test]
async fn a_list_of_namespaces_is_watched_one_namespace_at_a_time() {
    let (client, requested) = api_server(nothing);
    let scope = WatchScope::from_flags(&["team-b,team-a".into()]);
    let (_reflectors, pump) = started(&client, &scope, &ReflectorOptions::default()).await;
    let mut expected = Vec::new();
    for ns in ["team-a", "team-b"] {
        expected.push(format!("/api/v1/namespaces/{ns}/secrets"));
        for kind in KINDS {
            expected.push(format!(
                "/apis/gridline.dev/v1alpha1/namespaces/{ns}/{kind}"
            ));
        }
    }
    expected.sort();
    assert_eq!(paths(&requested), expected);
    pump.abort();
}

#[tokio::test]
async fn all_namespaces_are_watched_with_one_cluster_wide_watch_per_kind() {
    let (client, requested) = api_server(nothing);
    let (_reflectors, pump) =
        started(&client, &WatchScope::All, &ReflectorOptions::default()).await;
    let mut expected = vec!["/api/v1/secrets".to_string()];
    for kind in KINDS {
        expected.push(format!("/apis/gridline.dev/v1alpha1/{kind}"));
    }
    expected.sort();
    assert_eq!(paths(&requested), expected);
    pump.abort();
}

#[tokio::test]
async fn helm_release_secrets_are_left_out_only_when_asked() {
    for skip in [false, true] {
        let (client, requested) = api_server(nothing);
        let options = ReflectorOptions {
            skip_helm_release_secrets: skip,
            ..ReflectorOptions::default()
        };
        let (_reflectors, pump) = started(&client, &WatchScope::namespace(K8S_NS), &options).await;
        let requested = requested.lock().unwrap().clone();
        let (_, secrets_query) = requested
            .iter()
            .find(|(path, _)| path.ends_with("/secrets"))
            .expect("a Secrets list");
        assert_eq!(
            secrets_query.contains("fieldSelector=type%21%3Dhelm.sh%2Frelease.v1"),
            skip,
            "{secrets_query}"
        );
        for (path, query) in &requested {
            if !path.ends_with("/secrets") {
                assert!(!query.contains("fieldSelector"), "{path}?{query}");
            }
        }
        pump.abort();
    }
}

fn to_value(object: impl serde::Serialize) -> Value {
    serde_json::to_value(object).expect("JSON")
}

/// Two Kubernetes namespaces: `shop` with a Namespace, two Topics (one being deleted) and a
/// Secret; `other` with a Topic.
fn two_namespaces(path: &str) -> Vec<Value> {
    if path.ends_with("/gridline.dev/v1alpha1/namespaces") {
        vec![to_value(namespace("orders"))]
    } else if path.ends_with("/topics") {
        let mut leaving = topic("leaving", "orders");
        leaving.metadata.deletion_timestamp = Some(Time(Default::default()));
        leaving.metadata.finalizers = Some(vec!["example.com/hold".into()]);
        vec![
            to_value(topic("placed", "orders")),
            to_value(&leaving),
            to_value(topic("cancelled", "orders")),
            to_value(topic_in("other", "elsewhere", "x")),
        ]
    } else if path.ends_with("/secrets") {
        vec![to_value(secret("keys", "3"))]
    } else {
        Vec::new()
    }
}

#[tokio::test]
async fn the_live_objects_of_a_namespace_come_sorted_by_name() {
    let (client, _) = api_server(two_namespaces);
    let (reflectors, pump) = started(&client, &WatchScope::All, &ReflectorOptions::default()).await;

    assert_eq!(
        reflectors.k8s_namespaces(),
        BTreeSet::from(["other".to_string(), K8S_NS.to_string()])
    );
    let objects = reflectors.objects_in(K8S_NS);
    let names: Vec<_> = objects.topics.iter().map(|t| t.name_any()).collect();
    assert_eq!(
        names,
        ["cancelled", "placed"],
        "sorted, the deleted one left out"
    );
    assert_eq!(objects.namespaces.len(), 1);
    assert_eq!(objects.secrets.len(), 1);
    assert_eq!(reflectors.objects_in("other").topics.len(), 1);
    assert!(reflectors.objects_in("nowhere").topics.is_empty());

    let state = reflectors.state();
    assert_eq!(
        state.topics.len(),
        4,
        "the state holds every object as stored"
    );
    assert_eq!(state.secrets.len(), 1);
    pump.abort();
}

#[tokio::test]
async fn the_first_lists_mark_every_namespace_holding_an_object() {
    let (client, _) = api_server(two_namespaces);
    let dirty = Arc::new(Dirty::default());
    let options = ReflectorOptions {
        dirty: Some(dirty.clone()),
        ..ReflectorOptions::default()
    };
    let (_reflectors, pump) = started(&client, &WatchScope::All, &options).await;
    // The marks are made as the events are polled, which may trail the stores by a moment.
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut marked = BTreeSet::new();
        while marked.len() < 2 {
            dirty.changed().await;
            marked.extend(dirty.take());
        }
        assert_eq!(
            marked,
            BTreeSet::from(["other".to_string(), K8S_NS.to_string()])
        );
    })
    .await
    .expect("both namespaces marked within 10 s");
    pump.abort();
}

/// A Topic as kubectl leaves it: managed fields and the last-applied copy.
fn applied_by_kubectl(path: &str) -> Vec<Value> {
    if !path.ends_with("/topics") {
        return Vec::new();
    }
    let mut topic = to_value(topic("placed", "orders"));
    topic["metadata"]["managedFields"] = json!([{"manager": "kubectl", "operation": "Apply"}]);
    topic["metadata"]["annotations"] =
        json!({"kubectl.kubernetes.io/last-applied-configuration": "{...}", "team": "a"});
    vec![topic]
}

#[tokio::test]
async fn objects_are_slimmed_only_when_asked() {
    for slimmed in [false, true] {
        let (client, _) = api_server(applied_by_kubectl);
        let options = ReflectorOptions {
            slim: slimmed,
            ..ReflectorOptions::default()
        };
        let (reflectors, pump) = started(&client, &WatchScope::namespace(K8S_NS), &options).await;
        let topics = reflectors.state().topics;
        assert_eq!(topics[0].managed_fields().is_empty(), slimmed);
        assert_eq!(topics[0].annotations().len(), if slimmed { 1 } else { 2 });
        pump.abort();
    }
}
