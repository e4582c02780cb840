//! What crossing pods costs: local-mode pods (the real binary, release build) sharing a
//! cluster directory on this machine, each scenario measured with its clients on one pod and
//! spread over pods in the same run, a fresh set of processes for each measurement. Pods on
//! one machine add no cores, so the ratio across/one is the figure: it is what the hop (the
//! peer link, forwarding, acknowledgement across it) costs.
//!
//! `cargo bench -p gridline-dataplane --bench cluster -- [SCENARIO...] [--seconds N]`
//! Scenarios (default: all):
//! - `1to1`: MQTT 3.1.1 QoS 1, one publisher and one subscriber on pod-0 of a 2-pod cluster,
//!   then the subscriber on pod-1: messages/s delivered, loss after a drain, broker CPU
//!   (every pod's utime + stime) per delivered message.
//! - `fanout`: 1 publisher (pod-0) to 100 subscribers of one topic, QoS 1, 3-pod cluster: all
//!   subscribers on pod-0, then spread over the 3 pods: deliveries/s, loss, CPU.
//! - `takeover`: an MQTT 5 persistent session (clean start false, expiry 3600, one
//!   subscription) connected again with the same client id, 200 times: on the same pod, then
//!   alternating pod-0 and pod-1; time from writing CONNECT to reading CONNACK.
//! - `receive`: 3,000 events published to one pod, then 300 receives (maxEvents 10) each
//!   acknowledged, on pod-0: with the events on pod-0, then on pod-1 (gathered from the peer).
//!
//! `--seconds` (default 5) is each throughput phase's length; the whole run takes about two
//! minutes. BENCHMARKS.md records the commands used.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::Semaphore;

mod support;
use support::{Process, cpu_seconds, expect, frame, remaining_length, session, string, subscribe};

const SCENARIOS: [&str; 4] = ["1to1", "fanout", "takeover", "receive"];
const TOPIC: &str = "bench/t";
const PAYLOAD_BYTES: usize = 100;
/// QoS 1 messages the publisher keeps unacknowledged (Gridline's receive maximum).
const WINDOW: usize = 100;
/// Publishes written per socket write when the window allows.
const BATCH: usize = 64;
/// Sessions per Client (`maximumClientSessionsPerAuthenticationName` allows 100, across pods).
const SESSIONS_PER_CLIENT: usize = 100;
const TAKEOVERS: usize = 200;
const RECEIVES: usize = 300;
const RECEIVE_MAX: usize = 10;
const SAS_KEY: &str = "bench-key";
const API: &str = "api-version=2024-06-01";

// ---------------------------------------------------------------------------------------------
// Pods

/// The broker and the MQTT access model of mqtt_peers, with the events part (SAS keys, Topic
/// `orders`, queue subscription `all-orders`) when `events`.
fn manifests(clients: usize, events: bool) -> String {
    let mut yaml = String::from(
        "apiVersion: gridline.dev/v1alpha1
kind: Namespace
metadata: {name: bench}
spec:
  topicSpacesConfiguration:
    state: Enabled
    maximumClientSessionsPerAuthenticationName: 100
    maximumMessagesPerSecondPerConnection: 10000000
  listeners:
    mqttPlaintext: {port: 1883, insecureUsernameAuthentication: true}
    mqttTls: {enabled: false, port: 8883}
    https: {enabled: false, port: 443}
    http: {port: 8080}
---
apiVersion: gridline.dev/v1alpha1
kind: TopicSpace
metadata: {name: bench}
spec:
  namespaceRef: {name: bench}
  topicTemplates: ['bench/#']
---
apiVersion: gridline.dev/v1alpha1
kind: PermissionBinding
metadata: {name: all-publish}
spec: {namespaceRef: {name: bench}, clientGroupName: $all, topicSpaceName: bench, permission: Publisher}
---
apiVersion: gridline.dev/v1alpha1
kind: PermissionBinding
metadata: {name: all-subscribe}
spec: {namespaceRef: {name: bench}, clientGroupName: $all, topicSpaceName: bench, permission: Subscriber}
",
    );
    for n in 0..clients {
        yaml.push_str(&format!(
            "---\napiVersion: gridline.dev/v1alpha1\nkind: Client\nmetadata: {{name: bench-{n}}}\nspec: {{namespaceRef: {{name: bench}}}}\n"
        ));
    }
    if events {
        yaml = yaml.replace(
            "spec:\n  topicSpacesConfiguration:",
            "spec:\n  sasKeys: {secretName: bench-keys}\n  topicSpacesConfiguration:",
        );
        yaml.push_str(&format!(
            "---
apiVersion: v1
kind: Secret
metadata: {{name: bench-keys}}
stringData: {{key1: {SAS_KEY}}}
---
apiVersion: gridline.dev/v1alpha1
kind: Topic
metadata: {{name: orders}}
spec: {{namespaceRef: {{name: bench}}, eventRetentionInDays: 1}}
---
apiVersion: gridline.dev/v1alpha1
kind: EventSubscription
metadata: {{name: all-orders}}
spec:
  topicRef: {{name: orders}}
  deliveryConfiguration:
    deliveryMode: Queue
    queue: {{receiveLockDurationInSeconds: 300}}
"
        ));
    }
    yaml
}

