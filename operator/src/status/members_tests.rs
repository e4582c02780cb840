use super::*;
use serde_json::json;

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(second).unwrap()
}

const T0: i64 = 1_796_601_600;

/// A member Lease of Namespace `orders`, renewed at `renewed` (seconds), lasting 15 s.
fn lease(pod: &str, renewed: i64, peers: &[&str]) -> Lease {
    serde_json::from_value(json!({
        "metadata": {
            "name": format!("gridline-member-{pod}"), "namespace": "shop", "resourceVersion": "7",
            "labels": {"gridline.dev/lease": "member", "gridline.dev/namespace": "orders"},
            "annotations": {
                "gridline.dev/peer-address": format!("{pod}.orders-gridline-peers.shop.svc:7443"),
                "gridline.dev/connected-peers": peers.join(","),
            },
        },
        "spec": {
            "holderIdentity": pod,
            "leaseDurationSeconds": 15,
            "renewTime": at(renewed).to_string(),
        },
    }))
    .unwrap()
}

fn member(pod: &str, renewed: i64, peers: &[&str]) -> MemberLease {
    MemberLease::from_lease(&lease(pod, renewed, peers)).expect("a member Lease")
}

fn members_of(leases: &[MemberLease], now: i64) -> Vec<ClusterMember> {
    live_members(leases, at(now))
}

#[test]
fn a_member_lease_reads_its_pod_address_peers_and_expiry() {
    let read = member(
        "orders-gridline-0",
        T0,
        &["orders-gridline-1", "orders-gridline-2"],
    );
    assert_eq!(read.namespace, "orders");
    assert_eq!(read.pod(), "orders-gridline-0");
    assert_eq!(
        read.peer_address,
        "orders-gridline-0.orders-gridline-peers.shop.svc:7443"
    );
    assert_eq!(
        read.connected_peers.iter().collect::<Vec<_>>(),
        ["orders-gridline-1", "orders-gridline-2"]
    );
    assert_eq!(read.expires_at, Some(at(T0 + 15)));
    assert_eq!(read.resource_version.as_deref(), Some("7"));
}

#[test]
fn a_lease_without_the_member_labels_is_not_a_member_lease() {
    let mut other = lease("orders-gridline-0", T0, &[]);
    other
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("gridline.dev/lease".into(), "leader".into());
    assert_eq!(MemberLease::from_lease(&other), None);
    let mut unlabelled = lease("orders-gridline-0", T0, &[]);
    unlabelled.metadata.labels = None;
    assert_eq!(MemberLease::from_lease(&unlabelled), None);
}

#[test]
fn a_lease_is_live_until_its_duration_and_the_grace_have_passed() {
    let lease = member("orders-gridline-0", T0, &[]);
    assert!(lease.is_live(at(T0)));
    assert!(lease.is_live(at(T0 + 19)), "15 s plus 5 s of grace");
    assert!(!lease.is_live(at(T0 + 20)));
    assert_eq!(lease.expired_for(at(T0 + 19)), None);
    assert_eq!(
        lease.expired_for(at(T0 + 75)),
        Some(Duration::from_secs(60))
    );
}

#[test]
fn a_released_lease_is_not_live_and_names_its_pod_by_its_name() {
    let mut released = lease("orders-gridline-2", T0, &[]);
    released.spec.as_mut().unwrap().holder_identity = Some(String::new());
    let read = MemberLease::from_lease(&released).unwrap();
    assert!(!read.is_live(at(T0)));
    assert_eq!(read.pod(), "orders-gridline-2");
    assert_eq!(read.expired_for(at(T0 + 1)), Some(Duration::ZERO));
}

#[test]
fn live_members_are_sorted_by_name_and_expired_ones_left_out() {
    let leases = [
        member("orders-gridline-2", T0, &["orders-gridline-0"]),
        member("orders-gridline-0", T0, &["orders-gridline-2"]),
        member("orders-gridline-1", T0 - 60, &[]),
    ];
    let members = members_of(&leases, T0 + 1);
    let names: Vec<_> = members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["orders-gridline-0", "orders-gridline-2"]);
    assert_eq!(members[0].connected_peers, ["orders-gridline-2"]);
    assert_eq!(
        members[0].peer_address,
        "orders-gridline-0.orders-gridline-peers.shop.svc:7443"
    );
}

