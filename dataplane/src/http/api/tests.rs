//! The API's refusals, through the router, against a compiled Snapshot: everything decided
//! before the store is called. What the store does is tested end to end in
//! `tests/http_api.rs`.

use crate::config::NamespaceSelection;
use crate::config::manifests::{ManifestFile, SchemaRules, parse_manifests};
use crate::http::tests::app_with;
use crate::metrics::Metrics;
use crate::snapshot::{Applier, ReloadPolicy, SharedSnapshot};
use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use tower::ServiceExt;

const KEY: &str = "dev-key-1-change-me";

const NAMESPACE: &str = "apiVersion: gridline.dev/v1alpha1
kind: Namespace
metadata:
  name: dev
spec:
  sasKeys:
    secretName: dev-keys
  listeners:
    mqttTls: {enabled: false, port: 8883}
    https: {enabled: false, port: 443}
---
apiVersion: v1
kind: Secret
metadata:
  name: dev-keys
stringData:
  key1: dev-key-1-change-me
  key2: dev-key-2-change-me
";

const TOPIC_AND_SUBSCRIPTIONS: &str = "---
apiVersion: gridline.dev/v1alpha1
kind: Topic
metadata:
  name: orders
spec:
  namespaceRef: {name: dev}
---
apiVersion: gridline.dev/v1alpha1
kind: EventSubscription
metadata:
  name: all-orders
spec:
  topicRef: {name: orders}
  deliveryConfiguration:
    deliveryMode: Queue
    queue: {}
---
apiVersion: gridline.dev/v1alpha1
kind: EventSubscription
metadata:
  name: webhook
spec:
  topicRef: {name: orders}
  deliveryConfiguration:
    deliveryMode: Push
    push:
      destination:
        endpointType: WebHook
        properties:
          endpointUrl: https://example.com/events
";

async fn serving(manifests: &str) -> (Router, tempfile::TempDir) {
    let shared = SharedSnapshot::new();
    let mut applier = Applier::new(
        shared.clone(),
        Arc::new(Metrics::new().unwrap()),
        NamespaceSelection::Only,
        ReloadPolicy::AllOrNothing,
    );
    let loaded = parse_manifests(
        &[ManifestFile {
            path: "all.yaml".into(),
            text: manifests.into(),
        }],
        &SchemaRules::new(),
    );
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    applier.apply(loaded).unwrap();
    assert!(shared.load().namespace.is_some(), "no Namespace compiled");
    let (router, _, data) = app_with(shared).await;
    (router, data)
}

async fn app() -> (Router, tempfile::TempDir) {
    serving(&format!("{NAMESPACE}{TOPIC_AND_SUBSCRIPTIONS}")).await
}

struct Call {
    method: &'static str,
    uri: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

fn post(uri: &str) -> Call {
    Call {
        method: "POST",
        uri: uri.to_string(),
        headers: vec![("authorization", format!("SharedAccessKey {KEY}"))],
        body: Vec::new(),
    }
}

impl Call {
    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value.to_string()));
        self
    }

    fn anonymous(mut self) -> Self {
        self.headers.retain(|(n, _)| *n != "authorization");
        self
    }

    fn json(self, body: Value) -> Self {
        self.body(body.to_string().into_bytes())
    }

    fn body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }

    async fn send(self, router: &Router) -> (StatusCode, Value) {
        let mut request = Request::builder().method(self.method).uri(&self.uri);
        for (name, value) in &self.headers {
            request = request.header(*name, value);
        }
        let response = router
            .clone()
            .oneshot(request.body(Body::from(self.body)).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, body)
    }
}

const PUBLISH: &str = "/topics/orders:publish?api-version=2024-06-01";
const RECEIVE: &str = "/topics/orders/eventsubscriptions/all-orders:receive?api-version=2024-06-01";
const ACKNOWLEDGE: &str =
    "/topics/orders/eventsubscriptions/all-orders:acknowledge?api-version=2024-06-01";
const BATCH: &str = "application/cloudevents-batch+json; charset=utf-8";

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

fn event() -> Value {
    json!({"specversion": "1.0", "id": "1", "source": "/tests", "type": "t"})
}

#[tokio::test]
async fn without_a_namespace_every_operation_is_503() {
    let (router, _, _data) = app_with(SharedSnapshot::new()).await;
    let (status, body) = post(PUBLISH).send(&router).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"]["code"], "ServiceUnavailable");
    assert_eq!(
        message(&body),
        "the data plane serves no Namespace yet: no configuration loaded yet"
    );
}

