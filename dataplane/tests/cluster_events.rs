//! Events across three local-mode pods of one Namespace (`--cluster-dir`): every pod stores
//! what is published to it, a receive on any pod returns events from every pod, lock tokens
//! are settled wherever their event is, and push delivery runs from every partition.

mod support;

use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;
use support::cluster::Cluster;
use support::webhook::Webhook;
use support::*;

const KEY: &str = "cluster-key";
const API: &str = "api-version=2024-06-01";
const BATCH: &str = "application/cloudevents-batch+json; charset=utf-8";

fn post(pod: &Dataplane, path_and_query: &str) -> reqwest::RequestBuilder {
    pod.client()
        .post(pod.url(path_and_query))
        .header("authorization", format!("SharedAccessKey {KEY}"))
        .timeout(Duration::from_secs(30))
}

async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn events(prefix: &str, count: usize) -> Value {
    Value::Array(
        (0..count)
            .map(|n| {
                json!({
                    "specversion": "1.0", "id": format!("{prefix}-{n}"), "source": "/tests/cluster",
                    "type": "com.example.order", "data": {"n": n},
                })
            })
            .collect(),
    )
}

async fn publish(pod: &Dataplane, topic: &str, batch: Value) {
    let (status, body) = send(
        post(pod, &format!("/topics/{topic}:publish?{API}"))
            .header("content-type", BATCH)
            .body(batch.to_string()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

async fn receive(pod: &Dataplane, max: usize) -> Vec<Value> {
    let (status, body) = send(post(
        pod,
        &format!(
            "/topics/orders/eventsubscriptions/all-orders:receive?{API}&maxEvents={max}&maxWaitTime=10"
        ),
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    body["value"].as_array().cloned().unwrap_or_default()
}

async fn settle(pod: &Dataplane, operation: &str, tokens: &[String]) -> Value {
    let (status, body) = send(
        post(
            pod,
            &format!("/topics/orders/eventsubscriptions/all-orders:{operation}?{API}"),
        )
        .json(&json!({ "lockTokens": tokens })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

fn id(event: &Value) -> String {
    event["event"]["id"].as_str().unwrap().to_string()
}

fn token(event: &Value) -> String {
    event["brokerProperties"]["lockToken"]
        .as_str()
        .unwrap()
        .to_string()
}

fn workspace(extra: &[String]) -> Workspace {
    let workspace = Workspace::new();
    let mut documents_ = vec![
        NamespaceManifest::local("dev")
            .sas_keys("dev-keys")
            .allow_insecure_webhooks()
            .yaml(),
        sas_keys_secret("dev-keys", KEY, "other-key"),
        topic("orders", "dev", 1),
        queue_subscription("all-orders", "orders"),
    ];
    documents_.extend(extra.iter().cloned());
    workspace.write("all.yaml", &documents(&documents_));
    workspace
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_published_to_two_pods_are_received_and_settled_through_the_third() {
    let workspace = workspace(&[]);
    let cluster = Cluster::start(&workspace, 3).await;
    for pod in &cluster.pods {
        pod.wait_ready().await;
    }
    publish(&cluster.pods[0], "orders", events("zero", 4)).await;
    publish(&cluster.pods[1], "orders", events("one", 4)).await;
    let third = &cluster.pods[2];
    let mut received = Vec::new();
    for _ in 0..5 {
        received.extend(receive(third, 100).await);
        if received.len() >= 8 {
            break;
        }
    }
    let ids: BTreeSet<String> = received.iter().map(id).collect();
    assert_eq!(ids.len(), 8, "every event once: {ids:?}");
    let by_id = |wanted: &str| token(received.iter().find(|e| id(e) == wanted).unwrap());
    // One request per operation, its tokens spanning both pods.
    let body = settle(third, "acknowledge", &[by_id("zero-0"), by_id("one-0")]).await;
    assert_eq!(
        body["succeededLockTokens"].as_array().unwrap().len(),
        2,
        "{body}"
    );
    let body = settle(third, "release", &[by_id("zero-1"), by_id("one-1")]).await;
    assert_eq!(
        body["succeededLockTokens"].as_array().unwrap().len(),
        2,
        "{body}"
    );
    let body = settle(third, "reject", &[by_id("zero-2"), by_id("one-2")]).await;
    assert_eq!(
        body["succeededLockTokens"].as_array().unwrap().len(),
        2,
        "{body}"
    );
    let body = settle(third, "renewLock", &[by_id("zero-3"), by_id("one-3")]).await;
    assert_eq!(
        body["succeededLockTokens"].as_array().unwrap().len(),
        2,
        "{body}"
    );
    // Acknowledged twice: lost, with Event Grid's per-token error.
    let body = settle(third, "acknowledge", &[by_id("zero-0")]).await;
    assert_eq!(
        body["failedLockTokens"].as_array().unwrap().len(),
        1,
        "{body}"
    );
    // The released ones come back, through any pod, with a higher delivery count.
    let again = receive(&cluster.pods[0], 100).await;
    let again_ids: BTreeSet<String> = again.iter().map(id).collect();
    assert_eq!(
        again_ids,
        BTreeSet::from(["zero-1".to_string(), "one-1".to_string()])
    );
    assert!(
        again
            .iter()
            .all(|e| e["brokerProperties"]["deliveryCount"] == 2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_on_one_pod_wakes_when_another_pod_gets_an_event() {
    let workspace = workspace(&[]);
    let cluster = Cluster::start(&workspace, 2).await;
    for pod in &cluster.pods {
        pod.wait_ready().await;
    }
    let waiting = receive(&cluster.pods[0], 10);
    let publishing = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        publish(&cluster.pods[1], "orders", events("late", 1)).await;
    };
    let started = std::time::Instant::now();
    let (received, ()) = tokio::join!(waiting, publishing);
    assert_eq!(received.iter().map(id).collect::<Vec<_>>(), ["late-0"]);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_delivery_runs_from_every_partition() {
    let webhook = Webhook::start().await;
    let workspace = workspace(&[
        topic("alerts", "dev", 1),
        push_subscription("hook", "alerts", &webhook.url("/hook")),
    ]);
    let cluster = Cluster::start(&workspace, 3).await;
    for pod in &cluster.pods {
        pod.wait_ready().await;
    }
    for (index, pod) in cluster.pods.iter().enumerate() {
        publish(pod, "alerts", events(&format!("pod{index}"), 3)).await;
    }
    let delivered = poll_until(Duration::from_secs(30), || async {
        webhook
            .delivered_ids()
            .into_iter()
            .collect::<BTreeSet<_>>()
            .len()
            == 9
    })
    .await;
    assert!(
        delivered.is_some(),
        "delivered: {:?}",
        webhook.delivered_ids()
    );
}
