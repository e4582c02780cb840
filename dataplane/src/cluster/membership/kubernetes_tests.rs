//! The membership task over the Kubernetes backend, against an in-process API server that
//! keeps this pod's Lease (answering writes with new resourceVersions) and serves the member
//! Leases' list and watch, on tokio's paused clock.

use super::super::*;
use http::{Method, Request, Response};
use k8s_openapi::jiff::Timestamp;
use kube::client::Body;
use serde_json::{Value, json};
use std::sync::Mutex;
use tokio::sync::mpsc;

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/shop/leases";

/// What the API server was asked: method and path (the query left out).
type Calls = Arc<Mutex<Vec<(Method, String)>>>;

fn peer_lease(pod: &str, resource_version: &str, renew_time: &str) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {
            "name": format!("gridline-member-{pod}"), "namespace": "shop",
            "resourceVersion": resource_version,
            "labels": {"gridline.dev/namespace": "orders", "gridline.dev/lease": "member"},
            "annotations": {"gridline.dev/peer-address": format!("{pod}.peers:7946")},
        },
        "spec": {"holderIdentity": pod, "leaseDurationSeconds": 15, "renewTime": renew_time},
    })
}

/// The API server: lists `listed`, answers each watch with the next batch sent on the
/// returned channel (holding it open until then), and keeps this pod's own Lease.
fn api_server(listed: Vec<Value>) -> (kube::Client, Calls, mpsc::UnboundedSender<Vec<Value>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let calls = Calls::default();
    let record = calls.clone();
    let (batches_tx, mut batches) = mpsc::unbounded_channel::<Vec<Value>>();
    tokio::spawn(async move {
        let mut own: Option<Value> = None;
        let mut version = 100;
        let mut held_watch = None;
        loop {
            let (request, respond) = tokio::select! {
                next = handle.next_request() => match next {
                    Some(next) => next,
                    None => return,
                },
                Some(batch) = batches.recv() => {
                    let body: String = batch.iter().map(|e| format!("{e}\n")).collect();
                    if let Some(respond) = held_watch.take() {
                        let respond: tower_test::mock::SendResponse<Response<Body>> = respond;
                        respond.send_response(Response::new(Body::from(body.into_bytes())));
                    }
                    continue;
                }
            };
            let method = request.method().clone();
            let path = request.uri().path().to_string();
            let query = request.uri().query().unwrap_or_default().to_string();
            if query.contains("watch=true") {
                held_watch = Some(respond);
                continue;
            }
            record.lock().unwrap().push((method.clone(), path.clone()));
            let bytes = request.into_body().collect_bytes().await.unwrap();
            let (status, body) = match (method, path.as_str()) {
                (Method::GET, LEASES) => (
                    200,
                    json!({"apiVersion": "v1", "kind": "LeaseList",
                           "metadata": {"resourceVersion": "10"}, "items": listed}),
                ),
                (Method::GET, _) => match &own {
                    Some(lease) => (200, lease.clone()),
                    None => (
                        404,
                        json!({"kind": "Status", "code": 404, "reason": "NotFound"}),
                    ),
                },
                (Method::POST, _) | (Method::PUT, _) => {
                    let mut lease: Value = serde_json::from_slice(&bytes).unwrap();
                    version += 1;
                    lease["metadata"]["resourceVersion"] = json!(version.to_string());
                    lease["metadata"]["uid"] = json!("uid-own");
                    own = Some(lease.clone());
                    (200, lease)
                }
                (Method::DELETE, _) => {
                    own = None;
                    (200, json!({"kind": "Status", "status": "Success"}))
                }
                (method, path) => panic!("unexpected {method} {path}"),
            };
            let response = Response::builder()
                .status(status)
                .body(Body::from(serde_json::to_vec(&body).unwrap()))
                .unwrap();
            respond.send_response(response);
        }
    });
    (kube::Client::new(service, "default"), calls, batches_tx)
}