fn username(index: usize) -> String {
    format!("bench-{}", index / SESSIONS_PER_CLIENT)
}

struct Pod {
    process: Process,
    http: String,
    mqtt: SocketAddr,
}

/// `n` local-mode pods, `pod-0` to `pod-(n-1)`, on one manifests folder and one cluster
/// directory (all in a temporary folder); killed when dropped.
struct Cluster {
    pods: Vec<Pod>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Start them and wait until each counts `n` members, has a link up to every other pod
    /// and answers `/readyz`.
    async fn start(n: usize, sessions: usize, events: bool) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let manifests_dir = dir.path().join("manifests");
        std::fs::create_dir_all(&manifests_dir)?;
        std::fs::write(
            manifests_dir.join("bench.yaml"),
            manifests(sessions.div_ceil(SESSIONS_PER_CLIENT), events),
        )?;
        let cluster_dir = dir.path().join("cluster");
        let mut pods = Vec::new();
        for index in 0..n {
            pods.push(start_pod(dir.path(), &manifests_dir, &cluster_dir, index));
        }
        let cluster = Self { pods, _dir: dir };
        let http = reqwest::Client::new();
        for (index, pod) in cluster.pods.iter().enumerate() {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if joined(&http, pod, index, n).await {
                    break;
                }
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "pod-{index} did not join in 30 s"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(cluster)
    }

    /// `counter`'s samples sent out (`direction="out"`) by every pod, summed.
    async fn sent(&self, http: &reqwest::Client, counter: &str) -> anyhow::Result<f64> {
        let mut total = 0.0;
        for pod in &self.pods {
            let text = http.get(format!("{}/metrics", pod.http)).send().await?;
            total += text
                .text()
                .await?
                .lines()
                .filter(|l| l.starts_with(counter) && l.contains("direction=\"out\""))
                .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
                .sum::<f64>();
        }
        Ok(total)
    }

    /// CPU time (user + system) every pod has used so far, summed, seconds.
    fn cpu_seconds(&self) -> f64 {
        self.pods
            .iter()
            .map(|pod| cpu_seconds(pod.process.pid()))
            .sum()
    }
}

fn start_pod(root: &Path, manifests: &Path, cluster_dir: &Path, index: usize) -> Pod {
    let cluster_dir = cluster_dir.display().to_string();
    let pod_name = format!("pod-{index}");
    let mut process = Process::spawn(
        manifests,
        &root.join(format!("data-{index}")),
        "error",
        &[
            "--cluster-dir",
            &cluster_dir,
            "--pod-name",
            &pod_name,
            "--peer-addr",
            "127.0.0.1:0",
            "--mqtts-addr",
            "127.0.0.1:0",
            "--https-addr",
            "127.0.0.1:0",
        ],
    );
    let http = format!(
        "http://{}",
        process.announced("http", Duration::from_secs(60))
    );
    let mqtt = process.announced("mqtt", Duration::from_secs(60));
    Pod {
        process,
        http,
        mqtt,
    }
}

