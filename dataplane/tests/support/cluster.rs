//! Several local-mode pods of one Namespace: processes on 127.0.0.1 sharing a cluster
//! directory (`--cluster-dir`), each with its own data directory, joined by peer links.

use super::{Dataplane, Workspace, poll_until};
use std::time::Duration;

/// The pods of a cluster, `pod-0` to `pod-(n-1)`, started on one workspace's manifests.
pub struct Cluster {
    pub pods: Vec<Dataplane>,
}

/// The arguments that make pod `index` of a cluster sharing `workspace`'s cluster dir.
pub fn pod_args(workspace: &Workspace, index: usize) -> Vec<String> {
    vec![
        "--cluster-dir".into(),
        workspace.path("cluster").display().to_string(),
        "--pod-name".into(),
        pod_name(index),
        "--peer-addr".into(),
        "127.0.0.1:0".into(),
    ]
}

pub fn pod_name(index: usize) -> String {
    format!("pod-{index}")
}

impl Cluster {
    /// Start `n` pods and wait until each sees all of them and has a link to every other.
    pub async fn start(workspace: &Workspace, n: usize) -> Cluster {
        let pods = (0..n).map(|index| start_pod(workspace, index)).collect();
        let cluster = Cluster { pods };
        cluster.wait_joined().await;
        cluster
    }

    /// Wait (up to 30 s) until every running pod sees the others as members and has a link
    /// up to each.
    pub async fn wait_joined(&self) {
        let n = self.pods.len();
        for (index, pod) in self.pods.iter().enumerate() {
            let joined = poll_until(Duration::from_secs(30), || async {
                let (_, text) = pod.get("/metrics").await;
                let members = super::metric_value(&text, "gridline_cluster_members");
                let links = (0..n).filter(|other| *other != index).all(|other| {
                    let sample = format!("gridline_peer_links{{peer=\"{}\"}}", pod_name(other));
                    super::metric_value(&text, &sample) == Some(1.0)
                });
                members == Some(n as f64) && links
            })
            .await;
            assert!(
                joined.is_some(),
                "pod-{index} did not join the other {} within 30 s; logs:\n{}",
                n - 1,
                pod.logs()
            );
        }
    }
}

/// Start pod `index` (returns once it announced its HTTP address).
pub fn start_pod(workspace: &Workspace, index: usize) -> Dataplane {
    let args = pod_args(workspace, index);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Dataplane::start(
        &workspace.manifests(),
        &workspace.path(&format!("data-{index}")),
        &args,
    )
}
