//! The Event Grid HTTP API of a Namespace running in the cluster, reached through its client
//! Service with the keys of the example Secret.

use anyhow::{Context, ensure};
use gridline_e2e::http::{EventGrid, unique_id};
use gridline_e2e::manifests::{self, Manifest};
use gridline_e2e::{E2e, EXAMPLE_KEYS_SECRET, EXAMPLE_NAMESPACE, e2e_or_skip};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;

fn order(id: &str, total: u32, region: &str) -> Value {
    json!({
        "specversion": "1.0",
        "id": id,
        "source": "/gridline-e2e",
        "type": "com.example.order.created",
        "datacontenttype": "application/json",
        "data": {"total": total, "region": region},
    })
}

/// Receives from `subscription` until the event `id` arrives, acknowledging everything
/// received (in a shared namespace, events of earlier runs may come first); the ids seen.
async fn receive_until(
    grid: &EventGrid,
    topic: &str,
    subscription: &str,
    id: &str,
) -> anyhow::Result<Vec<String>> {
    let mut seen = Vec::new();
    for _ in 0..6 {
        let received = grid.receive(topic, subscription, 100, 10).await?;
        let tokens: Vec<String> = received.iter().map(|r| r.lock_token.clone()).collect();
        seen.extend(
            received
                .iter()
                .filter_map(|r| r.event["id"].as_str().map(str::to_string)),
        );
        if !tokens.is_empty() {
            let acknowledged = grid.acknowledge(topic, subscription, &tokens).await?;
            ensure!(
                acknowledged.len() == tokens.len(),
                "acknowledged {} of {} lock tokens",
                acknowledged.len(),
                tokens.len()
            );
        }
        if seen.iter().any(|s| s == id) {
            return Ok(seen);
        }
    }
    anyhow::bail!("event {id} never reached {topic}/{subscription} (received {seen:?})")
}

async fn serve_examples(e2e: &E2e) -> anyhow::Result<Vec<Manifest>> {
    let manifests = e2e.apply_examples().await?;
    e2e.wait_until_served(&manifests).await?;
    Ok(manifests)
}

#[tokio::test]
async fn an_order_published_over_http_reaches_only_the_subscription_whose_filters_take_it()
-> anyhow::Result<()> {
    let e2e = e2e_or_skip!("http_api::filtered_publish_receive_acknowledge");
    serve_examples(&e2e).await?;
    let endpoints = e2e.endpoints(EXAMPLE_NAMESPACE).await?;
    let key = e2e.secret_value(EXAMPLE_KEYS_SECRET, "key1").await?;
    let grid = EventGrid::new(&endpoints.http, &key);

    // large-eu-orders takes EU orders of 1000 or more: the small one is filtered out.
    let small = unique_id("small-order");
    let large = unique_id("large-order");
    for event in [order(&small, 10, "eu-west"), order(&large, 1500, "eu-west")] {
        let (status, body) = grid.publish("orders", &event).await?;
        ensure!(status.is_success(), "publish: {status} {body}");
    }

    // One partition keeps publish order, so the small order would have come first.
    let seen = receive_until(&grid, "orders", "large-eu-orders", &large).await?;
    ensure!(
        !seen.contains(&small),
        "the filtered-out order was delivered: {seen:?}"
    );

    // Acknowledged events are gone: nothing more for this test within a short wait.
    let again = grid.receive("orders", "large-eu-orders", 100, 10).await?;
    let ours: HashSet<&str> = [small.as_str(), large.as_str()].into();
    ensure!(
        again
            .iter()
            .all(|r| !ours.contains(r.event["id"].as_str().unwrap_or(""))),
        "an acknowledged event came back: {again:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_wrong_key_is_refused_and_a_key_rotated_in_the_secret_takes_over() -> anyhow::Result<()> {
    let e2e = e2e_or_skip!("http_api::key_rotation");
    let manifests = serve_examples(&e2e).await?;
    let endpoints = e2e.endpoints(EXAMPLE_NAMESPACE).await?;
    let key2 = e2e.secret_value(EXAMPLE_KEYS_SECRET, "key2").await?;
    let probe = order(&unique_id("probe"), 1, "us-east");

    let (status, body) = EventGrid::new(&endpoints.http, "not-the-key")
        .publish("orders", &probe)
        .await?;
    ensure!(status == 401, "a wrong key: {status} {body}");
    ensure!(
        body["error"]["code"] == "Unauthorized",
        "Event Grid's error shape: {body}"
    );
    let (status, body) = EventGrid::new(&endpoints.http, &key2)
        .publish("orders", &probe)
        .await?;
    ensure!(status.is_success(), "the example key2: {status} {body}");

    // Rotate key2 in the Secret: the data plane watches it, no restart.
    let rotated_key = unique_id("rotated");
    let example_secret = manifests::find(&manifests, "Secret", EXAMPLE_KEYS_SECRET)?;
    let mut rotated = example_secret.clone();
    rotated.body["stringData"]["key2"] = json!(rotated_key);
    e2e.apply(&rotated).await?;
    let result = async {
        e2e.eventually(
            "the rotated key2 is accepted and the old one refused",
            Duration::from_secs(60),
            || async {
                let (new, _) = EventGrid::new(&endpoints.http, &rotated_key)
                    .publish("orders", &probe)
                    .await?;
                let (old, _) = EventGrid::new(&endpoints.http, &key2)
                    .publish("orders", &probe)
                    .await?;
                Ok((new.is_success() && old == 401).then_some(()))
            },
        )
        .await
    }
    .await;
    // Put the example key back whatever happened: a shared namespace outlives the test.
    e2e.apply(example_secret)
        .await
        .context("restoring the example Secret")?;
    result
}
