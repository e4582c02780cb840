use super::*;
use crate::members::watch_member_leases;
use futures::StreamExt;
use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WALL_NOW: &str = "2026-01-01T00:01:00Z";

fn wall_now() -> Timestamp {
    WALL_NOW.parse().unwrap()
}

/// A member Lease of `pod` renewed at second `renewed` of 00:01 (negative: of 00:00).
fn lease_json(pod: &str, resource_version: &str, renew_time: &str) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": format!("gridline-member-{pod}"), "namespace": "shop",
            "resourceVersion": resource_version,
            "labels": {"gridline.dev/namespace": "orders", "gridline.dev/lease": "member"},
            "annotations": {"gridline.dev/peer-address": format!("{pod}:7946"),
                            "gridline.dev/connected-peers": "orders-0"},
        },
        "spec": {
            "holderIdentity": pod,
            "leaseDurationSeconds": 15,
            "renewTime": renew_time,
        }
    })
}

fn lease(pod: &str, resource_version: &str, renew_time: &str) -> Lease {
    serde_json::from_value(lease_json(pod, resource_version, renew_time)).unwrap()
}

fn live_pods(peers: &PeerLeases) -> Vec<String> {
    peers.live(Instant::now()).map(|r| r.pod.clone()).collect()
}

fn apply(peers: &mut PeerLeases, event: watcher::Event<Lease>) -> Vec<Observation> {
    peers.apply(event, Instant::now(), wall_now())
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_stops_renewing_drops_out_after_its_duration() {
    let mut peers = PeerLeases::new("orders-0");
    let fresh = "2026-01-01T00:00:59.000000Z";
    apply(
        &mut peers,
        watcher::Event::Apply(lease("orders-1", "1", fresh)),
    );
    assert_eq!(live_pods(&peers), ["orders-1"]);
    assert_eq!(
        peers.next_expiry(Instant::now()),
        Some(Instant::now() + Duration::from_secs(15))
    );

    // Renewed (a new renewTime) 10 s later: live for 15 s from then.
    tokio::time::advance(Duration::from_secs(10)).await;
    apply(
        &mut peers,
        watcher::Event::Apply(lease("orders-1", "2", "2026-01-01T00:01:09.000000Z")),
    );
    tokio::time::advance(Duration::from_secs(14)).await;
    assert_eq!(live_pods(&peers), ["orders-1"]);
    // A re-delivery of the same record (a re-list) is no renewal.
    apply(
        &mut peers,
        watcher::Event::Apply(lease("orders-1", "2", "2026-01-01T00:01:09.000000Z")),
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(live_pods(&peers).is_empty(), "15 s without a renewal");
    assert_eq!(peers.next_expiry(Instant::now()), None);
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_keeps_renewing_stays_whatever_its_clock_says() {
    let mut peers = PeerLeases::new("orders-0");
    // Its renewTimes are an hour behind our wall clock, but they keep moving: seen for the
    // first time it is out (it may be long dead), then each change puts it in.
    apply(
        &mut peers,
        watcher::Event::Apply(lease("orders-1", "1", "2026-01-01T00:00:00.000000Z")),
    );
    assert!(
        live_pods(&peers).is_empty(),
        "an old renewTime at first sight"
    );
    for second in 1..5 {
        tokio::time::advance(Duration::from_secs(5)).await;
        let renewed = format!("2025-12-31T23:00:0{second}.000000Z");
        apply(
            &mut peers,
            watcher::Event::Apply(lease("orders-1", &second.to_string(), &renewed)),
        );
        assert_eq!(live_pods(&peers), ["orders-1"]);
    }
}

#[tokio::test(start_paused = true)]
async fn own_invalid_and_deleted_leases_are_not_peers() {
    let mut peers = PeerLeases::new("orders-0");
    let fresh = "2026-01-01T00:00:59.000000Z";
    assert_eq!(
        apply(
            &mut peers,
            watcher::Event::Apply(lease("orders-0", "1", fresh))
        ),
        [Observation::Own]
    );
    let mut nameless = lease("orders-2", "1", fresh);
    nameless.spec.as_mut().unwrap().holder_identity = None;
    assert!(matches!(
        apply(&mut peers, watcher::Event::Apply(nameless))[..],
        [Observation::Invalid(InvalidMemberLease::NoHolder { .. })]
    ));
    apply(
        &mut peers,
        watcher::Event::Apply(lease("orders-1", "1", fresh)),
    );
    assert_eq!(live_pods(&peers), ["orders-1"]);
    apply(
        &mut peers,
        watcher::Event::Delete(lease("orders-1", "2", fresh)),
    );
    assert!(
        live_pods(&peers).is_empty(),
        "a deleted Lease is out at once"
    );
}

#[tokio::test(start_paused = true)]
async fn a_re_list_drops_leases_deleted_while_the_watch_was_down() {
    let mut peers = PeerLeases::new("orders-0");
    let fresh = "2026-01-01T00:00:59.000000Z";
    for pod in ["orders-1", "orders-2"] {
        apply(&mut peers, watcher::Event::Apply(lease(pod, "1", fresh)));
    }
    apply(&mut peers, watcher::Event::Init);
    apply(
        &mut peers,
        watcher::Event::InitApply(lease("orders-2", "1", fresh)),
    );
    assert_eq!(
        live_pods(&peers),
        ["orders-1", "orders-2"],
        "until InitDone"
    );
    apply(&mut peers, watcher::Event::InitDone);
    assert_eq!(live_pods(&peers), ["orders-2"]);
}

/// An API server that lists `listed` and answers the first watch with `events` (the next
/// watches are held open, as a quiet server's). Records each request's path and query.
fn api_server(listed: Vec<Value>, events: Vec<Value>) -> (Client, Arc<Mutex<Vec<String>>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let record = requests.clone();
    tokio::spawn(async move {
        let mut events = Some(events);
        let mut held = Vec::new();
        while let Some((request, respond)) = handle.next_request().await {
            let uri = request.uri().to_string();
            record.lock().unwrap().push(uri.clone());
            let body = if uri.contains("watch=true") {
                let Some(events) = events.take() else {
                    held.push(respond);
                    continue;
                };
                events
                    .iter()
                    .map(|e| format!("{e}\n"))
                    .collect::<String>()
                    .into_bytes()
            } else {
                let list = json!({"apiVersion": "v1", "kind": "LeaseList",
                                  "metadata": {"resourceVersion": "10"}, "items": listed});
                serde_json::to_vec(&list).unwrap()
            };
            respond.send_response(Response::builder().body(Body::from(body)).unwrap());
        }
    });
    (Client::new(service, "default"), requests)
}

#[tokio::test]
async fn peers_appear_and_disappear_as_the_watch_reports_them() {
    let fresh = format!("{}", Timestamp::now());
    let listed = vec![lease_json("orders-1", "5", &fresh)];
    let events = vec![
        json!({"type": "ADDED", "object": lease_json("orders-2", "11", &fresh)}),
        json!({"type": "DELETED", "object": lease_json("orders-1", "12", &fresh)}),
    ];
    let (client, requests) = api_server(listed, events);
    let mut stream = watch_member_leases(client, "shop", "orders");
    let mut peers = PeerLeases::new("orders-0");
    let mut seen = Vec::new();
    let collected = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(event) = stream.next().await {
            peers.apply(
                event.expect("no watch error"),
                Instant::now(),
                Timestamp::now(),
            );
            let live: Vec<String> = peers.live(Instant::now()).map(|r| r.pod.clone()).collect();
            if seen.last() != Some(&live) {
                seen.push(live);
            }
            if seen.len() == 4 {
                break;
            }
        }
    })
    .await;
    assert!(collected.is_ok(), "saw only {seen:?}");
    assert_eq!(
        seen,
        [
            Vec::<String>::new(),
            vec!["orders-1".to_string()],
            vec!["orders-1".to_string(), "orders-2".to_string()],
            vec!["orders-2".to_string()],
        ]
    );
    let requests = requests.lock().unwrap();
    assert!(
        requests[0].starts_with("/apis/coordination.k8s.io/v1/namespaces/shop/leases?")
            && requests[0].contains(
                "labelSelector=gridline.dev%2Fnamespace%3Dorders%2Cgridline.dev%2Flease%3Dmember"
            ),
        "{requests:?}"
    );
}
