//! A webhook for push delivery tests, in the test process: axum on 127.0.0.1 (plain HTTP, or
//! HTTPS with a certificate of the shared [`super::mqtt::TestPki`]), recording every request
//! it gets. It answers the validation handshake as told ([`Handshake`]) and each
//! delivery as a reply function says ([`Reply`]: accept, fail with a status, fail with a
//! `Retry-After`, stall), and can be stopped and started again on the same port (an endpoint
//! that restarts). Also the manifests and HTTP calls the push tests share.

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

use super::manifests::parsed;
use gridline_crds::types::event_subscription::{
    DeadLetterDestination, DeadLetterEndpointType, DeadLetterWithResourceIdentity,
    DeliveryConfiguration, DeliveryMode, PushInfo,
};
use gridline_crds::types::{EventSubscription, EventSubscriptionSpec, ObjectRef};

/// How the webhook answers the validation request (`OPTIONS`).
#[derive(Clone, Debug)]
pub enum Handshake {
    /// 200 with `WebHook-Allowed-Origin: *`.
    Allow,
    /// 200 with these allowed origin and rate headers (absent when `None`).
    Answer {
        origin: Option<String>,
        rate: Option<String>,
    },
    /// This status, no headers.
    Refuse(u16),
}

/// How the webhook answers one delivery.
#[derive(Clone, Debug)]
pub enum Reply {
    Status(u16),
    /// A status with a `Retry-After` header.
    RetryAfter(u16, String),
    /// Never answer.
    Stall,
    /// Answer with the status after a delay (recorded when answered).
    After(Duration, u16),
}

/// One request the webhook got.
#[derive(Clone, Debug)]
pub struct Received {
    pub at: Instant,
    pub method: Method,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// The events in the body (one, or the array's).
    pub events: Vec<Value>,
    /// What it answered (`None`: stalled).
    pub answered: Option<u16>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn ids(&self) -> Vec<String> {
        self.events
            .iter()
            .map(|e| e["id"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// A delivery (POST) the webhook accepted.
    pub fn delivered(&self) -> bool {
        self.method == Method::POST && self.answered.is_some_and(|s| (200..300).contains(&s))
    }
}

type ReplyFn = Arc<dyn Fn(&[Value], usize) -> Reply + Send + Sync>;

struct State {
    handshake: Handshake,
    reply: ReplyFn,
    received: Vec<Received>,
    /// Deliveries (POSTs) so far.
    posts: usize,
}

pub struct Webhook {
    pub addr: SocketAddr,
    /// HTTPS with this server configuration; plain HTTP when `None`.
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    state: Arc<Mutex<State>>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Webhook {
    /// Accepts the handshake and every delivery.
    pub async fn start() -> Webhook {
        Self::start_on("127.0.0.1:0".parse().expect("address")).await
    }

    pub async fn start_on(addr: SocketAddr) -> Webhook {
        Self::start_with(addr, None).await
    }

    /// Over HTTPS, with the server certificate of `pki` (for `localhost` and `127.0.0.1`).
    pub async fn start_tls(pki: &super::mqtt::TestPki) -> Webhook {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        use tokio_rustls::rustls;
        let chain = CertificateDer::pem_slice_iter(pki.server_chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("server chain");
        let key = PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes()).expect("key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config");
        let addr = "127.0.0.1:0".parse().expect("address");
        Self::start_with(addr, Some(Arc::new(config))).await
    }

    async fn start_with(
        addr: SocketAddr,
        tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    ) -> Webhook {
        let state = Arc::new(Mutex::new(State {
            handshake: Handshake::Allow,
            reply: Arc::new(|_, _| Reply::Status(200)),
            received: Vec::new(),
            posts: 0,
        }));
        let mut webhook = Webhook {
            addr,
            tls,
            state,
            shutdown: None,
            task: None,
        };
        webhook.listen(addr).await;
        webhook
    }

    async fn listen(&mut self, addr: SocketAddr) {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind the webhook");
        self.addr = listener.local_addr().expect("webhook address");
        let state = Arc::clone(&self.state);
        let router = Router::new().fallback(move |method, headers, body| {
            let state = Arc::clone(&state);
            async move { handle(state, method, headers, body).await }
        });
        let (shutdown, stopped) = oneshot::channel::<()>();
        self.shutdown = Some(shutdown);
        let stopped = async move {
            let _ = stopped.await;
        };
        self.task = Some(match &self.tls {
            None => tokio::spawn(async move {
                let _ = axum::serve(listener, router)
                    .with_graceful_shutdown(stopped)
                    .await;
            }),
            Some(config) => {
                let listener = TlsListener {
                    tcp: listener,
                    acceptor: tokio_rustls::TlsAcceptor::from(Arc::clone(config)),
                };
                tokio::spawn(async move {
                    let _ = axum::serve(listener, router)
                        .with_graceful_shutdown(stopped)
                        .await;
                })
            }
        });
    }

    /// Stop listening and drop every connection (an endpoint that went down).
    pub async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listen again on the same port, keeping what was recorded.
    pub async fn restart(&mut self) {
        self.stop().await;
        let addr = self.addr;
        self.listen(addr).await;
    }

    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr)
    }

    pub fn handshake(&self, handshake: Handshake) {
        self.state.lock().unwrap().handshake = handshake;
    }

    /// Answer every delivery the same way.
    pub fn reply(&self, reply: Reply) {
        self.reply_with(move |_, _| reply.clone());
    }

    /// Answer each delivery as `reply(events, n)` says, `n` counting deliveries from 0.
    pub fn reply_with(&self, reply: impl Fn(&[Value], usize) -> Reply + Send + Sync + 'static) {
        self.state.lock().unwrap().reply = Arc::new(reply);
    }

    /// Every request, validations included, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    pub fn deliveries(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.method == Method::POST)
            .collect()
    }

    pub fn validations(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.method == Method::OPTIONS)
            .collect()
    }