/// Whether `pod` (number `index` of `n`) counts `n` members, has a link up to every other pod
/// and is ready.
async fn joined(http: &reqwest::Client, pod: &Pod, index: usize, n: usize) -> bool {
    let get = |path: &str| http.get(format!("{}{path}", pod.http)).send();
    let Ok(metrics) = get("/metrics").await else {
        return false;
    };
    let text = metrics.text().await.unwrap_or_default();
    let value = |sample: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    let links = (0..n)
        .filter(|other| *other != index)
        .all(|other| value(&format!("gridline_peer_links{{peer=\"pod-{other}\"}}")) == Some(1.0));
    links
        && value("gridline_cluster_members") == Some(n as f64)
        && get("/readyz")
            .await
            .is_ok_and(|response| response.status().is_success())
}

// ---------------------------------------------------------------------------------------------
// MQTT load (QoS 1, 3.1.1): a windowed publisher and counting subscribers

#[derive(Default)]
struct Counters {
    published: AtomicU64,
    acked: AtomicU64,
    received: AtomicU64,
}

/// Counts the PUBLISH packets arriving and acknowledges each, until `stop` (then returns).
async fn subscriber(mut stream: TcpStream, counters: Arc<Counters>, stop: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 256 * 1024];
    let mut filled = 0;
    let mut acks = Vec::with_capacity(4096);
    loop {
        let read =
            tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf[filled..]));
        let n = match read.await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => n,
            Err(_) if stop.load(Ordering::Relaxed) => break,
            Err(_) => continue,
        };
        filled += n;
        let (mut at, mut count) = (0, 0);
        while let Some((first, start, end)) = frame(&buf[at..filled]) {
            let (start, end) = (at + start, at + end);
            if first >> 4 == 3 {
                count += 1;
                if (first >> 1) & 3 > 0 {
                    let topic_len = u16::from_be_bytes([buf[start], buf[start + 1]]) as usize;
                    let id = start + 2 + topic_len;
                    acks.extend_from_slice(&[0x40, 2, buf[id], buf[id + 1]]);
                }
            }
            at = end;
        }
        buf.copy_within(at..filled, 0);
        filled -= at;
        counters.received.fetch_add(count, Ordering::Relaxed);
        if !acks.is_empty() {
            if stream.write_all(&acks).await.is_err() {
                break;
            }
            acks.clear();
        }
    }
}

