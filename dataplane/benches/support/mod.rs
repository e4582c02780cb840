//! Shared by the benches that start the real data plane (release build): starting it on a
//! manifests folder (serving HTTPS with a bench CA's certificate when asked), reading its CPU
//! time, reading their command line, and for the MQTT benches a raw-TCP MQTT client with
//! hand-written frames, so the load tool costs the machine as little as possible. Each bench
//! uses a part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A bench's command line after the program name, without the `--bench` that `cargo bench`
/// adds: each bench matches the words, and takes a flag's value with [`Args::number`].
pub struct Args(std::iter::Skip<std::env::Args>);

impl Args {
    pub fn from_env() -> Self {
        Self(std::env::args().skip(1))
    }

    /// The value after `flag`, a number.
    pub fn number<T: FromStr>(&mut self, flag: &str) -> T {
        self.0
            .next()
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("{flag} takes a number"))
    }
}

impl Iterator for Args {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        self.0.find(|arg| arg != "--bench")
    }
}

/// `gridline-dataplane run`, killed when dropped. Its stdout is read to the end by a thread
/// of its own, which passes on every `<scheme> listening on <addr>` line.
pub struct Process {
    child: Child,
    announcements: Receiver<(String, SocketAddr)>,
    seen: BTreeMap<String, SocketAddr>,
    /// The folder of the manifests and the data, when it is the process's own.
    _dir: Option<tempfile::TempDir>,
}

