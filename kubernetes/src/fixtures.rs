//! A scripted API server for tests of code that calls the Kubernetes API (the shape of
//! controller-rs `src/fixtures.rs`): each test lists the requests it expects, in order, with
//! the answer to each; a missing, extra or different request fails the test. Used by this
//! crate's Lease tests and, through the `fixtures` feature, by the operator's reconcile tests.

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use std::time::Duration;
use tower_test::mock::{self, Handle};

pub type ApiServerHandle = Handle<Request<Body>, Response<Body>>;

/// A client whose requests reach the returned handle, and the handle.
pub fn mock_client() -> (Client, ApiServerVerifier) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (
        Client::new(service, "default"),
        ApiServerVerifier(handle, Duration::from_secs(5)),
    )
}

/// One expected request: method, path and query, and what to answer.
#[derive(Clone, Debug)]
pub struct Expect {
    pub method: Method,
    /// Path plus query, e.g. `/api/v1/namespaces/shop/services/x?fieldManager=...`.
    pub uri: String,
    /// Asserted against the request body, when set.
    pub check_body: Option<fn(&Value)>,
    pub status: StatusCode,
    pub response: Value,
    /// Answer with the request body (what an apply or patch returns, near enough).
    pub echo: bool,
}

impl Expect {
    pub fn new(method: Method, uri: impl Into<String>) -> Self {
        Self {
            method,
            uri: uri.into(),
            check_body: None,
            status: StatusCode::OK,
            response: json!({}),
            echo: false,
        }
    }

    pub fn echo(mut self) -> Self {
        self.echo = true;
        self
    }

    pub fn body(mut self, check: fn(&Value)) -> Self {
        self.check_body = Some(check);
        self
    }

    pub fn respond(mut self, status: StatusCode, response: Value) -> Self {
        self.echo = false;
        self.status = status;
        self.response = response;
        self
    }

    /// Answer with a Kubernetes `Status` error.
    pub fn fail(self, status: StatusCode, reason: &str) -> Self {
        let code = status.as_u16();
        self.respond(
            status,
            json!({
                "apiVersion": "v1", "kind": "Status", "status": "Failure",
                "message": format!("scripted failure: {reason}"), "reason": reason, "code": code,
            }),
        )
    }
}

pub struct ApiServerVerifier(pub ApiServerHandle, Duration);

impl ApiServerVerifier {
    /// How long to wait for each request. Tests that advance a paused clock past the default
    /// (5 s) must wait longer, or the wait itself would time out.
    pub fn with_patience(mut self, patience: Duration) -> Self {
        self.1 = patience;
        self
    }

    /// Answer the expected requests in order, returning the bodies received. Panics (failing
    /// the test) on a request that differs from the script, or when one does not come.
    pub async fn run(&mut self, script: Vec<Expect>) -> Vec<Value> {
        let mut bodies = Vec::new();
        for (i, expect) in script.into_iter().enumerate() {
            let next = tokio::time::timeout(self.1, self.0.next_request()).await;
            let (request, send) = next
                .unwrap_or_else(|_| {
                    panic!("request {i} ({} {}) never came", expect.method, expect.uri)
                })
                .unwrap_or_else(|| panic!("client dropped before request {i} ({})", expect.uri));
            let uri = request.uri().to_string();
            assert_eq!(
                (request.method(), uri.as_str()),
                (&expect.method, expect.uri.as_str()),
                "request {i}"
            );
            let bytes = request
                .into_body()
                .collect_bytes()
                .await
                .expect("a readable request body");
            let body: Value = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).expect("a JSON request body")
            };
            if let Some(check) = expect.check_body {
                check(&body);
            }
            let answer = if expect.echo { &body } else { &expect.response };
            let response = Response::builder()
                .status(expect.status)
                .body(Body::from(serde_json::to_vec(answer).expect("JSON")))
                .expect("a response");
            send.send_response(response);
            bodies.push(body);
        }
        bodies
    }

    /// Fail if any further request arrives within `quiet`.
    pub async fn expect_no_more(&mut self, quiet: Duration) {
        if let Ok(Some((request, _))) = tokio::time::timeout(quiet, self.0.next_request()).await {
            panic!("unexpected request {} {}", request.method(), request.uri());
        }
    }
}
