//! The Event Grid HTTP API of the real binary, driven with reqwest: publish, receive and
//! settle round trips, and each refusal with its status and error body.

mod support;

use gridline_dataplane::auth::sign_token;
use serde_json::{Value, json};
use support::*;

const KEY1: &str = "test-key-1";
const KEY2: &str = "test-key-2";
const API: &str = "api-version=2024-06-01";
const BATCH: &str = "application/cloudevents-batch+json; charset=utf-8";
/// The shortest long poll Event Grid allows.
const WAIT: &str = "maxWaitTime=10";

fn manifests() -> String {
    documents(&[
        namespace_with_keys("dev", "dev-keys"),
        sas_keys_secret("dev-keys", KEY1, KEY2),
        topic("orders", "dev", 1),
        queue_subscription("all-orders", "orders"),
        topic("alerts", "dev", 1),
        push_subscription("hook", "alerts", "https://127.0.0.1:9/hook"),
    ])
}

async fn start() -> (Workspace, Dataplane) {
    let workspace = Workspace::new();
    workspace.write("all.yaml", &manifests());
    let dataplane = workspace.start(&[]);
    dataplane.wait_ready().await;
    (workspace, dataplane)
}

/// A POST to the API, authenticated with key1.
fn post(dataplane: &Dataplane, path_and_query: &str) -> reqwest::RequestBuilder {
    dataplane
        .client()
        .post(dataplane.url(path_and_query))
        .header("authorization", format!("SharedAccessKey {KEY1}"))
        .timeout(std::time::Duration::from_secs(30))
}

async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

fn event(id: &str) -> Value {
    json!({
        "specversion": "1.0",
        "id": id,
        "source": "/tests/http-api",
        "type": "com.example.order.created",
        "subject": format!("orders/{id}"),
        "time": "2024-06-01T12:00:00Z",
        "datacontenttype": "application/json",
        "data": {"total": 42, "region": "eu-west"},
    })
}

async fn publish(dataplane: &Dataplane, events: Value) -> (u16, Value) {
    send(
        post(dataplane, &format!("/topics/orders:publish?{API}"))
            .header("content-type", BATCH)
            .body(events.to_string()),
    )
    .await
}

/// Receive from `all-orders` until `count` events arrived (or a few long polls passed).
async fn receive(dataplane: &Dataplane, count: usize) -> Vec<Value> {
    let mut received = Vec::new();
    for _ in 0..5 {
        let (status, body) = send(post(
            dataplane,
            &format!(
                "/topics/orders/eventsubscriptions/all-orders:receive?{API}&maxEvents=100&{WAIT}"
            ),
        ))
        .await;
        assert_eq!(status, 200, "{body}");
        received.extend(body["value"].as_array().expect("value").iter().cloned());
        if received.len() >= count {
            break;
        }
    }
    received
}

async fn settle(dataplane: &Dataplane, operation: &str, tokens: &[&str]) -> (u16, Value) {
    send(
        post(
            dataplane,
            &format!("/topics/orders/eventsubscriptions/all-orders:{operation}?{API}"),
        )
        .json(&json!({ "lockTokens": tokens })),
    )
    .await
}

fn lock_token(received: &Value) -> &str {
    received["brokerProperties"]["lockToken"]
        .as_str()
        .expect("lockToken")
}

fn error(body: &Value) -> (&str, &str) {
    (
        body["error"]["code"].as_str().unwrap_or_default(),
        body["error"]["message"].as_str().unwrap_or_default(),
    )
}

#[tokio::test]
async fn a_published_batch_is_received_as_sent_and_acknowledged() {
    let (_workspace, dataplane) = start().await;
    let (status, body) = publish(&dataplane, json!([event("1"), event("2")])).await;
    assert_eq!((status, &body), (200, &json!({})));

    let received = receive(&dataplane, 2).await;
    assert_eq!(received.len(), 2, "{received:?}");
    let mut events: Vec<&Value> = received.iter().map(|r| &r["event"]).collect();
    events.sort_by_key(|e| e["id"].as_str().unwrap().to_string());
    assert_eq!(events, [&event("1"), &event("2")]);
    for details in &received {
        assert_eq!(details["brokerProperties"]["deliveryCount"], 1);
    }

    let tokens: Vec<&str> = received.iter().map(lock_token).collect();
    let (status, body) = settle(&dataplane, "acknowledge", &tokens).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["failedLockTokens"], json!([]));
    let mut succeeded: Vec<&str> = body["succeededLockTokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    succeeded.sort();
    let mut expected = tokens.clone();
    expected.sort();
    assert_eq!(succeeded, expected);
}

