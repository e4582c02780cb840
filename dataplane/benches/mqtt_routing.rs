//! MQTT messages routed into a namespace Topic (mqtt/README.md "Routing"): publishers of
//! 3.1.1 QoS 1 (or 0) messages to a Namespace that routes every message into a Topic, each
//! keeping 100 QoS 1 messages unacknowledged (our receive maximum). Prints PUBACKs per second
//! and routed events appended per second (`gridline_mqtt_routed_events_total`), with the drops.
//!
//! `cargo bench -p gridline-dataplane --bench mqtt_routing -- [--seconds N] [--publishers N]
//! [--qos 0|1] [--binary PATH]` (`--binary`: another build of `gridline-dataplane`, to compare
//! two builds in one session; the store's fsync policy is `Always`, the example's).

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::{connect, frame, remaining_length, string};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

const PAYLOAD_BYTES: usize = 100;
/// QoS 1 messages a publisher keeps unacknowledged (Gridline's receive maximum).
const WINDOW: usize = 100;
/// Publishes written per socket write when the window allows.
const BATCH: usize = 64;

const MANIFESTS: &str = "apiVersion: gridline.dev/v1alpha1
kind: Namespace
metadata: {name: bench}
spec:
  topicSpacesConfiguration:
    state: Enabled
    maximumClientSessionsPerAuthenticationName: 100
    maximumMessagesPerSecondPerConnection: 10000000
    routeTopicRef: {name: telemetry}
  storage: {fsyncPolicy: Always}
  listeners:
    mqttPlaintext: {port: 1883, insecureUsernameAuthentication: true}
    mqttTls: {enabled: false, port: 8883}
    https: {enabled: false, port: 443}
    http: {port: 8080}
---
apiVersion: gridline.dev/v1alpha1
kind: Topic
metadata: {name: telemetry}
spec: {namespaceRef: {name: bench}, eventRetentionInDays: 1}
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
kind: Client
metadata: {name: bench-0}
spec: {namespaceRef: {name: bench}}
";

struct Options {
    seconds: u64,
    publishers: usize,
    qos: u8,
    binary: String,
}

fn options() -> Options {
    let mut options = Options {
        seconds: 10,
        publishers: 4,
        qos: 1,
        binary: env!("CARGO_BIN_EXE_gridline-dataplane").to_string(),
    };
    let mut args = support::Args::from_env();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => options.seconds = args.number("--seconds"),
            "--publishers" => options.publishers = args.number("--publishers"),
            "--qos" => options.qos = args.number("--qos"),
            "--binary" => options.binary = args.next().expect("--binary PATH"),
            other => panic!("unknown argument {other}"),
        }
    }
    options
}

