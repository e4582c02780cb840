use super::*;

fn member(name: &str, port: u16) -> Member {
    Member {
        pod: PodIdentity::new(name).unwrap(),
        peer_addr: format!("127.0.0.1:{port}"),
    }
}

/// A lease file of `pod` held by process `pid`, renewed just now.
fn held_by(cluster_dir: &Path, pod: &str, pid: u32) {
    let members = cluster_dir.join("members");
    std::fs::create_dir_all(&members).unwrap();
    let lease = LeaseFile {
        pod: pod.into(),
        owner: 1,
        peer_address: "127.0.0.1:9".into(),
        pid,
        incarnation: "earlier".into(),
        renewed_at: lease_file::unix_millis(),
        lease_millis: 60_000,
        connected_peers: Vec::new(),
    };
    lease_file::write(&members, &lease, Publish::Exclusive).unwrap();
}

const LEASE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_live_lease_of_a_live_process_is_refused_naming_the_pid_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    // Process 1 is always alive.
    held_by(dir.path(), "pod-1", 1);
    let error = LocalDirectory::claim(dir.path(), &member("pod-1", 1), LEASE, &BTreeSet::new())
        .await
        .err()
        .expect("refused");
    let text = error.to_string();
    assert!(matches!(
        error,
        MembershipError::PodNameInUse { pid: 1, .. }
    ));
    assert!(text.contains("process 1"), "{text}");
    assert!(text.contains("members/pod-1.json"), "{text}");
}

#[tokio::test]
async fn a_lease_left_by_a_dead_process_is_taken_over_at_once() {
    let dir = tempfile::tempdir().unwrap();
    held_by(dir.path(), "pod-1", u32::MAX - 1);
    let local = LocalDirectory::claim(dir.path(), &member("pod-1", 7), LEASE, &BTreeSet::new())
        .await
        .unwrap();
    let ReadLease::Lease(now) = lease_file::read(&local.file(), "pod-1").unwrap() else {
        panic!("a lease");
    };
    assert_eq!(now.pid, std::process::id());
    assert_eq!(now.peer_address, "127.0.0.1:7");
}

#[tokio::test]
async fn others_are_read_malformed_files_ignored_and_leave_deletes_only_our_file() {
    let dir = tempfile::tempdir().unwrap();
    held_by(dir.path(), "pod-2", 1);
    let members = dir.path().join("members");
    std::fs::write(members.join("pod-3.json"), "{\"pod\":").unwrap();
    std::fs::write(members.join("Bad_Name.json"), "{}").unwrap();
    std::fs::write(members.join("notes.txt"), "not a lease").unwrap();
    let connected = BTreeSet::from([Arc::from("pod-2")]);
    let mut local = LocalDirectory::claim(dir.path(), &member("pod-1", 1), LEASE, &connected)
        .await
        .unwrap();
    let peers: Vec<_> = local
        .live_peers()
        .iter()
        .map(|m| m.name().to_string())
        .collect();
    assert_eq!(peers, ["pod-2"]);
    let ReadLease::Lease(own) = lease_file::read(&local.file(), "pod-1").unwrap() else {
        panic!("a lease");
    };
    assert_eq!(own.connected_peers, ["pod-2"]);

    local.leave().await.unwrap();
    assert!(!local.file().exists());
    assert!(members.join("pod-2.json").exists());
}

#[tokio::test]
async fn a_renewal_does_not_overwrite_a_file_another_process_took_over() {
    let dir = tempfile::tempdir().unwrap();
    let mut local = LocalDirectory::claim(dir.path(), &member("pod-1", 1), LEASE, &BTreeSet::new())
        .await
        .unwrap();
    std::fs::remove_file(local.file()).unwrap();
    held_by(dir.path(), "pod-1", 1);
    let error = local.renew(LEASE, &BTreeSet::new()).await.unwrap_err();
    assert!(
        matches!(error, MembershipError::TakenOver { pid: 1, .. }),
        "{error}"
    );
    // Leaving leaves the other process's file alone.
    local.leave().await.unwrap();
    assert!(local.file().exists());
}

#[tokio::test]
async fn an_expired_lease_is_out() {
    let dir = tempfile::tempdir().unwrap();
    let members = dir.path().join("members");
    std::fs::create_dir_all(&members).unwrap();
    let expired = LeaseFile {
        pod: "pod-2".into(),
        owner: 2,
        peer_address: "127.0.0.1:2".into(),
        pid: 1,
        incarnation: "x".into(),
        renewed_at: lease_file::unix_millis() - 2_000,
        lease_millis: 1_000,
        connected_peers: Vec::new(),
    };
    lease_file::write(&members, &expired, Publish::Exclusive).unwrap();
    let local = LocalDirectory::claim(dir.path(), &member("pod-1", 1), LEASE, &BTreeSet::new())
        .await
        .unwrap();
    assert!(local.live_peers().is_empty());
}
