//! Push delivery's retry schedule (SPEC §C), run a hundred times faster with the test-only
//! time scale: immediately, 10 s, 30 s, 1 min, 5 min, then every 5 min (±10 %), a longer
//! `Retry-After` honoured, connection failures retried, then dead-lettering with the facts of
//! the last attempt.

mod support;

use serde_json::Value;
use std::time::{Duration, Instant};
use support::webhook::*;
use support::*;

const SCALE: f64 = 0.01;

fn start(subscription: String) -> (Workspace, Dataplane) {
    let workspace = Workspace::new();
    workspace.write("push.yaml", &[base_manifests(), subscription].join("---\n"));
    let dataplane = workspace.start(&["--test-time-scale", &SCALE.to_string()]);
    (workspace, dataplane)
}

fn gaps(times: &[Instant]) -> Vec<Duration> {
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_are_retried_on_the_schedule_then_dead_lettered() {
    let webhook = Webhook::start().await;
    webhook.reply(Reply::Status(503));
    let (_workspace, dataplane) = start(webhook_subscription(
        "hook",
        &webhook.url("/events"),
        |push| {
            push.max_delivery_count = 7;
            dead_lettering(push);
        },
    ));
    dataplane.wait_ready().await;
    publish(&dataplane, &[event("e-0", 200)]).await;
    let dead = dead_letters(&dataplane, 1, Duration::from_secs(20)).await;
    assert_eq!(dead.len(), 1, "dead-lettered after its 7 attempts");

    let attempts = webhook.attempts_of("e-0");
    println!("waits between attempts: {:?}", gaps(&attempts));
    assert_eq!(attempts.len(), 7);
    // Immediately, then 10 s, 30 s, 1 min, 5 min, 5 min: scaled, each ±10 %, plus the time a
    // request and its settlement take on a busy machine.
    let expected = [0.0, 10.0, 30.0, 60.0, 300.0, 300.0].map(|s: f64| s * SCALE);
    let slack = 0.15;
    for (n, (gap, expected)) in gaps(&attempts).iter().zip(expected).enumerate() {
        let gap = gap.as_secs_f64();
        assert!(
            gap >= expected * 0.9 - 0.01 && gap <= expected * 1.1 + slack,
            "wait {n}: {gap:.3} s, expected {expected:.3} s ±10 % (all: {:?})",
            gaps(&attempts)
        );
    }

    let letter = &dead[0];
    assert_eq!(letter["id"], "e-0");
    assert_eq!(letter["deadletterreason"], "MaxDeliveryCountExceeded");
    assert_eq!(letter["deliveryattempts"], 7);
    assert_eq!(letter["lasthttpstatuscode"], 503);
    assert_eq!(letter["lastdeliveryoutcome"], "Busy");
    assert!(letter["lastdeliverytime"].is_string());
    assert!(letter["publishtime"].is_string());
    let retried = r#"gridline_push_retried_events_total{subscription="hook",topic="orders"}"#;
    assert_eq!(dataplane.metric(retried).await, Some(6.0));
    let dead_metric = r#"gridline_push_dead_lettered_events_total{reason="MaxDeliveryCountExceeded",subscription="hook",topic="orders"}"#;
    assert_eq!(dataplane.metric(dead_metric).await, Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_longer_than_the_schedule_is_honoured() {
    let webhook = Webhook::start().await;
    // The first attempt is answered 429 with Retry-After: 2 (the schedule says "immediately").
    webhook.reply_with(|_, n| {
        if n == 0 {
            Reply::RetryAfter(429, "2".into())
        } else {
            Reply::Status(200)
        }
    });
    let (_workspace, dataplane) = start(webhook_subscription(
        "hook",
        &webhook.url("/events"),
        |_| {},
    ));
    dataplane.wait_ready().await;
    publish(&dataplane, &[event("e-0", 200)]).await;
    assert!(
        webhook
            .wait_until(Duration::from_secs(10), |_| webhook.delivered_ids().len()
                == 1)
            .await
    );
    let attempts = webhook.attempts_of("e-0");
    assert_eq!(attempts.len(), 2);
    let waited = attempts[1] - attempts[0];
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(3),
        "waited {waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_goes_down_gets_its_events_when_it_is_back() {
    let mut webhook = Webhook::start().await;
    let (_workspace, dataplane) = start(webhook_subscription(
        "hook",
        &webhook.url("/events"),
        |_| {},
    ));
    dataplane.wait_ready().await;
    assert!(
        webhook
            .wait_until(Duration::from_secs(10), |r| !r.is_empty())
            .await,
        "validated"
    );
    webhook.stop().await;
    publish(&dataplane, &[event("e-0", 200), event("e-1", 200)]).await;
    let failed = r#"gridline_push_failed_attempts_total{class="connection",subscription="hook",topic="orders"}"#;
    let started = Instant::now();
    while dataplane.metric(failed).await.unwrap_or(0.0) < 2.0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no connection failure counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = status_of(&dataplane, "hook").await.unwrap();
    let last: &Value = &status["lastFailure"]["message"];
    assert!(
        last.as_str().unwrap().starts_with("connection failed"),
        "{status}"
    );
    webhook.restart().await;
    assert!(
        webhook
            .wait_until(Duration::from_secs(10), |_| webhook.delivered_ids().len()
                == 2)
            .await,
        "delivered once the endpoint is back"
    );
}
