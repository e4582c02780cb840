//! The operator binary against a fake API server holding 1,000 Topics, 1,000
//! EventSubscriptions and 5,000 Clients (plus groups, topic spaces and bindings) in one
//! Namespace: how long until every object has its status, how long one edit takes to show,
//! and the operator's resident memory. Targets: 30 s, 1 s, 150 MiB.
//! Run with `cargo bench -p gridline-operator --bench load`.

#[path = "../tests/support/mod.rs"]
mod support;

use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::{FakeApi, Operator, free_port, wait_for};

const TOPICS: usize = 1_000;
const SUBSCRIPTIONS: usize = 1_000;
const CLIENTS: usize = 5_000;
const GROUPS: usize = 10;
const GRIDLINE: &str = "/apis/gridline.dev/v1alpha1";

fn object(kind: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "gridline.dev/v1alpha1", "kind": kind,
        "metadata": {"name": name, "namespace": "bench", "uid": format!("{kind}-{name}"),
                     "generation": 1, "resourceVersion": "1"},
        "spec": spec,
    })
}

fn topic(i: usize, generation: i64, retention: i64) -> Value {
    let mut topic = object(
        "Topic",
        &format!("topic-{i}"),
        json!({"namespaceRef": {"name": "load"}, "eventRetentionInDays": retention}),
    );
    topic["metadata"]["generation"] = json!(generation);
    topic["metadata"]["resourceVersion"] = json!(format!("{}", 100 + generation));
    topic
}

fn world() -> HashMap<String, Vec<Value>> {
    let namespace = object(
        "Namespace",
        "load",
        json!({
            "replicas": 3,
            "topicSpacesConfiguration": {"state": "Enabled"},
            "listeners": {"mqttTls": {"enabled": false, "port": 8883}, "https": {"enabled": false, "port": 443}},
        }),
    );
    let on = |name: &str| json!({"name": name});
    let list = |plural: &str, items: Vec<Value>| (format!("{GRIDLINE}/{plural}"), items);
    HashMap::from([
        list("namespaces", vec![namespace]),
        list("topics", (0..TOPICS).map(|i| topic(i, 1, 7)).collect()),
        list(
            "eventsubscriptions",
            (0..SUBSCRIPTIONS)
                .map(|i| {
                    object(
                        "EventSubscription",
                        &format!("sub-{i}"),
                        json!({
                            "topicRef": on(&format!("topic-{}", i % TOPICS)),
                            "deliveryConfiguration": {"deliveryMode": "Queue", "queue": {}},
                        }),
                    )
                })
                .collect(),
        ),
        list(
            "clients",
            (0..CLIENTS)
                .map(|i| {
                    object(
                        "Client",
                        &format!("client-{i}"),
                        json!({"namespaceRef": on("load"), "attributes": {"floor": i % GROUPS, "type": "sensor"}}),
                    )
                })
                .collect(),
        ),
        list(
            "clientgroups",
            (0..GROUPS)
                .map(|i| {
                    object(
                        "ClientGroup",
                        &format!("floor-{i}"),
                        json!({"namespaceRef": on("load"), "query": format!("attributes.floor = {i}")}),
                    )
                })
                .collect(),
        ),
        list(
            "topicspaces",
            (0..GROUPS)
                .map(|i| {
                    object(
                        "TopicSpace",
                        &format!("space-{i}"),
                        json!({"namespaceRef": on("load"), "topicTemplates": [format!("floors/{i}/#")]}),
                    )
                })
                .collect(),
        ),
        list(
            "permissionbindings",
            (0..GROUPS)
                .map(|i| {
                    object(
                        "PermissionBinding",
                        &format!("binding-{i}"),
                        json!({"namespaceRef": on("load"), "clientGroupName": format!("floor-{i}"),
                               "topicSpaceName": format!("space-{i}"), "permission": "Publisher"}),
                    )
                })
                .collect(),
        ),
        (
            "/apis/apps/v1/statefulsets".to_string(),
            vec![json!({
                "apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": {"name": "load-gridline", "namespace": "bench", "uid": "sts", "resourceVersion": "1",
                             "labels": {"app.kubernetes.io/instance": "load", "app.kubernetes.io/managed-by": "gridline-operator"}},
                "spec": {"replicas": 3, "selector": {}, "template": {}, "serviceName": "load-gridline-peers"},
                "status": {"replicas": 3, "readyReplicas": 3},
            })],
        ),
    ])
}

fn is_status(w: &support::Write) -> bool {
    w.uri.contains("/status?")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let total = 1 + TOPICS + SUBSCRIPTIONS + CLIENTS + 3 * GROUPS;
    let api = FakeApi::start(world()).await;
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let operator = Operator::start(
        env!("CARGO_BIN_EXE_gridline-operator"),
        &api.kubeconfig(dir.path()),
        free_port(),
        &["--no-leader-election", "--log-level", "warn"],
    );

    wait_for("every status", Duration::from_secs(120), || {
        api.write_count(is_status) >= total
    })
    .await;
    let writes = api.writes(is_status);
    let first = writes.iter().map(|w| w.at).min().unwrap();
    let last = writes.iter().map(|w| w.at).max().unwrap();
    let accepted = writes
        .iter()
        .filter(|w| w.body["status"]["conditions"][0]["status"] == "True")
        .count();
    let ready = writes
        .iter()
        .filter(|w| w.body["status"]["conditions"][1]["status"] == "True")
        .count();
    println!(
        "{total} objects: first status after {:.2} s, all {} statuses written after {:.2} s \
         ({accepted} Accepted, {ready} Ready)",
        (first - started).as_secs_f64(),
        writes.len(),
        (last - started).as_secs_f64(),
    );
    println!(
        "RSS after the initial pass: {:.1} MiB",
        operator.rss_kib().unwrap_or(0) as f64 / 1024.0
    );

    wait_for("the Topics watch", Duration::from_secs(10), || {
        api.send_watch_event(&format!("{GRIDLINE}/topics"), json!({"type": "BOOKMARK", "object": {"apiVersion": "gridline.dev/v1alpha1", "kind": "Topic", "metadata": {"resourceVersion": "10"}}})) > 0
    })
    .await;
    let mut latencies = Vec::new();
    for (round, i) in [7usize, 70, 700, 17, 170].into_iter().enumerate() {
        let before = api.write_count(is_status);
        let sent = Instant::now();
        let generation = 2 + round as i64;
        api.send_watch_event(
            &format!("{GRIDLINE}/topics"),
            json!({"type": "MODIFIED", "object": topic(i, generation, 3)}),
        );
        wait_for("the edited Topic's status", Duration::from_secs(30), || {
            api.write_count(is_status) > before
        })
        .await;
        let write = api.writes(is_status).pop().unwrap();
        assert!(
            write.uri.contains(&format!("/topics/topic-{i}/status")),
            "{}",
            write.uri
        );
        assert_eq!(write.body["status"]["observedGeneration"], generation);
        latencies.push((write.at - sent).as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            api.write_count(is_status),
            before + 1,
            "one edit, one status write"
        );
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "one edited Topic → its status: median {:.0} ms, max {:.0} ms (5 edits)",
        latencies[2], latencies[4]
    );
    println!(
        "RSS at the end: {:.1} MiB",
        operator.rss_kib().unwrap_or(0) as f64 / 1024.0
    );
}
