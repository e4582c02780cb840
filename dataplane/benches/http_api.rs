//! Load benchmarks of the Event Grid HTTP API against the real binary (release build), next to
//! a bare axum handler doing no work and the disk's raw fsync rate, so each figure reads as a
//! fraction of what this machine can do at all. The load generator runs on the same 2 cores
//! as the server, as the baseline's does.
//!
//! `cargo bench -p gridline-dataplane --bench http_api -- [SCENARIO...] [--seconds N] [--https]`
//! Scenarios: fsync, baseline, publish-batched, publish-single, publish-new-connections,
//! receive-ack, latency, rss.
//! Without a scenario, all but rss run; BENCHMARKS.md records the commands used. With
//! `--https`, each scenario against the data plane runs over plain HTTP and then again over
//! HTTPS (TLS with a certificate from a CA made for the run, the client trusting only that CA),
//! so the two sets of figures come from the same build and the same minutes. Each of those
//! reports the CPU time the data plane and the load generator used per request (or per event).

mod support;

use axum::Router;
use axum::routing::post;
use serde_json::{Value, json};
use std::io::Write;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::{HttpDataplane, TestPki};

const KEY: &str = "bench-key";
const API: &str = "api-version=2024-06-01";
const EVENT_BYTES: usize = 1024;

const SCENARIOS: [&str; 8] = [
    "fsync",
    "baseline",
    "publish-batched",
    "publish-single",
    "publish-new-connections",
    "receive-ack",
    "latency",
    "rss",
];

struct Options {
    scenarios: Vec<String>,
    seconds: u64,
    connections: usize,
    rss_events: usize,
    /// Run each data-plane scenario over HTTPS too, right after plain HTTP.
    https: bool,
}

fn options() -> Options {
    let mut options = Options {
        scenarios: Vec::new(),
        seconds: 10,
        connections: 32,
        rss_events: 10_000_000,
        https: false,
    };
    let mut args = support::Args::from_env();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => options.seconds = args.number(&arg),
            "--connections" => options.connections = args.number(&arg),
            "--rss-events" => options.rss_events = args.number(&arg),
            "--https" => options.https = true,
            other if SCENARIOS.contains(&other) => options.scenarios.push(other.to_string()),
            other => panic!("unknown option or scenario {other} (scenarios: {SCENARIOS:?})"),
        }
    }
    if options.scenarios.is_empty() {
        options.scenarios = SCENARIOS
            .iter()
            .filter(|&&scenario| scenario != "rss")
            .map(|scenario| scenario.to_string())
            .collect();
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

/// How the load generator reaches the data plane.
#[derive(Clone, Copy)]
enum Scheme {
    Http,
    /// TLS on the Namespace's HTTPS listener, certificate from a CA made for the run.
    Https,
}

impl Scheme {
    fn label(self) -> &'static str {
        match self {
            Scheme::Http => "http ",
            Scheme::Https => "https",
        }
    }
}

/// The data plane under test, with a topic `orders` and a queue subscription `bench`, served
/// over `scheme`.
fn start_dataplane(scheme: Scheme) -> HttpDataplane {
    match scheme {
        Scheme::Http => HttpDataplane::start(MANIFESTS, "warn"),
        Scheme::Https => {
            let pki = TestPki::new();
            let manifests = MANIFESTS
                .replacen(
                    "  sasKeys: {secretName: bench-keys}\n",
                    "  sasKeys: {secretName: bench-keys}\n  tls: {secretName: bench-tls}\n",
                    1,
                )
                .replacen(
                    "https: {enabled: false, port: 443}",
                    "https: {enabled: true, port: 443}",
                    1,
                );
            let manifests = format!("{manifests}---\n{}", pki.secret("bench-tls"));
            HttpDataplane::start_https(&manifests, "warn", &pki.ca_pem)
        }
    }
}

