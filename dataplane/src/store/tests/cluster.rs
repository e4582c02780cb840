//! Three pods' stores joined in memory (channels for peer links): events published to two
//! partitions are all received, acknowledged, released and rejected through the third, and a
//! long poll on one pod wakes when another receives events.

use super::*;
use crate::cluster::transport::memory::{MemoryTransport, Network};
use crate::store::peers::Partitions;
use crate::store::{Queues, peer_service};

struct Pod {
    queues: Queues,
    store: EventStore,
    _dir: tempfile::TempDir,
    _stopper: crate::shutdown::Stopper,
}

async fn cluster(names: &[&str]) -> Vec<Pod> {
    let network = Arc::new(Network::default());
    let mut inboxes = Vec::new();
    for name in names {
        let (sender, receiver) = tokio::sync::mpsc::channel(1024);
        network.pods.lock().insert(name.to_string(), sender);
        inboxes.push(receiver);
    }
    let snapshot = standard(10, false);
    let mut pods = Vec::new();
    for (name, inbox) in names.iter().zip(inboxes) {
        let dir = tempfile::tempdir().unwrap();
        let pod = crate::pod::PodIdentity::new(name).unwrap();
        let store = EventStore::open_as(
            StoreOptions {
                data_dir: dir.path().to_path_buf(),
                metrics: Arc::new(Metrics::new().unwrap()),
            },
            &pod,
        )
        .await
        .unwrap();
        store.apply_snapshot(Arc::clone(&snapshot));
        let (stopper, stop) = crate::shutdown::Stopper::new();
        tokio::spawn(peer_service::serve(store.clone(), inbox, stop));
        let partitions = Arc::new(Partitions::new(Arc::new(MemoryTransport::new(
            name, &network,
        ))));
        pods.push(Pod {
            queues: Queues::clustered(store.clone(), &pod, partitions),
            store,
            _dir: dir,
            _stopper: stopper,
        });
    }
    pods
}

#[tokio::test]
async fn events_on_two_pods_are_received_and_settled_through_the_third() {
    let pods = cluster(&["pod-0", "pod-1", "pod-2"]).await;
    pods[0]
        .queues
        .publish(TOPIC, events("zero", 3))
        .await
        .unwrap();
    pods[1]
        .queues
        .publish(TOPIC, events("one", 3))
        .await
        .unwrap();
    let third = &pods[2].queues;
    let received = third.receive(TOPIC, SUB, 10, Duration::ZERO).await.unwrap();
    let mut got = ids(&received);
    got.sort();
    assert_eq!(
        got,
        ["one-0", "one-1", "one-2", "zero-0", "zero-1", "zero-2"]
    );
    // Acknowledge two (one per pod), release one, reject one, renew two: one request each,
    // every token spanning pods answered in its own order.
    let by_id = |id: &str| {
        received
            .iter()
            .find(|r| id_of(r) == id)
            .unwrap()
            .lock_token
            .clone()
    };
    let acknowledge = vec![by_id("zero-0"), by_id("one-0"), "not-a-token".to_string()];
    let outcome = third
        .settle(TOPIC, SUB, Settle::Acknowledge, &acknowledge)
        .await
        .unwrap();
    assert_eq!(outcome.succeeded, acknowledge[..2]);
    assert_eq!(outcome.failed.len(), 1);
    assert_eq!(outcome.failed[0].error, LockTokenError::Malformed);
    let outcome = third
        .settle(
            TOPIC,
            SUB,
            Settle::Release {
                delay: Duration::ZERO,
            },
            &[by_id("one-1")],
        )
        .await
        .unwrap();
    assert_eq!(outcome.succeeded.len(), 1);
    let outcome = third
        .settle(TOPIC, SUB, Settle::Reject, &[by_id("zero-1")])
        .await
        .unwrap();
    assert_eq!(outcome.succeeded.len(), 1);
    let renew = vec![by_id("zero-2"), by_id("one-2")];
    let outcome = third
        .settle(TOPIC, SUB, Settle::RenewLock, &renew)
        .await
        .unwrap();
    assert_eq!(outcome.succeeded, renew);
    // Settled twice: lost, wherever the event is.
    let outcome = third
        .settle(TOPIC, SUB, Settle::Acknowledge, &acknowledge[..2])
        .await
        .unwrap();
    assert_eq!(outcome.failed.len(), 2);
    assert!(
        outcome
            .failed
            .iter()
            .all(|f| f.error == LockTokenError::Lost)
    );
    // The released one is back, on pod 1, and any pod hands it out again.
    let again = pods[0]
        .queues
        .receive(TOPIC, SUB, 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(ids(&again), ["one-1"]);
    assert_eq!(again[0].delivery_count, 2);
    // Each partition kept its own: nothing moved.
    assert!(pods[2].store.poll(TOPIC, SUB, 10).await.is_empty());
}

#[tokio::test]
async fn a_long_poll_wakes_when_another_pod_gets_events() {
    let pods = cluster(&["pod-0", "pod-1"]).await;
    let waiting = {
        let queues = pods[0].queues.clone();
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let received = queues
                .receive(TOPIC, SUB, 10, Duration::from_secs(20))
                .await
                .unwrap();
            (received, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    pods[1]
        .queues
        .publish(TOPIC, events("late", 1))
        .await
        .unwrap();
    let (received, waited) = waiting.await.unwrap();
    assert_eq!(ids(&received), ["late-0"]);
    assert!(waited < Duration::from_secs(10), "woke after {waited:?}");
}

#[tokio::test]
async fn a_token_of_a_pod_out_of_reach_is_lost() {
    let pods = cluster(&["pod-0", "pod-1"]).await;
    pods[1].queues.publish(TOPIC, events("e", 1)).await.unwrap();
    let received = pods[0]
        .queues
        .receive(TOPIC, SUB, 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(received.len(), 1);
    // pod-1 leaves the network (its link is down).
    let alone = Queues::clustered(
        pods[0].store.clone(),
        &crate::pod::PodIdentity::new("pod-0").unwrap(),
        Arc::new(Partitions::new(Arc::new(MemoryTransport::new(
            "pod-0",
            &Arc::new(Network::default()),
        )))),
    );
    let outcome = alone
        .settle(TOPIC, SUB, Settle::Acknowledge, &tokens(&received))
        .await
        .unwrap();
    assert_eq!(outcome.failed[0].error, LockTokenError::Lost);
}
