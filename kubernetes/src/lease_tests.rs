use super::*;
use crate::fixtures::{Expect, mock_client};
use http::{Method, StatusCode};
use serde_json::{Value, json};

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/gridline-operator";
const ME: &str = "operator-0_abcd";

fn lease_loop(client: Client) -> LeaseLoop {
    LeaseLoop::new(
        client,
        LeaseConfig::new("ops".into(), "gridline-operator".into(), ME.into()),
    )
}

fn lease(holder: &str, resource_version: &str, renewed_second: u32, transitions: i32) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "gridline-operator", "namespace": "ops", "resourceVersion": resource_version},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": 15,
            "acquireTime": "2026-01-01T00:00:00.000000Z",
            "renewTime": format!("2026-01-01T00:00:{renewed_second:02}.000000Z"),
            "leaseTransitions": transitions,
        }
    })
}

fn get(answer: Value) -> Expect {
    Expect::new(Method::GET, LEASE).respond(StatusCode::OK, answer)
}

fn get_missing() -> Expect {
    Expect::new(Method::GET, LEASE).fail(StatusCode::NOT_FOUND, "NotFound")
}

fn put() -> Expect {
    Expect::new(Method::PUT, format!("{LEASE}?")).echo()
}

fn create() -> Expect {
    Expect::new(
        Method::POST,
        "/apis/coordination.k8s.io/v1/namespaces/ops/leases?",
    )
    .echo()
}

#[tokio::test]
async fn a_missing_lease_is_created_and_held() {
    let (client, mut server) = mock_client();
    let script = tokio::spawn(async move {
        server
            .run(vec![
                get_missing(),
                create().body(|b| {
                    assert_eq!(b["spec"]["holderIdentity"], ME);
                    assert_eq!(b["spec"]["leaseDurationSeconds"], 15);
                    assert_eq!(b["spec"]["leaseTransitions"], 0);
                }),
            ])
            .await
    });
    let attempt = lease_loop(client).try_acquire_or_renew().await.unwrap();
    assert_eq!(attempt, Attempt::Holding);
    script.await.unwrap();
}

#[tokio::test]
async fn the_holder_renews_with_optimistic_locking() {
    let (client, mut server) = mock_client();
    let script = tokio::spawn(async move {
        server
            .run(vec![
                get(lease(ME, "7", 0, 3)),
                put().body(|b| {
                    assert_eq!(b["metadata"]["resourceVersion"], "7");
                    assert_eq!(b["spec"]["holderIdentity"], ME);
                    assert_eq!(b["spec"]["leaseTransitions"], 3);
                    assert_eq!(b["spec"]["acquireTime"], "2026-01-01T00:00:00.000000Z");
                    assert_ne!(b["spec"]["renewTime"], "2026-01-01T00:00:00.000000Z");
                }),
            ])
            .await
    });
    let attempt = lease_loop(client).try_acquire_or_renew().await.unwrap();
    assert_eq!(attempt, Attempt::Holding);
    script.await.unwrap();
}

