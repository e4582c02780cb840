//! Several `gridline-dataplane run` processes sharing a `--cluster-dir` form one Namespace:
//! each sees the others through their lease files, a killed one drops out when its lease
//! expires, a stopped one leaves at once, and a pod name a live process holds is refused.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{BINARY, Dataplane, poll_until};

/// The membership lease of these tests: short, so that a killed pod drops out in seconds.
const LEASE_MS: &str = "2000";
/// How long a change of the member set may take to show on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(20);
const MEMBERS: &str = "gridline_cluster_members";

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples")
}

/// A port nothing listens on now (the peer address each pod advertises).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn cluster_args(cluster_dir: &Path, pod: &str) -> Vec<String> {
    vec![
        "--cluster-dir".into(),
        cluster_dir.display().to_string(),
        "--pod-name".into(),
        pod.into(),
        "--peer-addr".into(),
        format!("127.0.0.1:{}", free_port()),
        "--test-member-lease-ms".into(),
        LEASE_MS.into(),
    ]
}

fn start_pod(root: &Path, pod: &str) -> Dataplane {
    let args = cluster_args(&root.join("cluster"), pod);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Dataplane::start(&examples(), &root.join(format!("data-{pod}")), &args)
}

async fn wait_for_members(pod: &Dataplane, count: f64) {
    let reached = poll_until(PATIENCE, || async {
        pod.metric(MEMBERS).await == Some(count)
    })
    .await;
    assert!(
        reached.is_some(),
        "{MEMBERS} is {:?}, not {count}; logs:\n{}",
        pod.metric(MEMBERS).await,
        pod.logs()
    );
}

fn lease_file(root: &Path, pod: &str) -> PathBuf {
    root.join("cluster/members").join(format!("{pod}.json"))
}

#[tokio::test]
async fn three_pods_see_each_other_a_killed_one_drops_out_after_its_lease_a_stopped_one_at_once() {
    let root = tempfile::tempdir().unwrap();
    let pods: Vec<Dataplane> = ["pod-0", "pod-1", "pod-2"]
        .iter()
        .map(|pod| start_pod(root.path(), pod))
        .collect();
    for pod in &pods {
        wait_for_members(pod, 3.0).await;
        assert_eq!(
            pod.metric("gridline_cluster_lease_renewals_total{result=\"failed\"}")
                .await,
            Some(0.0)
        );
    }
    assert!(pods[0].logs().contains("cluster members changed"));
    let mut pods = pods.into_iter();
    let (pod_0, mut pod_1, pod_2) = (
        pods.next().unwrap(),
        pods.next().unwrap(),
        pods.next().unwrap(),
    );

    // SIGKILL: the lease file stays; the others drop the pod once it expires.
    drop(pod_2);
    assert!(lease_file(root.path(), "pod-2").exists());
    wait_for_members(&pod_0, 2.0).await;
    wait_for_members(&pod_1, 2.0).await;

    // SIGTERM: the pod deletes its lease file before it exits.
    let status = pod_1.terminate();
    assert!(status.success(), "{status:?}; logs:\n{}", pod_1.logs());
    assert!(
        !lease_file(root.path(), "pod-1").exists(),
        "pod-1 left its lease behind; logs:\n{}",
        pod_1.logs()
    );
    assert!(
        pod_1.logs().contains("left the cluster"),
        "{}",
        pod_1.logs()
    );
    wait_for_members(&pod_0, 1.0).await;

    // The killed pod's name is free again at once: its process is gone.
    let restarted = start_pod(root.path(), "pod-2");
    wait_for_members(&restarted, 2.0).await;
    wait_for_members(&pod_0, 2.0).await;
}

#[tokio::test]
async fn a_second_process_with_a_live_pod_name_is_refused_naming_the_pid() {
    let root = tempfile::tempdir().unwrap();
    let first = start_pod(root.path(), "pod-0");
    wait_for_members(&first, 1.0).await;
    let lease: serde_json::Value =
        serde_json::from_slice(&std::fs::read(lease_file(root.path(), "pod-0")).unwrap()).unwrap();
    let pid = lease["pid"].as_u64().expect("a pid in the lease file");

    let mut second = Command::new(BINARY)
        .arg("run")
        .arg("--manifests")
        .arg(examples())
        .arg("--data-dir")
        .arg(root.path().join("data-second"))
        .args(["--http-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0"])
        .args(["--mqtts-addr", "127.0.0.1:0", "--https-addr", "127.0.0.1:0"])
        .args(cluster_args(&root.path().join("cluster"), "pod-0"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a second gridline-dataplane");
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = second.kill();
            let _ = second.wait();
            panic!("the second process with a live pod name kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains(&format!("process {pid}")), "{stderr}");
    assert!(stderr.contains("members/pod-0.json"), "{stderr}");
    assert!(
        !stderr.contains("http listening"),
        "refused before listening"
    );
    // The first one is untouched.
    wait_for_members(&first, 1.0).await;
    assert!(lease_file(root.path(), "pod-0").exists());
}