/// The load generator's client for `plane` (over HTTPS: trusting only the run's CA).
fn client(plane: &HttpDataplane) -> reqwest::Client {
    plane
        .client()
        .pool_max_idle_per_host(1024)
        .build()
        .expect("http client")
}

fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()
        .expect("http client")
}

/// CPU seconds used while a piece of work ran: by the data plane and by this process (the
/// load generator).
struct CpuUsed {
    dataplane: f64,
    load_generator: f64,
}

impl CpuUsed {
    async fn during<T>(plane: &HttpDataplane, work: impl Future<Output = T>) -> (T, Self) {
        let own = std::process::id();
        let (dataplane, load_generator) = (plane.cpu_seconds(), support::cpu_seconds(own));
        let result = work.await;
        let used = Self {
            dataplane: plane.cpu_seconds() - dataplane,
            load_generator: support::cpu_seconds(own) - load_generator,
        };
        (result, used)
    }

    /// `CPU per <unit>: data plane N µs, load generator N µs`, over `count` units.
    fn per(&self, count: f64, unit: &str) -> String {
        let micros = |seconds: f64| seconds * 1e6 / count.max(1.0);
        format!(
            "CPU per {unit}: data plane {:.0} µs, load generator {:.0} µs",
            micros(self.dataplane),
            micros(self.load_generator)
        )
    }
}

