//! MQTT messages routed into a namespace Topic and client lifecycle events, read back through
//! queue subscriptions with the official Python SDK (`tests/sdk/test_mqtt_routing.py`):
//! mosquitto clients publish (MQTT 5 with content type and user properties, MQTT 3.1.1,
//! binary payloads), connect, disconnect cleanly or are killed, and a Client manifest is
//! created, edited and deleted in local mode.

mod support;

use gridline_crds::attributes::AttributeValue;
use gridline_crds::types::namespace::{
    ClientLifecycleEvents, DynamicEnrichment, EnrichmentValueType, RoutingEnrichments,
    StaticEnrichment, TopicSpacesConfiguration,
};
use gridline_crds::types::{Client, ClientSpec, ObjectRef};
use serde_json::Value;
use std::net::SocketAddr;
use std::process::Command;
use support::manifests::AccessModel;
use support::python::{python_with_sdk, sdk_tests_dir};
use support::*;

const KEY: &str = "routing-test-key";

/// Namespace `dev` (the name the example access model uses) with SAS keys, the broker on, and
/// `settings` applied to its `topicSpacesConfiguration`; Topics `telemetry` and
/// `mqtt-lifecycle` with one queue subscription each; the access model `access`.
fn manifests(settings: fn(&mut TopicSpacesConfiguration), access: &AccessModel) -> String {
    let namespace = mqtt::namespace_manifest("dev")
        .sas_keys("dev-keys")
        .topic_spaces(settings);
    documents(&[
        namespace.yaml(),
        sas_keys_secret("dev-keys", KEY, "unused-second-key"),
        topic("telemetry", "dev", 1),
        topic("mqtt-lifecycle", "dev", 1),
        queue_subscription("all-telemetry", "telemetry"),
        queue_subscription("lifecycle-inbox", "mqtt-lifecycle"),
        access.yaml(),
    ])
}

/// [`manifests`] with the example access model.
fn example_manifests(settings: fn(&mut TopicSpacesConfiguration)) -> String {
    manifests(settings, &mqtt::access_model("dev"))
}

/// Every MQTT message routed to Topic `telemetry`, enriched with a static and four dynamic
/// attributes.
fn routing(settings: &mut TopicSpacesConfiguration) {
    let dynamic = |key: &str, value: &str| DynamicEnrichment {
        key: key.to_string(),
        value: value.to_string(),
    };
    settings.route_topic_ref = support::manifests::reference("telemetry");
    settings.routing_enrichments = Some(RoutingEnrichments {
        static_enrichments: vec![StaticEnrichment {
            key: "site".to_string(),
            value: "lab".to_string(),
            value_type: EnrichmentValueType::String,
        }],
        dynamic_enrichments: vec![
            dynamic("device", "${client.authenticationName}"),
            dynamic("floor", "${client.attributes.floor}"),
            dynamic("unit", "${mqtt.message.userProperties.unit}"),
            dynamic("mqtttopic", "${mqtt.message.topicName}"),
        ],
    });
}

/// Client lifecycle events published to Topic `mqtt-lifecycle`.
fn lifecycle(settings: &mut TopicSpacesConfiguration) {
    settings.client_lifecycle_events = Some(ClientLifecycleEvents {
        topic_ref: ObjectRef::new("mqtt-lifecycle"),
    });
}

/// Start the data plane on `manifests`; its workspace, the process and the MQTT address.
async fn start(manifests: &str) -> (Workspace, Dataplane, SocketAddr) {
    let workspace = Workspace::new();
    workspace.write("routed.yaml", manifests);
    let dataplane = workspace.start(&[]);
    dataplane.wait_ready().await;
    let addr = dataplane.mqtt_addr();
    (workspace, dataplane, addr)
}

/// Receive (and acknowledge) up to `count` events of `subscription` with the SDK, as parsed
/// by it.
async fn receive(
    dataplane: &Dataplane,
    topic: &str,
    subscription: &str,
    count: usize,
) -> Vec<Value> {
    let python = tokio::task::spawn_blocking(python_with_sdk)
        .await
        .expect("venv task");
    let endpoint = format!("http://{}", dataplane.addr);
    let args = [
        topic.to_string(),
        subscription.to_string(),
        count.to_string(),
    ];
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(sdk_tests_dir().join("test_mqtt_routing.py"))
            .args(args)
            .env("GRIDLINE_ENDPOINT", endpoint)
            .env("GRIDLINE_KEY", KEY)
            .output()
            .expect("run the SDK reader")
    })
    .await
    .expect("sdk task");
    assert!(
        output.status.success(),
        "{}\n--- data plane logs ---\n{}",
        String::from_utf8_lossy(&output.stderr),
        dataplane.logs()
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

fn by_subject<'a>(events: &'a [Value], subject: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["subject"] == subject)
        .unwrap_or_else(|| panic!("no event for {subject}: {events:#?}"))
}

