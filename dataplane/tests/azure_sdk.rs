//! The official Python SDK (`azure-eventgrid`), unchanged, against a local data plane:
//! publish a single event and a batch, receive, acknowledge, release (with and without
//! delay), reject (to dead-letter), renew locks, and the failures it must see.

mod support;

use std::process::Command;
use support::python::{python_with_sdk, sdk_tests_dir};
use support::*;

const KEY: &str = "sdk-test-key-1";
const SECOND_KEY: &str = "sdk-test-key-2";

fn manifests() -> String {
    let mut docs = vec![
        namespace("sdk").replace("spec:\n", "spec:\n  sasKeys:\n    secretName: sdk-keys\n"),
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: sdk-keys\nstringData:\n  key1: {KEY}\n  key2: {SECOND_KEY}\n"
        ),
        topic("orders", "sdk", 1),
        topic("dead-letters", "sdk", 1),
    ];
    docs.push(
        "apiVersion: gridline.dev/v1alpha1
kind: EventSubscription
metadata:
  name: all-orders
spec:
  topicRef: {name: orders}
  deliveryConfiguration:
    deliveryMode: Queue
    queue:
      receiveLockDurationInSeconds: 60
      maxDeliveryCount: 10
      deadLetterDestinationWithResourceIdentity:
        deadLetterDestination: {topicRef: {name: dead-letters}}
"
        .to_string(),
    );
    docs.push(
        "apiVersion: gridline.dev/v1alpha1
kind: EventSubscription
metadata:
  name: big-orders
spec:
  topicRef: {name: orders}
  deliveryConfiguration:
    deliveryMode: Queue
    queue: {}
  filtersConfiguration:
    filters:
    - {operatorType: NumberGreaterThanOrEquals, key: data.total, value: 1000}
"
        .to_string(),
    );
    docs.push(
        "apiVersion: gridline.dev/v1alpha1
kind: EventSubscription
metadata:
  name: dead-letter-inbox
spec:
  topicRef: {name: dead-letters}
  deliveryConfiguration:
    deliveryMode: Queue
    queue: {}
"
        .to_string(),
    );
    documents(&docs)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_python_sdk_publishes_receives_and_settles_unchanged() {
    let python = tokio::task::spawn_blocking(python_with_sdk)
        .await
        .expect("venv task");
    let workspace = Workspace::new();
    workspace.write("sdk.yaml", &manifests());
    let dataplane = workspace.start(&[]);
    dataplane.wait_ready().await;

    let endpoint = format!("http://{}", dataplane.addr);
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(sdk_tests_dir().join("test_sdk.py"))
            .env("GRIDLINE_ENDPOINT", endpoint)
            .env("GRIDLINE_KEY", KEY)
            .env("GRIDLINE_SECOND_KEY", SECOND_KEY)
            .output()
            .expect("run the SDK tests")
    })
    .await
    .expect("sdk test task");
    let report = format!(
        "{}{}\n--- data plane logs ---\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        dataplane.logs()
    );
    assert!(output.status.success(), "{report}");
    assert!(report.contains("OK"), "{report}");
}
