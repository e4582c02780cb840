//! MQTT across three local-mode pods of one Namespace (`--cluster-dir`): a client cannot tell
//! how many pods there are. Publishers and subscribers sit on different pods; mosquitto's
//! clients and raw clients on our codec drive the real binaries.

mod support;

use gridline_dataplane::mqtt::codec::{Connect, Disconnect, Packet, Version};
use gridline_dataplane::mqtt::reason::ReasonCode;
use std::collections::BTreeSet;
use std::time::Duration;
use support::Workspace;
use support::cluster::Cluster;
use support::mqtt::{
    RawClient, access, connect_packet, finish, namespace, namespace_manifest, publish, subscribe,
};

const V311: &str = "mqttv311";
const V5: &str = "mqttv5";

fn workspace() -> Workspace {
    let workspace = Workspace::new();
    workspace.write("namespace.yaml", &namespace("dev"));
    workspace.write("access.yaml", &access("dev"));
    workspace
}

/// An MQTT 5 CONNECT of `dashboard` for a session that outlives its connection (an hour).
fn persistent(client_id: &str, clean_start: bool) -> Connect {
    let mut connect = connect_packet(Version::V5, client_id, "dashboard");
    connect.clean_start = clean_start;
    connect.session_expiry_interval = 3600;
    connect
}