#[tokio::test]
async fn a_request_without_credentials_is_401_and_counted() {
    let (router, _data) = app().await;
    let (status, body) = post(PUBLISH).anonymous().send(&router).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "Unauthorized");
    assert!(message(&body).starts_with("the request carries no credentials"));
    let metrics = metrics_text(&router).await;
    assert!(
        metrics.contains(r#"gridline_http_auth_failures_total{reason="missing"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"gridline_http_auth_failures_total{reason="wrong_key"} 0"#));
}

#[tokio::test]
async fn a_wrong_key_is_401_in_either_header() {
    let (router, _data) = app().await;
    for call in [
        post(PUBLISH).header("authorization", "SharedAccessKey nope"),
        post(PUBLISH).anonymous().header("aeg-sas-key", "nope"),
    ] {
        let (status, body) = call.send(&router).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(message(&body), "the shared access key is not valid");
    }
}

#[tokio::test]
async fn credentials_are_checked_before_names_are_revealed() {
    let (router, _data) = app().await;
    let (status, _) = post("/topics/secret-topic:publish?api-version=2024-06-01")
        .anonymous()
        .send(&router)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_namespace_without_keys_refuses_every_request_and_says_why() {
    let without_keys = NAMESPACE.replace("  sasKeys:\n    secretName: dev-keys\n", "");
    let (router, _data) = serving(&format!("{without_keys}{TOPIC_AND_SUBSCRIPTIONS}")).await;
    let (status, body) = post(PUBLISH).send(&router).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        message(&body).starts_with("no shared access keys are configured for Namespace 'dev'"),
        "{body}"
    );
}

#[tokio::test]
async fn an_unsupported_api_version_is_400_naming_the_supported_ones() {
    let (router, _data) = app().await;
    let (status, body) = post("/topics/orders:publish?api-version=2018-01-01")
        .send(&router)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "BadRequest");
    assert_eq!(
        message(&body),
        "api-version '2018-01-01' is not supported; supported versions: 2023-11-01, 2024-06-01"
    );
    let (status, _) = post("/topics/orders:publish").send(&router).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_unknown_topic_or_subscription_is_404() {
    let (router, _data) = app().await;
    let (status, body) = post("/topics/invoices:publish?api-version=2024-06-01")
        .send(&router)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "NotFound");
    assert_eq!(
        message(&body),
        "topic 'invoices' not found in namespace 'dev'"
    );
    let (status, body) =
        post("/topics/orders/eventsubscriptions/nobody:receive?api-version=2024-06-01")
            .send(&router)
            .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        message(&body),
        "event subscription 'nobody' not found on topic 'orders'"
    );
}

#[tokio::test]
async fn an_unknown_operation_is_404() {
    let (router, _data) = app().await;
    let (status, body) = post("/topics/orders:frobnicate?api-version=2024-06-01")
        .send(&router)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(message(&body).starts_with("no operation at '/topics/orders:frobnicate'"));
}

#[tokio::test]
async fn names_match_without_regard_to_case() {
    let (router, _data) = app().await;
    // Resolved (so the body is looked at), not 404.
    let (status, body) = post("/topics/ORDERS:publish?api-version=2024-06-01")
        .header("content-type", BATCH)
        .body(b"[".to_vec())
        .send(&router)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) =
        post("/topics/Orders/EventSubscriptions/ALL-ORDERS:acknowledge?api-version=2024-06-01")
            .json(json!({"lockTokens": []}))
            .send(&router)
            .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn only_post_is_allowed() {
    let (router, _data) = app().await;
    let mut call = post(PUBLISH);
    call.method = "GET";
    let (status, body) = call.send(&router).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"]["code"], "MethodNotAllowed");
}

#[tokio::test]
async fn a_publish_that_is_no_cloudevents_mode_is_415() {
    let (router, _data) = app().await;
    let (status, body) = post(PUBLISH)
        .header("content-type", "application/json")
        .json(json!([event()]))
        .send(&router)
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(body["error"]["code"], "UnsupportedMediaType");
    assert!(message(&body).starts_with("content type 'application/json' is not supported"));
}

