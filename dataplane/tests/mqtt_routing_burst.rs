//! A burst of MQTT messages routed into a Topic (mqtt/README.md "Routing"): a QoS 1 PUBACK
//! comes only once the routed event is stored, so every acknowledged message is in the Topic
//! afterwards, however fast the publishers go; QoS 0 messages are appended or counted as
//! dropped.

mod support;

use gridline_dataplane::mqtt::codec::{Packet, QoS, Version, reason};
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;
use support::mqtt::{RawClient, connect_packet, message};
use support::*;

const KEY: &str = "burst-test-key";
const API: &str = "api-version=2024-06-01";
/// Publishers, and QoS 1 messages each: 20,000 in all.
const PUBLISHERS: usize = 4;
const MESSAGES_EACH: usize = 5_000;
/// QoS 1 messages a publisher keeps unacknowledged (our receive maximum).
const WINDOW: usize = 100;

/// Namespace `dev` routing into Topic `telemetry` (one queue subscription), the example
/// access model, no rate limit.
async fn start() -> (Workspace, Dataplane, SocketAddr) {
    let namespace = mqtt::namespace_manifest("dev")
        .sas_keys("dev-keys")
        .topic_spaces(|t| {
            t.maximum_messages_per_second_per_connection = 1_000_000;
            t.route_topic_ref = manifests::reference("telemetry");
        })
        .yaml();
    let manifests = documents(&[
        namespace,
        sas_keys_secret("dev-keys", KEY, "unused-second-key"),
        topic("telemetry", "dev", 1),
        queue_subscription("all-telemetry", "telemetry"),
        mqtt::access("dev"),
    ]);
    let workspace = Workspace::new();
    workspace.write("routed.yaml", &manifests);
    let dataplane = workspace.start(&[]);
    dataplane.wait_ready().await;
    let addr = dataplane.mqtt_addr();
    (workspace, dataplane, addr)
}

fn publish_packet(topic: &str, qos: QoS, packet_id: u16) -> Packet {
    packets::publish(packet_id, message(topic, "{}", qos))
}

/// Publisher `index` sends [`MESSAGES_EACH`] QoS 1 messages, one topic each
/// (`lab/burst/<index>/<n>`), keeping [`WINDOW`] unacknowledged; the topics whose PUBACK said
/// success.
async fn burst(addr: SocketAddr, index: usize, version: Version) -> Vec<String> {
    let (mut client, ack) = RawClient::connect(
        addr,
        connect_packet(version, &format!("burst-{index}"), "sensor-1"),
    )
    .await;
    assert_eq!(ack.reason, reason::SUCCESS);
    let topic_of = |n: usize| format!("lab/burst/{index}/{n}");
    let mut acknowledged = Vec::new();
    let mut sent = 0;
    let mut waiting = std::collections::VecDeque::new();
    while acknowledged.len() < MESSAGES_EACH {
        while sent < MESSAGES_EACH && waiting.len() < WINDOW {
            let packet_id = (sent % 60_000 + 1) as u16;
            client
                .send(publish_packet(&topic_of(sent), QoS::AtLeastOnce, packet_id))
                .await;
            waiting.push_back(sent);
            sent += 1;
        }
        match client.next(Duration::from_secs(30)).await {
            Some(Packet::PubAck(ack)) => {
                // Acknowledgements come in PUBLISH order (MQTT §4.6).
                let n = waiting.pop_front().expect("a PUBACK for a PUBLISH");
                assert_eq!(usize::from(ack.packet_id.get()), n % 60_000 + 1);
                if ack.reason == reason::SUCCESS {
                    acknowledged.push(topic_of(n));
                }
            }
            Some(_) => {}
            None => panic!("publisher {index}: no PUBACK within 30 s"),
        }
    }
    acknowledged
}

