//! Flow control (mqtt/README.md "Flow control"): a connected subscriber that falls behind
//! slows its publishers down instead of losing their QoS 1 messages.

mod support;

use gridline_dataplane::mqtt::codec::{Ack, Packet, QoS, Version, reason};
use std::num::NonZeroU16;
use std::time::Duration;
use support::mqtt::{RawClient, access, connect_packet, message, namespace_manifest};
use support::{Dataplane, Workspace, packets};

/// More than the hard bound of a connected session's queue (10,000): without flow control
/// some of these would be dropped.
const MESSAGES: usize = 30_000;

fn broker() -> (Workspace, Dataplane) {
    let workspace = Workspace::new();
    let ns = namespace_manifest("dev")
        .topic_spaces(|t| t.maximum_messages_per_second_per_connection = 100_000);
    workspace.write("namespace.yaml", &ns.yaml());
    workspace.write("access.yaml", &access("dev"));
    let dataplane = workspace.start(&[]);
    (workspace, dataplane)
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_loses_no_qos1_message_its_publisher_is_slowed_instead() {
    let (_workspace, dataplane) = broker();
    let addr = dataplane.mqtt_addr();

    // The subscriber accepts 10 unacknowledged messages, then does not read for a while. The
    // publisher speaks 3.1.1, which has no receive maximum: it may keep every message in flight.
    let mut connect = connect_packet(Version::V5, "slow-reader", "dashboard");
    connect.receive_maximum = NonZeroU16::new(10);
    let (mut subscriber, ack) = RawClient::connect(addr, connect).await;
    assert_eq!(ack.reason, reason::SUCCESS);
    assert_eq!(
        subscriber.subscribe(1, None, &[("lab/flow", false)]).await,
        [1]
    );

    let (mut publisher, ack) = RawClient::connect(
        addr,
        connect_packet(Version::V311, "fast-writer", "sensor-1"),
    )
    .await;
    assert_eq!(ack.reason, reason::SUCCESS);
    let publishing = tokio::spawn(async move {
        for i in 0..MESSAGES {
            let packet_id = (i % 60_000 + 1) as u16;
            let message = message("lab/flow", &i.to_string(), QoS::AtLeastOnce);
            publisher.send(packets::publish(packet_id, message)).await;
        }
        let mut acknowledged = 0;
        while acknowledged < MESSAGES {
            match publisher.next(Duration::from_secs(30)).await {
                Some(Packet::PubAck(ack)) => {
                    assert_eq!(ack.reason, reason::SUCCESS);
                    acknowledged += 1;
                }
                Some(_) => {}
                None => break,
            }
        }
        acknowledged
    });

    // Long enough for the queue to reach the pause mark, shorter than the 5 s pause bound.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        dataplane
            .metric("gridline_mqtt_limited_total{limit=\"subscriber_behind\"}")
            .await
            .unwrap_or(0.0)
            >= 1.0,
        "the publisher was paused"
    );

    let mut received = vec![false; MESSAGES];
    let mut count = 0;
    while count < MESSAGES {
        let Some(packet) = subscriber.next(Duration::from_secs(30)).await else {
            break;
        };
        if let Packet::Publish(publish) = packet {
            let index: usize = std::str::from_utf8(&publish.message.payload)
                .unwrap()
                .parse()
                .unwrap();
            if !received[index] {
                received[index] = true;
                count += 1;
            }
            if let Some(packet_id) = publish.packet_id {
                subscriber
                    .send(Packet::PubAck(Ack {
                        packet_id,
                        reason: reason::SUCCESS,
                        reason_string: None,
                    }))
                    .await;
            }
        }
    }
    let acknowledged = publishing.await.unwrap();
    assert_eq!(acknowledged, MESSAGES, "every publish was acknowledged");
    assert_eq!(count, MESSAGES, "every acknowledged message was delivered");
    let dropped = dataplane
        .metric("gridline_mqtt_dropped_messages_total{reason=\"queue_full\"}")
        .await
        .unwrap_or(0.0);
    assert_eq!(dropped, 0.0);
}
