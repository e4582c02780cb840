//! Shared helpers of the integration tests: start the real binary, find its address, read its
//! metrics, write fixture manifests. Each test file uses a part of them.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use manifests::NamespaceManifest;

/// The binary under test.
pub const BINARY: &str = env!("CARGO_BIN_EXE_gridline-dataplane");

/// How long the binary may take to start listening (a cold debug build on a busy CI machine).
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `gridline-dataplane run`, killed when dropped. Its stderr (the logs) is kept and
/// printed if the test fails, so a failure shows what the process said.
pub struct Dataplane {
    child: Child,
    pub addr: SocketAddr,
    logs: Arc<Mutex<String>>,
    http: reqwest::Client,
    /// Later announcements (`mqtt listening on ...`), and those read but not yet asked for.
    announcements: Mutex<(mpsc::Receiver<String>, Vec<String>)>,
}

impl Dataplane {
    /// `run --manifests <manifests> --data-dir <data_dir> --http-addr 127.0.0.1:0`, plus
    /// `extra` arguments; returns once the `http listening on` line is printed.
    pub fn start(manifests: &Path, data_dir: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(BINARY)
            .arg("run")
            .arg("--manifests")
            .arg(manifests)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--http-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0"])
            .args(["--mqtts-addr", "127.0.0.1:0", "--https-addr", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "info,gridline_dataplane=debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start gridline-dataplane");
        let logs = collect(child.stderr.take().expect("piped stderr"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (line, announcements) = wait_for_line(stdout, "http listening on ", START_TIMEOUT);
        let Some(line) = line else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "no `http listening on` line within {START_TIMEOUT:?}; logs:\n{}",
                logs.lock().unwrap()
            );
        };
        let addr = line
            .trim_start_matches("http listening on ")
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"));
        Self {
            child,
            addr,
            logs,
            http: reqwest::Client::new(),
            announcements: Mutex::new((announcements, Vec::new())),
        }
    }

    /// Where plaintext MQTT listens: waits for the `mqtt listening on` line (printed once the
    /// served Namespace turns the plaintext listener on).
    pub fn mqtt_addr(&self) -> SocketAddr {
        self.announced("mqtt listening on ")
    }

    /// Where MQTT over TLS listens (`mqtts listening on`).
    pub fn mqtts_addr(&self) -> SocketAddr {
        self.announced("mqtts listening on ")
    }

    /// Where HTTPS listens (`https listening on`): the Event Grid API and MQTT over
    /// WebSockets over TLS at `/mqtt`.
    pub fn https_addr(&self) -> SocketAddr {
        self.announced("https listening on ")
    }

    /// Where MQTT over WebSockets over TLS listens: the HTTPS listener.
    pub fn wss_addr(&self) -> SocketAddr {
        self.https_addr()
    }

    /// The address of the announcement starting with `prefix` (waits up to 10 s for it).
    pub fn announced(&self, prefix: &str) -> SocketAddr {
        let mut guard = self.announcements.lock().unwrap();
        let (announcements, seen) = &mut *guard;
        let deadline = Instant::now() + Duration::from_secs(10);
        let line = loop {
            if let Some(i) = seen.iter().position(|l| l.starts_with(prefix)) {
                break seen.remove(i);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match announcements.recv_timeout(left) {
                Ok(line) => seen.push(line),
                Err(_) => panic!("no `{prefix}` line; logs:\n{}", self.logs()),
            }
        };
        line.trim_start_matches(prefix)
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// An HTTP client for requests `get` does not cover (the Event Grid API).
    pub fn client(&self) -> &reqwest::Client {
        &self.http
    }

    /// GET `path`: status and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = self
            .http
            .get(self.url(path))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    /// The value of one sample of /metrics, e.g. `gridline_config_objects{kind="Topic"}`.
    pub async fn metric(&self, sample: &str) -> Option<f64> {
        let (_, text) = self.get("/metrics").await;
        metric_value(&text, sample)
    }

    /// Poll `/readyz` until it answers 200 (up to 10 s).
    pub async fn wait_ready(&self) {
        let ready = poll_until(Duration::from_secs(10), || async {
            self.get("/readyz").await.0 == 200
        })
        .await;
        assert!(
            ready.is_some(),
            "not ready within 10 s; logs:\n{}",
            self.logs()
        );
    }

    /// Poll `sample` every 50 ms (up to 5 s) until it equals `value`; how long that took.
    pub async fn wait_for_metric(&self, sample: &str, value: f64) -> Option<Duration> {
        poll_until(Duration::from_secs(5), || async {
            self.metric(sample).await == Some(value)
        })
        .await
    }

    /// Everything the process logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// SIGTERM, as Kubernetes stops a pod; the exit status (waits up to 10 s for it).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "still running 10 s after SIGTERM; logs:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- gridline-dataplane logs ---\n{}", self.logs());
        }
    }
}

/// Read `stream` on a thread into a shared string.
fn collect(mut stream: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let logs = Arc::new(Mutex::new(String::new()));
    let sink = logs.clone();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buffer) {
            if n == 0 {
                break;
            }
            if let Ok(mut logs) = sink.lock() {
                logs.push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        }
    });
    logs
}