impl Process {
    /// Start it on the manifests folder `manifests` with its data in `data_dir`, listening on
    /// free ports of 127.0.0.1 (HTTP and MQTT, and whatever `extra` adds), with `RUST_LOG` at
    /// `log`.
    pub fn spawn(manifests: &Path, data_dir: &Path, log: &str, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gridline-dataplane"))
            .arg("run")
            .arg("--manifests")
            .arg(manifests)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--http-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", log)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the data plane");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if let Some((scheme, addr)) = line.split_once(" listening on ")
                    && let Ok(addr) = addr.parse::<SocketAddr>()
                {
                    let _ = tx.send((scheme.to_string(), addr));
                }
            }
        });
        Self {
            child,
            announcements: rx,
            seen: BTreeMap::new(),
            _dir: None,
        }
    }

    /// Start it as [`Process::spawn`] does on `yaml`, written as `manifests/bench.yaml` in a
    /// temporary folder of its own (data in `data/` there), removed once it is stopped.
    pub fn spawn_on(yaml: &str, log: &str, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let manifests = dir.path().join("manifests");
        std::fs::create_dir_all(&manifests).expect("manifests dir");
        std::fs::write(manifests.join("bench.yaml"), yaml).expect("manifests");
        let mut process = Self::spawn(&manifests, &dir.path().join("data"), log, extra);
        process._dir = Some(dir);
        process
    }

    /// The address of its `<scheme> listening on <addr>` line, waiting up to `timeout` for it.
    pub fn announced(&mut self, scheme: &str, timeout: Duration) -> SocketAddr {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(addr) = self.seen.get(scheme) {
                return *addr;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let (announced, addr) = self
                .announcements
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no `{scheme} listening on` line in time"));
            self.seen.insert(announced, addr);
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time the process has used so far (user + system), seconds.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.child.id())
    }

    /// Resident memory of the process, MiB.
    pub fn rss_mib(&self) -> f64 {
        rss_mib(self.child.id())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The data plane as the MQTT benches run it: TLS listener on a free port too, errors
/// logged only, serving its configuration; killed when dropped.
pub struct Dataplane {
    process: Process,
    pub mqtt: SocketAddr,
}

impl Dataplane {
    /// Start it and wait (up to `timeout`) for its `mqtt listening on` line, printed once the
    /// configuration is served.
    pub fn start(manifests: &Path, data_dir: &Path, timeout: Duration) -> Self {
        let mut process = Process::spawn(
            manifests,
            data_dir,
            "error",
            &["--mqtts-addr", "127.0.0.1:0"],
        );
        let mqtt = process.announced("mqtt", timeout);
        Self { process, mqtt }
    }

    /// Resident memory of the process, MiB.
    pub fn rss_mib(&self) -> f64 {
        self.process.rss_mib()
    }
}

/// The data plane as the HTTP benches run it: on one manifest file, `RUST_LOG` as they say,
/// ready to serve the Event Grid API at `base`, over plain HTTP or HTTPS; killed when dropped.
pub struct HttpDataplane {
    process: Process,
    /// `http://<addr>`, or `https://<addr>` when it was started with [`HttpDataplane::start_https`].
    pub base: String,
    /// `http://<addr>`: the plain listener, always on (readiness, metrics).
    plain: String,
    /// The CA whose certificate the HTTPS listener serves, PEM.
    ca_pem: Option<String>,
}

impl HttpDataplane {
    /// Start it on `yaml` and wait (10 s at most) until `/readyz` answers.
    pub fn start(yaml: &str, log: &str) -> Self {
        Self::start_with(yaml, log, None)
    }

    /// Start it on `yaml`, whose Namespace enables `listeners.https` with a certificate signed
    /// by `ca_pem` (a [`TestPki`]); `base` is then its HTTPS listener's.
    pub fn start_https(yaml: &str, log: &str, ca_pem: &str) -> Self {
        Self::start_with(yaml, log, Some(ca_pem))
    }

    fn start_with(yaml: &str, log: &str, ca_pem: Option<&str>) -> Self {
        let extra: &[&str] = match ca_pem {
            Some(_) => &["--https-addr", "127.0.0.1:0"],
            None => &[],
        };
        let mut process = Process::spawn_on(yaml, log, extra);
        let addr = process.announced("http", Duration::from_secs(60));
        // From here on, Drop kills and reaps the process whatever happens.
        let mut plane = Self {
            process,
            base: format!("http://{addr}"),
            plain: format!("http://{addr}"),
            ca_pem: ca_pem.map(str::to_string),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(response) = reqwest::blocking::get(format!("{}/readyz", plane.plain))
                && response.status().is_success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "data plane not ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        if plane.ca_pem.is_some() {
            let https = plane.process.announced("https", Duration::from_secs(10));
            plane.base = format!("https://{https}");
        }
        plane
    }

    /// A client for `base`: over HTTPS it trusts the test CA and nothing else.
    pub fn client(&self) -> reqwest::ClientBuilder {
        let builder = reqwest::Client::builder();
        match &self.ca_pem {
            Some(ca_pem) => builder
                .use_rustls_tls()
                .tls_built_in_root_certs(false)
                .add_root_certificate(
                    reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("the test CA"),
                ),
            None => builder,
        }
    }

    /// Resident memory of the process, MiB.
    pub fn rss_mib(&self) -> f64 {
        self.process.rss_mib()
    }

    /// CPU time the process has used so far (user + system), seconds.
    pub fn cpu_seconds(&self) -> f64 {
        self.process.cpu_seconds()
    }

    /// The value of `sample` (name and labels, as `/metrics` writes them), if it is there; read
    /// from the plain listener, so `http` needs no certificate.
    pub async fn metric(&self, http: &reqwest::Client, sample: &str) -> Option<f64> {
        let text = http
            .get(format!("{}/metrics", self.plain))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    }
}

/// A CA made for the bench and a server certificate it signed for `127.0.0.1` and `localhost`
/// (rcgen, as the tests make theirs), PEM.
pub struct TestPki {
    pub ca_pem: String,
    pub server_chain_pem: String,
    pub server_key_pem: String,
}

impl TestPki {
    pub fn new() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Gridline bench CA");
        let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);
        let server_key = KeyPair::generate().expect("server key");
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let server = params
            .signed_by(&server_key, &issuer)
            .expect("server certificate");
        Self {
            ca_pem: ca.pem(),
            server_chain_pem: server.pem(),
            server_key_pem: server_key.serialize_pem(),
        }
    }

    /// A `kubernetes.io/tls` Secret `name` with the server certificate and key.
    pub fn secret(&self, name: &str) -> String {
        let indent = |pem: &str| -> String { pem.lines().map(|l| format!("    {l}\n")).collect() };
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
            indent(&self.server_chain_pem),
            indent(&self.server_key_pem)
        )
    }
}

/// CPU time process `pid` has used so far (user + system), seconds (0 when it cannot be read).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at the state, field 3:
    // utime and stime are fields 14 and 15, in clock ticks.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) if per_second > 0.0 => (user + system) / per_second,
        _ => 0.0,
    }
}

/// Resident memory of process `pid`, MiB (0 when it cannot be read).
pub fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

