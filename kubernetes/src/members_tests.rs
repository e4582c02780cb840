use super::*;
use crate::fixtures::{Expect, mock_client};
use http::{Method, StatusCode};
use serde_json::{Value, json};

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/shop/leases";
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/shop/leases/gridline-member-orders-0";

fn member_lease(client: Client) -> MemberLease {
    MemberLease::new(
        client,
        MemberLeaseConfig {
            k8s_namespace: "shop".into(),
            namespace: "orders".into(),
            pod: "orders-0".into(),
            peer_address: "orders-0.orders-peers.shop.svc:7946".into(),
        },
    )
}

fn renewal(peers: &[&str]) -> Renewal {
    Renewal {
        lease_duration: Duration::from_secs(15),
        connected_peers: peers.iter().map(|p| p.to_string()).collect(),
    }
}

/// The Lease as the API server holds it at `resource_version`.
fn stored(resource_version: &str, transitions: i32) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": "gridline-member-orders-0", "namespace": "shop",
            "uid": "uid-1", "resourceVersion": resource_version,
            "labels": {"gridline.dev/namespace": "orders", "gridline.dev/lease": "member"},
            "annotations": {"gridline.dev/peer-address": "old:1", "team": "a"},
        },
        "spec": {
            "holderIdentity": "orders-0",
            "leaseDurationSeconds": 15,
            "acquireTime": "2026-01-01T00:00:00.000000Z",
            "renewTime": "2026-01-01T00:00:10.000000Z",
            "leaseTransitions": transitions,
        }
    })
}

fn assert_contract(body: &Value) {
    assert_eq!(body["metadata"]["name"], "gridline-member-orders-0");
    assert_eq!(
        body["metadata"]["labels"]["gridline.dev/namespace"],
        "orders"
    );
    assert_eq!(body["metadata"]["labels"]["gridline.dev/lease"], "member");
    assert_eq!(
        body["metadata"]["annotations"]["gridline.dev/peer-address"],
        "orders-0.orders-peers.shop.svc:7946"
    );
    assert_eq!(body["spec"]["holderIdentity"], "orders-0");
    assert_eq!(body["spec"]["leaseDurationSeconds"], 15);
    assert!(body["spec"]["renewTime"].is_string());
    assert!(body["spec"]["acquireTime"].is_string());
}

fn get() -> Expect {
    Expect::new(Method::GET, LEASE)
}

fn create() -> Expect {
    Expect::new(Method::POST, format!("{LEASES}?"))
}

fn replace() -> Expect {
    Expect::new(Method::PUT, format!("{LEASE}?"))
}

#[tokio::test]
async fn a_missing_lease_is_created_with_the_contract_then_renewed_on_its_resource_version() {
    let (client, mut server) = mock_client();
    let script = tokio::spawn(async move {
        server
            .run(vec![
                get().fail(StatusCode::NOT_FOUND, "NotFound"),
                create()
                    .body(|b| {
                        assert_contract(b);
                        assert_eq!(
                            b["metadata"]["annotations"]["gridline.dev/connected-peers"],
                            "orders-1,orders-2"
                        );
                        assert_eq!(b["spec"]["leaseTransitions"], 0);
                        assert!(b["metadata"].get("resourceVersion").is_none());
                    })
                    .respond(StatusCode::CREATED, stored("5", 0)),
                // The renewal writes over what the create returned, without reading first.
                replace()
                    .body(|b| {
                        assert_contract(b);
                        assert_eq!(b["metadata"]["resourceVersion"], "5");
                        assert_eq!(
                            b["metadata"]["annotations"]["gridline.dev/connected-peers"],
                            ""
                        );
                        assert_eq!(b["spec"]["leaseTransitions"], 0);
                        assert_eq!(b["spec"]["acquireTime"], "2026-01-01T00:00:00.000000Z");
                    })
                    .respond(StatusCode::OK, stored("6", 0)),
            ])
            .await;
        server.expect_no_more(Duration::from_millis(100)).await;
    });
    let mut lease = member_lease(client);
    lease
        .renew(&renewal(&["orders-2", "orders-1"]))
        .await
        .unwrap();
    lease.renew(&renewal(&[])).await.unwrap();
    script.await.unwrap();
}

#[tokio::test]
async fn a_previous_incarnations_lease_is_taken_over_with_compare_and_swap() {
    let (client, mut server) = mock_client();
    let script = tokio::spawn(async move {
        server
            .run(vec![
                get().respond(StatusCode::OK, stored("7", 2)),
                replace()
                    .body(|b| {
                        assert_contract(b);
                        assert_eq!(b["metadata"]["resourceVersion"], "7");
                        assert_eq!(b["metadata"]["uid"], "uid-1");
                        assert_eq!(b["metadata"]["annotations"]["team"], "a", "kept");
                        assert_eq!(b["spec"]["leaseTransitions"], 3);
                        assert_ne!(b["spec"]["acquireTime"], "2026-01-01T00:00:00.000000Z");
                    })
                    .respond(StatusCode::OK, stored("8", 3)),
            ])
            .await;
    });
    member_lease(client).renew(&renewal(&[])).await.unwrap();
    script.await.unwrap();
}