fn lines(output: &str) -> Vec<String> {
    output.lines().map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_published_on_one_pod_reaches_a_subscriber_on_another_at_every_qos() {
    let workspace = workspace();
    let cluster = Cluster::start(&workspace, 3).await;
    let publisher = cluster.pods[0].mqtt_addr();
    let subscriber = cluster.pods[1].mqtt_addr();
    for version in [V311, V5] {
        for qos in ["0", "1", "2"] {
            let topic = format!("lab/{version}/{qos}");
            let sub = subscribe(
                subscriber,
                version,
                "dashboard",
                &["-t", &topic, "-q", qos, "-C", "3", "-W", "15"],
            );
            for n in 0..3 {
                let message = format!("m{n}");
                let out = publish(
                    publisher,
                    version,
                    "sensor-1",
                    &["-t", &topic, "-q", qos, "-m", &message],
                );
                assert!(out.status.success(), "publish: {out:?}");
            }
            let (out, err) = finish(sub);
            assert_eq!(
                lines(&out),
                [0, 1, 2].map(|n| format!("{topic} m{n}")),
                "{version} QoS {qos}: {err}\npod-0:\n{}\npod-1:\n{}",
                cluster.pods[0].logs(),
                cluster.pods[1].logs()
            );
        }
    }
    // Pod 2 held no subscriber: nothing was forwarded to it.
    assert_eq!(
        cluster.pods[2]
            .metric("gridline_mqtt_messages_in_total{qos=\"1\"}")
            .await,
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_session_moves_to_another_pod_with_its_queued_messages() {
    let workspace = workspace();
    let cluster = Cluster::start(&workspace, 3).await;
    let persistent = |pod: usize| persistent("mover", pod == 0);
    // Subscribed on pod 0, then away.
    let (mut client, ack) = RawClient::connect(cluster.pods[0].mqtt_addr(), persistent(0)).await;
    assert_eq!(ack.reason, 0);
    assert_eq!(
        client.subscribe(1, None, &[("lab/queued", false)]).await,
        [1]
    );
    client
        .send(Packet::Disconnect(Disconnect::from_server(
            ReasonCode::Success,
        )))
        .await;
    drop(client);
    // Published on pod 2 while it is away: queued in its session on pod 0.
    let (mut sender, _) = RawClient::connect(
        cluster.pods[2].mqtt_addr(),
        connect_packet(Version::V5, "sender", "sensor-1"),
    )
    .await;
    for n in 1..=3 {
        assert_eq!(
            sender
                .publish(n, "lab/queued", &format!("q{n}"), None)
                .await,
            Some(0)
        );
    }
    // Back through pod 1: the session is there, with what was queued.
    let (mut client, ack) = RawClient::connect(cluster.pods[1].mqtt_addr(), persistent(1)).await;
    assert_eq!(ack.reason, 0);
    assert!(ack.session_present, "the session moved with the client");
    let mut received = Vec::new();
    while let Some(publish) = client.next_publish(Duration::from_secs(5)).await {
        received.push(String::from_utf8_lossy(&publish.message.payload).into_owned());
        if received.len() == 3 {
            break;
        }
    }
    assert_eq!(received, ["q1", "q2", "q3"]);
    // And its subscription with it: the next message goes to pod 1.
    assert_eq!(sender.publish(4, "lab/queued", "q4", None).await, Some(0));
    let next = client
        .next_publish(Duration::from_secs(5))
        .await
        .expect("q4");
    assert_eq!(&next.message.payload[..], b"q4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connected_session_taken_over_on_another_pod_is_told_0x8e() {
    let workspace = workspace();
    let cluster = Cluster::start(&workspace, 2).await;
    let (mut first, _) = RawClient::connect(
        cluster.pods[0].mqtt_addr(),
        connect_packet(Version::V5, "twin", "dashboard"),
    )
    .await;
    let (_second, ack) = RawClient::connect(
        cluster.pods[1].mqtt_addr(),
        connect_packet(Version::V5, "twin", "dashboard"),
    )
    .await;
    assert_eq!(ack.reason, 0);
    match first.next(Duration::from_secs(5)).await {
        Some(Packet::Disconnect(disconnect)) => assert_eq!(disconnect.reason, 0x8E),
        other => panic!("expected DISCONNECT 0x8E, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_message_reaches_a_late_subscriber_on_another_pod() {
    let workspace = workspace();
    let cluster = Cluster::start(&workspace, 3).await;
    let out = publish(
        cluster.pods[0].mqtt_addr(),
        V5,
        "sensor-1",
        &["-t", "lab/retained", "-q", "1", "-r", "-m", "kept"],
    );
    assert!(out.status.success());
    let late = subscribe(
        cluster.pods[2].mqtt_addr(),
        V5,
        "dashboard",
        &["-t", "lab/retained", "-C", "1", "-W", "10"],
    );
    let (out, err) = finish(late);
    assert_eq!(out.trim(), "lab/retained kept", "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_subscription_spread_over_pods_gets_each_message_once() {
    let workspace = workspace();
    let cluster = Cluster::start(&workspace, 3).await;
    let members: Vec<_> = (0..2)
        .map(|pod| {
            subscribe(
                cluster.pods[pod].mqtt_addr(),
                V5,
                "dashboard",
                &["-t", "$share/workers/lab/jobs", "-q", "1", "-W", "8"],
            )
        })
        .collect();
    let publisher = cluster.pods[2].mqtt_addr();
    for n in 0..20 {
        let out = publish(
            publisher,
            V5,
            "sensor-1",
            &["-t", "lab/jobs", "-q", "1", "-m", &format!("job-{n}")],
        );
        assert!(out.status.success());
    }
    let outputs: Vec<String> = members.into_iter().map(|m| finish(m).0).collect();
    let all: Vec<String> = outputs.iter().flat_map(|o| lines(o)).collect();
    let unique: BTreeSet<&String> = all.iter().collect();
    assert_eq!(all.len(), 20, "each message once: {outputs:?}");
    assert_eq!(unique.len(), 20);
    assert!(
        outputs.iter().all(|o| !o.is_empty()),
        "both pods' members got some: {outputs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sessions_per_authentication_name_limit_holds_across_pods() {
    let workspace = Workspace::new();
    workspace.write(
        "namespace.yaml",
        &namespace_manifest("dev")
            .topic_spaces(|t| t.maximum_client_sessions_per_authentication_name = 2)
            .yaml(),
    );
    workspace.write("access.yaml", &access("dev"));
    let cluster = Cluster::start(&workspace, 3).await;
    let addrs: Vec<_> = cluster.pods.iter().map(|pod| pod.mqtt_addr()).collect();
    let (_first, ack) =
        RawClient::connect(addrs[0], connect_packet(Version::V5, "one", "dashboard")).await;
    assert_eq!(ack.reason, 0);
    let (_second, ack) =
        RawClient::connect(addrs[1], connect_packet(Version::V5, "two", "dashboard")).await;
    assert_eq!(ack.reason, 0);
    let (_third, ack) =
        RawClient::connect(addrs[2], connect_packet(Version::V5, "three", "dashboard")).await;
    assert_eq!(
        ack.reason, 0x97,
        "a third session of the name, on a third pod"
    );
    // Taking over one of the two is not a new one, from any pod.
    let (_again, ack) =
        RawClient::connect(addrs[2], connect_packet(Version::V5, "one", "dashboard")).await;
    assert_eq!(ack.reason, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_pod_hands_its_sessions_to_the_others_with_their_queued_messages() {
    let workspace = workspace();
    let mut cluster = Cluster::start(&workspace, 3).await;
    let addrs: Vec<_> = cluster.pods.iter().map(|pod| pod.mqtt_addr()).collect();
    let persistent = || persistent("stays", false);
    let (mut client, _) = RawClient::connect(addrs[0], persistent()).await;
    assert_eq!(
        client.subscribe(1, None, &[("lab/drained", false)]).await,
        [1]
    );
    client
        .send(Packet::Disconnect(Disconnect::from_server(
            ReasonCode::Success,
        )))
        .await;
    drop(client);
    let (mut sender, _) =
        RawClient::connect(addrs[1], connect_packet(Version::V5, "sender", "sensor-1")).await;
    for n in 1..=2 {
        assert_eq!(
            sender
                .publish(n, "lab/drained", &format!("d{n}"), None)
                .await,
            Some(0)
        );
    }
    // Pod 0 is told to stop (a scale-down, a rolling update): its session goes to a peer.
    let status = cluster.pods[0].terminate();
    assert!(status.success(), "{status:?}");
    let (mut client, ack) = RawClient::connect(addrs[2], persistent()).await;
    assert_eq!(ack.reason, 0);
    assert!(ack.session_present, "the session outlived its pod");
    let mut received = Vec::new();
    while let Some(publish) = client.next_publish(Duration::from_secs(5)).await {
        received.push(String::from_utf8_lossy(&publish.message.payload).into_owned());
        if received.len() == 2 {
            break;
        }
    }
    assert_eq!(received, ["d1", "d2"]);
}