/// Reads PUBACKs, giving their window permits back and counting them.
async fn ack_reader(mut reader: OwnedReadHalf, window: Arc<Semaphore>, counters: Arc<Counters>) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut filled = 0;
    loop {
        let n = match reader.read(&mut buf[filled..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        filled += n;
        let (mut at, mut acked) = (0, 0);
        while let Some((first, _, end)) = frame(&buf[at..filled]) {
            if first >> 4 == 4 {
                acked += 1;
            }
            at += end;
        }
        buf.copy_within(at..filled, 0);
        filled -= at;
        counters.acked.fetch_add(acked as u64, Ordering::Relaxed);
        window.add_permits(acked);
    }
}

/// Publishes QoS 1 as fast as the window allows until `stop`, then waits (10 s at most) for
/// the outstanding acknowledgements.
async fn publisher(stream: TcpStream, counters: Arc<Counters>, stop: Arc<AtomicBool>) {
    let (reader, mut writer) = stream.into_split();
    let window = Arc::new(Semaphore::new(WINDOW));
    let acks = tokio::spawn(ack_reader(reader, window.clone(), counters.clone()));
    let mut packet_id: u16 = 0;
    let mut out = Vec::with_capacity(BATCH * 128);
    while !stop.load(Ordering::Relaxed) {
        let Ok(Ok(permit)) =
            tokio::time::timeout(Duration::from_millis(100), window.acquire()).await
        else {
            continue;
        };
        permit.forget();
        let mut count = 1;
        while count < BATCH
            && let Ok(permit) = window.try_acquire()
        {
            permit.forget();
            count += 1;
        }
        for _ in 0..count {
            packet_id = packet_id.wrapping_add(1).max(1);
            out.push(0x32);
            remaining_length(&mut out, 2 + TOPIC.len() + 2 + PAYLOAD_BYTES);
            string(&mut out, TOPIC);
            out.extend_from_slice(&packet_id.to_be_bytes());
            out.extend_from_slice(&[b'x'; PAYLOAD_BYTES]);
        }
        if writer.write_all(&out).await.is_err() {
            break;
        }
        out.clear();
        counters
            .published
            .fetch_add(count as u64, Ordering::Relaxed);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while window.available_permits() < WINDOW && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    acks.abort();
}

struct Throughput {
    /// PUBLISH packets the subscribers read during the timed window, per second.
    delivered_per_second: f64,
    /// Acknowledged publishes × subscribers − PUBLISH packets read by the end of the drain
    /// (negative: duplicates).
    lost: i64,
    /// Every pod's CPU from the first publish to the end of the drain, per delivered message.
    cpu_micros_per_message: f64,
    /// Peer link frames and bytes (before TLS) sent over the same time, per delivered message.
    link_per_message: (f64, f64),
}

/// One publisher on pod-0 and a subscriber on `subscriber_pods[i]` for each `i`, QoS 1 for
/// `seconds` on a fresh cluster of `pods`.
async fn throughput(
    pods: usize,
    subscriber_pods: &[usize],
    seconds: u64,
) -> anyhow::Result<Throughput> {
    let subscribers = subscriber_pods.len();
    let cluster = Cluster::start(pods, subscribers + 1, false).await?;
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (s, &pod) in subscriber_pods.iter().enumerate() {
        // Its SUBACK waits until the other pods know the subscription.
        let (addr, name) = (cluster.pods[pod].mqtt, format!("sub-{s}"));
        let stream = session(addr, &name, &username(s), Some((TOPIC, 1))).await?;
        tasks.push(tokio::spawn(subscriber(
            stream,
            counters.clone(),
            stop.clone(),
        )));
    }
    let stream = session(cluster.pods[0].mqtt, "pub-0", &username(subscribers), None).await?;
    let publish_stop = Arc::new(AtomicBool::new(false));
    let http = reqwest::Client::new();
    let link = |c| cluster.sent(&http, c);
    let link_before = (
        link("gridline_peer_frames_total").await?,
        link("gridline_peer_bytes_total").await?,
    );
    let cpu_before = cluster.cpu_seconds();
    let started = Instant::now();
    let publishing = tokio::spawn(publisher(stream, counters.clone(), publish_stop.clone()));
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let received = counters.received.load(Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    publish_stop.store(true, Ordering::Relaxed);
    publishing.await?;
    // Drain: until every acknowledged message reached every subscriber, or 5 s without
    // progress.
    let expected = counters.acked.load(Ordering::Relaxed) * subscribers as u64;
    let mut last = (counters.received.load(Ordering::Relaxed), Instant::now());
    while last.0 < expected && last.1.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = counters.received.load(Ordering::Relaxed);
        if now != last.0 {
            last = (now, Instant::now());
        }
    }
    let cpu = cluster.cpu_seconds() - cpu_before;
    let link_after = (
        link("gridline_peer_frames_total").await?,
        link("gridline_peer_bytes_total").await?,
    );
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await?;
    }
    let final_received = counters.received.load(Ordering::Relaxed);
    Ok(Throughput {
        delivered_per_second: received as f64 / elapsed,
        lost: expected as i64 - final_received as i64,
        cpu_micros_per_message: cpu * 1e6 / final_received.max(1) as f64,
        link_per_message: (
            (link_after.0 - link_before.0) / final_received.max(1) as f64,
            (link_after.1 - link_before.1) / final_received.max(1) as f64,
        ),
    })
}

fn describe(t: &Throughput, unit: &str) -> String {
    format!(
        "{:.0} {unit}/s, lost {}, {:.1} µs broker CPU and {:.3} link frames ({:.0} B) per delivery",
        t.delivered_per_second,
        t.lost,
        t.cpu_micros_per_message,
        t.link_per_message.0,
        t.link_per_message.1
    )
}

/// A row comparing `one` (clients on one pod) with `across` (spread over pods).
fn ratio_row(scenario: &str, one: Throughput, across: Throughput, unit: &str) -> Row {
    let ratio = across.delivered_per_second / one.delivered_per_second.max(1e-9);
    Row {
        scenario: scenario.to_string(),
        one_pod: describe(&one, unit),
        across: describe(&across, unit),
        figure: format!("across/one {ratio:.2}"),
        target: "≥ 0.5".to_string(),
        met: ratio >= 0.5 && one.lost <= 0 && across.lost <= 0,
    }
}

// ---------------------------------------------------------------------------------------------
// Session take-over

/// MQTT 5 CONNECT as `username`, clean start false, Session Expiry Interval 3600.
fn persistent_connect(client_id: &str, username: &str) -> Vec<u8> {
    let mut body = Vec::new();
    string(&mut body, "MQTT");
    body.push(5);
    body.push(0b1000_0000); // username, no clean start
    body.extend_from_slice(&60u16.to_be_bytes());
    body.extend_from_slice(&[5, 0x11]); // properties: Session Expiry Interval
    body.extend_from_slice(&3600u32.to_be_bytes());
    string(&mut body, client_id);
    string(&mut body, username);
    let mut frame = vec![0x10];
    remaining_length(&mut frame, body.len());
    frame.extend_from_slice(&body);
    frame
}

struct Connected {
    stream: TcpStream,
    elapsed: Duration,
    session_present: bool,
}

/// Open a connection to `addr`, then time CONNECT to CONNACK of the persistent session.
async fn connect_persistent(addr: SocketAddr) -> anyhow::Result<Connected> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut buf = Vec::new();
    let started = Instant::now();
    stream
        .write_all(&persistent_connect("moving", &username(0)))
        .await?;
    let connack =
        tokio::time::timeout(Duration::from_secs(10), expect(&mut stream, 2, &mut buf)).await??;
    let elapsed = started.elapsed();
    anyhow::ensure!(
        connack.get(1) == Some(&0),
        "CONNACK refused: {:#04x}",
        connack.get(1).copied().unwrap_or(0xff)
    );
    Ok(Connected {
        stream,
        elapsed,
        session_present: connack.first().is_some_and(|flags| flags & 1 == 1),
    })
}