#[tokio::test]
async fn a_receive_with_nothing_to_deliver_ends_with_an_empty_value() {
    let (_workspace, dataplane) = start().await;
    let (status, body) = send(post(
        &dataplane,
        &format!("/topics/orders/eventsubscriptions/all-orders:receive?{API}&{WAIT}"),
    ))
    .await;
    assert_eq!((status, body), (200, json!({"value": []})));
}

#[tokio::test]
async fn a_single_structured_event_is_published_with_the_older_api_version() {
    let (_workspace, dataplane) = start().await;
    let (status, body) = send(
        post(&dataplane, "/topics/orders:publish?api-version=2023-11-01")
            .header(
                "content-type",
                "application/cloudevents+json; charset=utf-8",
            )
            .body(event("single").to_string()),
    )
    .await;
    assert_eq!((status, body), (200, json!({})));
    let received = receive(&dataplane, 1).await;
    assert_eq!(received[0]["event"], event("single"));
}

#[tokio::test]
async fn a_binary_mode_event_is_stored_in_structured_form() {
    let (_workspace, dataplane) = start().await;
    let (status, body) = send(
        post(&dataplane, &format!("/topics/orders:publish?{API}"))
            .header("content-type", "text/plain")
            .header("ce-specversion", "1.0")
            .header("ce-id", "binary-1")
            .header("ce-source", "/tests/binary")
            .header("ce-type", "com.example.note")
            .header("ce-site", "lab")
            .body("hello"),
    )
    .await;
    assert_eq!((status, body), (200, json!({})));
    let received = receive(&dataplane, 1).await;
    assert_eq!(
        received[0]["event"],
        json!({
            "specversion": "1.0", "id": "binary-1", "source": "/tests/binary",
            "type": "com.example.note", "site": "lab", "datacontenttype": "text/plain",
            "data_base64": "aGVsbG8="
        })
    );
}

