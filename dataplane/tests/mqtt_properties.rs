//! MQTT 5 topic aliases, subscription identifiers and no-local, end to end.

mod support;

use gridline_dataplane::mqtt::codec::{Packet, Version, reason};
use std::net::SocketAddr;
use std::time::Duration;
use support::mqtt::{RawClient, access, connect_packet, finish, namespace, publish, subscribe};
use support::{Dataplane, Workspace};

fn broker() -> (Workspace, Dataplane, SocketAddr) {
    let workspace = Workspace::new();
    workspace.write("namespace.yaml", &namespace("dev"));
    workspace.write("access.yaml", &access("dev"));
    let dataplane = workspace.start(&[]);
    let addr = dataplane.mqtt_addr();
    (workspace, dataplane, addr)
}

async fn v5(addr: SocketAddr, client_id: &str, user: &str) -> RawClient {
    let (client, ack) =
        RawClient::connect(addr, connect_packet(Version::V5, client_id, user)).await;
    assert_eq!(ack.reason, 0);
    assert_eq!(ack.topic_alias_maximum, 10, "topic aliases granted");
    client
}

#[tokio::test]
async fn a_topic_alias_set_once_stands_for_its_topic_in_later_publishes() {
    let (_w, _d, addr) = broker();
    let mut reader = v5(addr, "reader", "dashboard").await;
    assert_eq!(reader.subscribe(1, None, &[("lab/#", false)]).await, [1]);
    let mut writer = v5(addr, "writer", "sensor-1").await;
    assert_eq!(
        writer.publish(1, "lab/aliased", "first", Some(4)).await,
        Some(0)
    );
    assert_eq!(writer.publish(2, "", "second", Some(4)).await, Some(0));
    for payload in ["first", "second"] {
        let got = reader
            .next_publish(Duration::from_secs(5))
            .await
            .expect("delivered");
        assert_eq!(got.message.topic, "lab/aliased");
        assert_eq!(got.message.payload, payload.as_bytes());
        assert_eq!(got.topic_alias, None, "we send no aliases");
    }
    // Over the maximum: DISCONNECT 0x94.
    writer.publish(0, "lab/x", "x", Some(11)).await;
    let packet = writer.next(Duration::from_secs(5)).await;
    assert!(
        matches!(packet, Some(Packet::Disconnect(ref d)) if d.reason == reason::TOPIC_ALIAS_INVALID),
        "{packet:?}"
    );
}

#[test]
fn mosquitto_pub_with_a_topic_alias_is_delivered() {
    let (_w, _d, addr) = broker();
    let sub = subscribe(
        addr,
        "mqttv5",
        "dashboard",
        &["-t", "lab/#", "-C", "1", "-W", "5"],
    );
    let out = publish(
        addr,
        "mqttv5",
        "sensor-1",
        &[
            "-t",
            "lab/alias",
            "-m",
            "hi",
            "-q",
            "1",
            "-D",
            "publish",
            "topic-alias",
            "1",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let (stdout, stderr) = finish(sub);
    assert_eq!(stdout.trim(), "lab/alias hi", "{stderr}");
}

#[tokio::test]
async fn a_publish_carries_the_identifiers_of_every_matching_subscription() {
    let (_w, _d, addr) = broker();
    let mut reader = v5(addr, "reader", "dashboard").await;
    assert_eq!(reader.subscribe(1, Some(7), &[("lab/#", false)]).await, [1]);
    assert_eq!(
        reader.subscribe(2, Some(9), &[("lab/ids/+", false)]).await,
        [1]
    );
    assert_eq!(reader.subscribe(3, None, &[("lab/+/x", false)]).await, [1]);
    let mut writer = v5(addr, "writer", "sensor-1").await;
    writer.publish(1, "lab/ids/x", "both", None).await;
    let got = reader
        .next_publish(Duration::from_secs(5))
        .await
        .expect("delivered");
    let ids: Vec<u32> = got.subscription_ids.iter().map(|i| i.get()).collect();
    assert_eq!(ids, [7, 9], "one copy, both identifiers");
    writer.publish(2, "lab/other", "one", None).await;
    let got = reader
        .next_publish(Duration::from_secs(5))
        .await
        .expect("delivered");
    let ids: Vec<u32> = got.subscription_ids.iter().map(|i| i.get()).collect();
    assert_eq!(ids, [7]);
}

#[test]
fn mosquitto_sub_with_a_subscription_identifier_receives() {
    let (_w, _d, addr) = broker();
    let sub = subscribe(
        addr,
        "mqttv5",
        "dashboard",
        &[
            "-t",
            "lab/#",
            "-C",
            "1",
            "-W",
            "5",
            "-D",
            "subscribe",
            "subscription-identifier",
            "3",
        ],
    );
    publish(addr, "mqttv5", "sensor-1", &["-t", "lab/sid", "-m", "hi"]);
    let (stdout, stderr) = finish(sub);
    assert_eq!(stdout.trim(), "lab/sid hi", "{stderr}");
}

#[tokio::test]
async fn no_local_keeps_a_clients_own_messages_from_it_but_not_from_others() {
    let (_w, _d, addr) = broker();
    let mut own = v5(addr, "own", "sensor-1").await;
    assert_eq!(own.subscribe(1, None, &[("lab/echo", true)]).await, [1]);
    let mut other = v5(addr, "other", "dashboard").await;
    assert_eq!(other.subscribe(1, None, &[("lab/echo", false)]).await, [1]);
    own.publish(1, "lab/echo", "mine", None).await;
    let got = other
        .next_publish(Duration::from_secs(5))
        .await
        .expect("others get it");
    assert_eq!(got.message.payload, "mine".as_bytes());
    assert!(
        own.next_publish(Duration::from_millis(500)).await.is_none(),
        "not echoed"
    );
    other.publish(2, "lab/echo", "theirs", None).await;
    let got = own
        .next_publish(Duration::from_secs(5))
        .await
        .expect("from another client");
    assert_eq!(got.message.payload, "theirs".as_bytes());
}
