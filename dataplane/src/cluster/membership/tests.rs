use super::lease_file::{self, LeaseFile, Publish, ReadLease};
use super::*;
use std::path::Path;

/// Generous: these tests run on a loaded machine next to other builds.
const PATIENCE: Duration = Duration::from_secs(15);

struct Pod {
    membership: Membership,
    timing: watch::Sender<ClusterTiming>,
    connected: watch::Sender<BTreeSet<Arc<str>>>,
    registry: Registry,
    _stop: Stopper,
}

fn timing(lease: Duration) -> ClusterTiming {
    ClusterTiming {
        member_lease: lease,
        ..ClusterTiming::default()
    }
}

async fn start(dir: &Path, name: &str, lease: Duration) -> Result<Pod, MembershipError> {
    let (timing_tx, timing_rx) = watch::channel(timing(lease));
    let (connected_tx, connected_rx) = watch::channel(BTreeSet::new());
    let (stopper, stop) = Stopper::new();
    let registry = Registry::new();
    let membership = Membership::start(
        MembershipOptions {
            pod: PodIdentity::new(name).unwrap(),
            peer_addr: format!("{name}.test:7946"),
            timing: timing_rx,
            connected_peers: connected_rx,
            stop,
            backend: MembershipBackend::LocalDirectory(dir.to_path_buf()),
        },
        &registry,
    )
    .await?;
    Ok(Pod {
        membership,
        timing: timing_tx,
        connected: connected_tx,
        registry,
        _stop: stopper,
    })
}

fn names(set: &MemberSet) -> Vec<String> {
    set.iter().map(|m| m.name().to_string()).collect()
}

/// Wait until `pod`'s member set is `expected`.
async fn wait_for(pod: &Pod, expected: &[&str]) {
    let mut members = pod.membership.members();
    let reached =
        tokio::time::timeout(PATIENCE, members.wait_for(|set| names(set) == expected)).await;
    assert!(
        reached.is_ok(),
        "expected {expected:?}, have {:?}",
        names(&pod.membership.members().borrow())
    );
}

fn own_lease(dir: &Path, name: &str) -> LeaseFile {
    let path = lease_file::path_of(&dir.join("members"), name);
    match lease_file::read(&path, name).unwrap() {
        ReadLease::Lease(lease) => lease,
        other => panic!("no lease of {name}: {other:?}"),
    }
}

fn gauge(registry: &Registry, name: &str) -> f64 {
    let families = registry.gather();
    let family = families
        .iter()
        .find(|f| f.name() == name)
        .unwrap_or_else(|| panic!("no {name}"));
    family
        .get_metric()
        .iter()
        .map(|m| m.get_gauge().get_value() + m.get_counter().get_value())
        .sum()
}

#[tokio::test]
async fn pods_sharing_a_directory_see_each_other_and_one_that_leaves_drops_out_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // A lease far longer than the test: dropping out can only come from leaving.
    let lease = Duration::from_secs(60);
    let a = start(dir.path(), "pod-a", lease).await.unwrap();
    assert_eq!(names(&a.membership.members().borrow()), ["pod-a"]);
    let b = start(dir.path(), "pod-b", lease).await.unwrap();
    assert_eq!(
        names(&b.membership.members().borrow()),
        ["pod-a", "pod-b"],
        "the first set holds the pods already there"
    );
    wait_for(&a, &["pod-a", "pod-b"]).await;
    assert_eq!(
        a.membership
            .members()
            .borrow()
            .get("pod-b")
            .unwrap()
            .peer_addr,
        "pod-b.test:7946"
    );
    assert_eq!(gauge(&a.registry, "gridline_cluster_members"), 2.0);

    b.membership.leave().await;
    assert!(!dir.path().join("members/pod-b.json").exists());
    wait_for(&a, &["pod-a"]).await;
    assert_eq!(gauge(&a.registry, "gridline_cluster_members"), 1.0);
}

