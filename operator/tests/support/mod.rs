//! A fake Kubernetes API server for running the operator binary without a cluster: lists are
//! answered from a fixed world, watches stay open (and can be sent events), the leader Lease
//! is kept, and every write is recorded with the time it arrived.

#![allow(dead_code)] // Each test or bench uses part of it.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

#[derive(Clone, Debug)]
pub struct Write {
    pub method: String,
    /// Path and query.
    pub uri: String,
    pub body: Value,
    pub at: Instant,
}

#[derive(Default)]
struct World {
    /// Items of each list, by request path.
    lists: HashMap<String, Vec<Value>>,
    lease: Option<Value>,
    writes: Vec<Write>,
    /// Open watches, by request path.
    watches: HashMap<String, Vec<mpsc::UnboundedSender<Bytes>>>,
}

#[derive(Clone)]
pub struct FakeApi {
    pub addr: SocketAddr,
    world: Arc<Mutex<World>>,
}

impl FakeApi {
    /// Serve `lists` (request path → items) on a free local port.
    pub async fn start(lists: HashMap<String, Vec<Value>>) -> Self {
        let world = Arc::new(Mutex::new(World {
            lists,
            ..World::default()
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(api).with_state(world.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, world }
    }

    /// A kubeconfig pointing at this server, default namespace `ops`.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
                 clusters: [{{name: fake, cluster: {{server: 'http://{}'}}}}]\n\
                 users: [{{name: fake, user: {{}}}}]\n\
                 contexts: [{{name: fake, context: {{cluster: fake, user: fake, namespace: ops}}}}]\n",
                self.addr
            ),
        )
        .unwrap();
        path
    }

    pub fn writes(&self, filter: impl Fn(&Write) -> bool) -> Vec<Write> {
        let world = self.world.lock().unwrap();
        world.writes.iter().filter(|w| filter(w)).cloned().collect()
    }

    pub fn write_count(&self, filter: impl Fn(&Write) -> bool) -> usize {
        let world = self.world.lock().unwrap();
        world.writes.iter().filter(|w| filter(w)).count()
    }

    pub fn lease(&self) -> Option<Value> {
        self.world.lock().unwrap().lease.clone()
    }

    /// Send a watch event (`{"type": ..., "object": ...}`) on every open watch of `path`.
    pub fn send_watch_event(&self, path: &str, event: Value) -> usize {
        let mut line = serde_json::to_vec(&event).unwrap();
        line.push(b'\n');
        let mut world = self.world.lock().unwrap();
        let watches = world.watches.entry(path.to_string()).or_default();
        watches.retain(|w| w.send(Bytes::from(line.clone())).is_ok());
        watches.len()
    }
}

fn status_json(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code})
}

async fn api(
    State(world): State<Arc<Mutex<World>>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or_default().to_string();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut world = world.lock().unwrap();
    if method == Method::GET && query.contains("watch=true") {
        let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
        world.watches.entry(path).or_default().push(tx);
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
        });
        return Response::new(Body::from_stream(stream.boxed()));
    }
    // The leader-election Lease (by name); the member Leases are listed and watched as a
    // collection below, like any other kind.
    if path.contains("/leases/") || (path.ends_with("/leases") && method != Method::GET) {
        return match method {
            Method::GET => match &world.lease {
                Some(lease) => axum::Json(lease.clone()).into_response(),
                None => (
                    StatusCode::NOT_FOUND,
                    axum::Json(status_json(404, "NotFound")),
                )
                    .into_response(),
            },
            _ => {
                let mut lease = body.clone();
                let version = world.writes.len() + 1;
                lease["metadata"]["resourceVersion"] = json!(version.to_string());
                world.lease = Some(lease.clone());
                record(&mut world, &method, path, body);
                axum::Json(lease).into_response()
            }
        };
    }
    // A Secret read by name (the peer TLS Secrets): none exists until the operator makes it.
    if method == Method::GET && path.contains("/secrets/") {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(status_json(404, "NotFound")),
        )
            .into_response();
    }
    if method == Method::GET {
        let items = world.lists.get(&path).cloned().unwrap_or_default();
        return axum::Json(json!({
            "apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "10"}, "items": items,
        }))
        .into_response();
    }
    record(&mut world, &method, format!("{path}?{query}"), body.clone());
    axum::Json(body).into_response()
}

fn record(world: &mut World, method: &Method, uri: String, body: Value) {
    world.writes.push(Write {
        method: method.to_string(),
        uri,
        body,
        at: Instant::now(),
    });
}

/// The operator process; killed when dropped.
pub struct Operator(pub Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Operator {
    pub fn start(binary: &str, kubeconfig: &Path, metrics_port: u16, extra: &[&str]) -> Self {
        Operator(
            Command::new(binary)
                .args([
                    "run",
                    "--metrics-addr",
                    &format!("127.0.0.1:{metrics_port}"),
                ])
                .args(extra)
                .env("KUBECONFIG", kubeconfig)
                .env_remove("POD_NAMESPACE")
                .env_remove("RUST_LOG")
                .env_remove("GRIDLINE_WATCH_NAMESPACES")
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("the operator binary starts"),
        )
    }

    /// Resident memory, from /proc (Linux).
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub async fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