    /// Ids of the events in requests answered 2xx (with repeats: a duplicate shows twice).
    pub fn delivered_ids(&self) -> Vec<String> {
        self.deliveries()
            .iter()
            .filter(|r| r.delivered())
            .flat_map(Received::ids)
            .collect()
    }

    /// When each attempt to deliver event `id` arrived.
    pub fn attempts_of(&self, id: &str) -> Vec<Instant> {
        self.deliveries()
            .iter()
            .filter(|r| r.ids().iter().any(|i| i == id))
            .map(|r| r.at)
            .collect()
    }

    /// Poll every 20 ms until `check` holds for what was received (true) or `timeout` passes.
    pub async fn wait_until(&self, timeout: Duration, check: impl Fn(&[Received]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if check(&self.received()) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Accepts TCP connections and completes the TLS handshake (one at a time: a test server).
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            // A client that refuses our certificate fails here; the next one is served.
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

async fn handle(
    state: Arc<Mutex<State>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let events = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(events)) => events,
        Ok(event) => vec![event],
        Err(_) => Vec::new(),
    };
    let mut received = Received {
        at,
        method: method.clone(),
        headers,
        body: body.to_vec(),
        events,
        answered: None,
    };
    if method == Method::OPTIONS {
        let handshake = state.lock().unwrap().handshake.clone();
        let (status, origin, rate) = match handshake {
            Handshake::Allow => (200, Some("*".to_string()), None),
            Handshake::Answer { origin, rate } => (200, origin, rate),
            Handshake::Refuse(status) => (status, None, None),
        };
        received.answered = Some(status);
        state.lock().unwrap().received.push(received);
        let mut response = status_code(status).into_response();
        let headers = response.headers_mut();
        if let Some(origin) = origin {
            headers.insert("WebHook-Allowed-Origin", origin.parse().expect("header"));
        }
        if let Some(rate) = rate {
            headers.insert("WebHook-Allowed-Rate", rate.parse().expect("header"));
        }
        return response;
    }
    let reply = {
        let mut state = state.lock().unwrap();
        let n = state.posts;
        state.posts += 1;
        (state.reply)(&received.events, n)
    };
    match reply {
        Reply::Status(status) => {
            received.answered = Some(status);
            state.lock().unwrap().received.push(received);
            status_code(status).into_response()
        }
        Reply::RetryAfter(status, after) => {
            received.answered = Some(status);
            state.lock().unwrap().received.push(received);
            (status_code(status), [("Retry-After", after)]).into_response()
        }
        Reply::Stall => {
            state.lock().unwrap().received.push(received);
            std::future::pending::<Response>().await
        }
        Reply::After(delay, status) => {
            tokio::time::sleep(delay).await;
            received.answered = Some(status);
            state.lock().unwrap().received.push(received);
            status_code(status).into_response()
        }
    }
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).expect("a status code")
}

// ---- manifests and calls the push tests share ----

pub const KEY: &str = "push-test-key";
pub const API: &str = "api-version=2024-06-01";

