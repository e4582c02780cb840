//! `gridline-dataplane run --manifests DIR`: the real binary on port 0, driven over HTTP.

mod support;

use std::time::Duration;
use support::*;

/// The longest a manifest change may take to show in /metrics.
const RELOAD_BUDGET: Duration = Duration::from_secs(2);

fn two_topics() -> String {
    documents(&[
        namespace("ns1"),
        topic("orders", "ns1", 7),
        topic("invoices", "ns1", 3),
    ])
}

#[tokio::test]
async fn healthz_answers_and_readyz_turns_ready_once_the_namespace_is_served() {
    let workspace = Workspace::new();
    workspace.write("all.yaml", &two_topics());
    let dataplane = workspace.start(&[]);

    assert_eq!(dataplane.get("/healthz").await.0, 200);
    dataplane.wait_ready().await;
    let (_, body) = dataplane.get("/readyz").await;
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["namespace"], "ns1");
}

#[tokio::test]
async fn the_data_dir_is_created() {
    let workspace = Workspace::new();
    workspace.write("all.yaml", &two_topics());
    let dataplane = workspace.start(&[]);
    dataplane.wait_ready().await;
    assert!(workspace.data_dir().is_dir());
}

#[tokio::test]
async fn readyz_is_503_with_a_reason_without_a_namespace() {
    let workspace = Workspace::new();
    workspace.write("topics.yaml", &topic("orders", "ns1", 7));
    let dataplane = workspace.start(&[]);

    // Wait for the first load, then readiness must still be refused.
    assert!(dataplane.wait_for_metric(APPLIED, 1.0).await.is_some());
    let (status, body) = dataplane.get("/readyz").await;
    assert_eq!(status, 503);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["ready"], false);
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("no valid Namespace"),
        "{body}"
    );
}

#[tokio::test]
async fn metrics_count_the_objects_served_and_every_kind_is_present() {
    let workspace = Workspace::new();
    workspace.write("all.yaml", &two_topics());
    let dataplane = workspace.start(&[]);
    dataplane.wait_ready().await;

    let (status, text) = dataplane.get("/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(
        metric_value(&text, &objects_of("Topic")),
        Some(2.0),
        "{text}"
    );
    assert_eq!(metric_value(&text, &objects_of("Namespace")), Some(1.0));
    for kind in [
        "EventSubscription",
        "Client",
        "ClientGroup",
        "TopicSpace",
        "PermissionBinding",
    ] {
        assert_eq!(metric_value(&text, &objects_of(kind)), Some(0.0), "{kind}");
    }
    assert_eq!(metric_value(&text, APPLIED), Some(1.0));
    assert_eq!(metric_value(&text, "gridline_config_errors"), Some(0.0));
    assert!(metric_value(&text, "gridline_config_last_applied_timestamp_seconds").unwrap() > 0.0);
    assert!(text.contains("gridline_build_info{version=\""));
    assert!(text.contains("gridline_http_requests_total{path=\"/readyz\",status=\"200\"}"));
}

#[tokio::test]
async fn a_topic_added_to_the_folder_shows_in_metrics_within_two_seconds() {
    let workspace = Workspace::new();
    workspace.write("all.yaml", &two_topics());
    let dataplane = workspace.start(&[]);
    dataplane.wait_ready().await;

    workspace.write("more/extra.yaml", &topic("payments", "ns1", 1));
    let took = dataplane.wait_for_metric(&objects_of("Topic"), 3.0).await;

    let took = took.expect("the new Topic never showed in /metrics (waited 5 s)");
    println!("a new Topic showed in /metrics after {took:?}");
    assert!(
        took <= RELOAD_BUDGET,
        "took {took:?}, budget {RELOAD_BUDGET:?}"
    );
    assert_eq!(dataplane.metric(APPLIED).await, Some(2.0));
}

#[tokio::test]
async fn a_file_replaced_by_rename_is_reloaded() {
    let workspace = Workspace::new();
    workspace.write("all.yaml", &two_topics());
    let dataplane = workspace.start(&[]);
    dataplane.wait_ready().await;

    // What editors do: write a temporary file, then rename it over the original.
    let temporary = workspace.write(
        ".all.yaml.tmp",
        &documents(&[namespace("ns1"), topic("orders", "ns1", 7)]),
    );
    std::fs::rename(temporary, workspace.manifests().join("all.yaml")).unwrap();

    let took = dataplane.wait_for_metric(&objects_of("Topic"), 1.0).await;
    assert!(took.is_some_and(|t| t <= RELOAD_BUDGET), "took {took:?}");
}

#[tokio::test]
async fn a_yaml_syntax_error_keeps_the_previous_objects_and_counts_a_rejection() {
    let workspace = Workspace::new();
    workspace.write("all.yaml", &two_topics());
    let dataplane = workspace.start(&[]);
    dataplane.wait_ready().await;

    // A half-done edit: a third topic, and a broken line.
    workspace.write(
        "all.yaml",
        &format!(
            "{}---\nkind: Topic\nmetadata: [unclosed\n",
            documents(&[
                namespace("ns1"),
                topic("orders", "ns1", 7),
                topic("invoices", "ns1", 3),
                topic("payments", "ns1", 1)
            ])
        ),
    );

    let took = dataplane.wait_for_metric(REJECTED, 1.0).await;
    assert!(took.is_some_and(|t| t <= RELOAD_BUDGET), "took {took:?}");
    assert_eq!(dataplane.metric(&objects_of("Topic")).await, Some(2.0));
    assert_eq!(dataplane.metric(APPLIED).await, Some(1.0));
    assert_eq!(dataplane.metric("gridline_config_errors").await, Some(1.0));
    assert_eq!(dataplane.get("/readyz").await.0, 200);
    let logs = dataplane.logs();
    assert!(
        logs.contains("all.yaml") && logs.contains("document 5"),
        "{logs}"
    );
}