fn names(set: &MemberSet) -> Vec<String> {
    set.iter().map(|m| m.name().to_string()).collect()
}

async fn wait_for(members: &mut MembersWatch, expected: &[&str]) {
    let reached = tokio::time::timeout(
        Duration::from_secs(600),
        members.wait_for(|set| names(set) == expected),
    )
    .await;
    assert!(reached.is_ok(), "never {expected:?}");
}

#[tokio::test(start_paused = true)]
async fn peers_come_from_the_watch_a_silent_one_drops_out_after_its_duration_and_leaving_deletes() {
    let now = Timestamp::now().to_string();
    let (client, calls, batches) = api_server(vec![peer_lease("pod-b", "5", &now)]);
    let (_timing_tx, timing) = watch::channel(ClusterTiming::default());
    let (_connected_tx, connected_peers) = watch::channel(BTreeSet::new());
    let registry = Registry::new();
    let membership = Membership::start(
        MembershipOptions {
            pod: PodIdentity::new("pod-a").unwrap(),
            peer_addr: "pod-a.peers:7946".into(),
            timing,
            connected_peers,
            stop: StopSignal::never(),
            backend: MembershipBackend::Kubernetes(KubernetesTarget {
                client,
                k8s_namespace: "shop".into(),
                namespace: "orders".into(),
            }),
        },
        &registry,
    )
    .await
    .unwrap();
    let mut members = membership.members();
    assert_eq!(
        names(&members.borrow()),
        ["pod-a"],
        "this pod from the start"
    );
    wait_for(&mut members, &["pod-a", "pod-b"]).await;
    let seen = Instant::now();
    assert_eq!(
        members.borrow().get("pod-b").unwrap().peer_addr,
        "pod-b.peers:7946"
    );

    // pod-b never renews: it is out once its 15 s have passed on our clock, not before.
    wait_for(&mut members, &["pod-a"]).await;
    let out_after = seen.elapsed();
    assert!(
        out_after >= Duration::from_secs(15) && out_after < Duration::from_secs(16),
        "{out_after:?}"
    );

    // A renewal seen in the watch brings it back; a deletion puts it out at once.
    let renewed = Timestamp::now().to_string();
    batches
        .send(vec![
            json!({"type": "MODIFIED", "object": peer_lease("pod-b", "6", &renewed)}),
            json!({"type": "ADDED", "object": peer_lease("pod-c", "7", &renewed)}),
        ])
        .unwrap();
    wait_for(&mut members, &["pod-a", "pod-b", "pod-c"]).await;
    batches
        .send(vec![
            json!({"type": "DELETED", "object": peer_lease("pod-b", "8", &renewed)}),
        ])
        .unwrap();
    wait_for(&mut members, &["pod-a", "pod-c"]).await;

    membership.leave().await;

    let calls = calls.lock().unwrap().clone();
    let own = format!("{LEASES}/gridline-member-pod-a");
    let writes: Vec<_> = calls
        .iter()
        .filter(|(method, path)| *method != Method::GET || *path == own)
        .map(|(method, path)| (method.as_str(), path.as_str()))
        .collect();
    assert_eq!(writes[..2], [("GET", own.as_str()), ("POST", LEASES)]);
    assert!(
        writes[2..writes.len() - 1]
            .iter()
            .all(|call| *call == ("PUT", own.as_str())),
        "renewals are replaces: {writes:?}"
    );
    // Renewed every 5 s for the 15 s and more that passed.
    assert!(writes.len() - 3 >= 3, "{writes:?}");
    assert_eq!(writes.last(), Some(&("DELETE", own.as_str())));
    let renewals = registry
        .gather()
        .into_iter()
        .find(|f| f.name() == "gridline_cluster_lease_renewals_total")
        .unwrap();
    let failed = renewals
        .get_metric()
        .iter()
        .find(|m| m.get_label().iter().any(|l| l.value() == "failed"))
        .map(|m| m.get_counter().get_value());
    assert_eq!(failed, Some(0.0));
}