/// A Namespace `push` with keys whose push subscriptions may use `http://` endpoints, a
/// Topic `orders` and a dead-letter Topic `dead` with a queue subscription `dead-letters`.
pub fn base_manifests() -> String {
    super::documents(&[
        super::NamespaceManifest::local("push")
            .sas_keys("push-keys")
            .allow_insecure_webhooks()
            .yaml(),
        super::sas_keys_secret("push-keys", KEY, "unused-key-2"),
        super::topic("orders", "push", 1),
        super::topic("dead", "push", 1),
        super::queue_subscription("dead-letters", "dead"),
    ])
}

/// A push subscription of topic `orders` delivering to `endpoint`, every setting at its
/// default but what `settings` changes (e.g. [`dead_lettering`]).
pub fn webhook_subscription(
    name: &str,
    endpoint: &str,
    settings: impl FnOnce(&mut PushInfo),
) -> String {
    let mut push: PushInfo = parsed("destination: {properties: {endpointUrl: set-below}}");
    push.destination.properties.endpoint_url = endpoint.to_string();
    settings(&mut push);
    let subscription = EventSubscription::new(
        name,
        EventSubscriptionSpec {
            topic_ref: ObjectRef::new("orders"),
            delivery_configuration: DeliveryConfiguration {
                delivery_mode: DeliveryMode::Push,
                queue: None,
                push: Some(push),
            },
            event_delivery_schema: Default::default(),
            filters_configuration: None,
            expiration_time_utc: None,
        },
    );
    super::manifests::to_yaml(&subscription)
}

/// Push settings sending dead letters to the `dead` topic.
pub fn dead_lettering(push: &mut PushInfo) {
    push.dead_letter_destination_with_resource_identity = Some(DeadLetterWithResourceIdentity {
        dead_letter_destination: DeadLetterDestination {
            endpoint_type: DeadLetterEndpointType::Topic,
            topic_ref: ObjectRef::new("dead"),
        },
    });
}

/// A CloudEvent with `id` and `data` padded to about `bytes` bytes of JSON.
pub fn event(id: &str, bytes: usize) -> Value {
    let padding = "x".repeat(bytes.saturating_sub(120));
    serde_json::json!({
        "specversion": "1.0",
        "id": id,
        "source": "/tests/push",
        "type": "com.example.push",
        "subject": format!("orders/{id}"),
        "data": {"padding": padding},
    })
}

/// Publish `events` (a batch) to `orders`; panics unless 200.
pub async fn publish(dataplane: &super::Dataplane, events: &[Value]) {
    let response = dataplane
        .client()
        .post(dataplane.url(&format!("/topics/orders:publish?{API}")))
        .header("Authorization", format!("SharedAccessKey {KEY}"))
        .header(
            "Content-Type",
            "application/cloudevents-batch+json; charset=utf-8",
        )
        .json(&Value::Array(events.to_vec()))
        .send()
        .await
        .expect("publish");
    assert_eq!(response.status(), 200, "publish failed");
}

/// Receive and acknowledge dead letters until `count` have come or `timeout` passes.
pub async fn dead_letters(
    dataplane: &super::Dataplane,
    count: usize,
    timeout: Duration,
) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let base = "/topics/dead/eventsubscriptions/dead-letters";
    while got.len() < count && Instant::now() < deadline {
        let response: Value = dataplane
            .client()
            .post(dataplane.url(&format!(
                "{base}:receive?{API}&maxEvents=100&maxWaitTime=10"
            )))
            .header("Authorization", format!("SharedAccessKey {KEY}"))
            .send()
            .await
            .expect("receive")
            .json()
            .await
            .expect("receive body");
        let mut tokens = Vec::new();
        for item in response["value"].as_array().cloned().unwrap_or_default() {
            tokens.push(item["brokerProperties"]["lockToken"].clone());
            got.push(item["event"].clone());
        }
        if !tokens.is_empty() {
            dataplane
                .client()
                .post(dataplane.url(&format!("{base}:acknowledge?{API}")))
                .header("Authorization", format!("SharedAccessKey {KEY}"))
                .json(&serde_json::json!({ "lockTokens": tokens }))
                .send()
                .await
                .expect("acknowledge");
        }
    }
    got
}

/// `GET /status/eventsubscriptions`: the entry of subscription `name`.
pub async fn status_of(dataplane: &super::Dataplane, name: &str) -> Option<Value> {
    let (_, body) = dataplane.get("/status/eventsubscriptions").await;
    let status: Value = serde_json::from_str(&body).ok()?;
    status["eventSubscriptions"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
}

/// One condition (`EndpointValidated`, `EndpointHealthy`) of subscription `name`.
pub async fn condition(dataplane: &super::Dataplane, name: &str, kind: &str) -> Option<Value> {
    status_of(dataplane, name).await?["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
        .cloned()
}