// ---------------------------------------------------------------------------------------------
// MQTT frames, by hand (3.1.1 unless a version is given)

pub fn remaining_length(out: &mut Vec<u8>, mut len: usize) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
}

pub fn string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// CONNECT, clean start, with a username; `version` 4 (3.1.1) or 5.
pub fn connect(version: u8, client_id: &str, username: &str, keep_alive: u16) -> Vec<u8> {
    let mut body = Vec::new();
    string(&mut body, "MQTT");
    body.push(version);
    body.push(0b1000_0010); // username, clean start
    body.extend_from_slice(&keep_alive.to_be_bytes());
    if version == 5 {
        body.push(0); // no properties
    }
    string(&mut body, client_id);
    string(&mut body, username);
    let mut frame = vec![0x10];
    remaining_length(&mut frame, body.len());
    frame.extend_from_slice(&body);
    frame
}

pub fn subscribe(version: u8, filter: &str, qos: u8) -> Vec<u8> {
    let mut body = 1u16.to_be_bytes().to_vec();
    if version == 5 {
        body.push(0);
    }
    string(&mut body, filter);
    body.push(qos);
    let mut frame = vec![0x82];
    remaining_length(&mut frame, body.len());
    frame.extend_from_slice(&body);
    frame
}

/// A 3.1.1 QoS 0 PUBLISH of `payload` on `topic`.
pub fn publish_qos0(out: &mut Vec<u8>, topic: &str, payload: &[u8]) {
    out.push(0x30);
    remaining_length(out, 2 + topic.len() + payload.len());
    string(out, topic);
    out.extend_from_slice(payload);
}

/// One complete packet at the front of `buf`: (first byte, body start, total length).
pub fn frame(buf: &[u8]) -> Option<(u8, usize, usize)> {
    let mut len = 0usize;
    let mut shift = 0;
    for i in 1..5 {
        let byte = *buf.get(i)?;
        len |= ((byte & 0x7f) as usize) << shift;
        shift += 7;
        if byte & 0x80 == 0 {
            let start = i + 1;
            return (buf.len() >= start + len).then_some((buf[0], start, start + len));
        }
    }
    panic!("malformed remaining length from the broker");
}

/// Read packets until one of type `kind` arrives; its body.
pub async fn expect(
    stream: &mut TcpStream,
    kind: u8,
    buf: &mut Vec<u8>,
) -> anyhow::Result<Vec<u8>> {
    loop {
        if let Some((first, start, end)) = frame(buf) {
            let body = buf[start..end].to_vec();
            buf.drain(..end);
            if first >> 4 == kind {
                return Ok(body);
            }
            continue;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A 3.1.1 session: CONNECT as `username`, then SUBSCRIBE to `filter` when given.
pub async fn session(
    addr: SocketAddr,
    client_id: &str,
    username: &str,
    filter: Option<(&str, u8)>,
) -> anyhow::Result<TcpStream> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut buf = Vec::new();
    stream
        .write_all(&connect(4, client_id, username, 1000))
        .await?;
    let connack = expect(&mut stream, 2, &mut buf).await?;
    anyhow::ensure!(
        connack.get(1) == Some(&0),
        "CONNACK refused for {username}: {:#04x}",
        connack.get(1).copied().unwrap_or(0xff)
    );
    if let Some((filter, qos)) = filter {
        stream.write_all(&subscribe(4, filter, qos)).await?;
        let suback = expect(&mut stream, 9, &mut buf).await?;
        let granted = suback.last().copied().unwrap_or(0x80);
        anyhow::ensure!(
            granted < 0x80,
            "SUBACK refused for {filter}: {granted:#04x}"
        );
    }
    Ok(stream)
}

/// Count the PUBLISH packets arriving on `stream` until `until`; how many.
pub async fn count_publishes(mut stream: TcpStream, until: Instant) -> u64 {
    let mut buf = vec![0u8; 256 * 1024];
    let mut filled = 0;
    let mut count = 0;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return count;
        }
        let n = match tokio::time::timeout(left, stream.read(&mut buf[filled..])).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return count,
            Ok(Ok(n)) => n,
        };
        filled += n;
        let mut at = 0;
        while let Some((first, _, end)) = frame(&buf[at..filled]) {
            if first >> 4 == 3 {
                count += 1;
            }
            at += end;
        }
        buf.copy_within(at..filled, 0);
        filled -= at;
    }
}