/// Closed loop: `connections` tasks each send `body` to `url` back to back for `seconds`.
/// Returns the requests completed and the seconds it took.
async fn hammer(
    http: reqwest::Client,
    url: String,
    body: Vec<u8>,
    content_type: &'static str,
    connections: usize,
    seconds: u64,
) -> (u64, f64) {
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
    (done.load(Ordering::Relaxed), elapsed)
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

/// Consumers receive and acknowledge until `stored` events are done or `seconds` pass; the
/// events received and the seconds it took.
async fn receive_ack(
    http: &reqwest::Client,
    base: &str,
    connections: usize,
    seconds: u64,
    stored: u64,
) -> (u64, f64) {
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
    let count = received.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    (count, elapsed)
}

/// Open loop at `rate` single-event publishes per second; latency percentiles in ms.
async fn latency(http: &reqwest::Client, base: &str, rate: u64, seconds: u64) -> (f64, f64, f64) {
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
async fn fill(http: &reqwest::Client, base: &str, events: usize, connections: usize) -> f64 {
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

/// Run `scenario` (one of those against the data plane) over `scheme`, printing its figures.
async fn against_dataplane(scenario: &str, scheme: Scheme, options: &Options) {
    let plane = start_dataplane(scheme);
    let http = client(&plane);
    let url = format!("{}/topics/orders:publish?{API}", plane.base);
    let over = scheme.label();
    match scenario {
        "publish-batched" => {
            let work = hammer(
                http,
                url,
                batch_body(0, 100),
                BATCH_TYPE,
                options.connections,
                options.seconds,
            );
            let ((requests, elapsed), cpu) = CpuUsed::during(&plane, work).await;
            let rate = requests as f64 / elapsed;
            println!(
                "{over} publish, batches of 100: {rate:.0} requests/s = {:.0} events/s (RSS after: {:.0} MiB); {}",
                rate * 100.0,
                plane.rss_mib(),
                cpu.per(requests as f64 * 100.0, "event")
            );
        }
        "publish-single" => {
            let single = serde_json::to_vec(&event(0)).expect("json");
            let work = hammer(
                http,
                url,
                single,
                SINGLE_TYPE,
                options.connections,
                options.seconds,
            );
            let ((requests, elapsed), cpu) = CpuUsed::during(&plane, work).await;
            println!(
                "{over} publish, single events: {:.0} requests/s; {}",
                requests as f64 / elapsed,
                cpu.per(requests as f64, "request")
            );
        }
        "publish-new-connections" => {
            // No idle connection is kept: each publish opens its own (and over HTTPS does a
            // full handshake), as a client that does not reuse connections would.
            let fresh = plane
                .client()
                .pool_max_idle_per_host(0)
                .build()
                .expect("http client");
            let single = serde_json::to_vec(&event(0)).expect("json");
            let work = hammer(
                fresh,
                url,
                single,
                SINGLE_TYPE,
                options.connections,
                options.seconds,
            );
            let ((requests, elapsed), cpu) = CpuUsed::during(&plane, work).await;
            println!(
                "{over} publish, single events, a new connection each: {:.0} requests/s; {}",
                requests as f64 / elapsed,
                cpu.per(requests as f64, "request")
            );
        }
        "receive-ack" => {
            // More than the consumers can take in the time given, so they never run dry.
            let stored = (options.seconds as usize * 300_000).min(6_000_000);
            fill(&http, &plane.base, stored, options.connections).await;
            // Write back the fill's dirty pages first, so the figure is the consumers' rate
            // rather than their share of the disk with the kernel's writeback.
            let _ = Command::new("sync").status();
            let consumers = options.connections / 4 + 1;
            let work = receive_ack(
                &http,
                &plane.base,
                consumers,
                options.seconds,
                stored as u64,
            );
            let ((events, elapsed), cpu) = CpuUsed::during(&plane, work).await;
            println!(
                "{over} receive + acknowledge, batches of 100 ({stored} stored first, {consumers} consumers): {:.0} events/s; {}",
                events as f64 / elapsed,
                cpu.per(events as f64, "event")
            );
        }
        "latency" => {
            let rate = 1000;
            let work = latency(&http, &plane.base, rate, options.seconds);
            let ((p50, p99, p999), cpu) = CpuUsed::during(&plane, work).await;
            println!(
                "{over} publish latency at 1,000 single events/s: p50 {p50:.2} ms, p99 {p99:.2} ms, p99.9 {p999:.2} ms; {}",
                cpu.per((rate * options.seconds) as f64, "request")
            );
        }
        "rss" => {
            let rate = fill(&http, &plane.base, options.rss_events, options.connections).await;
            std::thread::sleep(Duration::from_secs(2));
            println!(
                "{over} {} events stored ({rate:.0} events/s while filling): RSS {:.0} MiB",
                options.rss_events,
                plane.rss_mib()
            );
        }
        other => panic!("unknown scenario {other}"),
    }
}

#[tokio::main]
async fn main() {
    let options = options();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "# http_api: {cores} cores, {} connections, {} s per scenario, 1 KiB events, fsync Always{}",
        options.connections,
        options.seconds,
        if options.https {
            ", each scenario over http then https"
        } else {
            ""
        }
    );
    let schemes: &[Scheme] = if options.https {
        &[Scheme::Http, Scheme::Https]
    } else {
        &[Scheme::Http]
    };
    for scenario in &options.scenarios {
        match scenario.as_str() {
            "fsync" => println!(
                "disk raw fsync (4 KiB write + fdatasync, one file): {:.0} fsync/s",
                fsync_rate()
            ),
            "baseline" => {
                let base = baseline_server().await;
                let url = format!("{base}/topics/orders:publish?{API}");
                let single = serde_json::to_vec(&event(0)).expect("json");
                let (batched, elapsed) = hammer(
                    plain_client(),
                    url.clone(),
                    batch_body(0, 100),
                    BATCH_TYPE,
                    options.connections,
                    options.seconds,
                )
                .await;
                let batched = batched as f64 / elapsed;
                let (one, elapsed) = hammer(
                    plain_client(),
                    url,
                    single,
                    SINGLE_TYPE,
                    options.connections,
                    options.seconds,
                )
                .await;
                let one = one as f64 / elapsed;
                println!(
                    "bare axum handler, 100-event bodies: {batched:.0} requests/s = {:.0} events/s",
                    batched * 100.0
                );
                println!("bare axum handler, 1-event bodies: {one:.0} requests/s");
            }
            scenario => {
                for &scheme in schemes {
                    against_dataplane(scenario, scheme, &options).await;
                }
            }
        }
    }
}
