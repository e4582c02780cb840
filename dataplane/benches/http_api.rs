//! Load benchmarks of the Event Grid HTTP API against the real binary (release build), next to
//! a bare axum handler doing no work and the disk's raw fsync rate, so each figure reads as a
//! fraction of what this machine can do at all. The load generator runs on the same 2 cores
//! as the server, as the baseline's does.
//!
//! `cargo bench -p gridline-dataplane --bench http_api -- [SCENARIO...] [--seconds N]`
//! Scenarios: fsync, baseline, publish-batched, publish-single, receive-ack, latency, rss.
//! Without a scenario, all but rss run; BENCHMARKS.md records the commands used.

mod support;

use axum::Router;
use axum::routing::post;
use serde_json::{Value, json};
use std::io::Write;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::HttpDataplane;

const KEY: &str = "bench-key";
const API: &str = "api-version=2024-06-01";
const EVENT_BYTES: usize = 1024;

struct Options {
    scenarios: Vec<String>,
    seconds: u64,
    connections: usize,
    rss_events: usize,
}

fn options() -> Options {
    let mut options = Options {
        scenarios: Vec::new(),
        seconds: 10,
        connections: 32,
        rss_events: 10_000_000,
    };
    let mut args = support::Args::from_env();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => options.seconds = args.number(&arg),
            "--connections" => options.connections = args.number(&arg),
            "--rss-events" => options.rss_events = args.number(&arg),
            other if !other.starts_with('-') => options.scenarios.push(other.to_string()),
            other => panic!("unknown option {other}"),
        }
    }
    if options.scenarios.is_empty() {
        options.scenarios = [
            "fsync",
            "baseline",
            "publish-batched",
            "publish-single",
            "receive-ack",
            "latency",
        ]
        .map(String::from)
        .to_vec();
    }
    options
}

/// A CloudEvent whose JSON is about EVENT_BYTES long.
fn event(n: u64) -> Value {
    let padding = "x".repeat(EVENT_BYTES - 150);
    json!({
        "specversion": "1.0",
        "id": format!("bench-{n}"),
        "source": "/bench",
        "type": "com.example.bench",
        "subject": "orders/eu",
        "data": {"n": n, "padding": padding},
    })
}

fn batch_body(first: u64, size: u64) -> Vec<u8> {
    serde_json::to_vec(&Value::Array((first..first + size).map(event).collect())).expect("json")
}

const BATCH_TYPE: &str = "application/cloudevents-batch+json; charset=utf-8";
const SINGLE_TYPE: &str = "application/cloudevents+json; charset=utf-8";

const MANIFESTS: &str = "apiVersion: gridline.dev/v1alpha1
kind: Namespace
metadata: {name: bench}
spec:
  sasKeys: {secretName: bench-keys}
  listeners:
    mqttTls: {enabled: false, port: 8883}
    https: {enabled: false, port: 443}
    http: {port: 8080}
  storage: {fsyncPolicy: Always}
---
apiVersion: v1
kind: Secret
metadata: {name: bench-keys}
stringData: {key1: bench-key}
---
apiVersion: gridline.dev/v1alpha1
kind: Topic
metadata: {name: orders}
spec: {namespaceRef: {name: bench}, eventRetentionInDays: 1}
---
apiVersion: gridline.dev/v1alpha1
kind: EventSubscription
metadata: {name: bench}
spec:
  topicRef: {name: orders}
  deliveryConfiguration:
    deliveryMode: Queue
    queue: {receiveLockDurationInSeconds: 300}
";

/// The data plane under test, with a topic `orders` and a queue subscription `bench`.
fn start_dataplane() -> HttpDataplane {
    HttpDataplane::start(MANIFESTS, "warn")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()
        .expect("http client")
}