#[tokio::test]
async fn a_publish_over_1_mb_is_413_before_it_is_read() {
    let (router, _data) = app().await;
    let (status, body) = post(PUBLISH)
        .header("content-type", BATCH)
        .header("content-length", "2000000")
        .send(&router)
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"]["code"], "RequestEntityTooLarge");
    assert_eq!(
        message(&body),
        "the request body is 2000000 bytes; a request may be at most 1048576 bytes (1 MB)"
    );
}

#[tokio::test]
async fn a_publish_body_over_1_mb_without_a_length_is_413() {
    let (router, _data) = app().await;
    let mut body = b"[".to_vec();
    body.resize(2 << 20, b' ');
    let (status, _) = post(PUBLISH)
        .header("content-type", BATCH)
        .body(body)
        .send(&router)
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn malformed_json_is_400() {
    let (router, _data) = app().await;
    let (status, body) = post(PUBLISH)
        .header("content-type", BATCH)
        .body(b"[{\"id\": }]".to_vec())
        .send(&router)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        message(&body).starts_with("the body is not valid JSON: "),
        "{body}"
    );
}

#[tokio::test]
async fn an_invalid_event_is_400_naming_its_index_and_attribute() {
    let (router, _data) = app().await;
    let mut broken = event();
    broken.as_object_mut().unwrap().remove("type");
    let (status, body) = post(PUBLISH)
        .header("content-type", BATCH)
        .json(json!([event(), broken]))
        .send(&router)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({"error": {
            "code": "BadRequest",
            "message": "event 1: required attribute 'type' is missing",
            "target": "events[1].type"
        }})
    );
}

#[tokio::test]
async fn receive_and_settle_on_a_push_subscription_are_400() {
    let (router, _data) = app().await;
    for operation in ["receive", "acknowledge"] {
        let (status, body) = post(&format!(
            "/topics/orders/eventsubscriptions/webhook:{operation}?api-version=2024-06-01"
        ))
        .json(json!({"lockTokens": ["x"]}))
        .send(&router)
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{operation}");
        assert!(
            message(&body).contains("uses push delivery"),
            "{operation}: {body}"
        );
    }
}

#[tokio::test]
async fn receive_parameters_out_of_range_are_400() {
    let (router, _data) = app().await;
    for query in [
        "&maxEvents=0",
        "&maxEvents=101",
        "&maxWaitTime=5",
        "&maxWaitTime=121",
    ] {
        let (status, _) = post(&format!("{RECEIVE}{query}")).send(&router).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
    }
}

#[tokio::test]
async fn settle_bodies_must_hold_1_to_100_lock_tokens() {
    let (router, _data) = app().await;
    let cases = [
        (
            json!({"lockTokens": []}),
            "lockTokens must hold 1 to 100 lock tokens; got 0",
        ),
        (
            json!({"lockTokens": vec!["t"; 101]}),
            "lockTokens must hold 1 to 100 lock tokens; got 101",
        ),
    ];
    for (body, expected) in cases {
        let (status, response) = post(ACKNOWLEDGE).json(body).send(&router).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(message(&response), expected);
    }
    let (status, response) = post(ACKNOWLEDGE)
        .json(json!({"tokens": ["t"]}))
        .send(&router)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&response).starts_with("the body must be {\"lockTokens\""));
}

#[tokio::test]
async fn a_release_delay_event_grid_does_not_offer_is_400() {
    let (router, _data) = app().await;
    let (status, body) = post(
        "/topics/orders/eventsubscriptions/all-orders:release?api-version=2024-06-01&releaseDelayInSeconds=30",
    )
    .json(json!({"lockTokens": ["t"]}))
    .send(&router)
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        message(&body),
        "releaseDelayInSeconds must be one of 0, 10, 60, 600, 3600; got '30'"
    );
}

#[tokio::test]
async fn requests_are_counted_by_operation() {
    let (router, _data) = app().await;
    post(RECEIVE).anonymous().send(&router).await;
    post(ACKNOWLEDGE)
        .json(json!({"lockTokens": []}))
        .send(&router)
        .await;
    let metrics = metrics_text(&router).await;
    assert!(
        metrics.contains(r#"gridline_http_requests_total{path="receive",status="401"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"gridline_http_requests_total{path="acknowledge",status="400"} 1"#),
        "{metrics}"
    );
}

async fn metrics_text(router: &Router) -> String {
    let response = router
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let bytes = to_bytes(response.into_body(), 1 << 20).await.unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}