/// Receive (without acknowledging: each event is handed out once while locked) every event of
/// the queue subscription until a receive comes back empty: their subjects.
async fn receive_all(dataplane: &Dataplane) -> Vec<String> {
    let url = dataplane.url(&format!(
        "/topics/telemetry/eventsubscriptions/all-telemetry:receive?{API}&maxEvents=100&maxWaitTime=10"
    ));
    let mut subjects = Vec::new();
    loop {
        let response = dataplane
            .client()
            .post(&url)
            .header("Authorization", format!("SharedAccessKey {KEY}"))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .expect("receive");
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.expect("receive JSON");
        let events = body["value"].as_array().expect("value").clone();
        if events.is_empty() {
            return subjects;
        }
        subjects.extend(
            events
                .iter()
                .map(|e| e["event"]["subject"].as_str().expect("subject").to_string()),
        );
    }
}

async fn metric(dataplane: &Dataplane, sample: &str) -> f64 {
    dataplane.metric(sample).await.unwrap_or(0.0)
}

#[tokio::test]
async fn every_qos1_message_acknowledged_in_a_burst_is_in_the_routing_topic() {
    let (_workspace, dataplane, addr) = start().await;
    let publishers = (0..PUBLISHERS).map(|index| {
        let version = if index % 2 == 0 {
            Version::V5
        } else {
            Version::V311
        };
        tokio::spawn(burst(addr, index, version))
    });
    let bursts = tokio::time::timeout(
        Duration::from_secs(240),
        futures::future::join_all(publishers),
    )
    .await
    .expect("the burst ends within 4 minutes");
    let acknowledged: BTreeSet<String> = bursts
        .into_iter()
        .flat_map(|burst| burst.expect("publisher"))
        .collect();
    assert_eq!(
        acknowledged.len(),
        PUBLISHERS * MESSAGES_EACH,
        "every message acknowledged with success"
    );

    let stored: Vec<String> = receive_all(&dataplane).await;
    let stored_set: BTreeSet<String> = stored.iter().cloned().collect();
    let missing: Vec<&String> = acknowledged.difference(&stored_set).take(5).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged messages are not in the Topic, e.g. {missing:?}",
        acknowledged.difference(&stored_set).count()
    );
    assert_eq!(stored.len(), stored_set.len(), "each stored once");
    let routed = "gridline_mqtt_routed_events_total";
    assert_eq!(
        metric(&dataplane, &format!("{routed}{{result=\"dropped\"}}")).await,
        0.0
    );
    assert_eq!(
        metric(&dataplane, &format!("{routed}{{result=\"appended\"}}")).await,
        (PUBLISHERS * MESSAGES_EACH) as f64
    );
}

#[tokio::test]
async fn every_routed_qos0_message_is_appended_or_counted_as_dropped() {
    let (_workspace, dataplane, addr) = start().await;
    const QOS0_MESSAGES: usize = 30_000;
    let (mut client, ack) = RawClient::connect(
        addr,
        connect_packet(Version::V311, "burst-qos0", "sensor-1"),
    )
    .await;
    assert_eq!(ack.reason, reason::SUCCESS);
    for n in 0..QOS0_MESSAGES {
        client
            .send(publish_packet(&format!("lab/q0/{n}"), QoS::AtMostOnce, 0))
            .await;
    }
    // A QoS 1 message after them: acknowledged once it is stored, after the QoS 0 ones
    // that were queued before it.
    assert_eq!(
        client.publish(1, "lab/q0/last", "{}", None).await,
        Some(reason::SUCCESS)
    );
    let routed = "gridline_mqtt_routed_events_total";
    let counted = poll_until(Duration::from_secs(30), || async {
        let appended = metric(&dataplane, &format!("{routed}{{result=\"appended\"}}")).await;
        let dropped = metric(&dataplane, &format!("{routed}{{result=\"dropped\"}}")).await;
        appended + dropped == (QOS0_MESSAGES + 1) as f64
    })
    .await;
    let appended = metric(&dataplane, &format!("{routed}{{result=\"appended\"}}")).await;
    let dropped = metric(&dataplane, &format!("{routed}{{result=\"dropped\"}}")).await;
    println!("QoS 0 burst: {appended} appended, {dropped} dropped");
    assert!(
        counted.is_some(),
        "{appended} appended + {dropped} dropped of {} routed",
        QOS0_MESSAGES + 1
    );
    let stored = receive_all(&dataplane).await;
    assert_eq!(stored.len() as f64, appended, "what was appended is there");
    assert!(stored.iter().any(|s| s == "lab/q0/last"));
}
