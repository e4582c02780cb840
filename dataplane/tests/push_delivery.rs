//! Push delivery against a webhook in the test process (SPEC §C): the validation handshake
//! first, CloudEvents structured and batched bodies, delivery headers (secret ones never in
//! the logs), statuses that dead-letter at once, the status page, and isolation between
//! subscriptions.

mod support;

use gridline_crds::types::SecretKeyRef;
use gridline_crds::types::event_subscription::{
    DeliveryAttributeMapping, DeliveryAttributeMappingType, DeliveryAttributeProperties, PushInfo,
};
use serde_json::Value;
use std::time::{Duration, Instant};
use support::webhook::*;
use support::*;

/// Every test shrinks retry delays a hundredfold.
const FAST: &[&str] = &["--test-time-scale", "0.01"];

fn start(subscriptions: &[String]) -> (Workspace, Dataplane) {
    let workspace = Workspace::new();
    let mut documents = vec![base_manifests()];
    documents.extend(subscriptions.iter().cloned());
    workspace.write("push.yaml", &documents.join("---\n"));
    let dataplane = workspace.start(FAST);
    (workspace, dataplane)
}

async fn ready(dataplane: &Dataplane) {
    dataplane.wait_ready().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_delivered_after_the_handshake_one_per_request_with_their_headers() {
    let webhook = Webhook::start().await;
    let secret = "Bearer s3cret-from-a-Secret";
    let inline = "inline-s3cret-value";
    let mapping = |name: &str, mapping_type, properties| DeliveryAttributeMapping {
        name: name.to_string(),
        mapping_type,
        properties,
    };
    let headers = |push: &mut PushInfo| {
        push.destination.properties.delivery_attribute_mappings = vec![
            mapping(
                "X-Static",
                DeliveryAttributeMappingType::Static,
                DeliveryAttributeProperties {
                    value: Some("plain-value".to_string()),
                    ..Default::default()
                },
            ),
            mapping(
                "Authorization",
                DeliveryAttributeMappingType::Static,
                DeliveryAttributeProperties {
                    secret_key_ref: Some(SecretKeyRef {
                        name: "hook-secret".to_string(),
                        key: "token".to_string(),
                    }),
                    ..Default::default()
                },
            ),
            mapping(
                "X-Api-Key",
                DeliveryAttributeMappingType::Static,
                DeliveryAttributeProperties {
                    value: Some(inline.to_string()),
                    is_secret: true,
                    ..Default::default()
                },
            ),
            mapping(
                "X-Subject",
                DeliveryAttributeMappingType::Dynamic,
                DeliveryAttributeProperties {
                    source_field: Some("subject".to_string()),
                    ..Default::default()
                },
            ),
        ]
    };
    let secret_manifest = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: hook-secret\nstringData:\n  token: {secret}\n"
    );
    let (_workspace, dataplane) = start(&[
        secret_manifest,
        webhook_subscription("hook", &webhook.url("/events"), headers),
    ]);
    ready(&dataplane).await;
    let events: Vec<Value> = (0..3).map(|n| event(&format!("e-{n}"), 300)).collect();
    publish(&dataplane, &events).await;
    assert!(
        webhook
            .wait_until(Duration::from_secs(10), |r| {
                r.iter().filter(|r| r.delivered()).count() == 3
            })
            .await,
        "3 deliveries expected, got {:?}",
        webhook.delivered_ids()
    );

    let received = webhook.received();
    let validation = &received[0];
    assert_eq!(validation.method, "OPTIONS", "the handshake comes first");
    assert_eq!(
        validation.header("webhook-request-origin"),
        Some("gridline.dev")
    );
    assert!(validation.header("webhook-request-rate").is_some());
    let deliveries = webhook.deliveries();
    let mut ids: Vec<String> = deliveries.iter().flat_map(|r| r.ids()).collect();
    ids.sort();
    assert_eq!(ids, ["e-0", "e-1", "e-2"]);
    for request in &deliveries {
        assert_eq!(
            request.header("content-type"),
            Some("application/cloudevents+json; charset=utf-8")
        );
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert!(body.is_object(), "one event, structured mode");
        assert_eq!(request.header("x-static"), Some("plain-value"));
        assert_eq!(request.header("authorization"), Some(secret));
        assert_eq!(request.header("x-api-key"), Some(inline));
        let subject = body["subject"].as_str().unwrap();
        assert_eq!(request.header("x-subject"), Some(subject));
    }

    let validated = condition(&dataplane, "hook", "EndpointValidated")
        .await
        .unwrap();
    assert_eq!(validated["status"], "True");
    let healthy = condition(&dataplane, "hook", "EndpointHealthy")
        .await
        .unwrap();
    assert_eq!(healthy["status"], "True");
    let delivered = r#"gridline_push_delivered_events_total{subscription="hook",topic="orders"}"#;
    assert_eq!(dataplane.metric(delivered).await, Some(3.0));
    let latency =
        r#"gridline_push_delivery_latency_seconds_count{subscription="hook",topic="orders"}"#;
    assert_eq!(dataplane.metric(latency).await, Some(3.0));

    let logs = dataplane.logs();
    assert!(logs.contains("endpoint validated"), "{logs}");
    assert!(
        !logs.contains("s3cret"),
        "a secret reached the logs:\n{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_endpoint_receives_nothing_and_the_status_says_why() {
    let webhook = Webhook::start().await;
    webhook.handshake(Handshake::Answer {
        origin: Some("eventgrid.azure.net".into()),
        rate: None,
    });
    let (_workspace, dataplane) = start(&[webhook_subscription(
        "hook",
        &webhook.url("/events"),
        |_| {},
    )]);
    ready(&dataplane).await;
    publish(&dataplane, &[event("e-0", 200), event("e-1", 200)]).await;
    let refused = async {
        let validated = condition(&dataplane, "hook", "EndpointValidated").await?;
        (validated["status"] == "False").then_some(validated)
    };
    let mut validated = refused.await;
    let started = Instant::now();
    while validated.is_none() && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        validated = condition(&dataplane, "hook", "EndpointValidated")
            .await
            .filter(|c| c["status"] == "False");
    }
    let validated = validated.expect("the status says the validation failed");
    assert_eq!(validated["reason"], "OriginNotAllowed");
    assert!(
        validated["message"]
            .as_str()
            .unwrap()
            .contains("eventgrid.azure.net"),
        "{validated}"
    );
    let healthy = condition(&dataplane, "hook", "EndpointHealthy")
        .await
        .unwrap();
    assert_eq!(healthy["reason"], "NotValidated");
    // Validation is retried (10 s, 30 s, ... scaled a hundredfold); nothing is delivered.
    assert!(
        webhook
            .wait_until(Duration::from_secs(2), |r| r.len() >= 3)
            .await
    );
    assert!(
        webhook.deliveries().is_empty(),
        "{:?}",
        webhook.deliveries()
    );
    let validated_metric =
        r#"gridline_push_endpoint_validated{subscription="hook",topic="orders"}"#;
    assert_eq!(dataplane.metric(validated_metric).await, Some(0.0));

    // Once the endpoint allows us, the waiting events arrive.
    webhook.handshake(Handshake::Answer {
        origin: Some("gridline.dev".into()),
        rate: Some("6000".into()),
    });
    assert!(
        webhook
            .wait_until(Duration::from_secs(15), |r| {
                r.iter().filter(|r| r.delivered()).count() == 2
            })
            .await
    );
    let validated = condition(&dataplane, "hook", "EndpointValidated")
        .await
        .unwrap();
    assert_eq!(validated["status"], "True");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_respect_both_max_events_and_the_preferred_size() {
    let webhook = Webhook::start().await;
    let batching = |push: &mut PushInfo| {
        push.destination.properties.max_events_per_batch = 10;
        push.destination
            .properties
            .preferred_batch_size_in_kilobytes = 4;
    };
    let (_workspace, dataplane) = start(&[webhook_subscription(
        "hook",
        &webhook.url("/events"),
        batching,
    )]);
    ready(&dataplane).await;
    // Wait for the handshake, so the whole publish is there when the dispatcher takes.
    assert!(
        webhook
            .wait_until(Duration::from_secs(10), |r| !r.is_empty())
            .await
    );
    let mut events: Vec<Value> = (0..45).map(|n| event(&format!("small-{n}"), 300)).collect();
    events.insert(20, event("large", 6000));
    publish(&dataplane, &events).await;
    assert!(
        webhook
            .wait_until(Duration::from_secs(10), |_| {
                webhook.delivered_ids().len() == 46
            })
            .await,
        "got {:?}",
        webhook.delivered_ids()
    );
    let deliveries = webhook.deliveries();
    for request in &deliveries {
        assert_eq!(
            request.header("content-type"),
            Some("application/cloudevents-batch+json; charset=utf-8")
        );
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert!(body.is_array(), "batched deliveries are arrays");
        assert!(
            request.events.len() <= 10,
            "{} events",
            request.events.len()
        );
        if request.ids().contains(&"large".to_string()) {
            assert_eq!(request.events.len(), 1, "a large event goes alone");
        } else {
            assert!(
                request.body.len() <= 4096,
                "{} bytes in one request",
                request.body.len()
            );
        }
    }
    assert!(
        deliveries.iter().any(|r| r.events.len() > 1),
        "some requests carry several events"
    );
    let mut ids = webhook.delivered_ids();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 46);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_no_retry_can_fix_are_dead_lettered_at_once_and_the_others_retried() {
    let webhook = Webhook::start().await;
    let (_workspace, dataplane) = start(&[webhook_subscription(
        "hook",
        &webhook.url("/events"),
        dead_lettering,
    )]);
    ready(&dataplane).await;
    let not_retried = [400u16, 401, 403, 404, 414];
    let retried = [408u16, 413, 429, 500, 503];
    let events: Vec<Value> = not_retried
        .iter()
        .chain(&retried)
        .map(|status| event(&format!("status-{status}"), 200))
        .collect();
    // Each event's first attempt gets the status its id names; later attempts pass.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let first_attempts = std::sync::Arc::clone(&seen);
    webhook.reply_with(move |events, _| {
        let id = events[0]["id"].as_str().unwrap_or_default().to_string();
        let status: u16 = id.trim_start_matches("status-").parse().unwrap_or(200);
        if first_attempts.lock().unwrap().insert(id) {
            Reply::Status(status)
        } else {
            Reply::Status(200)
        }
    });
    publish(&dataplane, &events).await;

    let dead = dead_letters(&dataplane, not_retried.len(), Duration::from_secs(15)).await;
    let mut dead_statuses: Vec<u64> = dead
        .iter()
        .map(|e| e["lasthttpstatuscode"].as_u64().unwrap())
        .collect();
    dead_statuses.sort();
    assert_eq!(dead_statuses, [400, 401, 403, 404, 414]);
    for letter in &dead {
        assert_eq!(letter["deadletterreason"], "NonRetryableStatus", "{letter}");
        assert_eq!(letter["deliveryattempts"], 1);
        assert_eq!(letter["sourcesubscription"], "hook");
        assert!(letter["lastdeliverytime"].is_string());
        assert!(letter["lastdeliveryoutcome"].is_string());
        assert_eq!(
            letter["source"], "/tests/push",
            "the original event is kept"
        );
    }
    assert!(
        webhook
            .wait_until(Duration::from_secs(10), |_| {
                webhook.delivered_ids().len() == retried.len()
            })
            .await
    );
    for status in not_retried {
        assert_eq!(webhook.attempts_of(&format!("status-{status}")).len(), 1);
    }
    for status in retried {
        assert_eq!(
            webhook.attempts_of(&format!("status-{status}")).len(),
            2,
            "{status} is retried"
        );
    }
    let dead_metric = r#"gridline_push_dead_lettered_events_total{reason="NonRetryableStatus",subscription="hook",topic="orders"}"#;
    assert_eq!(dataplane.metric(dead_metric).await, Some(5.0));
    let failed_4xx =
        r#"gridline_push_failed_attempts_total{class="4xx",subscription="hook",topic="orders"}"#;
    assert_eq!(dataplane.metric(failed_4xx).await, Some(8.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_endpoint_does_not_delay_another_subscriptions_deliveries() {
    let stalled = Webhook::start().await;
    stalled.reply(Reply::Stall);
    let healthy = Webhook::start().await;
    let (_workspace, dataplane) = start(&[
        webhook_subscription("stalled", &stalled.url("/events"), |_| {}),
        webhook_subscription("healthy", &healthy.url("/events"), |_| {}),
    ]);
    ready(&dataplane).await;
    assert!(
        stalled
            .wait_until(Duration::from_secs(10), |r| !r.is_empty())
            .await
    );
    assert!(
        healthy
            .wait_until(Duration::from_secs(10), |r| !r.is_empty())
            .await
    );
    // Fill the stalled endpoint's requests first.
    let first: Vec<Value> = (0..40).map(|n| event(&format!("a-{n}"), 200)).collect();
    publish(&dataplane, &first).await;
    assert!(
        stalled
            .wait_until(Duration::from_secs(10), |r| r.len() > 16)
            .await
    );
    let published = Instant::now();
    let second: Vec<Value> = (0..20).map(|n| event(&format!("b-{n}"), 200)).collect();
    publish(&dataplane, &second).await;
    assert!(
        healthy
            .wait_until(Duration::from_secs(10), |_| {
                healthy.delivered_ids().len() == 60
            })
            .await
    );
    let last = healthy.deliveries().iter().map(|r| r.at).max().unwrap();
    let took = last.saturating_duration_since(published);
    assert!(
        took < Duration::from_secs(2),
        "the healthy subscription's 20 events took {took:?}"
    );
    // The stalled endpoint holds exactly the bounded number of requests.
    assert_eq!(
        stalled.deliveries().len(),
        16,
        "concurrency per destination is bounded"
    );
    let in_flight = r#"gridline_push_requests_in_flight{subscription="stalled",topic="orders"}"#;
    assert_eq!(dataplane.metric(in_flight).await, Some(16.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_endpoint_shows_in_the_status_and_metrics() {
    let webhook = Webhook::start().await;
    webhook.reply(Reply::Status(503));
    let (_workspace, dataplane) = start(&[webhook_subscription(
        "hook",
        &webhook.url("/events"),
        |_| {},
    )]);
    ready(&dataplane).await;
    publish(&dataplane, &[event("e-0", 200)]).await;
    let started = Instant::now();
    let mut healthy = None;
    while started.elapsed() < Duration::from_secs(10) {
        healthy = condition(&dataplane, "hook", "EndpointHealthy").await;
        if healthy.as_ref().is_some_and(|c| c["status"] == "False") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let healthy = healthy.unwrap();
    assert_eq!(healthy["status"], "False", "{healthy}");
    assert_eq!(healthy["reason"], "DeliveryFailing");
    assert!(healthy["message"].as_str().unwrap().contains("HTTP 503"));
    let status = status_of(&dataplane, "hook").await.unwrap();
    assert_eq!(status["endpoint"], webhook.url("/events"));
    assert!(status["lastFailure"]["message"].is_string());
    let gauge = r#"gridline_push_endpoint_healthy{subscription="hook",topic="orders"}"#;
    assert_eq!(dataplane.metric(gauge).await, Some(0.0));
    let failed =
        r#"gridline_push_failed_attempts_total{class="5xx",subscription="hook",topic="orders"}"#;
    assert!(dataplane.metric(failed).await.unwrap() >= 3.0);

    // It recovers: the next retry goes through.
    webhook.reply(Reply::Status(200));
    assert!(
        webhook
            .wait_until(Duration::from_secs(10), |_| webhook.delivered_ids().len()
                == 1)
            .await
    );
    // The endpoint records the request before the dispatcher has its answer: the status
    // follows a moment later.
    let mut healthy = None;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        healthy = condition(&dataplane, "hook", "EndpointHealthy").await;
        if healthy.as_ref().is_some_and(|c| c["status"] == "True") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(healthy.unwrap()["status"], "True");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_rate_the_endpoint_allows_is_honoured() {
    let webhook = Webhook::start().await;
    // 120 requests per minute: two at once, then one every half second.
    webhook.handshake(Handshake::Answer {
        origin: Some("*".into()),
        rate: Some("120".into()),
    });
    let (_workspace, dataplane) = start(&[webhook_subscription(
        "hook",
        &webhook.url("/events"),
        |_| {},
    )]);
    dataplane.wait_ready().await;
    assert!(
        webhook
            .wait_until(Duration::from_secs(10), |r| !r.is_empty())
            .await
    );
    let events: Vec<Value> = (0..6).map(|n| event(&format!("e-{n}"), 200)).collect();
    publish(&dataplane, &events).await;
    assert!(
        webhook
            .wait_until(Duration::from_secs(10), |_| webhook.delivered_ids().len()
                == 6)
            .await
    );
    let times: Vec<Instant> = webhook.deliveries().iter().map(|r| r.at).collect();
    let span = times[5] - times[0];
    assert!(
        span >= Duration::from_millis(1900) && span < Duration::from_secs(4),
        "6 requests at 2 per second took {span:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_stored_before_validation_is_delivered_in_full() {
    let webhook = Webhook::start().await;
    webhook.handshake(Handshake::Refuse(403));
    let batching = |push: &mut PushInfo| push.destination.properties.max_events_per_batch = 50;
    let (_workspace, dataplane) = start(&[webhook_subscription(
        "hook",
        &webhook.url("/events"),
        batching,
    )]);
    ready(&dataplane).await;
    const EVENTS: usize = 6000;
    for chunk in 0..EVENTS / 500 {
        let events: Vec<Value> = (0..500)
            .map(|n| event(&format!("e-{chunk}-{n}"), 150))
            .collect();
        publish(&dataplane, &events).await;
    }
    webhook.handshake(Handshake::Allow);
    assert!(
        webhook
            .wait_until(Duration::from_secs(20), |_| {
                webhook.delivered_ids().len() >= EVENTS
            })
            .await,
        "{} of {EVENTS} delivered",
        webhook.delivered_ids().len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_endpoint_is_trusted_through_the_ca_its_subscription_names() {
    let pki = support::mqtt::TestPki::new();
    let webhook = Webhook::start_tls(&pki).await;
    let ca: String = pki.ca_pem.lines().map(|l| format!("    {l}\n")).collect();
    let ca_secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: hook-ca\nstringData:\n  ca.crt: |\n{ca}"
    );
    let named_ca = |push: &mut PushInfo| {
        push.destination.properties.ca_certificate_secret_name = Some("hook-ca".to_string())
    };
    let (_workspace, dataplane) = start(&[
        ca_secret,
        webhook_subscription("trusted", &webhook.url("/events"), named_ca),
        webhook_subscription("system-roots", &webhook.url("/events"), |_| {}),
    ]);
    ready(&dataplane).await;
    publish(&dataplane, &[event("e-0", 200)]).await;
    assert!(
        webhook
            .wait_until(Duration::from_secs(10), |_| webhook.delivered_ids()
                == ["e-0"])
            .await,
        "delivered over TLS through the named CA"
    );
    // The test CA is no system root: the other subscription cannot validate the endpoint.
    let started = Instant::now();
    let refused = loop {
        let validated = condition(&dataplane, "system-roots", "EndpointValidated").await;
        if let Some(validated) = validated.filter(|c| c["status"] == "False") {
            break validated;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "not refused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(refused["reason"], "EndpointUnreachable");
    let message = refused["message"].as_str().unwrap();
    assert!(message.contains("certificate"), "{message}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        webhook.delivered_ids(),
        ["e-0"],
        "delivered once, by one subscription"
    );
}
