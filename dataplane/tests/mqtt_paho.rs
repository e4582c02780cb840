//! paho-mqtt 2.x (Python, unchanged) against the broker: every broker feature in MQTT 3.1.1
//! and 5.0 (`tests/paho/test_broker.py`, one function a case), and a persistent session whose
//! queued QoS 1 messages survive a broker restart. A failure names the failing cases.

mod support;

use std::time::Duration;
use support::Workspace;
use support::mqtt::{access, namespace};
use support::paho::run_phase;

/// `observer` may publish and subscribe everywhere (`#`): the `$`-topic cases need a client
/// whose permissions a leading wildcard could wrongly stretch.
fn observer(ns: &str) -> String {
    format!(
        "apiVersion: gridline.dev/v1alpha1
kind: Client
metadata:
  name: observer
spec:
  namespaceRef: {{name: {ns}}}
  attributes: {{type: observer}}
---
apiVersion: gridline.dev/v1alpha1
kind: ClientGroup
metadata:
  name: observers
spec:
  namespaceRef: {{name: {ns}}}
  query: attributes.type = 'observer'
---
apiVersion: gridline.dev/v1alpha1
kind: TopicSpace
metadata:
  name: everything
spec:
  namespaceRef: {{name: {ns}}}
  topicTemplates: ['#']
---
apiVersion: gridline.dev/v1alpha1
kind: PermissionBinding
metadata:
  name: observers-publish-everything
spec:
  namespaceRef: {{name: {ns}}}
  clientGroupName: observers
  topicSpaceName: everything
  permission: Publisher
---
apiVersion: gridline.dev/v1alpha1
kind: PermissionBinding
metadata:
  name: observers-read-everything
spec:
  namespaceRef: {{name: {ns}}}
  clientGroupName: observers
  topicSpaceName: everything
  permission: Subscriber
"
    )
}

fn workspace() -> Workspace {
    let workspace = Workspace::new();
    workspace.write("namespace.yaml", &namespace("dev"));
    workspace.write("access.yaml", &access("dev"));
    workspace.write("observer.yaml", &observer("dev"));
    workspace
}

/// Every broker feature through paho-mqtt, both versions; see `test_broker.py` for the cases.
#[tokio::test(flavor = "multi_thread")]
async fn paho_mqtt_exercises_every_broker_feature_in_both_versions() {
    let workspace = workspace();
    let dataplane = workspace.start(&[]);
    let mqtt = dataplane.mqtt_addr();
    run_phase(&dataplane, mqtt, "main", &[]).await;
}

/// The same cases with each connection on the next of three pods of one Namespace: a
/// publisher and its subscriber, and a session's successive connections, on different pods.
#[tokio::test(flavor = "multi_thread")]
async fn paho_mqtt_cases_pass_with_clients_spread_over_three_pods() {
    let workspace = workspace();
    let cluster = support::cluster::Cluster::start(&workspace, 3).await;
    let addrs: Vec<String> = cluster
        .pods
        .iter()
        .map(|pod| pod.mqtt_addr().to_string())
        .collect();
    let first = addrs[0].parse().expect("address");
    run_phase(
        &cluster.pods[0],
        first,
        "main",
        &[("GRIDLINE_MQTT", addrs.join(","))],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn paho_persistent_sessions_keep_their_queued_qos1_messages_across_a_restart() {
    let workspace = workspace();
    let dataplane = workspace.start(&[]);
    let mqtt = dataplane.mqtt_addr();
    run_phase(&dataplane, mqtt, "before_restart", &[]).await;
    // Longer than the persister's interval: what was acknowledged is on disk.
    tokio::time::sleep(Duration::from_millis(800)).await;
    drop(dataplane); // SIGKILL: the state on disk is all there is
    let dataplane = workspace.start(&[]);
    let mqtt = dataplane.mqtt_addr();
    run_phase(&dataplane, mqtt, "after_restart", &[]).await;
}