/// The first line of `stream` starting with `prefix`, read on a thread so a silent process
/// cannot hang the test past `timeout`. The rest of the stream keeps being drained, so the
/// process never blocks on a full pipe; later `... listening on` lines arrive on the receiver.
fn wait_for_line(
    stream: impl Read + Send + 'static,
    prefix: &str,
    timeout: Duration,
) -> (Option<String>, mpsc::Receiver<String>) {
    let (tx, rx) = mpsc::channel();
    let (later_tx, later) = mpsc::channel();
    let prefix = prefix.to_string();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if !sent && line.starts_with(&prefix) {
                let _ = tx.send(line);
                sent = true;
            } else if line.contains(" listening on ") {
                let _ = later_tx.send(line);
            }
        }
    });
    (rx.recv_timeout(timeout).ok(), later)
}

/// Call `check` every 50 ms until it returns true or `timeout` passes; how long it took.
pub async fn poll_until<F, Fut>(timeout: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return Some(start.elapsed());
        }
        if start.elapsed() > timeout {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of `sample` (name and labels, exactly as printed) in Prometheus text.
pub fn metric_value(text: &str, sample: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

/// `gridline-dataplane check <dir>`.
pub fn run_check(dir: &Path) -> Output {
    Command::new(BINARY)
        .arg("check")
        .arg(dir)
        .output()
        .expect("run gridline-dataplane check")
}

/// A temporary manifests folder and data folder.
pub struct Workspace {
    root: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Self {
        let root = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(root.path().join("manifests")).expect("manifests dir");
        Self { root }
    }

    pub fn manifests(&self) -> PathBuf {
        self.root.path().join("manifests")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    /// `<root>/<name>`: a folder beside the manifests (another pod's data, a cluster dir).
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// Write (or replace) `manifests/<name>`.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.manifests().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("manifest subfolder");
        }
        std::fs::write(&path, text).expect("write manifest");
        path
    }

    /// Start `run` on this workspace.
    pub fn start(&self, extra: &[&str]) -> Dataplane {
        Dataplane::start(&self.manifests(), &self.data_dir(), extra)
    }
}

/// A Namespace that needs no certificate: the TLS listeners are off, as in local development
/// ([`NamespaceManifest::local`]).
pub fn namespace(name: &str) -> String {
    NamespaceManifest::local(name).yaml()
}

/// [`namespace`] with shared access keys for the HTTP API, from Secret `secret` (see
/// [`sas_keys_secret`]).
pub fn namespace_with_keys(name: &str, secret: &str) -> String {
    NamespaceManifest::local(name).sas_keys(secret).yaml()
}

/// A Secret holding a Namespace's `key1` and `key2`.
pub fn sas_keys_secret(name: &str, key1: &str, key2: &str) -> String {
    format!(
        "apiVersion: v1
kind: Secret
metadata:
  name: {name}
stringData:
  key1: {key1}
  key2: {key2}
"
    )
}

/// A queue (pull) EventSubscription of `topic`, with Event Grid's defaults.
pub fn queue_subscription(name: &str, topic: &str) -> String {
    format!(
        "apiVersion: gridline.dev/v1alpha1
kind: EventSubscription
metadata:
  name: {name}
spec:
  topicRef:
    name: {topic}
  deliveryConfiguration:
    deliveryMode: Queue
    queue: {{}}
"
    )
}

/// A push (webhook) EventSubscription of `topic` delivering to `endpoint_url`.
pub fn push_subscription(name: &str, topic: &str, endpoint_url: &str) -> String {
    format!(
        "apiVersion: gridline.dev/v1alpha1
kind: EventSubscription
metadata:
  name: {name}
spec:
  topicRef:
    name: {topic}
  deliveryConfiguration:
    deliveryMode: Push
    push:
      destination:
        endpointType: WebHook
        properties:
          endpointUrl: {endpoint_url}
"
    )
}

/// A Topic of Namespace `namespace`.
pub fn topic(name: &str, namespace: &str, retention_days: i32) -> String {
    format!(
        "apiVersion: gridline.dev/v1alpha1
kind: Topic
metadata:
  name: {name}
spec:
  namespaceRef:
    name: {namespace}
  eventRetentionInDays: {retention_days}
"
    )
}

/// Documents joined into one multi-document file.
pub fn documents(docs: &[String]) -> String {
    docs.iter()
        .map(|d| format!("---\n{d}"))
        .collect::<Vec<_>>()
        .join("")
}

/// `gridline_config_objects{kind="<kind>"}`.
pub fn objects_of(kind: &str) -> String {
    format!("gridline_config_objects{{kind=\"{kind}\"}}")
}

pub const APPLIED: &str = "gridline_config_reloads_total{result=\"applied\"}";
pub const REJECTED: &str = "gridline_config_reloads_total{result=\"rejected\"}";

pub mod cluster;
pub mod manifests;
pub mod mqtt;
pub mod packets;
pub mod paho;
pub mod pki;
pub mod python;
pub mod sdk;
pub mod tls_client;
pub mod webhook;
pub mod wss;