#[tokio::test]
async fn a_released_event_is_delivered_again_with_a_higher_delivery_count() {
    let (_workspace, dataplane) = start().await;
    publish(&dataplane, json!([event("again")])).await;
    let first = receive(&dataplane, 1).await;
    let (status, body) = send(
        post(
            &dataplane,
            &format!(
                "/topics/orders/eventsubscriptions/all-orders:release?{API}&releaseDelayInSeconds=0"
            ),
        )
        .json(&json!({"lockTokens": [lock_token(&first[0])]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["succeededLockTokens"], json!([lock_token(&first[0])]));
    let second = receive(&dataplane, 1).await;
    assert_eq!(second[0]["event"]["id"], "again");
    assert_eq!(second[0]["brokerProperties"]["deliveryCount"], 2);
}

#[tokio::test]
async fn bad_and_lost_lock_tokens_fail_one_by_one_and_the_request_is_200() {
    let (_workspace, dataplane) = start().await;
    publish(&dataplane, json!([event("settled")])).await;
    let received = receive(&dataplane, 1).await;
    let token = lock_token(&received[0]);
    let (status, _) = settle(&dataplane, "acknowledge", &[token]).await;
    assert_eq!(status, 200);

    let (status, body) = settle(&dataplane, "acknowledge", &[token, "not-a-lock-token"]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["succeededLockTokens"], json!([]));
    let failed = body["failedLockTokens"].as_array().unwrap();
    let code_of = |wanted: &str| {
        failed
            .iter()
            .find(|f| f["lockToken"] == wanted)
            .map(|f| f["error"]["code"].as_str().unwrap().to_string())
    };
    assert_eq!(code_of(token).as_deref(), Some("TokenLost"), "{body}");
    assert_eq!(
        code_of("not-a-lock-token").as_deref(),
        Some("BadToken"),
        "{body}"
    );
    for failure in failed {
        assert!(!failure["error"]["message"].as_str().unwrap().is_empty());
    }
}

#[tokio::test]
async fn an_unknown_topic_is_404() {
    let (_workspace, dataplane) = start().await;
    let (status, body) = send(
        post(&dataplane, &format!("/topics/invoices:publish?{API}"))
            .header("content-type", BATCH)
            .body(json!([event("1")]).to_string()),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(
        error(&body),
        ("NotFound", "topic 'invoices' not found in namespace 'dev'")
    );
}

#[tokio::test]
async fn an_unknown_subscription_is_404() {
    let (_workspace, dataplane) = start().await;
    let (status, body) = send(post(
        &dataplane,
        &format!("/topics/orders/eventsubscriptions/nobody:receive?{API}&{WAIT}"),
    ))
    .await;
    assert_eq!(status, 404);
    assert_eq!(
        error(&body),
        (
            "NotFound",
            "event subscription 'nobody' not found on topic 'orders'"
        )
    );
}

#[tokio::test]
async fn an_unsupported_api_version_is_400() {
    let (_workspace, dataplane) = start().await;
    let (status, body) = publish_raw(&dataplane, "api-version=2018-01-01", BATCH, "[]").await;
    assert_eq!(status, 400);
    assert_eq!(
        error(&body),
        (
            "BadRequest",
            "api-version '2018-01-01' is not supported; supported versions: 2023-11-01, 2024-06-01"
        )
    );
}

async fn publish_raw(
    dataplane: &Dataplane,
    query: &str,
    content_type: &str,
    body: &str,
) -> (u16, Value) {
    send(
        post(dataplane, &format!("/topics/orders:publish?{query}"))
            .header("content-type", content_type)
            .body(body.to_string()),
    )
    .await
}

#[tokio::test]
async fn malformed_json_is_400() {
    let (_workspace, dataplane) = start().await;
    let (status, body) = publish_raw(&dataplane, API, BATCH, "[{\"id\": ").await;
    assert_eq!(status, 400);
    let (code, message) = error(&body);
    assert_eq!(code, "BadRequest");
    assert!(
        message.starts_with("the body is not valid JSON: "),
        "{body}"
    );
}

#[tokio::test]
async fn a_missing_attribute_is_400_naming_the_event_and_the_attribute() {
    let (_workspace, dataplane) = start().await;
    let mut broken = event("4");
    broken.as_object_mut().unwrap().remove("source");
    let batch = json!([event("1"), event("2"), event("3"), broken]);
    let (status, body) = publish(&dataplane, batch).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"error": {
            "code": "BadRequest",
            "message": "event 3: required attribute 'source' is missing",
            "target": "events[3].source"
        }})
    );
    // All or nothing: the valid events of the batch were not published either.
    let (_, body) = send(post(
        &dataplane,
        &format!("/topics/orders/eventsubscriptions/all-orders:receive?{API}&{WAIT}"),
    ))
    .await;
    assert_eq!(body, json!({"value": []}));
}

#[tokio::test]
async fn a_request_over_1_mb_is_413() {
    let (_workspace, dataplane) = start().await;
    let big = json!([{
        "specversion": "1.0", "id": "big", "source": "/tests", "type": "t",
        "data": "x".repeat(1024 * 1024)
    }]);
    let (status, body) = publish(&dataplane, big).await;
    assert_eq!(status, 413, "{body}");
    let (code, message) = error(&body);
    assert_eq!(code, "RequestEntityTooLarge");
    assert!(
        message.ends_with("a request may be at most 1048576 bytes (1 MB)"),
        "{message}"
    );
}

#[tokio::test]
async fn a_publish_in_no_cloudevents_mode_is_415() {
    let (_workspace, dataplane) = start().await;
    let (status, body) = publish_raw(&dataplane, API, "application/json", "[]").await;
    assert_eq!(status, 415);
    assert_eq!(error(&body).0, "UnsupportedMediaType");
}

#[tokio::test]
async fn receiving_from_a_push_subscription_is_400() {
    let (_workspace, dataplane) = start().await;
    let (status, body) = send(post(
        &dataplane,
        &format!("/topics/alerts/eventsubscriptions/hook:receive?{API}&{WAIT}"),
    ))
    .await;
    assert_eq!(status, 400);
    let (code, message) = error(&body);
    assert_eq!(code, "BadRequest");
    assert!(message.contains("uses push delivery"), "{message}");
}

#[tokio::test]
async fn a_request_without_credentials_is_401() {
    let (_workspace, dataplane) = start().await;
    let (status, body) = send(
        dataplane
            .client()
            .post(dataplane.url(&format!("/topics/orders:publish?{API}")))
            .header("content-type", BATCH)
            .body("[]"),
    )
    .await;
    assert_eq!(status, 401);
    let (code, message) = error(&body);
    assert_eq!(code, "Unauthorized");
    assert!(
        message.starts_with("the request carries no credentials"),
        "{message}"
    );
    assert_eq!(
        dataplane
            .metric(r#"gridline_http_auth_failures_total{reason="missing"}"#)
            .await,
        Some(1.0)
    );
}

#[tokio::test]
async fn a_wrong_key_is_401_and_either_right_key_works() {
    let (_workspace, dataplane) = start().await;
    let wrong = dataplane
        .client()
        .post(dataplane.url(&format!("/topics/orders:publish?{API}")))
        .header("authorization", "SharedAccessKey not-the-key")
        .header("content-type", BATCH)
        .body("[]");
    let (status, body) = send(wrong).await;
    assert_eq!(status, 401);
    assert_eq!(
        error(&body),
        ("Unauthorized", "the shared access key is not valid")
    );

    let second = dataplane
        .client()
        .post(dataplane.url(&format!("/topics/orders:publish?{API}")))
        .header("aeg-sas-key", KEY2)
        .header("content-type", BATCH)
        .body(json!([event("k2")]).to_string());
    assert_eq!(send(second).await.0, 200);
}

#[tokio::test]
async fn a_sas_token_signed_with_a_key_is_accepted_in_either_header() {
    let (_workspace, dataplane) = start().await;
    let resource = format!("http://{}/topics/orders", dataplane.addr);
    let token = sign_token(KEY2, &resource, "2999-01-01T00:00:00Z");
    let url = dataplane.url(&format!("/topics/orders:publish?{API}"));
    let by_authorization = dataplane
        .client()
        .post(&url)
        .header("authorization", format!("SharedAccessSignature {token}"))
        .header("content-type", BATCH)
        .body(json!([event("sas-1")]).to_string());
    assert_eq!(send(by_authorization).await.0, 200);
    let by_header = dataplane
        .client()
        .post(&url)
        .header("aeg-sas-token", &token)
        .header("content-type", BATCH)
        .body(json!([event("sas-2")]).to_string());
    assert_eq!(send(by_header).await.0, 200);
}

#[tokio::test]
async fn an_expired_or_misdirected_sas_token_is_401() {
    let (_workspace, dataplane) = start().await;
    let url = dataplane.url(&format!("/topics/orders:publish?{API}"));
    let cases = [
        (
            sign_token(
                KEY1,
                &format!("http://{}/", dataplane.addr),
                "2020-01-01T00:00:00Z",
            ),
            "expired",
        ),
        (
            sign_token(
                KEY1,
                &format!("http://{}/topics/alerts", dataplane.addr),
                "2999-01-01T00:00:00Z",
            ),
            "wrong_resource",
        ),
        (
            sign_token(
                "another-key",
                &format!("http://{}/", dataplane.addr),
                "2999-01-01T00:00:00Z",
            ),
            "bad_signature",
        ),
    ];
    for (token, reason) in cases {
        let request = dataplane
            .client()
            .post(&url)
            .header("aeg-sas-token", token)
            .header("content-type", BATCH)
            .body("[]");
        let (status, body) = send(request).await;
        assert_eq!(status, 401, "{reason}: {body}");
        assert_eq!(
            dataplane
                .metric(&format!(
                    "gridline_http_auth_failures_total{{reason=\"{reason}\"}}"
                ))
                .await,
            Some(1.0),
            "{reason}"
        );
    }
}

#[tokio::test]
async fn publishes_and_requests_are_counted_by_topic_and_operation() {
    let (_workspace, dataplane) = start().await;
    publish(&dataplane, json!([event("1"), event("2"), event("3")])).await;
    assert_eq!(
        dataplane
            .metric(r#"gridline_http_published_events_total{topic="orders"}"#)
            .await,
        Some(3.0)
    );
    assert_eq!(
        dataplane
            .metric(r#"gridline_http_requests_total{path="publish",status="200"}"#)
            .await,
        Some(1.0)
    );
}
