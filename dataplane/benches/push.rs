//! Push delivery benchmarks: the real binary (release build) in local mode, fsync `Always`,
//! delivering 1 KiB CloudEvents to a webhook in this process that answers 200 at once. Client,
//! server and webhook share the machine's cores.
//!
//! `cargo bench -p gridline-dataplane --bench push -- [SCENARIO...] [--events N] [--seconds N]
//! [--memory-events N]`
//! Scenarios:
//! - `baseline`: what the webhook takes from 16 concurrent reqwest clients (requests/s): the
//!   ceiling of any dispatcher here.
//! - `batched`, `unbatched`: drain throughput. N events are stored while the endpoint refuses
//!   validation; once it allows it, the time from the first delivery to the last.
//! - `latency`: 1,000 single-event publishes per second (open loop) for `--seconds`;
//!   publish-to-delivery latency percentiles (send of the publish request to arrival at the
//!   webhook).
//! - `memory`: the endpoint goes down after validation; `--memory-events` events are
//!   published and wait for it; the data plane's RSS before, after, and 30 s later.
//!
//! Without a scenario, all but memory run. BENCHMARKS.md records the commands used.

mod support;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::IntoResponse;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use support::HttpDataplane;

const KEY: &str = "bench-key";
const API: &str = "api-version=2024-06-01";
const EVENT_BYTES: usize = 1024;

struct Options {
    scenarios: Vec<String>,
    events: Option<usize>,
    seconds: u64,
    memory_events: usize,
}

fn options() -> Options {
    let mut options = Options {
        scenarios: Vec::new(),
        events: None,
        seconds: 10,
        memory_events: 1_000_000,
    };
    let mut args = support::Args::from_env();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--events" => options.events = Some(args.number(&arg)),
            "--seconds" => options.seconds = args.number(&arg),
            "--memory-events" => options.memory_events = args.number(&arg),
            other if !other.starts_with('-') => options.scenarios.push(other.to_string()),
            other => panic!("unknown option {other}"),
        }
    }
    if options.scenarios.is_empty() {
        options.scenarios = ["baseline", "batched", "unbatched", "latency"]
            .map(String::from)
            .to_vec();
    }
    options
}

/// Nanoseconds since the bench started: events carry their send time in it.
fn clock() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// A CloudEvent whose JSON is about EVENT_BYTES long, carrying its send time.
fn event(n: u64) -> Value {
    let padding = "x".repeat(EVENT_BYTES - 180);
    json!({
        "specversion": "1.0",
        "id": format!("bench-{n}"),
        "source": "/bench",
        "type": "com.example.bench",
        "subject": "orders/eu",
        "data": {"sent": clock(), "padding": padding},
    })
}

// ---- the webhook ----

#[derive(Default)]
struct Hook {
    allow: AtomicBool,
    events: AtomicU64,
    requests: AtomicU64,
    /// When the first and the latest delivery arrived (ns on `clock()`).
    first: AtomicU64,
    last: AtomicU64,
    /// Publish-to-delivery latencies, when recording.
    record_latency: AtomicBool,
    latencies: Mutex<Vec<u64>>,
}

async fn start_hook(hook: Arc<Hook>) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = Router::new().fallback(move |method: Method, body: Bytes| {
        let hook = Arc::clone(&hook);
        async move { answer(&hook, method, &body) }
    });
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (addr, task)
}

fn answer(hook: &Hook, method: Method, body: &[u8]) -> axum::response::Response {
    if method == Method::OPTIONS {
        if !hook.allow.load(Ordering::Relaxed) {
            return StatusCode::FORBIDDEN.into_response();
        }
        let mut headers = HeaderMap::new();
        headers.insert("WebHook-Allowed-Origin", HeaderValue::from_static("*"));
        return (StatusCode::OK, headers).into_response();
    }
    let now = clock();
    let count = if body.first() == Some(&b'[') {
        if hook.record_latency.load(Ordering::Relaxed) {
            let events: Vec<Value> = serde_json::from_slice(body).unwrap_or_default();
            record(hook, now, &events);
            events.len() as u64
        } else {
            // Counting the events is enough: one `"specversion"` each.
            count_occurrences(body, b"\"specversion\"")
        }
    } else {
        if hook.record_latency.load(Ordering::Relaxed)
            && let Ok(event) = serde_json::from_slice::<Value>(body)
        {
            record(hook, now, std::slice::from_ref(&event));
        }
        1
    };
    let _ = hook
        .first
        .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
    hook.last.fetch_max(now, Ordering::Relaxed);
    hook.requests.fetch_add(1, Ordering::Relaxed);
    hook.events.fetch_add(count, Ordering::Relaxed);
    StatusCode::OK.into_response()
}

fn record(hook: &Hook, now: u64, events: &[Value]) {
    let mut latencies = hook.latencies.lock().expect("latencies");
    for event in events {
        if let Some(sent) = event["data"]["sent"].as_u64() {
            latencies.push(now.saturating_sub(sent));
        }
    }
}

fn count_occurrences(haystack: &[u8], needle: &[u8]) -> u64 {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count() as u64
}