#[tokio::test]
async fn a_pod_that_stops_renewing_drops_out_after_its_lease() {
    let dir = tempfile::tempdir().unwrap();
    let a = start(dir.path(), "pod-a", Duration::from_secs(60))
        .await
        .unwrap();
    // A lease written once, by a process (1, alive) that never renews it.
    let members = dir.path().join("members");
    let silent = LeaseFile {
        pod: "pod-c".into(),
        owner: 0,
        peer_address: "127.0.0.1:3".into(),
        pid: 1,
        incarnation: "c".into(),
        renewed_at: lease_file::unix_millis(),
        lease_millis: 1_500,
        connected_peers: Vec::new(),
    };
    lease_file::write(&members, &silent, Publish::Exclusive).unwrap();
    wait_for(&a, &["pod-a", "pod-c"]).await;
    wait_for(&a, &["pod-a"]).await;
}

#[tokio::test]
async fn a_process_whose_file_was_taken_over_keeps_itself_counts_failures_and_leaves_the_file_alone()
 {
    let dir = tempfile::tempdir().unwrap();
    let first = start(dir.path(), "pod-a", Duration::from_secs(60))
        .await
        .unwrap();
    // Same pid (one test process): the second claim reads the file as left by an earlier
    // incarnation of this process (a container restart) and takes it over. A second live
    // *process* is refused (local_tests, and the integration test).
    let first_incarnation = own_lease(dir.path(), "pod-a").incarnation;
    let second = start(dir.path(), "pod-a", Duration::from_secs(60))
        .await
        .unwrap();
    assert_ne!(
        own_lease(dir.path(), "pod-a").incarnation,
        first_incarnation,
        "the second took the file over"
    );
    // The first one's renewals now fail (the file is the second's): counted, and it keeps
    // itself in its own set.
    first.timing.send_replace(timing(Duration::from_secs(59)));
    let failed = "gridline_cluster_lease_renewals_total";
    let deadline = Instant::now() + PATIENCE;
    while gauge(&first.registry, failed) < 2.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let failures = first
        .registry
        .gather()
        .into_iter()
        .find(|f| f.name() == failed)
        .unwrap()
        .get_metric()
        .iter()
        .find(|m| m.get_label().iter().any(|l| l.value() == "failed"))
        .map(|m| m.get_counter().get_value());
    assert!(failures.is_some_and(|n| n >= 1.0), "{failures:?}");
    assert_eq!(names(&first.membership.members().borrow()), ["pod-a"]);
    assert_eq!(
        own_lease(dir.path(), "pod-a").lease_millis,
        60_000,
        "not overwritten"
    );
    first.membership.leave().await;
    assert!(
        dir.path().join("members/pod-a.json").exists(),
        "leaving does not delete another process's file"
    );
    second.membership.leave().await;
    assert!(!dir.path().join("members/pod-a.json").exists());
}

#[tokio::test]
async fn connected_peers_and_a_new_lease_duration_are_written_soon() {
    let dir = tempfile::tempdir().unwrap();
    let a = start(dir.path(), "pod-a", Duration::from_secs(60))
        .await
        .unwrap();
    a.connected
        .send_replace(BTreeSet::from([Arc::from("pod-c"), Arc::from("pod-b")]));
    let deadline = Instant::now() + PATIENCE;
    while own_lease(dir.path(), "pod-a").connected_peers != ["pod-b", "pod-c"] {
        assert!(Instant::now() < deadline, "connected peers not written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.timing.send_replace(timing(Duration::from_secs(30)));
    while own_lease(dir.path(), "pod-a").lease_millis != 30_000 {
        assert!(
            Instant::now() < deadline,
            "the new lease duration not written"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_stop_signal_leaves_too() {
    let dir = tempfile::tempdir().unwrap();
    let a = start(dir.path(), "pod-a", Duration::from_secs(60))
        .await
        .unwrap();
    assert!(dir.path().join("members/pod-a.json").exists());
    a._stop.stop();
    let deadline = Instant::now() + PATIENCE;
    while dir.path().join("members/pod-a.json").exists() {
        assert!(Instant::now() < deadline, "the lease file is still there");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
