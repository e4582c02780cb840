//! The MQTT broker side by side with its peers in the same run, with the same load tool on the
//! same machine: Gridline (the real binary, release build), mosquitto (Debian's, from `PATH`)
//! and rumqttd (`cargo install rumqttd`, its shipped default config with free ports). The load
//! tool is raw TCP with hand-written MQTT frames on tokio, so it costs the machine as little as
//! possible; it shares the 2 cores with the broker under test, as it does for every broker.
//!
//! `cargo bench -p gridline-dataplane --bench mqtt_peers -- [SCENARIO...] [--broker NAME]...
//! [--seconds N] [--connections N]`
//! Scenarios: `1to1-qos0`, `1to1-qos1`, `100to1-qos0`, `100to1-qos1`, `1to100-qos0`,
//! `1to100-qos1`, the same three at `-qos2`, `latency` (1 to 1 at 10,000 msg/s, QoS 0 and 1), `idle` (`--connections`
//! idle MQTT 5 connections with one subscription each, default 50,000). Without a scenario all
//! run. Brokers: `gridline`, `mosquitto`, `rumqttd` (default: all; one whose binary is missing
//! is skipped with a message). Throughput scenarios use MQTT 3.1.1 (every peer's main
//! listener), 100-byte payloads, one topic; BENCHMARKS.md records the commands used.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Semaphore;

// The raw MQTT frames and the RSS reader are shared with the other MQTT benches.
mod support;
use support::{connect, expect, frame, remaining_length, string, subscribe};

const PAYLOAD_BYTES: usize = 100;
const TOPIC: &str = "bench/t";
/// QoS 1 messages a publisher keeps unacknowledged (rumqttd's default `max_inflight_count`,
/// Gridline's receive maximum).
const WINDOW: usize = 100;
/// Publishes written per socket write when the window allows.
const BATCH: usize = 64;
/// Sessions per Gridline Client (`maximumClientSessionsPerAuthenticationName` allows 100).
const SESSIONS_PER_CLIENT: usize = 100;
const LATENCY_RATE: u64 = 10_000;

static EPOCH: OnceLock<Instant> = OnceLock::new();

fn now_nanos() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

struct Options {
    scenarios: Vec<String>,
    brokers: Vec<String>,
    seconds: u64,
    connections: usize,
}

const ALL_SCENARIOS: [&str; 11] = [
    "1to1-qos0",
    "1to1-qos1",
    "100to1-qos0",
    "100to1-qos1",
    "1to100-qos0",
    "1to100-qos1",
    "1to1-qos2",
    "100to1-qos2",
    "1to100-qos2",
    "latency",
    "idle",
];

fn options() -> Options {
    let mut options = Options {
        scenarios: Vec::new(),
        brokers: Vec::new(),
        seconds: 10,
        connections: 50_000,
    };
    let mut args = support::Args::from_env();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => options.seconds = args.number("--seconds"),
            "--connections" => options.connections = args.number("--connections"),
            "--broker" => options
                .brokers
                .push(args.next().expect("--broker takes a name")),
            other if !other.starts_with('-') => {
                assert!(ALL_SCENARIOS.contains(&other), "unknown scenario {other}");
                options.scenarios.push(other.to_string());
            }
            other => panic!("unknown option {other}"),
        }
    }
    if options.scenarios.is_empty() {
        options.scenarios = ALL_SCENARIOS.map(String::from).to_vec();
    }
    if options.brokers.is_empty() {
        options.brokers = ["gridline", "mosquitto", "rumqttd"]
            .map(String::from)
            .to_vec();
    }
    options
}

