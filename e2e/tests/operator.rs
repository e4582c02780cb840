//! The operator as the chart installs it (release `gridline` in `gridline-system`, or
//! `GRIDLINE_E2E_OPERATOR_NAMESPACE`): it holds its leader Lease and serves its metrics and
//! health through the metrics Service.

use anyhow::{Context, ensure};
use gridline_e2e::endpoints::PortForward;
use gridline_e2e::{E2e, e2e_or_skip};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use std::io::Write;
use std::time::Duration;

const RELEASE: &str = "gridline";

fn operator_namespace() -> String {
    std::env::var("GRIDLINE_E2E_OPERATOR_NAMESPACE")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "gridline-system".to_string())
}

/// With a local operator (`e2e/local.sh`) there is no Deployment, Lease or metrics Service.
fn installed_operator(e2e: &E2e, test: &str) -> bool {
    if e2e.local_dataplane {
        let _ = writeln!(
            std::io::stderr(),
            "SKIP {test}: the operator runs as a local process (GRIDLINE_E2E_LOCAL_DATAPLANE)"
        );
    }
    !e2e.local_dataplane
}

async fn operator_pods(e2e: &E2e) -> anyhow::Result<Vec<String>> {
    let pods: Api<Pod> = Api::namespaced(e2e.client.clone(), &operator_namespace());
    let selector = format!(
        "app.kubernetes.io/name=gridline,app.kubernetes.io/instance={RELEASE},\
         app.kubernetes.io/component=operator"
    );
    Ok(pods
        .list(&ListParams::default().labels(&selector))
        .await?
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect())
}

#[tokio::test]
async fn one_operator_pod_holds_the_leader_lease() -> anyhow::Result<()> {
    let test = "operator::leader_lease";
    let e2e = e2e_or_skip!(test);
    if !installed_operator(&e2e, test) {
        return Ok(());
    }
    let leases: Api<Lease> = Api::namespaced(e2e.client.clone(), &operator_namespace());
    let lease_name = format!("{RELEASE}-operator");
    e2e.eventually(
        "the leader Lease names a running operator pod",
        e2e.timeout(),
        || async {
            let Some(lease) = leases.get_opt(&lease_name).await? else {
                return Ok(None);
            };
            let holder = lease
                .spec
                .and_then(|s| s.holder_identity)
                .unwrap_or_default();
            let pods = operator_pods(&e2e).await?;
            Ok(
                (!holder.is_empty() && pods.iter().any(|p| holder.contains(p.as_str())))
                    .then_some(()),
            )
        },
    )
    .await
}

#[tokio::test]
async fn the_operator_serves_metrics_and_health_through_its_metrics_service() -> anyhow::Result<()>
{
    let test = "operator::metrics_service";
    let e2e = e2e_or_skip!(test);
    if !installed_operator(&e2e, test) {
        return Ok(());
    }
    let forward = PortForward::start(
        &operator_namespace(),
        &format!("{RELEASE}-operator-metrics"),
        &[8080],
        e2e.timeout(),
    )
    .await?;
    let base = format!(
        "http://127.0.0.1:{}",
        forward.local_ports.first().context("no local port")?
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    for path in ["/healthz", "/readyz"] {
        let status = http.get(format!("{base}{path}")).send().await?.status();
        ensure!(status.is_success(), "{path}: {status}");
    }
    let metrics = http.get(format!("{base}/metrics")).send().await?;
    ensure!(
        metrics.status().is_success(),
        "/metrics: {}",
        metrics.status()
    );
    let text = metrics.text().await?;
    ensure!(
        text.lines().any(|l| l.starts_with("gridline_")),
        "no gridline_ metric in /metrics:\n{text}"
    );
    Ok(())
}
