//! The push dispatcher's access to a subscription (`push.rs`): take, settle with per-event
//! outcomes, dead letters that say how the last attempt ended, a new dispatcher taking over.

use super::*;
use gridline_crds::model::PushDelivery;
use serde_json::value::RawValue;

pub(super) const HOOK: &str = "hook";

fn push(max_delivery_count: u32, dead_letter: bool) -> CompiledSubscription {
    let mut compiled = subscription(TOPIC, HOOK, queue(10, false));
    compiled.delivery = Delivery::Push(PushDelivery {
        endpoint_url: "https://example.com/hook".into(),
        max_events_per_batch: 1,
        preferred_batch_size_bytes: 64 << 10,
        max_delivery_count,
        event_time_to_live: Duration::from_secs(3600),
        dead_letter_topic: dead_letter.then(|| DEAD.to_string()),
        headers: Vec::new(),
        ca_certificate_pem: None,
    });
    compiled
}

pub(super) fn with_push(max_delivery_count: u32, dead_letter: bool) -> Arc<Snapshot> {
    snapshot(
        vec![
            push(max_delivery_count, dead_letter),
            subscription(DEAD, SUB, queue(10, false)),
        ],
        json!({}),
    )
}

pub(super) fn take_all() -> PushTake {
    PushTake {
        max_events: 100,
        max_bytes: 1 << 20,
        new_events: true,
    }
}

pub(super) fn id(event: &PushEvent) -> String {
    let value: Value = serde_json::from_slice(&event.json).unwrap();
    value["id"].as_str().unwrap().to_string()
}

fn last_attempt(status: u16) -> LastAttempt {
    LastAttempt {
        http_status: Some(status),
        outcome: "ServerError",
        time: 1_700_000_000_000,
    }
}

#[tokio::test(start_paused = true)]
async fn a_take_locks_events_and_delivered_ones_are_gone_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &with_push(10, false)).await;
    let consumer = store.push_consumer(TOPIC, HOOK).unwrap();
    store.publish(TOPIC, events("e", 2)).await.unwrap();
    let taken = consumer.take(take_all()).await.unwrap();
    assert_eq!(taken.iter().map(id).collect::<Vec<_>>(), ["e-0", "e-1"]);
    assert!(taken.iter().all(|e| e.delivery_count == 1));
    assert!(
        consumer.take(take_all()).await.unwrap().is_empty(),
        "locked"
    );
    let delivered: Vec<_> = taken
        .iter()
        .map(|e| (e.lease, PushSettle::Delivered))
        .collect();
    assert_eq!(consumer.settle(&delivered).await.unwrap(), [true, true]);
    assert_eq!(consumer.in_flight(), 0);
    tokio::time::advance(PUSH_LOCK_DURATION_TEST * 2).await;
    assert!(consumer.take(take_all()).await.unwrap().is_empty());
}

const PUSH_LOCK_DURATION_TEST: Duration = Duration::from_millis(PUSH_LOCK_DURATION as u64);

#[tokio::test(start_paused = true)]
async fn a_retry_waits_for_its_delay_and_counts_the_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &with_push(10, false)).await;
    let consumer = store.push_consumer(TOPIC, HOOK).unwrap();
    store.publish(TOPIC, events("e", 1)).await.unwrap();
    let taken = consumer.take(take_all()).await.unwrap();
    let retry = PushSettle::Retry {
        delay: Duration::from_secs(7),
    };
    consumer.settle(&[(taken[0].lease, retry)]).await.unwrap();
    assert!(consumer.take(take_all()).await.unwrap().is_empty());
    let due = consumer.next_due().unwrap();
    assert_eq!(due - tokio::time::Instant::now(), Duration::from_secs(7));
    tokio::time::advance(Duration::from_secs(7)).await;
    let again = consumer.take(take_all()).await.unwrap();
    assert_eq!(again[0].delivery_count, 2);
}

#[tokio::test(start_paused = true)]
async fn giving_up_dead_letters_with_how_the_last_attempt_ended() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &with_push(10, true)).await;
    let consumer = store.push_consumer(TOPIC, HOOK).unwrap();
    store.publish(TOPIC, events("e", 1)).await.unwrap();
    let taken = consumer.take(take_all()).await.unwrap();
    let give_up = PushSettle::GiveUp {
        reason: DeadLetterReason::NonRetryableStatus,
        last_attempt: last_attempt(404),
    };
    consumer.settle(&[(taken[0].lease, give_up)]).await.unwrap();
    let dead = store.poll(DEAD, SUB, 10).await;
    let value: Value = serde_json::from_str(dead[0].event.get()).unwrap();
    assert_eq!(value["id"], "e-0");
    assert_eq!(value["deadletterreason"], "NonRetryableStatus");
    assert_eq!(value["lasthttpstatuscode"], 404);
    assert_eq!(value["deliveryattempts"], 1);
    assert_eq!(value["sourcesubscription"], HOOK);
    assert_eq!(consumer.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_new_dispatcher_gets_its_predecessors_locked_events_at_once() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), &with_push(10, false)).await;
        let consumer = store.push_consumer(TOPIC, HOOK).unwrap();
        store.publish(TOPIC, events("e", 3)).await.unwrap();
        assert_eq!(consumer.take(take_all()).await.unwrap().len(), 3);
        // The process dies with the three attempts unsettled.
    }
    let store = open(dir.path(), &with_push(10, false)).await;
    let consumer = store.push_consumer(TOPIC, HOOK).unwrap();
    assert!(consumer.take(take_all()).await.unwrap().is_empty());
    assert_eq!(consumer.release_locks().await.unwrap(), 3);
    let again = consumer.take(take_all()).await.unwrap();
    assert_eq!(again.len(), 3);
    assert!(
        again.iter().all(|e| e.delivery_count == 2),
        "the unsettled attempts count"
    );
}

