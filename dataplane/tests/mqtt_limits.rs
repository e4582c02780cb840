//! The Namespace's per-client limits (SPEC §D, `topicSpacesConfiguration`) and reactions to a
//! changed configuration while clients are connected.

mod support;

use gridline_crds::types::namespace::TopicSpacesConfiguration;
use gridline_dataplane::mqtt::codec::{Packet, Version, reason};
use std::net::SocketAddr;
use std::time::Duration;
use support::mqtt::{RawClient, access, connect_packet, namespace_manifest};
use support::{Dataplane, Workspace};

/// The development Namespace with `settings` applied to its `topicSpacesConfiguration`.
fn broker(settings: fn(&mut TopicSpacesConfiguration)) -> (Workspace, Dataplane, SocketAddr) {
    let workspace = Workspace::new();
    let ns = namespace_manifest("dev").topic_spaces(settings);
    workspace.write("namespace.yaml", &ns.yaml());
    workspace.write("access.yaml", &access("dev"));
    workspace.write("tester.yaml", &tester("Enabled"));
    let dataplane = workspace.start(&[]);
    let addr = dataplane.mqtt_addr();
    (workspace, dataplane, addr)
}

/// A Client `tester` in `state`.
fn tester(state: &str) -> String {
    format!(
        "apiVersion: gridline.dev/v1alpha1
kind: Client
metadata:
  name: tester
spec:
  namespaceRef: {{name: dev}}
  state: {state}
"
    )
}

async fn connect(
    addr: SocketAddr,
    version: Version,
    client_id: &str,
    user: &str,
) -> (RawClient, u8) {
    let (client, ack) = RawClient::connect(addr, connect_packet(version, client_id, user)).await;
    (client, ack.reason)
}

#[tokio::test]
async fn sessions_beyond_the_limit_per_authentication_name_are_refused_with_quota_exceeded() {
    let (_w, _d, addr) = broker(|t| t.maximum_client_sessions_per_authentication_name = 2);
    let (_a, ok_a) = connect(addr, Version::V5, "a", "sensor-1").await;
    let (b, ok_b) = connect(addr, Version::V5, "b", "sensor-1").await;
    assert_eq!((ok_a, ok_b), (0, 0));
    let (_, third) = connect(addr, Version::V5, "c", "sensor-1").await;
    assert_eq!(third, reason::QUOTA_EXCEEDED);
    // 3.1.1 return code 3 (server unavailable), which the codec reads back as 0x88.
    let (_, third) = connect(addr, Version::V311, "c", "sensor-1").await;
    assert_eq!(third, reason::SERVER_UNAVAILABLE);
    // Taking over a connected session is not one more.
    let (_a2, again) = connect(addr, Version::V5, "a", "sensor-1").await;
    assert_eq!(again, 0);
    // Another authentication name has its own count.
    let (_other, other) = connect(addr, Version::V5, "d", "sensor-2").await;
    assert_eq!(other, 0);
    // A session that leaves frees its place.
    drop(b);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_c, freed) = connect(addr, Version::V5, "c", "sensor-1").await;
    assert_eq!(freed, 0);
}

#[tokio::test]
async fn subscriptions_beyond_the_limit_per_connection_get_quota_exceeded_in_suback() {
    let (_w, _d, addr) = broker(|t| t.maximum_subscriptions_per_connection = 2);
    let (mut v5, _) = connect(addr, Version::V5, "s5", "dashboard").await;
    let reasons = v5
        .subscribe(
            1,
            None,
            &[("lab/a", false), ("lab/b", false), ("lab/c", false)],
        )
        .await;
    assert_eq!(reasons, [1, 1, reason::QUOTA_EXCEEDED]);
    // Subscribing again to a filter held replaces it: not one more.
    assert_eq!(v5.subscribe(2, None, &[("lab/a", false)]).await, [1]);
    let (mut v3, _) = connect(addr, Version::V311, "s3", "sensor-2").await;
    let reasons = v3
        .subscribe(
            1,
            None,
            &[("lab/a", false), ("lab/b", false), ("lab/c", false)],
        )
        .await;
    assert_eq!(reasons, [1, 1, 0x80], "3.1.1 can only say failure");
}

#[tokio::test]
async fn a_client_disabled_while_connected_is_disconnected_with_not_authorized() {
    let (workspace, _d, addr) = broker(|_| {});
    let (mut v5, _) = connect(addr, Version::V5, "t5", "tester").await;
    assert_eq!(v5.subscribe(1, None, &[("lab/#", false)]).await, [1]);
    workspace.write("tester.yaml", &tester("Disabled"));
    let packet = v5.next(Duration::from_secs(5)).await;
    assert!(
        matches!(packet, Some(Packet::Disconnect(ref d)) if d.reason == reason::NOT_AUTHORIZED),
        "{packet:?}"
    );
    assert!(v5.next(Duration::from_secs(2)).await.is_none(), "closed");
    // 3.1.1 has no DISCONNECT from the server: the connection is closed.
    workspace.write("tester.yaml", &tester("Enabled"));
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (mut v3, ok) = connect(addr, Version::V311, "t3", "tester").await;
    assert_eq!(ok, 0);
    workspace.write("tester.yaml", &tester("Disabled"));
    assert!(v3.next(Duration::from_secs(5)).await.is_none(), "closed");
}

/// A binding of `$all` on topic space `probe` (`probe/#`) with `permission`.
fn probe_binding(permission: &str) -> String {
    format!(
        "apiVersion: gridline.dev/v1alpha1
kind: PermissionBinding
metadata:
  name: probe-{permission}
spec:
  namespaceRef: {{name: dev}}
  clientGroupName: $all
  topicSpaceName: probe
  permission: {permission}
"
    )
}

#[tokio::test]
async fn a_subscription_whose_binding_is_removed_stops_receiving() {
    let (workspace, _d, addr) = broker(|_| {});
    workspace.write(
        "probe.yaml",
        &format!(
            "apiVersion: gridline.dev/v1alpha1
kind: TopicSpace
metadata:
  name: probe
spec:
  namespaceRef: {{name: dev}}
  topicTemplates: ['probe/#']
---
{}",
            probe_binding("Publisher")
        ),
    );
    workspace.write("probe-reader.yaml", &probe_binding("Subscriber"));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (mut reader, _) = connect(addr, Version::V5, "reader", "dashboard").await;
    assert_eq!(reader.subscribe(1, None, &[("probe/#", false)]).await, [1]);
    let (mut writer, _) = connect(addr, Version::V5, "writer", "sensor-1").await;
    assert_eq!(writer.publish(1, "probe/one", "1", None).await, Some(0));
    let first = reader
        .next_publish(Duration::from_secs(5))
        .await
        .expect("delivered");
    assert_eq!(first.message.topic, "probe/one");
    std::fs::remove_file(workspace.manifests().join("probe-reader.yaml")).unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(writer.publish(2, "probe/two", "2", None).await, Some(0));
    assert!(
        reader.next_publish(Duration::from_secs(2)).await.is_none(),
        "the subscription was dropped"
    );
}
