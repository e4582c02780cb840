//! The pure part of the status pass at the size the operator is designed for (1,000 Topics,
//! 1,000 EventSubscriptions, 5,000 Clients in one Namespace): compile and compute every
//! status, then recompute after one change (the cost that bounds how fast a single edit shows
//! up in status). Prints milliseconds; run with `cargo bench -p gridline-operator`.

use gridline_crds::model::{Kind, ObjectKey, Objects};
use gridline_crds::types::ResourceStatus;
use gridline_operator::status::{Pods, Reported, plan};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

const TOPICS: usize = 1_000;
const SUBSCRIPTIONS: usize = 1_000;
const CLIENTS: usize = 5_000;
const GROUPS: usize = 10;

fn object<K: DeserializeOwned>(kind: &str, name: &str, spec: Value) -> K {
    serde_json::from_value(json!({
        "apiVersion": "gridline.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": "bench", "uid": format!("{kind}-{name}"), "generation": 1},
        "spec": spec,
    }))
    .expect("a valid object")
}

fn objects() -> Objects {
    let ns = json!({
        "topicSpacesConfiguration": {"state": "Enabled"},
        "listeners": {"mqttTls": {"enabled": false, "port": 8883}, "https": {"enabled": false, "port": 443}},
    });
    Objects {
        namespaces: vec![object("Namespace", "load", ns)],
        topics: (0..TOPICS)
            .map(|i| object("Topic", &format!("topic-{i}"), json!({"namespaceRef": {"name": "load"}})))
            .collect(),
        event_subscriptions: (0..SUBSCRIPTIONS)
            .map(|i| {
                object(
                    "EventSubscription",
                    &format!("sub-{i}"),
                    json!({
                        "topicRef": {"name": format!("topic-{}", i % TOPICS)},
                        "deliveryConfiguration": {"deliveryMode": "Queue", "queue": {}},
                        "filtersConfiguration": {"includedEventTypes": ["orders.created"]},
                    }),
                )
            })
            .collect(),
        clients: (0..CLIENTS)
            .map(|i| {
                object(
                    "Client",
                    &format!("client-{i}"),
                    json!({"namespaceRef": {"name": "load"}, "attributes": {"floor": i % GROUPS, "type": "sensor"}}),
                )
            })
            .collect(),
        client_groups: (0..GROUPS)
            .map(|i| {
                object(
                    "ClientGroup",
                    &format!("floor-{i}"),
                    json!({"namespaceRef": {"name": "load"}, "query": format!("attributes.floor = {i}")}),
                )
            })
            .collect(),
        topic_spaces: (0..GROUPS)
            .map(|i| {
                object(
                    "TopicSpace",
                    &format!("space-{i}"),
                    json!({"namespaceRef": {"name": "load"}, "topicTemplates": [format!("floors/{i}/#")]}),
                )
            })
            .collect(),
        permission_bindings: (0..GROUPS)
            .map(|i| {
                object(
                    "PermissionBinding",
                    &format!("binding-{i}"),
                    json!({
                        "namespaceRef": {"name": "load"},
                        "clientGroupName": format!("floor-{i}"),
                        "topicSpaceName": format!("space-{i}"),
                        "permission": "Publisher",
                    }),
                )
            })
            .collect(),
        secrets: vec![],
    }
}

fn apply(objects: &mut Objects, written: &HashMap<ObjectKey, ResourceStatus>) {
    fn set<K: Reported>(
        kind: Kind,
        objects: &mut [K],
        written: &HashMap<ObjectKey, ResourceStatus>,
    ) {
        for o in objects {
            if let Some(status) = written.get(&ObjectKey::of(kind, o)) {
                o.set_status(status.clone(), None);
            }
        }
    }
    set(Kind::Namespace, &mut objects.namespaces, written);
    set(Kind::Topic, &mut objects.topics, written);
    set(
        Kind::EventSubscription,
        &mut objects.event_subscriptions,
        written,
    );
    set(Kind::Client, &mut objects.clients, written);
    set(Kind::ClientGroup, &mut objects.client_groups, written);
    set(Kind::TopicSpace, &mut objects.topic_spaces, written);
    set(
        Kind::PermissionBinding,
        &mut objects.permission_bindings,
        written,
    );
}

fn ms(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

fn main() {
    let started = Instant::now();
    let mut objects = objects();
    let total: usize = Kind::ALL.iter().map(|k| objects.count(*k)).sum();
    println!("built {total} objects in {:.1} ms", ms(started));
    let pods = BTreeMap::from([(
        "load".to_string(),
        Pods {
            desired: 3,
            ready: 3,
            leases: Vec::new(),
        },
    )]);
    let now = Time(Timestamp::now());

    let started = Instant::now();
    let first = plan(&objects, &pods, &now);
    println!(
        "first pass: {} statuses to write, computed in {:.1} ms",
        first.changes.len(),
        ms(started)
    );
    let written: HashMap<_, _> = first
        .changes
        .iter()
        .map(|c| (c.key.clone(), c.status.clone()))
        .collect();
    apply(&mut objects, &written);

    let started = Instant::now();
    let clone = objects.clone();
    println!(
        "cloning every object out of the stores: {:.1} ms",
        ms(started)
    );
    drop(clone);

    let mut runs = Vec::new();
    for i in 0..5 {
        objects.topics[i].metadata.generation = Some(2);
        objects.topics[i].spec.event_retention_in_days = 3;
        let started = Instant::now();
        let next = plan(&objects, &pods, &now);
        runs.push(ms(started));
        assert_eq!(
            next.changes.len(),
            1,
            "one edited Topic, one status to write"
        );
        let written: HashMap<_, _> = next
            .changes
            .iter()
            .map(|c| (c.key.clone(), c.status.clone()))
            .collect();
        apply(&mut objects, &written);
    }
    runs.sort_by(f64::total_cmp);
    println!(
        "after one edit: 1 status to write, computed in {:.1} ms (median of 5; min {:.1}, max {:.1})",
        runs[2], runs[0], runs[4]
    );
}