// ---- the data plane ----

fn manifests(webhook: SocketAddr, batch: &str) -> String {
    format!(
        "apiVersion: gridline.dev/v1alpha1
kind: Namespace
metadata: {{name: bench}}
spec:
  sasKeys: {{secretName: bench-keys}}
  listeners:
    allowInsecureWebhooks: true
    mqttTls: {{enabled: false, port: 8883}}
    https: {{enabled: false, port: 443}}
    http: {{port: 8080}}
  storage: {{fsyncPolicy: Always}}
---
apiVersion: v1
kind: Secret
metadata: {{name: bench-keys}}
stringData: {{key1: {KEY}}}
---
apiVersion: gridline.dev/v1alpha1
kind: Topic
metadata: {{name: orders}}
spec: {{namespaceRef: {{name: bench}}, eventRetentionInDays: 1}}
---
apiVersion: gridline.dev/v1alpha1
kind: EventSubscription
metadata: {{name: hook}}
spec:
  topicRef: {{name: orders}}
  deliveryConfiguration:
    deliveryMode: Push
    push:
      destination:
        endpointType: WebHook
        properties:
          endpointUrl: http://{webhook}/events
{batch}"
    )
}

/// The data plane under test on `manifests`.
fn start_dataplane(manifests: &str) -> HttpDataplane {
    // PUSH_BENCH_LOG=info shows what the data plane does.
    let log = std::env::var("PUSH_BENCH_LOG").unwrap_or_else(|_| "error".into());
    HttpDataplane::start(manifests, &log)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()
        .expect("http client")
}

/// Publish `count` events in batches of 100 from 16 concurrent publishers.
async fn publish_all(plane: &HttpDataplane, count: u64) {
    let http = client();
    let next = Arc::new(AtomicU64::new(0));
    let url = format!("{}/topics/orders:publish?{API}", plane.base);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (http, next, url) = (http.clone(), Arc::clone(&next), url.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let first = next.fetch_add(100, Ordering::Relaxed);
                if first >= count {
                    break;
                }
                let last = (first + 100).min(count);
                let body = Value::Array((first..last).map(event).collect());
                let response = http
                    .post(&url)
                    .header("Authorization", format!("SharedAccessKey {KEY}"))
                    .header(
                        "Content-Type",
                        "application/cloudevents-batch+json; charset=utf-8",
                    )
                    .json(&body)
                    .send()
                    .await
                    .expect("publish");
                assert!(response.status().is_success(), "publish failed");
            }
        }));
    }
    for task in tasks {
        task.await.expect("publisher");
    }
}