/// Raise the open-files limit (soft and hard: the bench runs as root in the lab) so the idle
/// scenario's sockets fit; the brokers started from here inherit it.
fn raise_open_files(wanted: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        let raised = libc::rlimit {
            rlim_cur: wanted,
            rlim_max: wanted.max(limit.rlim_max),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
            let soft = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            libc::setrlimit(libc::RLIMIT_NOFILE, &soft);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_cur
}

// ---------------------------------------------------------------------------------------------
// Brokers

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn on_path(binary: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    let mut dirs: Vec<_> = std::env::split_paths(&path).collect();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(std::path::PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter()
        .map(|dir| dir.join(binary))
        .find(|candidate| candidate.is_file())
}

fn gridline_manifests(sessions: usize) -> String {
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
    for n in 0..sessions.div_ceil(SESSIONS_PER_CLIENT) {
        yaml.push_str(&format!(
            "---\napiVersion: gridline.dev/v1alpha1\nkind: Client\nmetadata: {{name: bench-{n}}}\nspec: {{namespaceRef: {{name: bench}}}}\n"
        ));
    }
    yaml
}

const MOSQUITTO_CONF: &str = "listener {port} 127.0.0.1
allow_anonymous true
max_queued_messages 1000000
persistence false
log_dest none
";

/// A broker under test; Drop kills and reaps it.
struct Broker {
    name: &'static str,
    child: Child,
    /// MQTT 3.1.1 listener.
    v4: SocketAddr,
    /// MQTT 5 listener (rumqttd has separate ones).
    v5: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Broker {
    /// None (after saying why) when the broker's binary is missing.
    fn start(name: &str, sessions: usize) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let broker = match name {
            "gridline" => {
                let manifests = dir.path().join("manifests");
                std::fs::create_dir_all(&manifests).expect("manifests dir");
                std::fs::write(manifests.join("bench.yaml"), gridline_manifests(sessions))
                    .expect("manifests");
                let mut child = Command::new(env!("CARGO_BIN_EXE_gridline-dataplane"))
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
                let stdout = BufReader::new(child.stdout.take().expect("stdout"));
                let addr: SocketAddr = stdout
                    .lines()
                    .map_while(Result::ok)
                    .find_map(|line| {
                        line.strip_prefix("mqtt listening on ")
                            .map(|a| a.parse().expect("mqtt address"))
                    })
                    .expect("mqtt listening line");
                Self {
                    name: "gridline",
                    child,
                    v4: addr,
                    v5: addr,
                    _dir: dir,
                }
            }
            "mosquitto" => {
                let Some(binary) = on_path("mosquitto").or_else(|| {
                    Some("/usr/sbin/mosquitto".into()).filter(|p: &std::path::PathBuf| p.is_file())
                }) else {
                    println!("mosquitto: binary not found, skipped (apt-get install -y mosquitto)");
                    return None;
                };
                let port = free_port();
                let conf = dir.path().join("mosquitto.conf");
                std::fs::write(&conf, MOSQUITTO_CONF.replace("{port}", &port.to_string()))
                    .expect("mosquitto.conf");
                let child = Command::new(binary)
                    .arg("-c")
                    .arg(&conf)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start mosquitto");
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                Self {
                    name: "mosquitto",
                    child,
                    v4: addr,
                    v5: addr,
                    _dir: dir,
                }
            }
            "rumqttd" => {
                let Some(binary) = on_path("rumqttd") else {
                    println!(
                        "rumqttd: binary not found, skipped (cargo install rumqttd --version 0.20.0 --locked)"
                    );
                    return None;
                };
                let Some(default_config) = rumqttd_default_config() else {
                    println!(
                        "rumqttd: its shipped rumqttd.toml not found under ~/.cargo/registry, skipped"
                    );
                    return None;
                };
                let (v4, v5) = (free_port(), free_port());
                // The shipped config with only the listen addresses changed.
                let config = default_config
                    .replace("0.0.0.0:1883", &format!("127.0.0.1:{v4}"))
                    .replace("0.0.0.0:1884", &format!("127.0.0.1:{v5}"))
                    .replace("127.0.0.1:9042", &format!("127.0.0.1:{}", free_port()))
                    .replace("0.0.0.0:8083", &format!("127.0.0.1:{}", free_port()))
                    .replace("0.0.0.0:3030", &format!("127.0.0.1:{}", free_port()));
                let path = dir.path().join("rumqttd.toml");
                std::fs::write(&path, config).expect("rumqttd.toml");
                let child = Command::new(binary)
                    .arg("-q")
                    .arg("-c")
                    .arg(&path)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start rumqttd");
                Self {
                    name: "rumqttd",
                    child,
                    v4: SocketAddr::from(([127, 0, 0, 1], v4)),
                    v5: SocketAddr::from(([127, 0, 0, 1], v5)),
                    _dir: dir,
                }
            }
            other => panic!("unknown broker {other}"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(broker.v4).is_err() {
            assert!(Instant::now() < deadline, "{name} not listening");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(200));
        Some(broker)
    }

    fn rss_mib(&self) -> f64 {
        support::rss_mib(self.child.id())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rumqttd_default_config() -> Option<String> {
    let registry = std::path::PathBuf::from(std::env::var_os("HOME")?).join(".cargo/registry/src");
    std::fs::read_dir(registry)
        .ok()?
        .filter_map(Result::ok)
        .map(|index| index.path().join("rumqttd-0.20.0/rumqttd.toml"))
        .find_map(|path| std::fs::read_to_string(path).ok())
}

fn version_of(name: &str) -> String {
    match name {
        "gridline" => format!("gridline-dataplane {}", env!("CARGO_PKG_VERSION")),
        "mosquitto" => on_path("mosquitto")
            .or_else(|| Some("/usr/sbin/mosquitto".into()))
            .and_then(|b| Command::new(b).arg("-h").output().ok())
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "mosquitto (not found)".into()),
        _ => on_path("rumqttd")
            .and_then(|b| Command::new(b).arg("--version").output().ok())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "rumqttd (not found)".into()),
    }
}

// ---------------------------------------------------------------------------------------------
// MQTT frames, by hand

/// A 3.1.1 PUBLISH of PAYLOAD_BYTES; the payload starts with the send time (ns since EPOCH).
fn publish(out: &mut Vec<u8>, qos: u8, packet_id: u16) {
    let len = 2 + TOPIC.len() + if qos > 0 { 2 } else { 0 } + PAYLOAD_BYTES;
    out.push(0x30 | (qos << 1));
    remaining_length(out, len);
    string(out, TOPIC);
    if qos > 0 {
        out.extend_from_slice(&packet_id.to_be_bytes());
    }
    out.extend_from_slice(&now_nanos().to_be_bytes());
    out.extend_from_slice(&[b'x'; PAYLOAD_BYTES - 8]);
}

/// Connect (from `source` when given), CONNECT and SUBSCRIBE when `filter` is given.
async fn session(
    addr: SocketAddr,
    source: Option<IpAddr>,
    version: u8,
    client_id: &str,
    username: &str,
    filter: Option<(&str, u8)>,
) -> anyhow::Result<TcpStream> {
    let mut stream = match source {
        Some(ip) => {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(ip, 0))?;
            socket.connect(addr).await?
        }
        None => TcpStream::connect(addr).await?,
    };
    stream.set_nodelay(true)?;
    let mut buf = Vec::new();
    stream
        .write_all(&connect(version, client_id, username, 1000))
        .await?;
    let connack = expect(&mut stream, 2, &mut buf).await?;
    anyhow::ensure!(
        connack.get(1) == Some(&0),
        "CONNACK refused: {:#04x}",
        connack.get(1).copied().unwrap_or(0xff)
    );
    if let Some((filter, qos)) = filter {
        stream.write_all(&subscribe(version, filter, qos)).await?;
        let suback = expect(&mut stream, 9, &mut buf).await?;
        let granted = suback.last().copied().unwrap_or(0x80);
        anyhow::ensure!(granted < 0x80, "SUBACK refused: {granted:#04x}");
    }
    anyhow::ensure!(buf.is_empty(), "unexpected packet before the load");
    Ok(stream)
}

fn username(index: usize) -> String {
    format!("bench-{}", index / SESSIONS_PER_CLIENT)
}

// ---------------------------------------------------------------------------------------------
// Load

#[derive(Default)]
struct Counters {
    published: AtomicU64,
    acked: AtomicU64,
    received: AtomicU64,
}

/// A subscriber: counts PUBLISHes, acknowledges QoS 1, samples latency when `latencies`.
async fn subscriber(
    mut stream: TcpStream,
    counters: Arc<Counters>,
    latencies: Option<Arc<Mutex<Vec<u64>>>>,
    stop: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 256 * 1024];
    let mut filled = 0;
    let mut acks = Vec::with_capacity(4096);
    let mut samples = Vec::new();
    loop {
        let read =
            tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf[filled..]));
        let n = match read.await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => n,
            Err(_) if stop.load(Ordering::Relaxed) => break,
            Err(_) => continue,
        };
        filled += n;
        let mut at = 0;
        let mut count = 0;
        let received_at = now_nanos();
        while let Some((first, start, end)) = frame(&buf[at..filled]) {
            let (start, end) = (at + start, at + end);
            if first >> 4 == 6 {
                // PUBREL of a QoS 2 delivery: PUBCOMP ends it.
                acks.extend_from_slice(&[0x70, 2, buf[start], buf[start + 1]]);
            }
            if first >> 4 == 3 {
                count += 1;
                let qos = (first >> 1) & 3;
                let topic_len = u16::from_be_bytes([buf[start], buf[start + 1]]) as usize;
                let mut payload = start + 2 + topic_len;
                if qos > 0 {
                    // PUBACK for QoS 1, PUBREC for QoS 2.
                    let kind = if qos == 1 { 0x40 } else { 0x50 };
                    acks.extend_from_slice(&[kind, 2, buf[payload], buf[payload + 1]]);
                    payload += 2;
                }
                if latencies.is_some() && end - payload >= 8 {
                    let sent = u64::from_be_bytes(buf[payload..payload + 8].try_into().unwrap());
                    samples.push(received_at.saturating_sub(sent));
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
    if let Some(latencies) = latencies {
        latencies.lock().unwrap().extend(samples);
    }
}

/// Reads PUBACKs (QoS 1) or PUBRECs and PUBCOMPs (QoS 2, answering PUBREC with PUBREL),
/// returning window permits and counting acknowledgements (a QoS 2 message is acknowledged
/// by its PUBCOMP).
async fn ack_reader(
    mut reader: OwnedReadHalf,
    writer: Arc<tokio::sync::Mutex<OwnedWriteHalf>>,
    window: Arc<Semaphore>,
    counters: Arc<Counters>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut filled = 0;
    let mut releases = Vec::new();
    loop {
        let n = match reader.read(&mut buf[filled..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        filled += n;
        let mut at = 0;
        let mut acked = 0;
        while let Some((first, start, end)) = frame(&buf[at..filled]) {
            match first >> 4 {
                4 | 7 => acked += 1,
                5 => releases.extend_from_slice(&[0x62, 2, buf[at + start], buf[at + start + 1]]),
                _ => {}
            }
            at += end;
        }
        if !releases.is_empty() {
            if writer.lock().await.write_all(&releases).await.is_err() {
                return;
            }
            releases.clear();
        }
        buf.copy_within(at..filled, 0);
        filled -= at;
        counters.acked.fetch_add(acked as u64, Ordering::Relaxed);
        window.add_permits(acked);
    }
}

/// A publisher: as fast as the socket (QoS 0) or the window (QoS 1) allows, or at `rate`
/// messages/s (open loop, one write per millisecond), until `stop`; then waits up to 10 s for
/// its QoS 1 acknowledgements.
async fn publisher(
    stream: TcpStream,
    qos: u8,
    rate: Option<u64>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
) {
    let (reader, writer) = stream.into_split();
    // Shared with the ack reader, which answers QoS 2 PUBRECs with PUBRELs.
    let writer = Arc::new(tokio::sync::Mutex::new(writer));
    let window = Arc::new(Semaphore::new(WINDOW));
    let acks = (qos > 0).then(|| {
        tokio::spawn(ack_reader(
            reader,
            writer.clone(),
            window.clone(),
            counters.clone(),
        ))
    });
    let mut packet_id: u16 = 0;
    let mut out = Vec::with_capacity(BATCH * 128);
    let mut sent = 0u64;
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    while !stop.load(Ordering::Relaxed) {
        let mut count = BATCH;
        if let Some(rate) = rate {
            ticker.tick().await;
            let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
            count = due.saturating_sub(sent) as usize;
            if count == 0 {
                continue;
            }
        }
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
        if writer.lock().await.write_all(&out).await.is_err() {
            break;
        }
        out.clear();
        sent += count as u64;
        counters
            .published
            .fetch_add(count as u64, Ordering::Relaxed);
    }
    if let Some(acks) = acks {
        let deadline = Instant::now() + Duration::from_secs(10);
        while window.available_permits() < WINDOW && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        acks.abort();
    }
}

struct Throughput {
    delivered_per_second: f64,
    published_per_second: f64,
    /// QoS 1: acknowledged publishes × subscribers − received after the drain.
    lost: Option<i64>,
    rss_mib: f64,
    latency_ms: Option<(f64, f64, f64)>,
}

async fn run_load(
    broker: &Broker,
    publishers: usize,
    subscribers: usize,
    qos: u8,
    rate: Option<u64>,
    seconds: u64,
) -> anyhow::Result<Throughput> {
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let latencies = rate.map(|_| Arc::new(Mutex::new(Vec::new())));
    let mut tasks = Vec::new();
    for s in 0..subscribers {
        let stream = session(
            broker.v4,
            None,
            4,
            &format!("sub-{s}"),
            &username(s),
            Some((TOPIC, qos)),
        )
        .await?;
        tasks.push(tokio::spawn(subscriber(
            stream,
            counters.clone(),
            latencies.clone(),
            stop.clone(),
        )));
    }
    let mut streams = Vec::new();
    for p in 0..publishers {
        streams.push(
            session(
                broker.v4,
                None,
                4,
                &format!("pub-{p}"),
                &username(subscribers + p),
                None,
            )
            .await?,
        );
    }
    let publish_stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let publishing: Vec<_> = streams
        .into_iter()
        .map(|stream| {
            tokio::spawn(publisher(
                stream,
                qos,
                rate,
                counters.clone(),
                publish_stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let received = counters.received.load(Ordering::Relaxed);
    let published = counters.published.load(Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let rss_mib = broker.rss_mib();
    publish_stop.store(true, Ordering::Relaxed);
    for task in publishing {
        let _ = task.await;
    }
    // Drain: wait until every acknowledged QoS 1 message has reached every subscriber, or 5 s
    // without progress.
    let expected = counters.acked.load(Ordering::Relaxed) * subscribers as u64;
    let mut last = (counters.received.load(Ordering::Relaxed), Instant::now());
    loop {
        let now = counters.received.load(Ordering::Relaxed);
        if qos > 0 && now >= expected {
            break;
        }
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(if qos > 0 { 5 } else { 1 }) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    let final_received = counters.received.load(Ordering::Relaxed);
    let latency_ms = latencies.map(|samples| {
        let mut samples = std::mem::take(&mut *samples.lock().unwrap());
        samples.sort_unstable();
        let at = |q: f64| {
            samples
                .get(((samples.len() as f64 * q) as usize).min(samples.len().saturating_sub(1)))
                .map_or(f64::NAN, |&ns| ns as f64 / 1e6)
        };
        (at(0.5), at(0.99), at(0.999))
    });
    Ok(Throughput {
        delivered_per_second: received as f64 / elapsed,
        published_per_second: published as f64 / elapsed,
        lost: (qos > 0).then(|| expected as i64 - final_received as i64),
        rss_mib,
        latency_ms,
    })
}

struct Idle {
    connected: usize,
    failed: usize,
    first_error: Option<String>,
    seconds: f64,
    rss_before_mib: f64,
    rss_after_mib: f64,
}

/// `count` MQTT 5 connections, each subscribed to its own topic, spread evenly over the
/// source addresses 127.0.0.2 to 127.0.0.9 (50,000 is 6,250 each, well within one address's
/// ephemeral ports even with the previous runs' sockets still in TIME_WAIT).
async fn idle(broker: &Broker, count: usize) -> Idle {
    let rss_before_mib = broker.rss_mib();
    let started = Instant::now();
    let connecting = Arc::new(Semaphore::new(256));
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let permit = connecting.clone().acquire_owned().await.expect("semaphore");
        let addr = broker.v5;
        let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (i % 8) as u8));
        tasks.push(tokio::spawn(async move {
            let result = tokio::time::timeout(
                Duration::from_secs(15),
                session(
                    addr,
                    Some(source),
                    5,
                    &format!("idle-{i}"),
                    &username(i),
                    Some((&format!("bench/idle/{i}"), 1)),
                ),
            )
            .await
            .map_err(anyhow::Error::from)
            .and_then(|r| r);
            drop(permit);
            result
        }));
    }
    let mut streams = Vec::with_capacity(count);
    let mut failed = 0;
    let mut first_error = None;
    for task in tasks {
        match task.await.expect("connect task") {
            Ok(stream) => streams.push(stream),
            Err(error) => {
                failed += 1;
                first_error.get_or_insert_with(|| error.to_string());
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Still connected? A closed socket reads 0 at once.
    let mut alive = 0;
    for stream in &mut streams {
        let mut byte = [0u8; 1];
        match stream.try_read(&mut byte) {
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => alive += 1,
            _ => {}
        }
    }
    let rss_after_mib = broker.rss_mib();
    Idle {
        connected: alive,
        failed: failed + streams.len() - alive,
        first_error,
        seconds,
        rss_before_mib,
        rss_after_mib,
    }
}

// ---------------------------------------------------------------------------------------------

fn shape(scenario: &str) -> (usize, usize, u8) {
    let qos = match scenario.rsplit('-').next() {
        Some("qos1") => 1,
        Some("qos2") => 2,
        _ => 0,
    };
    match scenario.split('-').next() {
        Some("1to1") => (1, 1, qos),
        Some("100to1") => (100, 1, qos),
        Some("1to100") => (1, 100, qos),
        _ => unreachable!(),
    }
}

fn main() {
    EPOCH.get_or_init(Instant::now);
    let options = options();
    let open_files = raise_open_files(options.connections as u64 * 2 + 10_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "# mqtt_peers: {cores} cores, {} s per scenario, {PAYLOAD_BYTES}-byte payloads, QoS 1 window {WINDOW}, open files {open_files}",
        options.seconds
    );
    if options.scenarios.iter().any(|s| s == "idle")
        && (open_files as usize) < options.connections + 100
    {
        println!(
            "# warning: this process may open only {open_files} files (hard limit; raising it needs CAP_SYS_RESOURCE), fewer than --connections {}; the brokers inherit the same limit",
            options.connections
        );
    }
    for broker in &options.brokers {
        println!("# {broker}: {}", version_of(broker));
    }
    println!("# mosquitto config: {}", MOSQUITTO_CONF.replace('\n', "; "));
    println!(
        "# rumqttd config: its shipped rumqttd.toml, listen addresses moved to free 127.0.0.1 ports"
    );
    let mut table: BTreeMap<(usize, String), Vec<(String, String)>> = BTreeMap::new();
    for (order, scenario) in options.scenarios.iter().enumerate() {
        for name in &options.brokers {
            let sessions = if scenario == "idle" {
                options.connections
            } else {
                202
            };
            let Some(broker) = Broker::start(name, sessions) else {
                continue;
            };
            let row = match scenario.as_str() {
                "idle" => {
                    let result = runtime.block_on(idle(&broker, options.connections));
                    let per_connection_kib = (result.rss_after_mib - result.rss_before_mib)
                        * 1024.0
                        / result.connected.max(1) as f64;
                    format!(
                        "{} of {} connected and subscribed in {:.1} s; {} failed{}; RSS {:.0} MiB before, {:.0} MiB after ({per_connection_kib:.1} KiB per connection)",
                        result.connected,
                        options.connections,
                        result.seconds,
                        result.failed,
                        result
                            .first_error
                            .map(|e| format!(" (first: {e})"))
                            .unwrap_or_default(),
                        result.rss_before_mib,
                        result.rss_after_mib
                    )
                }
                "latency" => {
                    let mut parts = Vec::new();
                    for qos in [0, 1] {
                        match runtime.block_on(run_load(
                            &broker,
                            1,
                            1,
                            qos,
                            Some(LATENCY_RATE),
                            options.seconds,
                        )) {
                            Ok(t) => {
                                let (p50, p99, p999) = t.latency_ms.expect("latency");
                                parts.push(format!(
                                    "QoS {qos}: {:.0} msg/s delivered, p50 {p50:.3} ms, p99 {p99:.3} ms, p99.9 {p999:.3} ms{}",
                                    t.delivered_per_second,
                                    t.lost.map(|l| format!(", lost {l}")).unwrap_or_default()
                                ));
                            }
                            Err(error) => parts.push(format!("QoS {qos}: failed: {error}")),
                        }
                    }
                    parts.join("; ")
                }
                _ => {
                    let (publishers, subscribers, qos) = shape(scenario);
                    match runtime.block_on(run_load(
                        &broker,
                        publishers,
                        subscribers,
                        qos,
                        None,
                        options.seconds,
                    )) {
                        Ok(t) => format!(
                            "{:.0} msg/s delivered ({:.0} msg/s published){}; RSS {:.0} MiB",
                            t.delivered_per_second,
                            t.published_per_second,
                            t.lost.map(|l| format!("; lost {l}")).unwrap_or_default(),
                            t.rss_mib
                        ),
                        Err(error) => format!("failed: {error}"),
                    }
                }
            };
            println!("{scenario:<12} {:<10} {row}", broker.name);
            table
                .entry((order, scenario.clone()))
                .or_default()
                .push((broker.name.to_string(), row));
            drop(broker);
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    println!("\n| scenario | broker | result |\n|---|---|---|");
    for ((_, scenario), rows) in table {
        for (broker, row) in rows {
            println!("| {scenario} | {broker} | {row} |");
        }
    }
}
