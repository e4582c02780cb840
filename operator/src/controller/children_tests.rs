use super::*;
use crate::children::peer_tls::{PeerCa, ca_secret, leaf_secret};
use crate::fixtures::{Expect, mock_client};
use crate::testing::namespace;
use http::{Method, StatusCode};
use serde_json::{Value, json};

const QUERY: &str = "?&force=true&fieldManager=gridline-operator";

fn apply_of(path: &str) -> Expect {
    Expect::new(Method::PATCH, format!("{path}{QUERY}")).echo()
}

/// The peer TLS Secrets as a previous reconcile left them: read, and left alone.
fn peer_tls_in_place() -> Vec<Expect> {
    let ns = namespace("orders");
    let now = SystemTime::now();
    let ca = PeerCa::generate("orders", now).unwrap();
    let leaf = ca.issue_leaf(now).unwrap();
    vec![
        Expect::new(
            Method::GET,
            "/api/v1/namespaces/shop/secrets/orders-gridline-peer-ca",
        )
        .respond(StatusCode::OK, json!(ca_secret(&ns, &ca))),
        Expect::new(
            Method::GET,
            "/api/v1/namespaces/shop/secrets/orders-gridline-peer-tls",
        )
        .respond(StatusCode::OK, json!(leaf_secret(&ns, &ca, &leaf))),
    ]
}

/// No member Leases: nothing to collect.
fn no_member_leases() -> Expect {
    Expect::new(
        Method::GET,
        "/apis/coordination.k8s.io/v1/namespaces/shop/leases?&labelSelector=gridline.dev%2Flease%3Dmember%2Cgridline.dev%2Fnamespace%3Dorders",
    )
    .respond(
        StatusCode::OK,
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "LeaseList", "metadata": {}, "items": []}),
    )
}

fn children_script() -> Vec<Expect> {
    let mut script = applies_before_peer_tls();
    script.extend(peer_tls_in_place());
    script.extend(applies_after_peer_tls());
    script.push(no_member_leases());
    script
}

fn applies_before_peer_tls() -> Vec<Expect> {
    vec![
        apply_of("/api/v1/namespaces/shop/serviceaccounts/orders-gridline").body(|b| {
            assert_eq!(b["kind"], "ServiceAccount");
            assert_eq!(b["metadata"]["ownerReferences"][0]["name"], "orders");
        }),
        apply_of("/apis/rbac.authorization.k8s.io/v1/namespaces/shop/roles/orders-gridline")
            .body(|b| assert_eq!(b["rules"].as_array().map(Vec::len), Some(4))),
        apply_of("/apis/rbac.authorization.k8s.io/v1/namespaces/shop/rolebindings/orders-gridline")
            .body(|b| assert_eq!(b["roleRef"]["name"], "orders-gridline")),
        apply_of("/api/v1/namespaces/shop/services/orders-gridline-peers").body(|b| {
            assert_eq!(b["spec"]["clusterIP"], "None");
            assert_eq!(b["spec"]["ports"][1]["name"], "peer");
        }),
        apply_of("/api/v1/namespaces/shop/services/orders-gridline").body(|b| {
            let ports: Vec<_> = b["spec"]["ports"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["port"].as_i64().unwrap())
                .collect();
            // The test Namespace turns TLS off.
            assert_eq!(ports, [8080]);
        }),
    ]
}

fn applies_after_peer_tls() -> Vec<Expect> {
    vec![
        apply_of("/apis/apps/v1/namespaces/shop/statefulsets/orders-gridline").body(|b| {
            assert_eq!(b["apiVersion"], "apps/v1");
            assert_eq!(b["kind"], "StatefulSet");
            assert_eq!(b["spec"]["replicas"], 1);
            assert_eq!(b["metadata"]["ownerReferences"][0]["controller"], true);
        }),
        apply_of("/apis/policy/v1/namespaces/shop/poddisruptionbudgets/orders-gridline")
            .body(|b| assert_eq!(b["spec"]["maxUnavailable"], 1)),
    ]
}

fn context(client: Client) -> Arc<Context> {
    Context::new(client, Options::default(), Metrics::new())
}

