use super::*;
use crate::fixtures::{Expect, mock_client};
use crate::testing::namespace;
use http::{Method, StatusCode};
use serde_json::{Value, json};

const T0: i64 = 1_796_601_600;
const LIST: &str = "/apis/coordination.k8s.io/v1/namespaces/shop/leases?&labelSelector=gridline.dev%2Flease%3Dmember%2Cgridline.dev%2Fnamespace%3Dorders";

fn lease(pod: &str, renewed: i64) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {
            "name": format!("gridline-member-{pod}"), "namespace": "shop", "resourceVersion": "41",
            "labels": {"gridline.dev/lease": "member", "gridline.dev/namespace": "orders"},
        },
        "spec": {
            "holderIdentity": pod, "leaseDurationSeconds": 15,
            "renewTime": Timestamp::from_second(renewed).unwrap().to_string(),
        },
    })
}

fn list(items: Vec<Value>) -> Expect {
    Expect::new(Method::GET, LIST).respond(
        StatusCode::OK,
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "LeaseList",
               "metadata": {"resourceVersion": "50"}, "items": items}),
    )
}

fn pod_path(pod: &str) -> String {
    format!("/api/v1/namespaces/shop/pods/{pod}")
}

#[tokio::test]
async fn a_lease_expired_five_minutes_whose_pod_is_gone_is_deleted_as_read() {
    let (client, mut server) = mock_client();
    let script = tokio::spawn(async move {
        let bodies = server
            .run(vec![
                list(vec![
                    // Live: left alone, its pod not even looked up.
                    lease("orders-gridline-0", T0),
                    // Expired 6 minutes, pod gone: deleted.
                    lease("orders-gridline-3", T0 - 15 - 360),
                    // Expired 6 minutes, pod still there (crash-looping): kept.
                    lease("orders-gridline-1", T0 - 15 - 360),
                ]),
                Expect::new(Method::GET, pod_path("orders-gridline-3"))
                    .fail(StatusCode::NOT_FOUND, "NotFound"),
                Expect::new(
                    Method::DELETE,
                    "/apis/coordination.k8s.io/v1/namespaces/shop/leases/gridline-member-orders-gridline-3?",
                )
                .respond(StatusCode::OK, json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}))
                .body(|b| assert_eq!(b["preconditions"]["resourceVersion"], "41")),
                Expect::new(Method::GET, pod_path("orders-gridline-1")).respond(
                    StatusCode::OK,
                    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "orders-gridline-1"}}),
                ),
            ])
            .await;
        server.expect_no_more(Duration::from_millis(100)).await;
        bodies
    });
    let collected = collect_garbage(
        &client,
        &namespace("orders"),
        "shop",
        Timestamp::from_second(T0).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(collected.deleted, ["gridline-member-orders-gridline-3"]);
    assert_eq!(collected.next_due, None);
    script.await.unwrap();
}

#[tokio::test]
async fn a_lease_expired_less_than_five_minutes_is_kept_and_its_time_returned() {
    let (client, mut server) = mock_client();
    let script = tokio::spawn(async move {
        server
            .run(vec![list(vec![lease("orders-gridline-2", T0 - 15 - 60)])])
            .await;
        server.expect_no_more(Duration::from_millis(100)).await;
    });
    let collected = collect_garbage(
        &client,
        &namespace("orders"),
        "shop",
        Timestamp::from_second(T0).unwrap(),
    )
    .await
    .unwrap();
    assert!(collected.deleted.is_empty());
    // Expired for 60 s at T0 (its grace long past): garbage in 4 more minutes.
    assert_eq!(collected.next_due, Some(Duration::from_secs(240)));
    script.await.unwrap();
}

#[tokio::test]
async fn a_lease_renewed_meanwhile_is_not_deleted_and_that_is_no_error() {
    let (client, mut server) = mock_client();
    let script = tokio::spawn(async move {
        server
            .run(vec![
                list(vec![lease("orders-gridline-3", T0 - 1000)]),
                Expect::new(Method::GET, pod_path("orders-gridline-3"))
                    .fail(StatusCode::NOT_FOUND, "NotFound"),
                Expect::new(
                    Method::DELETE,
                    "/apis/coordination.k8s.io/v1/namespaces/shop/leases/gridline-member-orders-gridline-3?",
                )
                .fail(StatusCode::CONFLICT, "Conflict"),
            ])
            .await;
    });
    let collected = collect_garbage(
        &client,
        &namespace("orders"),
        "shop",
        Timestamp::from_second(T0).unwrap(),
    )
    .await
    .unwrap();
    assert!(collected.deleted.is_empty());
    script.await.unwrap();
}