#[tokio::test]
async fn a_conflict_is_re_read_and_retried_as_a_renewal_not_a_takeover() {
    let (client, mut server) = mock_client();
    let script = tokio::spawn(async move {
        server
            .run(vec![
                get().fail(StatusCode::NOT_FOUND, "NotFound"),
                create().respond(StatusCode::CREATED, stored("5", 0)),
                replace()
                    .body(|b| assert_eq!(b["metadata"]["resourceVersion"], "5"))
                    .fail(StatusCode::CONFLICT, "Conflict"),
                get().respond(StatusCode::OK, stored("9", 0)),
                replace()
                    .body(|b| {
                        assert_eq!(b["metadata"]["resourceVersion"], "9");
                        assert_eq!(
                            b["spec"]["leaseTransitions"], 0,
                            "still ours: no transition"
                        );
                        assert_eq!(b["spec"]["acquireTime"], "2026-01-01T00:00:00.000000Z");
                    })
                    .respond(StatusCode::OK, stored("10", 0)),
            ])
            .await;
    });
    let mut lease = member_lease(client);
    lease.renew(&renewal(&[])).await.unwrap();
    lease.renew(&renewal(&["orders-1"])).await.unwrap();
    script.await.unwrap();
}

#[tokio::test]
async fn losing_the_race_to_create_reads_and_writes_over_the_winner() {
    let (client, mut server) = mock_client();
    let script = tokio::spawn(async move {
        server
            .run(vec![
                get().fail(StatusCode::NOT_FOUND, "NotFound"),
                create().fail(StatusCode::CONFLICT, "AlreadyExists"),
                get().respond(StatusCode::OK, stored("3", 0)),
                replace()
                    .body(|b| assert_eq!(b["metadata"]["resourceVersion"], "3"))
                    .respond(StatusCode::OK, stored("4", 1)),
            ])
            .await;
    });
    member_lease(client).renew(&renewal(&[])).await.unwrap();
    script.await.unwrap();
}

#[tokio::test]
async fn conflicts_without_end_are_an_error_naming_the_lease() {
    let (client, mut server) = mock_client();
    let script = tokio::spawn(async move {
        server
            .run(vec![
                get().respond(StatusCode::OK, stored("1", 0)),
                replace().fail(StatusCode::CONFLICT, "Conflict"),
                get().respond(StatusCode::OK, stored("2", 0)),
                replace().fail(StatusCode::CONFLICT, "Conflict"),
                get().respond(StatusCode::OK, stored("3", 0)),
                replace().fail(StatusCode::CONFLICT, "Conflict"),
            ])
            .await;
        server.expect_no_more(Duration::from_millis(100)).await;
    });
    let error = member_lease(client)
        .renew(&renewal(&[]))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("Lease shop/gridline-member-orders-0:"),
        "{error}"
    );
    script.await.unwrap();
}

#[tokio::test]
async fn leaving_deletes_the_lease_this_process_wrote() {
    let (client, mut server) = mock_client();
    let script = tokio::spawn(async move {
        server
            .run(vec![
                get().fail(StatusCode::NOT_FOUND, "NotFound"),
                create().respond(StatusCode::CREATED, stored("5", 0)),
                Expect::new(Method::DELETE, format!("{LEASE}?"))
                    .body(|b| assert_eq!(b["preconditions"]["uid"], "uid-1"))
                    .respond(StatusCode::OK, stored("5", 0)),
                // Deleting again (already gone) is not an error.
                Expect::new(Method::DELETE, format!("{LEASE}?"))
                    .fail(StatusCode::NOT_FOUND, "NotFound"),
            ])
            .await;
    });
    let mut lease = member_lease(client);
    lease.renew(&renewal(&[])).await.unwrap();
    lease.delete().await.unwrap();
    lease.delete().await.unwrap();
    script.await.unwrap();
}

#[test]
fn a_member_lease_reads_back_as_its_record() {
    let lease: Lease = serde_json::from_value(stored("1", 0)).unwrap();
    let record = MemberRecord::from_lease(&lease).unwrap();
    assert_eq!(record.pod, "orders-0");
    assert_eq!(record.peer_address, "old:1");
    assert!(record.connected_peers.is_empty());
    assert_eq!(record.lease_duration, Duration::from_secs(15));

    let mut renamed = lease.clone();
    renamed.metadata.name = Some("gridline-member-orders-9".into());
    assert!(matches!(
        MemberRecord::from_lease(&renamed),
        Err(InvalidMemberLease::NameMismatch { .. })
    ));
    let mut anonymous = lease;
    anonymous.metadata.annotations = None;
    assert!(matches!(
        MemberRecord::from_lease(&anonymous),
        Err(InvalidMemberLease::NoPeerAddress { .. })
    ));
}

#[test]
fn durations_are_written_in_whole_seconds_rounded_up() {
    assert_eq!(whole_seconds(Duration::from_millis(1500)), 2);
    assert_eq!(whole_seconds(Duration::from_millis(100)), 1);
    assert_eq!(whole_seconds(Duration::from_secs(15)), 15);
    assert_eq!(
        label_selector("orders"),
        "gridline.dev/namespace=orders,gridline.dev/lease=member"
    );
}