fn published(output: std::process::Output) {
    assert!(
        output.status.success(),
        "mosquitto_pub: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn mqtt_publishes_arrive_as_cloud_events_with_their_enrichments() {
    let (_workspace, dataplane, addr) = start(&example_manifests(routing)).await;
    published(mqtt::publish(
        addr,
        "mqttv5",
        "sensor-1",
        &[
            "-q",
            "1",
            "-t",
            "lab/sensor-1/temperature",
            "-m",
            r#"{"celsius": 21.5}"#,
            "-D",
            "publish",
            "content-type",
            "application/json",
            "-D",
            "publish",
            "user-property",
            "unit",
            "C",
        ],
    ));
    published(mqtt::publish(
        addr,
        "mqttv311",
        "sensor-2",
        &["-t", "lab/sensor-2/raw", "-m", "plain"],
    ));
    let binary = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(binary.path(), [0u8, 159, 146, 150, 255]).expect("binary payload");
    let binary_path = binary.path().to_str().expect("utf-8 path");
    published(mqtt::publish(
        addr,
        "mqttv5",
        "sensor-1",
        &["-q", "1", "-t", "lab/sensor-1/blob", "-f", binary_path],
    ));
    // Not authorized (sensors publish under devices/<own name>/telemetry and lab/#): not routed.
    published(mqtt::publish(
        addr,
        "mqttv5",
        "sensor-1",
        &["-t", "devices/sensor-2/telemetry", "-m", "x"],
    ));
    // Text with the payload format indicator: data is a JSON string.
    published(mqtt::publish(
        addr,
        "mqttv5",
        "sensor-2",
        &[
            "-t",
            "lab/sensor-2/note",
            "-m",
            "door open",
            "-D",
            "publish",
            "payload-format-indicator",
            "1",
        ],
    ));

    let events = receive(&dataplane, "telemetry", "all-telemetry", 4).await;
    assert_eq!(events.len(), 4, "{events:#?}");

    let json = by_subject(&events, "lab/sensor-1/temperature");
    assert_eq!(json["type"], "MQTT.EventPublished");
    assert_eq!(json["source"], "dev");
    assert_eq!(json["datacontenttype"], "application/json");
    assert_eq!(json["data"], serde_json::json!({"celsius": 21.5}));
    let extensions = &json["extensions"];
    assert_eq!(extensions["site"], "lab");
    assert_eq!(extensions["device"], "sensor-1");
    assert_eq!(extensions["floor"], 1);
    assert_eq!(extensions["unit"], "C");
    assert_eq!(extensions["mqtttopic"], "lab/sensor-1/temperature");
    assert!(
        json["time"].as_str().is_some_and(|t| t.starts_with("20")),
        "{json}"
    );

    let v3 = by_subject(&events, "lab/sensor-2/raw");
    assert_eq!(
        v3["data"],
        serde_json::json!({"bytes_base64": "cGxhaW4="}),
        "3.1.1 has no content type"
    );
    assert_eq!(v3["extensions"]["device"], "sensor-2");
    assert_eq!(v3["extensions"]["floor"], 3);
    assert!(
        v3["extensions"].get("unit").is_none(),
        "no such user property"
    );

    let blob = by_subject(&events, "lab/sensor-1/blob");
    assert_eq!(
        blob["data"],
        serde_json::json!({"bytes_base64": "AJ+Slv8="})
    );

    let note = by_subject(&events, "lab/sensor-2/note");
    assert_eq!(note["data"], "door open");

    let appended = "gridline_mqtt_routed_events_total{result=\"appended\"}";
    assert_eq!(dataplane.metric(appended).await, Some(4.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_and_client_changes_arrive_as_lifecycle_events() {
    let (workspace, dataplane, addr) = start(&example_manifests(lifecycle)).await;
    // A clean DISCONNECT.
    published(mqtt::publish(
        addr,
        "mqttv5",
        "sensor-1",
        &["-i", "clean-session", "-t", "lab/x", "-m", "hi"],
    ));
    // A client killed mid-session.
    let mut subscriber = mqtt::subscribe(
        addr,
        "mqttv311",
        "sensor-2",
        &["-i", "killed-session", "-t", "lab/#"],
    );
    subscriber.kill().expect("kill mosquitto_sub");
    let _ = subscriber.wait();

    // Client changes in local mode: one created, one updated, one deleted.
    let applied = dataplane.metric(APPLIED).await.unwrap_or(0.0);
    let mut access = mqtt::access_model("dev");
    access.set_integer_attribute("sensor-1", "floor", 4);
    access.client_mut("dashboard").metadata.name = Some("dashboard-2".to_string());
    let newcomer = Client::new(
        "newcomer",
        ClientSpec {
            attributes: [
                (
                    "type".to_string(),
                    AttributeValue::String("sensor".to_string()),
                ),
                ("floor".to_string(), AttributeValue::Integer(2)),
            ]
            .into(),
            ..mqtt::client_spec("dev")
        },
    );
    let manifests = manifests(lifecycle, &access);
    let newcomer = support::manifests::to_yaml(&newcomer);
    workspace.write("routed.yaml", &format!("{manifests}---\n{newcomer}"));
    assert!(
        dataplane
            .wait_for_metric(APPLIED, applied + 1.0)
            .await
            .is_some(),
        "{}",
        dataplane.logs()
    );

    let events = receive(&dataplane, "mqtt-lifecycle", "lifecycle-inbox", 8).await;
    let of_type = |kind: &str| -> Vec<&Value> {
        events
            .iter()
            .filter(|e| e["type"] == format!("Microsoft.EventGrid.MQTTClient{kind}"))
            .collect()
    };

    let connected = of_type("SessionConnected");
    assert_eq!(connected.len(), 2, "{events:#?}");
    let clean = by_subject(&events, "clients/sensor-1/sessions/clean-session");
    assert_eq!(clean["source"], "dev");
    let disconnected = of_type("SessionDisconnected");
    assert_eq!(disconnected.len(), 2, "{events:#?}");
    let reason = |session: &str| {
        disconnected
            .iter()
            .find(|e| e["data"]["clientSessionName"] == session)
            .map(|e| e["data"]["disconnectionReason"].clone())
    };
    assert_eq!(
        reason("clean-session"),
        Some("ClientInitiatedDisconnect".into())
    );
    assert_eq!(reason("killed-session"), Some("ConnectionLost".into()));
    for event in connected.iter().chain(&disconnected) {
        let data = &event["data"];
        assert_eq!(data["namespaceName"], "dev");
        assert!(data["sequenceNumber"].as_u64().is_some(), "{event}");
    }
    let sequence = |kind: &Vec<&Value>, session: &str| {
        kind.iter()
            .find(|e| e["data"]["clientSessionName"] == session)
            .and_then(|e| e["data"]["sequenceNumber"].as_u64())
    };
    assert!(sequence(&connected, "killed-session") < sequence(&disconnected, "killed-session"));

    let updated = of_type("CreatedOrUpdated");
    let names: Vec<&str> = updated
        .iter()
        .filter_map(|e| e["data"]["clientName"].as_str())
        .collect();
    assert_eq!(
        updated.len(),
        3,
        "sensor-1, newcomer, dashboard-2: {names:?}"
    );
    let sensor = by_subject(&events, "clients/sensor-1");
    assert_eq!(sensor["data"]["state"], "Enabled");
    assert_eq!(sensor["data"]["attributes"]["floor"], 4);
    assert_eq!(sensor["data"]["clientAuthenticationName"], "sensor-1");
    assert!(sensor["data"]["createdOn"].as_str().is_some());
    assert!(sensor["data"]["updatedOn"].as_str().is_some());
    let deleted = of_type("Deleted");
    assert_eq!(deleted.len(), 1, "{events:#?}");
    assert_eq!(deleted[0]["subject"], "clients/dashboard");
    assert_eq!(deleted[0]["data"]["clientName"], "dashboard");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_take_over_and_a_shutdown_are_reported_with_their_reasons() {
    use gridline_dataplane::mqtt::codec::Version;
    let (workspace, mut dataplane, addr) = start(&example_manifests(lifecycle)).await;
    let connect = || mqtt::connect_packet(Version::V5, "shared-session", "sensor-1");
    let (_old, ack) = mqtt::RawClient::connect(addr, connect()).await;
    assert_eq!(ack.reason, 0);
    let (_new, ack) = mqtt::RawClient::connect(addr, connect()).await;
    assert_eq!(ack.reason, 0);
    // The new connection is ended by the shutdown: its event is appended before the store
    // closes, and read after a restart.
    assert!(dataplane.terminate().success(), "{}", dataplane.logs());
    let dataplane = workspace.start(&[]);
    dataplane.wait_ready().await;

    let events = receive(&dataplane, "mqtt-lifecycle", "lifecycle-inbox", 4).await;
    assert_eq!(events.len(), 4, "{events:#?}");
    let sequence = |kind: &str, reason: Option<&str>| -> Vec<u64> {
        events
            .iter()
            .filter(|e| e["type"] == format!("Microsoft.EventGrid.MQTTClientSession{kind}"))
            .filter(|e| reason.is_none_or(|r| e["data"]["disconnectionReason"] == r))
            .filter_map(|e| e["data"]["sequenceNumber"].as_u64())
            .collect()
    };
    let connected = sequence("Connected", None);
    assert_eq!(connected.len(), 2, "{events:#?}");
    let taken_over = sequence("Disconnected", Some("SessionTakenOver"));
    let shut_down = sequence("Disconnected", Some("ServerInitiatedDisconnect"));
    assert_eq!((taken_over.len(), shut_down.len()), (1, 1), "{events:#?}");
    let (first, second) = (
        connected[0].min(connected[1]),
        connected[0].max(connected[1]),
    );
    // Per session, each event is numbered above the one before, whatever order they were
    // written in: connect, taken over, connect again, shut down.
    assert!(first < taken_over[0] && taken_over[0] < second && second < shut_down[0]);
}
