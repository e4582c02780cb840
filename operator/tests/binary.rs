//! `gridline-operator run` as a process, against a fake API server: it takes the Lease,
//! applies a Namespace's children, writes its status, serves its endpoints, and on SIGTERM
//! releases the Lease.

mod support;

use serde_json::json;
use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;
use support::{FakeApi, Operator, free_port, wait_for};

const PATIENCE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_leads_applies_children_writes_status_and_releases_the_lease() {
    let namespace = json!({
        "apiVersion": "gridline.dev/v1alpha1", "kind": "Namespace",
        "metadata": {"name": "orders", "namespace": "shop", "uid": "u1", "generation": 1, "resourceVersion": "5"},
        "spec": {"listeners": {"mqttTls": {"enabled": false, "port": 8883}, "https": {"enabled": false, "port": 443}}},
    });
    let api = FakeApi::start(HashMap::from([(
        "/apis/gridline.dev/v1alpha1/namespaces".to_string(),
        vec![namespace],
    )]))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let metrics_port = free_port();
    let mut operator = Operator::start(
        env!("CARGO_BIN_EXE_gridline-operator"),
        &api.kubeconfig(dir.path()),
        metrics_port,
        &["--dataplane-image", "registry.test/gridline:e2e"],
    );

    wait_for("the StatefulSet apply", PATIENCE, || {
        api.write_count(|w| w.uri.contains("/statefulsets/orders-gridline")) > 0
    })
    .await;
    wait_for("the Namespace status", PATIENCE, || {
        api.write_count(|w| w.uri.contains("/namespaces/orders/status")) > 0
    })
    .await;

    let lease = api.lease().expect("a Lease");
    assert_eq!(
        lease["metadata"]["namespace"], "ops",
        "the kubeconfig's namespace"
    );
    assert!(
        lease["spec"]["holderIdentity"]
            .as_str()
            .unwrap()
            .contains('_')
    );
    let sts = &api.writes(|w| w.uri.contains("/statefulsets/"))[0];
    assert_eq!(sts.method, "PATCH");
    assert!(
        sts.uri.contains("fieldManager=gridline-operator"),
        "{}",
        sts.uri
    );
    assert_eq!(
        sts.body["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.test/gridline:e2e"
    );
    // The peer CA created once, the leaf applied, both before the StatefulSet.
    let secrets = api.writes(|w| w.uri.contains("/secrets"));
    assert_eq!(secrets.len(), 2, "{secrets:?}");
    assert_eq!(secrets[0].method, "POST");
    assert_eq!(
        secrets[0].body["metadata"]["name"],
        "orders-gridline-peer-ca"
    );
    assert_eq!(secrets[1].method, "PATCH");
    assert!(
        secrets[1]
            .uri
            .contains("/secrets/orders-gridline-peer-tls?")
    );
    assert!(secrets[1].at <= sts.at);
    let status = &api.writes(|w| w.uri.contains("/namespaces/orders/status"))[0];
    assert_eq!(status.body["status"]["conditions"][0]["type"], "Accepted");
    assert_eq!(status.body["status"]["conditions"][0]["status"], "True");
    // No pods: the StatefulSet never reports ready ones.
    assert_eq!(
        status.body["status"]["conditions"][1]["reason"],
        "StatefulSetPending"
    );

    let base = format!("http://127.0.0.1:{metrics_port}");
    let client = reqwest::Client::new();
    for path in ["/healthz", "/readyz"] {
        let response = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("gridline_operator_leader 1"), "{metrics}");
    assert!(
        metrics
            .contains(r#"gridline_operator_reconciles_total{kind="Namespace",result="patched"} 1"#),
        "{metrics}"
    );

    let pid = operator.0.id().to_string();
    let terminated = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(terminated.success());
    wait_for("the Lease to be released", PATIENCE, || {
        api.lease()
            .is_some_and(|l| l["spec"].get("holderIdentity").is_none())
    })
    .await;
    let exit = tokio::task::spawn_blocking(move || operator.0.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success(), "{exit}");
}
