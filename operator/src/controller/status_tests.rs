use super::*;
use crate::fixtures::{Expect, mock_client};
use crate::testing::*;
use http::{Method, StatusCode};
use serde_json::Value;

const STATUS_QUERY: &str = "?&fieldManager=gridline-operator";

fn status_patch(plural: &str, name: &str) -> Expect {
    Expect::new(
        Method::PATCH,
        format!("/apis/gridline.dev/v1alpha1/namespaces/shop/{plural}/{name}/status{STATUS_QUERY}"),
    )
    .echo()
}

fn event_post() -> Expect {
    Expect::new(
        Method::POST,
        "/apis/events.k8s.io/v1/namespaces/shop/events?",
    )
    .echo()
}

fn context(client: Client) -> Arc<StatusContext> {
    let ctx = StatusContext::new(client, Metrics::new(), "test-replica".into());
    // One write at a time: the script's order is then the plan's order.
    Arc::new(StatusContext {
        concurrency: 1,
        ..Arc::into_inner(ctx).expect("sole owner")
    })
}

fn ready(name: &str) -> BTreeMap<String, Pods> {
    BTreeMap::from([(
        name.to_string(),
        Pods {
            desired: 1,
            ready: 1,
            leases: Vec::new(),
        },
    )])
}

fn namespace_and_topic() -> Objects {
    Objects {
        namespaces: vec![namespace("orders")],
        topics: vec![topic("placed", "orders")],
        ..Objects::default()
    }
}