#[test]
fn at_most_forty_members_are_listed() {
    let leases: Vec<_> = (0..45)
        .map(|i| member(&format!("orders-gridline-{i}"), T0, &[]))
        .collect();
    assert_eq!(members_of(&leases, T0).len(), 40);
}

fn problem(replicas: i32, leases: &[MemberLease]) -> Option<(bool, &'static str, String)> {
    membership_problem("orders", replicas, &members_of(leases, T0 + 1))
        .map(|d| (d.status, d.reason, d.message))
}

#[test]
fn three_members_that_all_see_each_other_are_fine() {
    let leases = [
        member(
            "orders-gridline-0",
            T0,
            &["orders-gridline-1", "orders-gridline-2"],
        ),
        member(
            "orders-gridline-1",
            T0,
            &["orders-gridline-0", "orders-gridline-2"],
        ),
        member(
            "orders-gridline-2",
            T0,
            &["orders-gridline-0", "orders-gridline-1"],
        ),
    ];
    assert_eq!(problem(3, &leases), None);
}

#[test]
fn a_member_that_does_not_see_another_is_named() {
    let leases = [
        member(
            "orders-gridline-0",
            T0,
            &["orders-gridline-1", "orders-gridline-2"],
        ),
        member("orders-gridline-1", T0, &["orders-gridline-0"]),
        member("orders-gridline-2", T0, &["orders-gridline-0"]),
    ];
    assert_eq!(
        problem(3, &leases),
        Some((
            false,
            "PeersNotConnected",
            "orders-gridline-1 does not see orders-gridline-2; \
             orders-gridline-2 does not see orders-gridline-1"
                .into()
        ))
    );
}

#[test]
fn with_several_replicas_a_pod_without_a_live_lease_is_missing() {
    let leases = [
        member("orders-gridline-0", T0, &["orders-gridline-1"]),
        member("orders-gridline-1", T0, &["orders-gridline-0"]),
        member("orders-gridline-2", T0 - 60, &[]),
    ];
    assert_eq!(
        problem(3, &leases),
        Some((
            false,
            "MembersMissing",
            "2 of 3 pods hold a live membership Lease; missing: orders-gridline-2".into()
        ))
    );
}

#[test]
fn a_single_pod_needs_no_lease() {
    assert_eq!(problem(1, &[]), None);
    assert_eq!(problem(1, &[member("orders-gridline-0", T0, &[])]), None);
}

#[test]
fn a_scaled_down_pod_still_live_must_still_be_seen() {
    // replicas went 3 → 2; pod 2 is draining and still a member: its peers must reach it.
    let leases = [
        member("orders-gridline-0", T0, &["orders-gridline-1"]),
        member("orders-gridline-1", T0, &["orders-gridline-0"]),
        member(
            "orders-gridline-2",
            T0,
            &["orders-gridline-0", "orders-gridline-1"],
        ),
    ];
    let (_, reason, message) = problem(2, &leases).unwrap();
    assert_eq!(reason, "PeersNotConnected");
    assert!(
        message.starts_with("orders-gridline-0 does not see orders-gridline-2"),
        "{message}"
    );
}

#[test]
fn the_next_recheck_is_when_the_first_lease_runs_out_or_soon_while_one_is_expired() {
    let live = [
        member("orders-gridline-0", T0, &[]),
        member("orders-gridline-1", T0 - 10, &[]),
    ];
    // Pod 1's Lease is out at T0 - 10 + 15 + 5 = T0 + 10; a second later the pass sees it.
    assert_eq!(next_recheck(&live, at(T0)), Some(Duration::from_secs(11)));
    let expired = [member("orders-gridline-0", T0 - 600, &[])];
    assert_eq!(next_recheck(&expired, at(T0)), Some(EXPIRED_RECHECK));
    assert_eq!(next_recheck(&[], at(T0)), None);
}

#[test]
fn the_selector_is_the_member_label() {
    assert_eq!(
        MEMBER_LEASE_SELECTOR,
        format!("{LEASE_LABEL}={MEMBER_LEASE}")
    );
}