// Depends on `compile` checking the retention range (1-7 days).
#[tokio::test]
async fn an_out_of_range_field_keeps_the_previous_objects_and_counts_a_rejection() {
    let workspace = Workspace::new();
    workspace.write("all.yaml", &two_topics());
    let dataplane = workspace.start(&[]);
    dataplane.wait_ready().await;

    workspace.write(
        "all.yaml",
        &documents(&[
            namespace("ns1"),
            topic("orders", "ns1", 7),
            topic("invoices", "ns1", 30),
        ]),
    );
    workspace.write("extra.yaml", &topic("payments", "ns1", 1));

    let took = dataplane.wait_for_metric(REJECTED, 1.0).await;
    assert!(took.is_some_and(|t| t <= RELOAD_BUDGET), "took {took:?}");
    assert_eq!(dataplane.metric(&objects_of("Topic")).await, Some(2.0));
    let logs = dataplane.logs();
    assert!(logs.contains("spec.eventRetentionInDays"), "{logs}");
}

#[tokio::test]
async fn fixing_a_rejected_edit_applies_it() {
    let workspace = Workspace::new();
    workspace.write("all.yaml", &two_topics());
    let dataplane = workspace.start(&[]);
    dataplane.wait_ready().await;

    workspace.write("extra.yaml", "kind: [");
    assert!(dataplane.wait_for_metric(REJECTED, 1.0).await.is_some());
    workspace.write("extra.yaml", &topic("payments", "ns1", 1));
    let took = dataplane.wait_for_metric(&objects_of("Topic"), 3.0).await;
    assert!(took.is_some_and(|t| t <= RELOAD_BUDGET), "took {took:?}");
    assert_eq!(dataplane.metric("gridline_config_errors").await, Some(0.0));
}

#[tokio::test]
async fn at_start_up_objects_in_error_are_left_out_and_the_rest_served() {
    let workspace = Workspace::new();
    workspace.write("all.yaml", &two_topics());
    workspace.write(
        "bad.yaml",
        // A string where the type holds a number: only text can say it.
        &manifests::deliberately_invalid(
            &topic("broken", "ns1", 7),
            "eventRetentionInDays: 7",
            "eventRetentionInDays: seven",
        ),
    );
    let dataplane = workspace.start(&[]);
    dataplane.wait_ready().await;

    assert_eq!(dataplane.metric(&objects_of("Topic")).await, Some(2.0));
    assert_eq!(dataplane.metric("gridline_config_errors").await, Some(1.0));
    let logs = dataplane.logs();
    assert!(
        logs.contains("bad.yaml")
            && logs.contains("spec.eventRetentionInDays")
            && logs.contains("Topic default/broken"),
        "{logs}"
    );
}

#[tokio::test]
async fn the_namespace_flag_chooses_among_several() {
    let workspace = Workspace::new();
    workspace.write(
        "one.yaml",
        &documents(&[namespace("ns1"), topic("orders", "ns1", 7)]),
    );
    workspace.write(
        "two.yaml",
        &documents(&[
            namespace("ns2"),
            topic("a1b", "ns2", 7),
            topic("a2b", "ns2", 7),
        ]),
    );
    let dataplane = workspace.start(&["--namespace", "ns2"]);
    dataplane.wait_ready().await;
    assert_eq!(dataplane.metric(&objects_of("Topic")).await, Some(2.0));
}

#[tokio::test]
async fn several_namespaces_without_the_namespace_flag_stop_the_process() {
    let workspace = Workspace::new();
    workspace.write(
        "all.yaml",
        &documents(&[namespace("ns1"), namespace("ns2")]),
    );
    let mut dataplane = workspace.start(&[]);
    let stopped = poll_until(Duration::from_secs(5), || {
        let running = dataplane.is_running();
        async move { !running }
    })
    .await;
    assert!(stopped.is_some(), "the process kept running");
    assert!(
        dataplane.logs().contains("--namespace"),
        "{}",
        dataplane.logs()
    );
}

#[tokio::test]
async fn an_edit_that_leaves_a_reference_dangling_is_rejected_and_named() {
    let workspace = Workspace::new();
    workspace.write("all.yaml", &two_topics());
    let dataplane = workspace.start(&[]);
    dataplane.wait_ready().await;

    workspace.write(
        "all.yaml",
        &documents(&[
            namespace("ns1"),
            topic("orders", "ns1", 7),
            topic("invoices", "no-such-namespace", 7),
        ]),
    );

    let took = dataplane.wait_for_metric(REJECTED, 1.0).await;
    assert!(took.is_some_and(|t| t <= RELOAD_BUDGET), "took {took:?}");
    assert_eq!(dataplane.metric(&objects_of("Topic")).await, Some(2.0));
    let logs = dataplane.logs();
    assert!(
        logs.contains("Topic default/invoices: spec.namespaceRef.name: Namespace 'no-such-namespace' not found"),
        "{logs}"
    );
}