/// The data plane on [`MANIFESTS`], killed when dropped.
struct Dataplane {
    child: Child,
    mqtt: SocketAddr,
    http: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Dataplane {
    fn start(binary: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let manifests = dir.path().join("manifests");
        std::fs::create_dir_all(&manifests).expect("manifests dir");
        std::fs::write(manifests.join("bench.yaml"), MANIFESTS).expect("manifests");
        let mut child = Command::new(binary)
            .arg("run")
            .arg("--manifests")
            .arg(&manifests)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--http-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0"])
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the data plane");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let (mut mqtt, mut http) = (None, None);
        while mqtt.is_none() || http.is_none() {
            let line = lines
                .next()
                .expect("the data plane announces its listeners")
                .expect("stdout");
            if let Some((scheme, addr)) = line.split_once(" listening on ") {
                let addr: SocketAddr = addr.parse().expect("an address");
                match scheme {
                    "mqtt" => mqtt = Some(addr),
                    "http" => http = Some(addr),
                    _ => {}
                }
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Self {
            child,
            mqtt: mqtt.unwrap(),
            http: http.unwrap(),
            _dir: dir,
        }
    }

    async fn metric(&self, http: &reqwest::Client, sample: &str) -> f64 {
        let text = http
            .get(format!("http://{}/metrics", self.http))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A 3.1.1 PUBLISH on `bench/t` (packet id at QoS 1).
fn publish(out: &mut Vec<u8>, qos: u8, packet_id: u16) {
    let topic = "bench/t";
    out.push(0x30 | (qos << 1));
    let id_len = if qos > 0 { 2 } else { 0 };
    remaining_length(out, 2 + topic.len() + id_len + PAYLOAD_BYTES);
    string(out, topic);
    if qos > 0 {
        out.extend_from_slice(&packet_id.to_be_bytes());
    }
    out.extend_from_slice(&[b'x'; PAYLOAD_BYTES]);
}

/// One publisher until `stop`; counts its PUBACKs into `acknowledged`.
async fn publisher(
    addr: SocketAddr,
    index: usize,
    qos: u8,
    acknowledged: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream
        .write_all(&connect(4, &format!("router-{index}"), "bench-0", 60))
        .await
        .expect("CONNECT");
    let mut connack = [0u8; 4];
    stream.read_exact(&mut connack).await.expect("CONNACK");
    assert_eq!(connack[3], 0, "CONNACK refused");
    let (mut reader, mut writer) = stream.into_split();
    let window = Arc::new(Semaphore::new(WINDOW));
    let acks = tokio::spawn({
        let window = window.clone();
        async move {
            let mut buf = Vec::with_capacity(64 * 1024);
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                let Ok(n) = reader.read(&mut chunk).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
                let mut at = 0;
                let mut acked = 0;
                while let Some((first, _, end)) = frame(&buf[at..]) {
                    if first == 0x40 {
                        acked += 1;
                    }
                    at += end;
                }
                buf.drain(..at);
                window.add_permits(acked);
                acknowledged.fetch_add(acked as u64, Ordering::Relaxed);
            }
        }
    });
    let mut out = Vec::with_capacity(BATCH * 128);
    let mut packet_id: u16 = 0;
    while !stop.load(Ordering::Relaxed) {
        let mut count = BATCH;
        if qos > 0 {
            let Ok(Ok(permit)) =
                tokio::time::timeout(Duration::from_millis(200), window.acquire()).await
            else {
                continue;
            };
            permit.forget();
            let mut taken = 1;
            while taken < count
                && let Ok(permit) = window.try_acquire()
            {
                permit.forget();
                taken += 1;
            }
            count = taken;
        }
        for _ in 0..count {
            packet_id = packet_id.wrapping_add(1).max(1);
            publish(&mut out, qos, packet_id);
        }
        if writer.write_all(&out).await.is_err() {
            break;
        }
        out.clear();
        if qos == 0 {
            tokio::task::yield_now().await;
        }
    }
    acks.abort();
}

#[tokio::main]
async fn main() {
    let options = options();
    let dataplane = Dataplane::start(&options.binary);
    let http = reqwest::Client::new();
    let appended_sample = "gridline_mqtt_routed_events_total{result=\"appended\"}";
    let dropped_sample = "gridline_mqtt_routed_events_total{result=\"dropped\"}";
    let acknowledged = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..options.publishers)
        .map(|index| {
            tokio::spawn(publisher(
                dataplane.mqtt,
                index,
                options.qos,
                acknowledged.clone(),
                stop.clone(),
            ))
        })
        .collect();
    // A second to connect and warm up, then the measured window.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let acked_before = acknowledged.load(Ordering::Relaxed);
    let appended_before = dataplane.metric(&http, appended_sample).await;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(options.seconds)).await;
    let seconds = started.elapsed().as_secs_f64();
    let acked = acknowledged.load(Ordering::Relaxed) - acked_before;
    let appended = dataplane.metric(&http, appended_sample).await - appended_before;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    let dropped = dataplane.metric(&http, dropped_sample).await;
    println!(
        "mqtt_routing: {} publishers, QoS {}, {PAYLOAD_BYTES}-byte payloads, window {WINDOW}, {} s, binary {}",
        options.publishers, options.qos, options.seconds, options.binary
    );
    println!(
        "routed {:.0} events/s appended; {:.0} PUBACK/s; dropped {dropped:.0} in all",
        appended / seconds,
        acked as f64 / seconds
    );
}