struct Latencies {
    samples: Vec<Duration>,
}

impl Latencies {
    fn quantile(&self, q: f64) -> f64 {
        let mut sorted = self.samples.clone();
        sorted.sort_unstable();
        let at = ((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1));
        sorted.get(at).map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    }

    fn describe(&self) -> String {
        format!(
            "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.quantile(0.5),
            self.quantile(0.99),
            self.quantile(1.0)
        )
    }
}

/// The session connected (and subscribed) on pod-0, then connected again TAKEOVERS times, on
/// `pods[i % pods.len()]` for the i-th time; each CONNECT to CONNACK, and how many CONNACKs
/// said the session was present.
async fn takeovers(pods: &[usize]) -> anyhow::Result<(Latencies, usize)> {
    let cluster = Cluster::start(2, 1, false).await?;
    let first = connect_persistent(cluster.pods[0].mqtt).await?;
    let mut stream = first.stream;
    stream.write_all(&subscribe(5, TOPIC, 1)).await?;
    let suback = expect(&mut stream, 9, &mut Vec::new()).await?;
    anyhow::ensure!(suback.last().is_some_and(|&c| c < 0x80), "SUBACK refused");
    let mut samples = Vec::with_capacity(TAKEOVERS);
    let mut present = 0;
    for i in 1..=TAKEOVERS {
        let pod = &cluster.pods[pods[i % pods.len()]];
        let next = connect_persistent(pod.mqtt).await?;
        samples.push(next.elapsed);
        present += usize::from(next.session_present);
        // The previous connection was ended with DISCONNECT 0x8E; close our side.
        stream = next.stream;
    }
    drop(stream);
    Ok((Latencies { samples }, present))
}

