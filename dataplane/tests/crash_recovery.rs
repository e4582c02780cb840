//! A crash (kill -9) in the middle of publishing loses nothing that was acknowledged: every
//! event whose publish returned 200 is delivered after the restart, and every event whose
//! acknowledgement returned is never delivered again.

mod support;

use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use support::*;

const KEY: &str = "crash-test-key";
const EVENTS: usize = 50_000;
const BATCH: usize = 100;
const PUBLISHERS: usize = 4;
/// Kill once this many events were acknowledged as published (mid-stream).
const KILL_AFTER: usize = EVENTS / 2;
const API: &str = "api-version=2024-06-01";

fn manifests() -> String {
    documents(&[
        namespace_with_keys("crash", "crash-keys"),
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: crash-keys\nstringData:\n  key1: {KEY}\n"
        ),
        topic("orders", "crash", 1),
        "apiVersion: gridline.dev/v1alpha1
kind: EventSubscription
metadata:
  name: all-orders
spec:
  topicRef: {name: orders}
  deliveryConfiguration:
    deliveryMode: Queue
    queue: {receiveLockDurationInSeconds: 300}
"
        .to_string(),
    ])
}

fn batch(first: usize) -> Value {
    let padding = "x".repeat(900);
    Value::Array(
        (first..first + BATCH)
            .map(|n| {
                json!({
                    "specversion": "1.0",
                    "id": format!("event-{n}"),
                    "source": "/tests/crash",
                    "type": "com.example.crash",
                    "data": {"n": n, "padding": padding},
                })
            })
            .collect(),
    )
}

async fn publish(http: &reqwest::Client, base: &str, events: &Value) -> bool {
    let response = http
        .post(format!("{base}/topics/orders:publish?{API}"))
        .header("Authorization", format!("SharedAccessKey {KEY}"))
        .header(
            "Content-Type",
            "application/cloudevents-batch+json; charset=utf-8",
        )
        .json(events)
        .send()
        .await;
    matches!(response, Ok(r) if r.status().is_success())
}

/// Receive up to 100 events: (id, lock token).
async fn receive(http: &reqwest::Client, base: &str, wait_seconds: u32) -> Vec<(String, String)> {
    let response = http
        .post(format!(
            "{base}/topics/orders/eventsubscriptions/all-orders:receive?{API}&maxEvents=100&maxWaitTime={wait_seconds}"
        ))
        .header("Authorization", format!("SharedAccessKey {KEY}"))
        .send()
        .await
        .expect("receive");
    assert!(
        response.status().is_success(),
        "receive: {}",
        response.status()
    );
    let body: Value = response.json().await.expect("receive body");
    body["value"]
        .as_array()
        .expect("value array")
        .iter()
        .map(|item| {
            (
                item["event"]["id"].as_str().expect("id").to_string(),
                item["brokerProperties"]["lockToken"]
                    .as_str()
                    .expect("token")
                    .to_string(),
            )
        })
        .collect()
}

async fn acknowledge(http: &reqwest::Client, base: &str, tokens: Vec<String>) {
    if tokens.is_empty() {
        return;
    }
    let response = http
        .post(format!(
            "{base}/topics/orders/eventsubscriptions/all-orders:acknowledge?{API}"
        ))
        .header("Authorization", format!("SharedAccessKey {KEY}"))
        .json(&json!({"lockTokens": tokens}))
        .send()
        .await
        .expect("acknowledge");
    let body: Value = response.json().await.expect("acknowledge body");
    assert_eq!(body["failedLockTokens"], json!([]), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kill_mid_publish_loses_no_acknowledged_event_and_forgets_no_acknowledgement() {
    let workspace = Workspace::new();
    workspace.write("crash.yaml", &manifests());
    let dataplane = workspace.start(&[]);
    dataplane.wait_ready().await;
    let base = format!("http://{}", dataplane.addr);
    let http = reqwest::Client::new();

    // Publish from several clients at once; each batch that returned 200 is remembered.
    let published: Arc<Mutex<BTreeSet<usize>>> = Arc::default();
    let mut publishers = Vec::new();
    for publisher in 0..PUBLISHERS {
        let (http, base, published) = (http.clone(), base.clone(), published.clone());
        publishers.push(tokio::spawn(async move {
            for first in (publisher * BATCH..EVENTS).step_by(PUBLISHERS * BATCH) {
                if !publish(&http, &base, &batch(first)).await {
                    return; // the process is gone
                }
                published.lock().unwrap().insert(first);
            }
        }));
    }
    // Meanwhile, consume and acknowledge some: those must never come back.
    let mut acknowledged: BTreeSet<String> = BTreeSet::new();
    while published.lock().unwrap().len() * BATCH < KILL_AFTER {
        let received = receive(&http, &base, 10).await;
        let (ids, tokens): (Vec<_>, Vec<_>) = received.into_iter().unzip();
        acknowledge(&http, &base, tokens).await;
        acknowledged.extend(ids);
    }
    drop(dataplane); // kill -9, with publishes in flight
    for publisher in publishers {
        publisher.await.expect("publisher task");
    }
    let published: BTreeSet<String> = published
        .lock()
        .unwrap()
        .iter()
        .flat_map(|first| (*first..first + BATCH).map(|n| format!("event-{n}")))
        .collect();
    assert!(
        published.len() >= KILL_AFTER && published.len() < EVENTS,
        "killed mid-stream"
    );

    let dataplane = workspace.start(&[]);
    dataplane.wait_ready().await;
    let base = format!("http://{}", dataplane.addr);
    let mut deliveries: HashMap<String, usize> = HashMap::new();
    loop {
        let received = receive(&http, &base, 10).await;
        if received.is_empty() {
            break;
        }
        let (ids, tokens): (Vec<_>, Vec<_>) = received.into_iter().unzip();
        acknowledge(&http, &base, tokens).await;
        for id in ids {
            *deliveries.entry(id).or_default() += 1;
        }
    }

    let redelivered: Vec<&String> = acknowledged
        .iter()
        .filter(|id| deliveries.contains_key(*id))
        .collect();
    assert!(
        redelivered.is_empty(),
        "acknowledged before the crash, delivered again: {redelivered:?}"
    );
    let lost: Vec<&String> = published
        .iter()
        .filter(|id| !acknowledged.contains(*id) && !deliveries.contains_key(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} published events lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    let duplicates = deliveries.values().filter(|count| **count > 1).count();
    assert_eq!(
        duplicates, 0,
        "after the restart each event is delivered once"
    );
    println!(
        "published (200) before the kill: {}, acknowledged before the kill: {}, delivered after the restart: {}, of which published without a 200: {}",
        published.len(),
        acknowledged.len(),
        deliveries.len(),
        deliveries
            .keys()
            .filter(|id| !published.contains(*id))
            .count()
    );
}
