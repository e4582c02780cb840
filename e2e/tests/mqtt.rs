//! MQTT through the Namespace's client Service, with the example clients (the development
//! identity: the CONNECT username is the authentication name) and permission bindings.

use anyhow::{bail, ensure};
use gridline_e2e::http::unique_id;
use gridline_e2e::manifests::{self, Manifest};
use gridline_e2e::mqtt::{MqttClient, NOT_AUTHORIZED};
use gridline_e2e::{E2e, EXAMPLE_NAMESPACE, e2e_or_skip};
use serde_json::json;
use std::time::Duration;

async fn serve_examples(e2e: &E2e) -> anyhow::Result<Vec<Manifest>> {
    let manifests = e2e.apply_examples().await?;
    e2e.wait_until_served(&manifests).await?;
    Ok(manifests)
}

async fn connect(addr: &str, username: &str) -> anyhow::Result<MqttClient> {
    match MqttClient::connect(addr, &unique_id(username), username).await? {
        Ok(client) => Ok(client),
        Err(code) => bail!("{username} refused with CONNACK {code:#x}"),
    }
}

/// What sensor-1 gets for publishing on, and subscribing to, its own telemetry topic.
async fn sensor_rights(addr: &str) -> anyhow::Result<(u8, u8)> {
    let mut sensor = connect(addr, "sensor-1").await?;
    let publish = sensor
        .publish("devices/sensor-1/telemetry", b"{\"celsius\":20}")
        .await?;
    let subscribe = sensor.subscribe("devices/sensor-1/telemetry", 1).await?;
    sensor.disconnect().await;
    Ok((publish, subscribe))
}

#[tokio::test]
async fn sensor_telemetry_reaches_the_dashboard_through_the_client_service() -> anyhow::Result<()> {
    let e2e = e2e_or_skip!("mqtt::telemetry_to_dashboard");
    serve_examples(&e2e).await?;
    let endpoints = e2e.endpoints(EXAMPLE_NAMESPACE).await?;

    let mut dashboard = connect(&endpoints.mqtt, "dashboard").await?;
    let granted = dashboard.subscribe("devices/+/telemetry/#", 1).await?;
    ensure!(granted == 1, "SUBACK {granted:#x}, expected QoS 1 granted");

    let payload = unique_id("reading");
    let mut sensor = connect(&endpoints.mqtt, "sensor-1").await?;
    let acknowledged = sensor
        .publish("devices/sensor-1/telemetry", payload.as_bytes())
        .await?;
    ensure!(acknowledged == 0, "PUBACK {acknowledged:#x}");
    sensor.disconnect().await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match dashboard.next_message(left).await? {
            Some(message) if message.payload == payload.as_bytes() => {
                ensure!(message.topic == "devices/sensor-1/telemetry", "{message:?}");
                break;
            }
            // Retained or earlier messages of a shared namespace.
            Some(_) => continue,
            None => bail!("the dashboard never received {payload}"),
        }
    }
    dashboard.disconnect().await;
    Ok(())
}

#[tokio::test]
async fn clients_are_held_to_their_topic_spaces_and_disabled_or_unknown_ones_are_refused()
-> anyhow::Result<()> {
    let e2e = e2e_or_skip!("mqtt::refusals");
    serve_examples(&e2e).await?;
    let endpoints = e2e.endpoints(EXAMPLE_NAMESPACE).await?;

    let mut sensor = connect(&endpoints.mqtt, "sensor-1").await?;
    let spoofed = sensor.publish("devices/sensor-2/telemetry", b"x").await?;
    ensure!(
        spoofed == NOT_AUTHORIZED,
        "sensor-1 publishing as sensor-2: PUBACK {spoofed:#x}"
    );
    sensor.disconnect().await;

    for username in ["retired-sensor", "nobody-of-this-name"] {
        let refused = MqttClient::connect(&endpoints.mqtt, &unique_id("x"), username).await?;
        match refused {
            Err(code) => ensure!(code >= 0x80, "{username}: CONNACK {code:#x}"),
            Ok(client) => {
                client.disconnect().await;
                bail!("{username} was let in");
            }
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_changed_permission_binding_is_enforced_without_a_restart() -> anyhow::Result<()> {
    let e2e = e2e_or_skip!("mqtt::permission_binding_change");
    let manifests = serve_examples(&e2e).await?;
    let endpoints = e2e.endpoints(EXAMPLE_NAMESPACE).await?;
    let addr = endpoints.mqtt.clone();

    // As the examples say: sensors publish their telemetry but may not subscribe to it.
    let (publish, subscribe) = sensor_rights(&addr).await?;
    ensure!(
        publish == 0 && subscribe == NOT_AUTHORIZED,
        "before: PUBACK {publish:#x}, SUBACK {subscribe:#x}"
    );

    // Turn the sensors' telemetry binding from Publisher into Subscriber.
    let example = manifests::find(&manifests, "PermissionBinding", "sensors-publish-telemetry")?;
    let mut flipped = example.clone();
    flipped.body["spec"]["permission"] = json!("Subscriber");
    e2e.apply(&flipped).await?;
    let result = async {
        e2e.eventually(
            "sensor-1 may subscribe to its telemetry and no longer publish it",
            Duration::from_secs(60),
            || async {
                let (publish, subscribe) = sensor_rights(&addr).await?;
                Ok((publish == NOT_AUTHORIZED && subscribe == 1).then_some(()))
            },
        )
        .await?;
        e2e.apply(example).await?;
        e2e.eventually(
            "the restored binding lets sensor-1 publish again",
            Duration::from_secs(60),
            || async {
                let (publish, subscribe) = sensor_rights(&addr).await?;
                Ok((publish == 0 && subscribe == NOT_AUTHORIZED).then_some(()))
            },
        )
        .await
    }
    .await;
    if result.is_err() {
        // A shared namespace outlives the test: leave the example binding behind.
        let _ = e2e.apply(example).await;
    }
    result
}