// ---------------------------------------------------------------------------------------------
// Receive gathering from a peer

fn post(http: &reqwest::Client, pod: &Pod, path: &str) -> reqwest::RequestBuilder {
    http.post(format!("{}{path}", pod.http))
        .header("authorization", format!("SharedAccessKey {SAS_KEY}"))
        .timeout(Duration::from_secs(30))
}

async fn json_of(request: reqwest::RequestBuilder) -> anyhow::Result<serde_json::Value> {
    let response = request.send().await?;
    let status = response.status();
    let text = response.text().await?;
    anyhow::ensure!(status.is_success(), "{status}: {text}");
    Ok(serde_json::from_str(&text)?)
}

struct Receives {
    receive: Latencies,
    acknowledge: Latencies,
    events: usize,
}

/// RECEIVES × RECEIVE_MAX events published to `publish_pod` of a fresh 2-pod cluster, then
/// RECEIVES receives on pod-0, each acknowledged there.
async fn receives(publish_pod: usize) -> anyhow::Result<Receives> {
    let cluster = Cluster::start(2, 1, true).await?;
    let http = reqwest::Client::new();
    let total = RECEIVES * RECEIVE_MAX;
    for first in (0..total).step_by(100) {
        let batch: Vec<_> = (first..(first + 100).min(total))
            .map(|n| {
                serde_json::json!({
                    "specversion": "1.0", "id": format!("e-{n}"), "source": "/bench/cluster",
                    "type": "com.example.order", "data": {"n": n},
                })
            })
            .collect();
        json_of(
            post(
                &http,
                &cluster.pods[publish_pod],
                &format!("/topics/orders:publish?{API}"),
            )
            .header(
                "content-type",
                "application/cloudevents-batch+json; charset=utf-8",
            )
            .body(serde_json::Value::Array(batch).to_string()),
        )
        .await?;
    }
    let pod = &cluster.pods[0];
    let subscription = "/topics/orders/eventsubscriptions/all-orders";
    let (mut receive, mut acknowledge) = (Vec::new(), Vec::new());
    let mut events = 0;
    for _ in 0..RECEIVES {
        let started = Instant::now();
        let body = json_of(post(
            &http,
            pod,
            &format!("{subscription}:receive?{API}&maxEvents={RECEIVE_MAX}&maxWaitTime=10"),
        ))
        .await?;
        receive.push(started.elapsed());
        let tokens: Vec<String> = body["value"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| {
                e["brokerProperties"]["lockToken"]
                    .as_str()
                    .map(String::from)
            })
            .collect();
        anyhow::ensure!(!tokens.is_empty(), "a receive returned no event");
        events += tokens.len();
        let started = Instant::now();
        let body = json_of(
            post(&http, pod, &format!("{subscription}:acknowledge?{API}"))
                .json(&serde_json::json!({ "lockTokens": tokens })),
        )
        .await?;
        acknowledge.push(started.elapsed());
        let succeeded = body["succeededLockTokens"].as_array().map_or(0, Vec::len);
        anyhow::ensure!(succeeded == tokens.len(), "acknowledge failed: {body}");
    }
    Ok(Receives {
        receive: Latencies { samples: receive },
        acknowledge: Latencies {
            samples: acknowledge,
        },
        events,
    })
}

fn describe_receives(r: &Receives) -> String {
    format!(
        "receive {}; acknowledge {}; {:.1} events per receive",
        r.receive.describe(),
        r.acknowledge.describe(),
        r.events as f64 / RECEIVES as f64
    )
}

// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Row {
    scenario: String,
    one_pod: String,
    across: String,
    figure: String,
    target: String,
    met: bool,
}