async fn wait_for(what: &str, timeout: Duration, check: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ---- scenarios ----

async fn baseline(seconds: u64) {
    let hook = Arc::new(Hook::default());
    let (addr, _task) = start_hook(Arc::clone(&hook)).await;
    let http = client();
    let body = Bytes::from(serde_json::to_vec(&event(0)).expect("json"));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (http, body, stop) = (http.clone(), body.clone(), Arc::clone(&stop));
        let url = format!("http://{addr}/events");
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let response = http
                    .post(&url)
                    .header(
                        "Content-Type",
                        "application/cloudevents+json; charset=utf-8",
                    )
                    .body(body.clone())
                    .send()
                    .await
                    .expect("post");
                let _ = response.bytes().await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    let rate = hook.requests.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    println!(
        "baseline: the webhook takes {rate:.0} requests/s of one 1 KiB event from 16 reqwest clients"
    );
}

/// Store `events` while the endpoint refuses validation, then let it validate and time the
/// drain.
async fn drain(name: &str, batch: &str, events: u64) {
    let hook = Arc::new(Hook::default());
    let (addr, _task) = start_hook(Arc::clone(&hook)).await;
    let plane = start_dataplane(&manifests(addr, batch));
    let stored = Instant::now();
    publish_all(&plane, events).await;
    let publish_seconds = stored.elapsed().as_secs_f64();
    eprintln!("# {events} events stored in {publish_seconds:.1} s; waiting for validation");
    // The first validation was refused at start-up; the next comes 10 s (±10 %) later.
    hook.allow.store(true, Ordering::Relaxed);
    wait_for("the first delivery", Duration::from_secs(30), || {
        hook.events.load(Ordering::Relaxed) > 0
    })
    .await;
    wait_for("every delivery", Duration::from_secs(600), || {
        hook.events.load(Ordering::Relaxed) >= events
    })
    .await;
    let delivered = hook.events.load(Ordering::Relaxed);
    let requests = hook.requests.load(Ordering::Relaxed);
    let seconds =
        (hook.last.load(Ordering::Relaxed) - hook.first.load(Ordering::Relaxed)) as f64 / 1e9;
    println!(
        "{name}: {delivered} events in {requests} requests ({:.1} events/request) in {seconds:.2} s: {:.0} events/s ({:.0} requests/s); stored first at {:.0} events/s; RSS {:.0} MiB",
        delivered as f64 / requests as f64,
        delivered as f64 / seconds,
        requests as f64 / seconds,
        events as f64 / publish_seconds,
        plane.rss_mib()
    );
}

async fn latency(seconds: u64) {
    let hook = Arc::new(Hook::default());
    hook.allow.store(true, Ordering::Relaxed);
    hook.record_latency.store(true, Ordering::Relaxed);
    let (addr, _task) = start_hook(Arc::clone(&hook)).await;
    let plane = start_dataplane(&manifests(addr, ""));
    let http = client();
    let url = format!("{}/topics/orders:publish?{API}", plane.base);
    // Warm up: validation, connections.
    for n in 0..100 {
        publish_one(&http, &url, n).await;
    }
    wait_for("the warm-up", Duration::from_secs(30), || {
        hook.events.load(Ordering::Relaxed) >= 100
    })
    .await;
    hook.latencies.lock().expect("latencies").clear();
    let total = seconds * 1000;
    let mut ticks = tokio::time::interval(Duration::from_millis(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::new();
    for n in 0..total {
        ticks.tick().await;
        let (http, url) = (http.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            publish_one(&http, &url, 1000 + n).await;
            sent.elapsed()
        }));
    }
    let mut publish_times = Vec::with_capacity(tasks.len());
    for task in tasks {
        publish_times.push(task.await.expect("publisher"));
    }
    publish_times.sort_unstable();
    let publish_at = |q: f64| {
        let index = ((publish_times.len() as f64 * q) as usize).min(publish_times.len() - 1);
        publish_times[index].as_secs_f64() * 1000.0
    };
    wait_for("every delivery", Duration::from_secs(30), || {
        hook.latencies.lock().expect("latencies").len() as u64 >= total
    })
    .await;
    let mut latencies = hook.latencies.lock().expect("latencies").clone();
    latencies.sort_unstable();
    let at = |q: f64| {
        let index = ((latencies.len() as f64 * q) as usize).min(latencies.len() - 1);
        latencies[index] as f64 / 1e6
    };
    println!(
        "latency: {} single events at 1,000/s, publish to delivery: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms (the publish call alone: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms)",
        latencies.len(),
        at(0.5),
        at(0.99),
        at(0.999),
        at(1.0),
        publish_at(0.5),
        publish_at(0.99),
        publish_at(0.999),
    );
}

async fn publish_one(http: &reqwest::Client, url: &str, n: u64) {
    let response = http
        .post(url)
        .header("Authorization", format!("SharedAccessKey {KEY}"))
        .header(
            "Content-Type",
            "application/cloudevents+json; charset=utf-8",
        )
        .json(&event(n))
        .send()
        .await
        .expect("publish");
    assert!(response.status().is_success(), "publish failed");
}

async fn memory(events: u64) {
    let hook = Arc::new(Hook::default());
    hook.allow.store(true, Ordering::Relaxed);
    let (addr, task) = start_hook(Arc::clone(&hook)).await;
    let plane = start_dataplane(&manifests(addr, ""));
    let http = client();
    let validated = r#"gridline_push_endpoint_validated{subscription="hook",topic="orders"}"#;
    let deadline = Instant::now() + Duration::from_secs(10);
    while plane.metric(&http, validated).await != Some(1.0) {
        assert!(Instant::now() < deadline, "not validated");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The endpoint goes down: connections are refused from now on.
    task.abort();
    let _ = task.await;
    let before = plane.rss_mib();
    let started = Instant::now();
    publish_all(&plane, events).await;
    let publish_seconds = started.elapsed().as_secs_f64();
    let after = plane.rss_mib();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let later = plane.rss_mib();
    let pending = plane
        .metric(
            &http,
            r#"gridline_queue_pending_events{subscription="hook",topic="orders"}"#,
        )
        .await
        .unwrap_or(f64::NAN);
    let failed = plane
        .metric(
            &http,
            r#"gridline_push_failed_attempts_total{class="connection",subscription="hook",topic="orders"}"#,
        )
        .await
        .unwrap_or(f64::NAN);
    println!(
        "memory: endpoint down, {events} events published at {:.0} events/s and waiting ({pending:.0} pending, {failed:.0} failed attempts so far): RSS {before:.1} MiB before, {after:.1} MiB after publishing, {later:.1} MiB 30 s later",
        events as f64 / publish_seconds,
    );
}

#[tokio::main]
async fn main() {
    let options = options();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("# push: {cores} cores, 1 KiB events, fsync Always, webhook answers 200 at once");
    clock();
    for scenario in &options.scenarios {
        match scenario.as_str() {
            "baseline" => baseline(options.seconds.min(5)).await,
            "batched" => {
                drain(
                    "batched (maxEventsPerBatch 100, preferredBatchSizeInKilobytes 128)",
                    "          maxEventsPerBatch: 100\n          preferredBatchSizeInKilobytes: 128\n",
                    options.events.unwrap_or(300_000) as u64,
                )
                .await;
            }
            "unbatched" => {
                drain(
                    "unbatched (one event per request)",
                    "",
                    options.events.unwrap_or(100_000) as u64,
                )
                .await;
            }
            "latency" => latency(options.seconds).await,
            "memory" => memory(options.memory_events as u64).await,
            other => panic!("unknown scenario {other}"),
        }
    }
}