#[tokio::test]
async fn a_live_lease_of_another_holder_is_left_alone() {
    let (client, mut server) = mock_client();
    let script = tokio::spawn(async move {
        server.run(vec![get(lease("other", "7", 0, 1))]).await;
        server.expect_no_more(Duration::from_millis(100)).await;
    });
    let attempt = lease_loop(client).try_acquire_or_renew().await.unwrap();
    assert_eq!(
        attempt,
        Attempt::Following {
            holder: Some("other".into())
        }
    );
    script.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_lease_unchanged_for_a_whole_duration_is_taken_over() {
    let (client, server) = mock_client();
    let mut server = server.with_patience(Duration::from_secs(60));
    let script = tokio::spawn(async move {
        server.run(vec![get(lease("other", "7", 0, 1))]).await;
        server
            .run(vec![
                get(lease("other", "7", 0, 1)),
                put().body(|b| {
                    assert_eq!(b["metadata"]["resourceVersion"], "7");
                    assert_eq!(b["spec"]["holderIdentity"], ME);
                    assert_eq!(b["spec"]["leaseTransitions"], 2);
                }),
            ])
            .await;
    });
    let mut lease_loop = lease_loop(client);
    assert!(matches!(
        lease_loop.try_acquire_or_renew().await.unwrap(),
        Attempt::Following { .. }
    ));
    tokio::time::advance(Duration::from_secs(16)).await;
    assert_eq!(
        lease_loop.try_acquire_or_renew().await.unwrap(),
        Attempt::Holding
    );
    script.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_released_lease_is_taken_at_once() {
    let (client, mut server) = mock_client();
    let script = tokio::spawn(async move {
        let mut released = lease("other", "9", 0, 4);
        released["spec"]
            .as_object_mut()
            .unwrap()
            .remove("holderIdentity");
        released["spec"]["leaseDurationSeconds"] = json!(1);
        server
            .run(vec![
                get(released),
                put().body(|b| {
                    assert_eq!(b["metadata"]["resourceVersion"], "9");
                    assert_eq!(b["spec"]["holderIdentity"], ME);
                    assert_eq!(b["spec"]["leaseTransitions"], 5);
                    assert_eq!(b["spec"]["leaseDurationSeconds"], 15);
                }),
            ])
            .await;
    });
    assert_eq!(
        lease_loop(client).try_acquire_or_renew().await.unwrap(),
        Attempt::Holding
    );
    script.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_lease_the_holder_keeps_renewing_never_expires_whatever_the_clocks_say() {
    let (client, server) = mock_client();
    let mut server = server.with_patience(Duration::from_secs(60));
    let script = tokio::spawn(async move {
        // The holder's renewTime is ancient by our wall clock, but it keeps moving.
        server.run(vec![get(lease("other", "7", 0, 1))]).await;
        server.run(vec![get(lease("other", "8", 10, 1))]).await;
        server.run(vec![get(lease("other", "8", 10, 1))]).await;
        server.expect_no_more(Duration::from_millis(100)).await;
    });
    let mut lease_loop = lease_loop(client);
    for _ in 0..3 {
        assert!(matches!(
            lease_loop.try_acquire_or_renew().await.unwrap(),
            Attempt::Following { .. }
        ));
        tokio::time::advance(Duration::from_secs(10)).await;
    }
    script.await.unwrap();
}

#[tokio::test]
async fn losing_the_race_to_create_means_following() {
    let (client, mut server) = mock_client();
    let script = tokio::spawn(async move {
        server
            .run(vec![
                get_missing(),
                create().fail(StatusCode::CONFLICT, "AlreadyExists"),
            ])
            .await;
    });
    let attempt = lease_loop(client).try_acquire_or_renew().await.unwrap();
    assert_eq!(attempt, Attempt::Following { holder: None });
    script.await.unwrap();
}

#[tokio::test]
async fn an_api_error_is_reported_with_the_lease_name() {
    let (client, mut server) = mock_client();
    let script = tokio::spawn(async move {
        server
            .run(vec![
                Expect::new(Method::GET, LEASE).fail(StatusCode::FORBIDDEN, "Forbidden"),
            ])
            .await;
    });
    let error = lease_loop(client).try_acquire_or_renew().await.unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("Lease ops/gridline-operator: "),
        "{error}"
    );
    script.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_holder_steps_down_when_another_holds_the_lease() {
    let (client, mut server) = mock_client();
    let script = tokio::spawn(async move {
        server.run(vec![get_missing(), create()]).await;
        server.run(vec![get(lease(ME, "2", 0, 0)), put()]).await;
        // Someone took it (e.g. after a long pause of this process).
        server.run(vec![get(lease("other", "3", 5, 1))]).await;
    });
    let mut lease_loop = lease_loop(client);
    let mut holding = lease_loop.holding();
    let run = tokio::spawn(async move { lease_loop.run().await });
    holding.wait_for(|h| *h).await.unwrap();
    run.await.unwrap();
    assert!(!*holding.borrow());
    script.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_holder_gives_the_lease_up_when_renewals_fail_for_the_renew_deadline() {
    let (client, server) = mock_client();
    let mut server = server.with_patience(Duration::from_secs(60));
    let script = tokio::spawn(async move {
        server.run(vec![get_missing(), create()]).await;
        // Every retry (every 2 s) fails; the fifth failure is 10 s after the last renewal.
        for _ in 0..5 {
            server
                .run(vec![
                    Expect::new(Method::GET, LEASE)
                        .fail(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
                ])
                .await;
        }
        server.expect_no_more(Duration::from_secs(10)).await;
    });
    let mut lease_loop = lease_loop(client);
    let mut holding = lease_loop.holding();
    let run = tokio::spawn(async move { lease_loop.run().await });
    holding.wait_for(|h| *h).await.unwrap();
    run.await.unwrap();
    assert!(!*holding.borrow());
    script.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_candidate_keeps_trying_without_holding_while_another_holds_the_lease() {
    let (client, server) = mock_client();
    let mut server = server.with_patience(Duration::from_secs(60));
    let script = tokio::spawn(async move {
        // The holder renews between our attempts: its record keeps changing.
        for second in 0..4 {
            server
                .run(vec![get(lease("other", &second.to_string(), second, 1))])
                .await;
        }
    });
    let mut lease_loop = lease_loop(client);
    let holding = lease_loop.holding();
    let run = tokio::spawn(async move { lease_loop.run().await });
    script.await.unwrap();
    assert!(!*holding.borrow());
    assert!(!run.is_finished(), "a candidate campaigns until it wins");
    run.abort();
}

#[tokio::test]
async fn releasing_clears_the_holder() {
    let (client, mut server) = mock_client();
    let script = tokio::spawn(async move {
        server
            .run(vec![
                get(lease(ME, "4", 0, 0)),
                put().body(|b| {
                    assert!(b["spec"].get("holderIdentity").is_none());
                    assert_eq!(b["spec"]["leaseDurationSeconds"], 1);
                }),
            ])
            .await;
    });
    lease_loop(client).release().await.unwrap();
    script.await.unwrap();
}

#[tokio::test]
async fn releasing_leaves_a_lease_held_by_another_alone() {
    let (client, mut server) = mock_client();
    let script = tokio::spawn(async move {
        server.run(vec![get(lease("other", "4", 0, 0))]).await;
        server.expect_no_more(Duration::from_millis(100)).await;
    });
    lease_loop(client).release().await.unwrap();
    script.await.unwrap();
}