/// Closed loop: `connections` tasks each send `body` to `url` back to back for `seconds`.
/// Returns requests completed per second.
async fn hammer(
    url: String,
    body: Vec<u8>,
    content_type: &'static str,
    connections: usize,
    seconds: u64,
) -> f64 {
    let http = client();
    let body = bytes::Bytes::from(body);
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (http, url, body) = (http.clone(), url.clone(), body.clone());
        let (done, failed, stop) = (done.clone(), failed.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let response = http
                    .post(&url)
                    .header("Authorization", format!("SharedAccessKey {KEY}"))
                    .header("Content-Type", content_type)
                    .body(body.clone())
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let failed = failed.load(Ordering::Relaxed);
    assert_eq!(failed, 0, "{failed} requests failed");
    done.load(Ordering::Relaxed) as f64 / elapsed
}

fn fsync_rate() -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut file = std::fs::File::create(dir.path().join("fsync")).expect("file");
    let block = vec![0u8; 4096];
    let started = Instant::now();
    let mut count = 0u64;
    while started.elapsed() < Duration::from_secs(3) {
        file.write_all(&block).expect("write");
        file.sync_data().expect("fdatasync");
        count += 1;
    }
    count as f64 / started.elapsed().as_secs_f64()
}

async fn baseline_server() -> String {
    let app = Router::new().route(
        "/{*rest}",
        post(|body: axum::body::Bytes| async move {
            std::hint::black_box(body);
            ([("content-type", "application/json")], "{}")
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// Consumers receive and acknowledge until `stored` events are done or `seconds` pass;
/// events per second over that time.
async fn receive_ack(base: &str, connections: usize, seconds: u64, stored: u64) -> f64 {
    let http = client();
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (http, base) = (http.clone(), base.to_string());
        let (received, stop) = (received.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let body: Value = http
                    .post(format!(
                        "{base}/topics/orders/eventsubscriptions/bench:receive?{API}&maxEvents=100&maxWaitTime=10"
                    ))
                    .header("Authorization", format!("SharedAccessKey {KEY}"))
                    .send()
                    .await
                    .expect("receive")
                    .json()
                    .await
                    .expect("receive body");
                let tokens: Vec<Value> = body["value"]
                    .as_array()
                    .map(|items| {
                        items
                            .iter()
                            .map(|item| item["brokerProperties"]["lockToken"].clone())
                            .collect()
                    })
                    .unwrap_or_default();
                if tokens.is_empty() {
                    continue;
                }
                let count = tokens.len() as u64;
                let ack: Value = http
                    .post(format!(
                        "{base}/topics/orders/eventsubscriptions/bench:acknowledge?{API}"
                    ))
                    .header("Authorization", format!("SharedAccessKey {KEY}"))
                    .json(&json!({"lockTokens": tokens}))
                    .send()
                    .await
                    .expect("acknowledge")
                    .json()
                    .await
                    .expect("acknowledge body");
                assert_eq!(ack["failedLockTokens"], json!([]));
                received.fetch_add(count, Ordering::Relaxed);
            }
        }));
    }
    // Stop at the deadline or once everything is consumed, whichever is first: consumers that
    // have drained the subscription would only wait in long polls and dilute the rate.
    let deadline = started + Duration::from_secs(seconds);
    while Instant::now() < deadline && received.load(Ordering::Relaxed) < stored {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rate = received.load(Ordering::Relaxed) as f64 / elapsed;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    rate
}

/// Open loop at `rate` single-event publishes per second; latency percentiles in ms.
async fn latency(base: &str, rate: u64, seconds: u64) -> (f64, f64, f64) {
    let http = client();
    let url = format!("{base}/topics/orders:publish?{API}");
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for n in 0..rate * seconds {
        ticker.tick().await;
        let (http, url, tx) = (http.clone(), url.clone(), tx.clone());
        let body = serde_json::to_vec(&event(n)).expect("json");
        tokio::spawn(async move {
            let started = Instant::now();
            let response = http
                .post(url)
                .header("Authorization", format!("SharedAccessKey {KEY}"))
                .header("Content-Type", SINGLE_TYPE)
                .body(body)
                .send()
                .await
                .expect("publish");
            assert!(response.status().is_success());
            let _ = tx.send(started.elapsed());
        });
    }
    drop(tx);
    let mut samples = Vec::new();
    while let Some(sample) = rx.recv().await {
        samples.push(sample.as_secs_f64() * 1e3);
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    (at(0.5), at(0.99), at(0.999))
}

/// Publish `events` in batches of 100 as fast as possible; events per second.
async fn fill(base: &str, events: usize, connections: usize) -> f64 {
    let http = client();
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (http, base, next) = (http.clone(), base.to_string(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let first = next.fetch_add(100, Ordering::Relaxed);
                if first >= events as u64 {
                    return;
                }
                let response = http
                    .post(format!("{base}/topics/orders:publish?{API}"))
                    .header("Authorization", format!("SharedAccessKey {KEY}"))
                    .header("Content-Type", BATCH_TYPE)
                    .body(batch_body(first, 100))
                    .send()
                    .await
                    .expect("publish");
                assert!(response.status().is_success());
            }
        }));
    }
    for task in tasks {
        task.await.expect("fill task");
    }
    events as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let options = options();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "# http_api: {cores} cores, {} connections, {} s per scenario, 1 KiB events, fsync Always",
        options.connections, options.seconds
    );
    let single = serde_json::to_vec(&event(0)).expect("json");
    for scenario in &options.scenarios {
        match scenario.as_str() {
            "fsync" => println!(
                "disk raw fsync (4 KiB write + fdatasync, one file): {:.0} fsync/s",
                fsync_rate()
            ),
            "baseline" => {
                let base = baseline_server().await;
                let url = format!("{base}/topics/orders:publish?{API}");
                let batched = hammer(
                    url.clone(),
                    batch_body(0, 100),
                    BATCH_TYPE,
                    options.connections,
                    options.seconds,
                )
                .await;
                let one = hammer(
                    url,
                    single.clone(),
                    SINGLE_TYPE,
                    options.connections,
                    options.seconds,
                )
                .await;
                println!(
                    "bare axum handler, 100-event bodies: {batched:.0} requests/s = {:.0} events/s",
                    batched * 100.0
                );
                println!("bare axum handler, 1-event bodies: {one:.0} requests/s");
            }
            "publish-batched" => {
                let plane = start_dataplane();
                let url = format!("{}/topics/orders:publish?{API}", plane.base);
                let rate = hammer(
                    url,
                    batch_body(0, 100),
                    BATCH_TYPE,
                    options.connections,
                    options.seconds,
                )
                .await;
                println!(
                    "publish, batches of 100: {rate:.0} requests/s = {:.0} events/s (RSS after: {:.0} MiB)",
                    rate * 100.0,
                    plane.rss_mib()
                );
            }
            "publish-single" => {
                let plane = start_dataplane();
                let url = format!("{}/topics/orders:publish?{API}", plane.base);
                let rate = hammer(
                    url,
                    single.clone(),
                    SINGLE_TYPE,
                    options.connections,
                    options.seconds,
                )
                .await;
                println!("publish, single events: {rate:.0} requests/s");
            }
            "receive-ack" => {
                let plane = start_dataplane();
                // More than the consumers can take in the time given, so they never run dry.
                let stored = (options.seconds as usize * 300_000).min(6_000_000);
                fill(&plane.base, stored, options.connections).await;
                // Write back the fill's dirty pages first, so the figure is the consumers' rate
                // rather than their share of the disk with the kernel's writeback.
                let _ = Command::new("sync").status();
                let rate = receive_ack(
                    &plane.base,
                    options.connections / 4 + 1,
                    options.seconds,
                    stored as u64,
                )
                .await;
                println!(
                    "receive + acknowledge, batches of 100 ({stored} stored first): {rate:.0} events/s"
                );
            }
            "latency" => {
                let plane = start_dataplane();
                let (p50, p99, p999) = latency(&plane.base, 1000, options.seconds).await;
                println!(
                    "publish latency at 1,000 single events/s: p50 {p50:.2} ms, p99 {p99:.2} ms, p99.9 {p999:.2} ms"
                );
            }
            "rss" => {
                let plane = start_dataplane();
                let rate = fill(&plane.base, options.rss_events, options.connections).await;
                std::thread::sleep(Duration::from_secs(2));
                println!(
                    "{} events stored ({rate:.0} events/s while filling): RSS {:.0} MiB",
                    options.rss_events,
                    plane.rss_mib()
                );
            }
            other => panic!("unknown scenario {other}"),
        }
    }
}