#[tokio::test(start_paused = true)]
async fn a_take_stops_at_its_byte_budget_but_takes_at_least_one_event() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &with_push(10, false)).await;
    let consumer = store.push_consumer(TOPIC, HOOK).unwrap();
    store.publish(TOPIC, events("e", 10)).await.unwrap();
    let one_byte = PushTake {
        max_bytes: 1,
        ..take_all()
    };
    assert_eq!(consumer.take(one_byte).await.unwrap().len(), 1);
    let event_bytes = consumer.take(one_byte).await.unwrap()[0].json.len() as u64;
    // Stored records are a little larger than the event: this budget is spent by the second.
    let about_two = PushTake {
        max_bytes: 2 * event_bytes,
        ..take_all()
    };
    assert_eq!(consumer.take(about_two).await.unwrap().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn without_new_events_a_take_hands_out_only_retries() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &with_push(10, false)).await;
    let consumer = store.push_consumer(TOPIC, HOOK).unwrap();
    store.publish(TOPIC, events("e", 1)).await.unwrap();
    let first = consumer.take(take_all()).await.unwrap();
    let retry = PushSettle::Retry {
        delay: Duration::ZERO,
    };
    consumer.settle(&[(first[0].lease, retry)]).await.unwrap();
    store.publish(TOPIC, events("f", 1)).await.unwrap();
    let retries_only = PushTake {
        new_events: false,
        ..take_all()
    };
    let taken = consumer.take(retries_only).await.unwrap();
    assert_eq!(taken.iter().map(id).collect::<Vec<_>>(), ["e-0"]);
    assert!(consumer.take(retries_only).await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_event_past_its_time_to_live_is_dead_lettered_instead_of_taken() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &with_push(10, true)).await;
    let consumer = store.push_consumer(TOPIC, HOOK).unwrap();
    store.publish(TOPIC, events("e", 1)).await.unwrap();
    tokio::time::advance(Duration::from_secs(3601)).await;
    assert!(consumer.take(take_all()).await.unwrap().is_empty());
    let dead = store.poll(DEAD, SUB, 10).await;
    let value: Value = serde_json::from_str(dead[0].event.get()).unwrap();
    assert_eq!(value["deadletterreason"], "TimeToLiveExceeded");
    assert!(value.get("lastdeliveryoutcome").is_none());
}

#[tokio::test(start_paused = true)]
async fn a_consumer_outlives_its_subscription_only_as_not_current() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &with_push(10, false)).await;
    let consumer = store.push_consumer(TOPIC, HOOK).unwrap();
    assert!(consumer.is_current());
    store.apply_snapshot(standard(10, false));
    assert!(!consumer.is_current());
    store.apply_snapshot(with_push(10, false));
    assert!(
        !consumer.is_current(),
        "re-added: a new subscription object"
    );
    let fresh = store.push_consumer(TOPIC, HOOK).unwrap();
    assert!(fresh.is_current() && !fresh.same_as(&consumer));
    assert!(matches!(
        store.push_consumer(TOPIC, "nope"),
        Err(StoreError::SubscriptionNotFound { .. })
    ));
    assert!(matches!(
        store.push_consumer(DEAD, SUB),
        Err(StoreError::NotAPushSubscription { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn a_take_across_read_chunks_returns_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &with_push(10, false)).await;
    let consumer = store.push_consumer(TOPIC, HOOK).unwrap();
    // About 1 KiB each: 400 of them span two 256 KiB reads, one record straddling the seam.
    let padded: Vec<PublishedEvent> = (0..400)
        .map(|n| {
            let attributes = json!({
                "specversion": "1.0", "id": format!("e-{n}"), "source": "/tests",
                "type": "t", "data": {"padding": "x".repeat(1000)}
            });
            PublishedEvent {
                json: RawValue::from_string(attributes.to_string()).unwrap(),
                attributes,
            }
        })
        .collect();
    store.publish(TOPIC, padded).await.unwrap();
    let all = PushTake {
        max_events: 1000,
        max_bytes: 4 << 20,
        new_events: true,
    };
    let taken = consumer.take(all).await.unwrap();
    assert_eq!(taken.len(), 400);
}