#[tokio::test]
async fn reconcile_applies_every_child_with_server_side_apply_and_requeues_for_drift() {
    let (client, mut server) = mock_client();
    let ctx = context(client);
    let script = tokio::spawn(async move {
        let bodies = server.run(children_script()).await;
        server.expect_no_more(Duration::from_millis(100)).await;
        bodies
    });
    let action = reconcile(Arc::new(namespace("orders")), ctx.clone())
        .await
        .expect("reconcile succeeds");
    assert_eq!(action, Action::requeue(RESYNC));
    let bodies: Vec<Value> = script.await.expect("the script ran");
    // Seven applies, two Secret reads, one Lease list.
    assert_eq!(bodies.len(), 10);
    assert!(
        ctx.metrics
            .render()
            .contains(r#"gridline_operator_reconciles_total{kind="Namespace",result="ok"} 1"#)
    );
}

#[tokio::test]
async fn reconciling_twice_sends_the_same_applies() {
    let (client, mut server) = mock_client();
    let ctx = context(client);
    let script = tokio::spawn(async move {
        let first = server.run(children_script()).await;
        let second = server.run(children_script()).await;
        (first, second)
    });
    let ns = Arc::new(namespace("orders"));
    reconcile(ns.clone(), ctx.clone()).await.unwrap();
    reconcile(ns, ctx).await.unwrap();
    let (first, second) = script.await.unwrap();
    assert_eq!(first, second);
}

#[tokio::test]
async fn a_failed_apply_names_the_object_and_backs_off_per_namespace() {
    let (client, mut server) = mock_client();
    let ctx = context(client);
    let forbidden = || {
        vec![
            apply_of("/api/v1/namespaces/shop/serviceaccounts/orders-gridline"),
            apply_of("/apis/rbac.authorization.k8s.io/v1/namespaces/shop/roles/orders-gridline")
                .fail(StatusCode::FORBIDDEN, "Forbidden"),
        ]
    };
    let script = tokio::spawn(async move {
        server.run(forbidden()).await;
        server.run(forbidden()).await;
        // Third attempt: the API server lets it through.
        server.run(children_script()).await;
        server.expect_no_more(Duration::from_millis(100)).await;
    });
    let ns = Arc::new(namespace("orders"));

    let error = reconcile(ns.clone(), ctx.clone()).await.unwrap_err();
    assert!(
        matches!(error, Error::Apply { kind: "Role", .. }),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .starts_with("applying Role shop/orders-gridline: "),
        "{error}"
    );
    assert_eq!(
        error_policy(ns.clone(), &error, ctx.clone()),
        Action::requeue(Duration::from_secs(1))
    );

    let error = reconcile(ns.clone(), ctx.clone()).await.unwrap_err();
    assert_eq!(
        error_policy(ns.clone(), &error, ctx.clone()),
        Action::requeue(Duration::from_secs(2))
    );
    // Another Namespace failing does not inherit this one's count.
    let other = Arc::new(namespace("billing"));
    assert_eq!(
        error_policy(other, &error, ctx.clone()),
        Action::requeue(Duration::from_secs(1))
    );

    reconcile(ns.clone(), ctx.clone())
        .await
        .expect("the retry succeeds");
    assert_eq!(ctx.backoff.failures(&("shop".into(), "orders".into())), 0);
    script.await.unwrap();
    let metrics = ctx.metrics.render();
    assert!(
        metrics.contains(
            r#"gridline_operator_reconcile_errors_total{error="apply",kind="Namespace"} 3"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_namespace_being_deleted_is_left_to_the_garbage_collector() {
    let (client, mut server) = mock_client();
    let ctx = context(client);
    let mut ns = namespace("orders");
    ns.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
    ));
    let action = reconcile(Arc::new(ns), ctx).await.unwrap();
    assert_eq!(action, Action::requeue(RESYNC));
    server.expect_no_more(Duration::from_millis(100)).await;
}

#[test]
fn a_lease_about_to_become_garbage_brings_the_next_reconcile_forward() {
    assert_eq!(requeue_after(None), RESYNC);
    assert_eq!(
        requeue_after(Some(Duration::from_secs(40))),
        Duration::from_secs(40)
    );
    assert_eq!(requeue_after(Some(RESYNC * 2)), RESYNC);
}