async fn scenario(name: &str, seconds: u64) -> anyhow::Result<Row> {
    Ok(match name {
        "1to1" => ratio_row(
            "1to1 QoS 1, 2 pods",
            throughput(2, &[0], seconds).await?,
            throughput(2, &[1], seconds).await?,
            "msg",
        ),
        "fanout" => {
            let spread: Vec<usize> = (0..100).map(|s| s % 3).collect();
            ratio_row(
                "fan-out 1→100 QoS 1, 3 pods",
                throughput(3, &[0; 100], seconds).await?,
                throughput(3, &spread, seconds).await?,
                "deliveries",
            )
        }
        "takeover" => {
            let (same, same_present) = takeovers(&[0]).await?;
            let (across, across_present) = takeovers(&[0, 1]).await?;
            let p99 = across.quantile(0.99);
            Row {
                scenario: format!("session take-over ×{TAKEOVERS}, 2 pods"),
                one_pod: format!(
                    "{} (session present {same_present}/{TAKEOVERS})",
                    same.describe()
                ),
                across: format!(
                    "{} (session present {across_present}/{TAKEOVERS})",
                    across.describe()
                ),
                figure: format!("across p99 {p99:.2} ms"),
                target: "p99 < 50 ms".to_string(),
                met: p99 < 50.0 && across_present == TAKEOVERS,
            }
        }
        "receive" => {
            let local = receives(0).await?;
            let peer = receives(1).await?;
            let p99 = peer.receive.quantile(0.99);
            Row {
                scenario: format!(
                    "receive (maxEvents {RECEIVE_MAX}) + acknowledge on pod-0 ×{RECEIVES}, 2 pods"
                ),
                one_pod: format!("events on pod-0: {}", describe_receives(&local)),
                across: format!("events on pod-1: {}", describe_receives(&peer)),
                figure: format!("across receive p99 {p99:.2} ms"),
                target: "p99 < 20 ms".to_string(),
                met: p99 < 20.0,
            }
        }
        other => unreachable!("scenario {other}"),
    })
}

fn main() {
    let mut seconds = 5u64;
    let mut scenarios = Vec::new();
    let words: Vec<String> = support::Args::from_env().collect();
    let mut args = support::Args::from_env();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => seconds = args.number("--seconds"),
            name if SCENARIOS.contains(&name) => scenarios.push(name.to_string()),
            other => panic!("unknown argument {other} (scenarios: {SCENARIOS:?}, --seconds N)"),
        }
    }
    if scenarios.is_empty() {
        scenarios = SCENARIOS.map(String::from).to_vec();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "# cargo bench -p gridline-dataplane --bench cluster -- {}",
        words.join(" ")
    );
    println!(
        "# gridline-dataplane {} (release), local-mode pods on 127.0.0.1, {cores} cores shared with the load tool; {seconds} s per throughput phase, {PAYLOAD_BYTES}-byte payloads, QoS 1 window {WINDOW}; a fresh cluster per measurement",
        env!("CARGO_PKG_VERSION")
    );
    let mut rows = Vec::new();
    for name in &scenarios {
        // Bounded: a phase that hangs ends its scenario (its pods are killed on drop).
        let limit = Duration::from_secs(120 + 4 * seconds);
        let outcome =
            runtime.block_on(async { tokio::time::timeout(limit, scenario(name, seconds)).await });
        let row = outcome
            .map_err(|_| anyhow::anyhow!("did not finish within {} s", limit.as_secs()))
            .and_then(|result| result)
            .unwrap_or_else(|error| Row {
                scenario: name.clone(),
                one_pod: format!("failed: {error:#}"),
                ..Row::default()
            });
        println!(
            "{}: one pod: {}; across pods: {}; {} ({})",
            row.scenario, row.one_pod, row.across, row.figure, row.target
        );
        rows.push(row);
    }
    println!("\n| scenario | clients on one pod | clients across pods | figure | target | met |");
    println!("|---|---|---|---|---|---|");
    for row in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            row.scenario,
            row.one_pod,
            row.across,
            row.figure,
            row.target,
            if row.met { "yes" } else { "no" }
        );
    }
}