fn conditions_of(body: &Value) -> Vec<(String, String)> {
    body["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .map(|c| {
            (
                c["type"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_pass_merge_patches_each_new_status_through_the_status_subresource() {
    let (client, mut server) = mock_client();
    let ctx = context(client);
    let script = tokio::spawn(async move {
        let bodies = server
            .run(vec![
                status_patch("namespaces", "orders"),
                status_patch("topics", "placed"),
            ])
            .await;
        server.expect_no_more(Duration::from_millis(100)).await;
        bodies
    });
    let outcome = sync_namespace(&ctx, K8S_NS, namespace_and_topic(), ready("orders")).await;
    assert_eq!(
        outcome,
        PassOutcome {
            patched: 2,
            ..PassOutcome::default()
        }
    );
    let bodies = script.await.unwrap();
    for body in &bodies {
        assert_eq!(
            conditions_of(body),
            [
                ("Accepted".to_string(), "True".to_string()),
                ("Ready".to_string(), "True".to_string())
            ]
        );
        assert_eq!(body["status"]["observedGeneration"], 1);
        // Only the status: a merge patch of anything else would fight the user's spec.
        assert_eq!(body.as_object().unwrap().len(), 1);
    }
}

#[tokio::test]
async fn a_namespaces_members_are_written_whole_and_removed_with_null_when_gone() {
    let (client, mut server) = mock_client();
    let ctx = context(client);
    let script = tokio::spawn(async move {
        let bodies = server
            .run(vec![
                status_patch("namespaces", "orders"),
                status_patch("topics", "placed"),
                status_patch("namespaces", "orders"),
            ])
            .await;
        server.expect_no_more(Duration::from_millis(100)).await;
        bodies
    });
    let mut pods = ready("orders");
    let now = k8s_openapi::jiff::Timestamp::now();
    pods.get_mut("orders").unwrap().leases = vec![member("orders", "orders-gridline-0", now, &[])];
    sync_namespace(&ctx, K8S_NS, namespace_and_topic(), pods).await;
    // The pod released its Lease (drained): the members go, nothing else changes.
    let outcome = sync_namespace(&ctx, K8S_NS, namespace_and_topic(), ready("orders")).await;
    assert_eq!(outcome.patched, 1);
    let bodies = script.await.unwrap();
    assert_eq!(
        bodies[0]["status"]["members"],
        serde_json::json!([{
            "name": "orders-gridline-0",
            "peerAddress": "orders-gridline-0.orders-gridline-peers.shop.svc:7443",
        }])
    );
    assert_eq!(
        bodies[1]["status"].get("members"),
        None,
        "a Topic has no members"
    );
    // A merge patch removes a field set to null.
    assert_eq!(bodies[2]["status"]["members"], Value::Null);
    assert!(
        bodies[2]["status"]
            .as_object()
            .unwrap()
            .contains_key("members")
    );
}

#[tokio::test]
async fn a_second_pass_over_unchanged_objects_writes_nothing_even_before_the_store_catches_up() {
    let (client, mut server) = mock_client();
    let ctx = context(client);
    let script = tokio::spawn(async move {
        server
            .run(vec![
                status_patch("namespaces", "orders"),
                status_patch("topics", "placed"),
            ])
            .await;
        server.expect_no_more(Duration::from_millis(200)).await;
    });
    sync_namespace(&ctx, K8S_NS, namespace_and_topic(), ready("orders")).await;
    // The same objects, still without status: the watch has not delivered the writes yet.
    let outcome = sync_namespace(&ctx, K8S_NS, namespace_and_topic(), ready("orders")).await;
    assert_eq!(outcome.patched, 0);
    assert_eq!(outcome.unchanged, 2);
    script.await.unwrap();
    assert!(
        ctx.metrics
            .render()
            .contains(r#"gridline_operator_reconciles_total{kind="Topic",result="unchanged"} 1"#)
    );
}

#[tokio::test]
async fn a_recreated_object_is_written_again() {
    let (client, mut server) = mock_client();
    let ctx = context(client);
    let script = tokio::spawn(async move {
        server
            .run(vec![
                status_patch("namespaces", "orders"),
                status_patch("topics", "placed"),
                status_patch("topics", "placed"),
            ])
            .await;
        server.expect_no_more(Duration::from_millis(100)).await;
    });
    sync_namespace(&ctx, K8S_NS, namespace_and_topic(), ready("orders")).await;
    let mut objects = namespace_and_topic();
    objects.topics[0].metadata.uid = Some("a-new-uid".into());
    // The Namespace's write is read back; the new Topic is not the one written.
    let outcome = sync_namespace(&ctx, K8S_NS, objects, ready("orders")).await;
    assert_eq!(outcome.patched, 1);
    script.await.unwrap();
}

#[tokio::test]
async fn a_custom_domain_without_its_certificate_is_reported_in_the_namespace_status_without_an_event()
 {
    let (client, mut server) = mock_client();
    let ctx = context(client);
    let mut objects = namespace_and_topic();
    objects.namespaces[0].spec.custom_domains = custom_domains(&[("mqtt.contoso.com", "mqtt-tls")]);
    let script = tokio::spawn(async move {
        let bodies = server
            .run(vec![
                status_patch("namespaces", "orders"),
                status_patch("topics", "placed"),
            ])
            .await;
        server.expect_no_more(Duration::from_millis(100)).await;
        bodies
    });
    let outcome = sync_namespace(&ctx, K8S_NS, objects, ready("orders")).await;
    assert_eq!(outcome.patched, 2);
    let bodies = script.await.unwrap();
    assert_eq!(
        conditions_of(&bodies[0]),
        [
            ("Accepted".to_string(), "True".to_string()),
            ("Ready".to_string(), "True".to_string()),
            ("CustomDomainsReady".to_string(), "False".to_string())
        ]
    );
    let domains = &bodies[0]["status"]["conditions"][2];
    assert_eq!(domains["reason"], "CertificateMissing");
    assert_eq!(domains["observedGeneration"], 1);
    assert!(
        domains["message"]
            .as_str()
            .unwrap()
            .starts_with("mqtt.contoso.com: Secret 'mqtt-tls' not found")
    );
}

#[tokio::test]
async fn a_refused_object_gets_its_reason_in_status_and_a_warning_event() {
    let (client, mut server) = mock_client();
    let ctx = context(client);
    let objects = Objects {
        topics: vec![topic("stray", "nowhere")],
        ..Objects::default()
    };
    let script = tokio::spawn(async move {
        let bodies = server
            .run(vec![status_patch("topics", "stray"), event_post()])
            .await;
        server.expect_no_more(Duration::from_millis(100)).await;
        bodies
    });
    let outcome = sync_namespace(&ctx, K8S_NS, objects, BTreeMap::new()).await;
    assert_eq!(outcome.patched, 1);
    let bodies = script.await.unwrap();
    let accepted = &bodies[0]["status"]["conditions"][0];
    assert_eq!(accepted["status"], "False");
    assert_eq!(accepted["reason"], "UnresolvedReference");
    let event = &bodies[1];
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reason"], "UnresolvedReference");
    assert_eq!(event["regarding"]["kind"], "Topic");
    assert_eq!(event["regarding"]["name"], "stray");
    assert_eq!(event["reportingController"], "gridline-operator");
    assert!(event["note"].as_str().unwrap().contains("nowhere"));
}

#[tokio::test]
async fn a_failed_write_backs_off_per_object_while_the_others_are_written() {
    let (client, mut server) = mock_client();
    let ctx = context(client);
    let script = tokio::spawn(async move {
        server
            .run(vec![
                status_patch("namespaces", "orders")
                    .fail(StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
                status_patch("topics", "placed"),
            ])
            .await;
        // The retry: only the object whose write failed.
        server.run(vec![status_patch("namespaces", "orders")]).await;
        server.expect_no_more(Duration::from_millis(100)).await;
    });
    let first = sync_namespace(&ctx, K8S_NS, namespace_and_topic(), ready("orders")).await;
    assert_eq!(
        first,
        PassOutcome {
            patched: 1,
            failed: 1,
            unchanged: 0,
            retry_after: Some(Duration::from_secs(1)),
        }
    );
    let key = ObjectKey::new(Kind::Namespace, K8S_NS, "orders");
    assert_eq!(ctx.backoff.failures(&key), 1);

    let second = sync_namespace(&ctx, K8S_NS, namespace_and_topic(), ready("orders")).await;
    assert_eq!((second.patched, second.retry_after), (1, None));
    assert_eq!(ctx.backoff.failures(&key), 0);
    script.await.unwrap();
    let metrics = ctx.metrics.render();
    assert!(
        metrics.contains(
            r#"gridline_operator_reconcile_errors_total{error="status",kind="Namespace"} 1"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_object_deleted_before_its_write_is_not_retried() {
    let (client, mut server) = mock_client();
    let ctx = context(client);
    let objects = Objects {
        namespaces: vec![namespace("orders")],
        ..Objects::default()
    };
    let script = tokio::spawn(async move {
        server
            .run(vec![
                status_patch("namespaces", "orders").fail(StatusCode::NOT_FOUND, "NotFound"),
            ])
            .await;
        server.expect_no_more(Duration::from_millis(100)).await;
    });
    let outcome = sync_namespace(&ctx, K8S_NS, objects, ready("orders")).await;
    assert_eq!((outcome.failed, outcome.retry_after), (0, None));
    script.await.unwrap();
}

#[test]
fn long_event_notes_are_cut_at_a_character_boundary() {
    let text = "é".repeat(600);
    let cut = truncate(&text, 1001);
    assert!(cut.len() <= 1004);
    assert!(cut.ends_with('…'));
    assert_eq!(truncate("short", 10), "short");
}

/// The whole pass, from the watches: lists answered from a fixed world, watches held open
/// (except the Topics watch, which delivers one edit), status writes recorded.
mod pipeline {
    use super::*;
    use gridline_kubernetes::{Dirty, WatchScope};
    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::json;
    use tokio::sync::mpsc;

    fn list(items: Vec<Value>) -> Value {
        json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "10"}, "items": items})
    }

    fn statefulset() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "orders-gridline", "namespace": "shop", "uid": "sts",
                         "labels": {"app.kubernetes.io/instance": "orders"}},
            "spec": {"replicas": 1, "selector": {}, "template": {}, "serviceName": "orders-gridline-peers"},
            "status": {"replicas": 1, "readyReplicas": 1},
        })
    }

    /// A Topic edited to an out-of-range retention: it must be refused.
    fn edited_topic() -> Value {
        let mut topic = serde_json::to_value(topic("placed", "orders")).unwrap();
        topic["metadata"]["generation"] = json!(2);
        topic["metadata"]["resourceVersion"] = json!("11");
        topic["spec"]["eventRetentionInDays"] = json!(9);
        topic
    }

    async fn api_server(
        mut handle: crate::fixtures::ApiServerHandle,
        writes: mpsc::UnboundedSender<(String, Value)>,
    ) {
        let mut held = Vec::new();
        // The Topics watch is answered with the edit once the first statuses are written.
        let mut topics_watch = None;
        let mut status_writes = 0;
        while let Some((request, respond)) = handle.next_request().await {
            let request: Request<Body> = request;
            let path = request.uri().path().to_string();
            let query = request.uri().query().unwrap_or_default().to_string();
            let method = request.method().clone();
            let body = request.into_body().collect_bytes().await.unwrap();
            let answer = |value: &Value| {
                Response::builder()
                    .body(Body::from(serde_json::to_vec(value).unwrap()))
                    .unwrap()
            };
            if method == Method::GET && query.contains("watch=true") {
                if path.ends_with("/topics") && topics_watch.is_none() {
                    topics_watch = Some(respond);
                } else {
                    held.push(respond);
                }
                continue;
            }
            if method == Method::GET {
                let items = if path.ends_with("/gridline.dev/v1alpha1/namespaces") {
                    vec![serde_json::to_value(namespace("orders")).unwrap()]
                } else if path.ends_with("/topics") {
                    vec![serde_json::to_value(topic("placed", "orders")).unwrap()]
                } else if path.ends_with("/statefulsets") {
                    vec![statefulset()]
                } else if path.ends_with("/leases") {
                    assert!(
                        query.contains("labelSelector=gridline.dev%2Flease%3Dmember"),
                        "{query}"
                    );
                    let now = k8s_openapi::jiff::Timestamp::now();
                    vec![json!(member_lease("orders", "orders-gridline-0", now, &[]))]
                } else {
                    vec![]
                };
                respond.send_response(answer(&list(items)));
                continue;
            }
            let body: Value = serde_json::from_slice(&body).unwrap();
            let _ = writes.send((format!("{method} {path}"), body.clone()));
            respond.send_response(answer(&body));
            status_writes += 1;
            if status_writes == 2
                && let Some(watch) = topics_watch.take()
            {
                let event = json!({"type": "MODIFIED", "object": edited_topic()});
                let mut line = serde_json::to_vec(&event).unwrap();
                line.push(b'\n');
                watch.send_response(Response::builder().body(Body::from(line)).unwrap());
            }
        }
    }

    #[tokio::test]
    async fn watched_objects_get_their_status_and_an_edit_is_reflected() {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        let (writes_tx, mut writes) = mpsc::unbounded_channel();
        let server = tokio::spawn(api_server(handle, writes_tx));

        let dirty = Arc::new(Dirty::default());
        let (stores, events) = Stores::watch(&client, &WatchScope::All, dirty.clone());
        let pump = tokio::spawn(events.for_each(|()| async {}));
        let ctx = StatusContext::new(client, Metrics::new(), "test".into());
        let stores = Arc::new(stores);
        let pass = tokio::spawn(async move {
            stores.wait_until_ready().await.unwrap();
            run(ctx, stores, dirty).await;
        });

        let mut next = async || {
            tokio::time::timeout(Duration::from_secs(10), writes.recv())
                .await
                .expect("a write within 10 s")
                .expect("the server is running")
        };
        let mut first = vec![next().await, next().await];
        first.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            first[0].0,
            "PATCH /apis/gridline.dev/v1alpha1/namespaces/shop/namespaces/orders/status"
        );
        assert_eq!(
            first[1].0,
            "PATCH /apis/gridline.dev/v1alpha1/namespaces/shop/topics/placed/status"
        );
        for (_, body) in &first {
            assert_eq!(
                conditions_of(body),
                [
                    ("Accepted".into(), "True".into()),
                    ("Ready".into(), "True".into())
                ]
            );
        }
        // The pod's member Lease, from the Leases watch.
        assert_eq!(
            first[0].1["status"]["members"][0]["name"],
            "orders-gridline-0"
        );

        // The edit arrives on the Topics watch: the Topic alone is rewritten, refused.
        let (request, body) = next().await;
        assert_eq!(
            request,
            "PATCH /apis/gridline.dev/v1alpha1/namespaces/shop/topics/placed/status"
        );
        assert_eq!(body["status"]["observedGeneration"], 2);
        assert_eq!(body["status"]["conditions"][0]["status"], "False");
        let (request, event) = next().await;
        assert_eq!(
            request,
            "POST /apis/events.k8s.io/v1/namespaces/shop/events"
        );
        assert_eq!(event["type"], "Warning");

        pass.abort();
        pump.abort();
        server.abort();
    }
}
