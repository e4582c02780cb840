//! Queue delivery semantics (SPEC §A): locks, settlement, redelivery, dead-lettering,
//! filters, long polls.

use super::*;

#[tokio::test(start_paused = true)]
async fn publish_then_receive_returns_the_events_with_delivery_count_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &standard(10, false)).await;
    store.publish(TOPIC, events("e", 3)).await.unwrap();
    let received = store.poll(TOPIC, SUB, 10).await;
    assert_eq!(ids(&received), ["e-0", "e-1", "e-2"]);
    assert!(received.iter().all(|r| r.delivery_count == 1));
    assert!(
        store.poll(TOPIC, SUB, 10).await.is_empty(),
        "all three are locked"
    );
}

#[tokio::test(start_paused = true)]
async fn receive_returns_at_most_max_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &standard(10, false)).await;
    store.publish(TOPIC, events("e", 5)).await.unwrap();
    assert_eq!(ids(&store.poll(TOPIC, SUB, 2).await), ["e-0", "e-1"]);
    assert_eq!(ids(&store.poll(TOPIC, SUB, 2).await), ["e-2", "e-3"]);
}

#[tokio::test(start_paused = true)]
async fn acknowledge_removes_the_event_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &standard(10, false)).await;
    store.publish(TOPIC, events("e", 1)).await.unwrap();
    let received = store.poll(TOPIC, SUB, 10).await;
    succeeded(
        &store
            .settle_all(Settle::Acknowledge, &tokens(&received))
            .await,
        1,
    );
    tokio::time::advance(LOCK * 2).await;
    assert!(store.poll(TOPIC, SUB, 10).await.is_empty());
    let again = store
        .settle_all(Settle::Acknowledge, &tokens(&received))
        .await;
    assert_eq!(again.failed[0].error, LockTokenError::Lost);
}

#[tokio::test(start_paused = true)]
async fn a_token_naming_another_pod_is_refused_like_a_stale_one() {
    let dir = tempfile::tempdir().unwrap();
    let pod = PodIdentity::new("orders-gridline-1").unwrap();
    let options = StoreOptions {
        data_dir: dir.path().to_path_buf(),
        metrics: Arc::new(Metrics::new().unwrap()),
    };
    let store = EventStore::open_as(options, &pod).await.unwrap();
    store.apply_snapshot(standard(10, false));
    store.publish(TOPIC, events("e", 1)).await.unwrap();
    let received = store.poll(TOPIC, SUB, 10).await;
    let issued = lock_token::LockToken::decode(&received[0].lock_token).unwrap();
    assert_eq!(issued.owner, 1, "the token names the pod that issued it");
    let foreign = lock_token::LockToken { owner: 2, ..issued }.encode();

    let refused = store.settle_all(Settle::Acknowledge, &[foreign]).await;
    succeeded(
        &store
            .settle_all(Settle::Acknowledge, &tokens(&received))
            .await,
        1,
    );
    let stale = store
        .settle_all(Settle::Acknowledge, &tokens(&received))
        .await;
    assert_eq!(refused.failed[0].error, LockTokenError::Lost);
    assert_eq!(refused.failed[0].error, stale.failed[0].error);
}

#[tokio::test(start_paused = true)]
async fn release_makes_the_event_available_again_with_delivery_count_two() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &standard(10, false)).await;
    store.publish(TOPIC, events("e", 1)).await.unwrap();
    let first = store.poll(TOPIC, SUB, 10).await;
    let release = Settle::Release {
        delay: Duration::ZERO,
    };
    succeeded(&store.settle_all(release, &tokens(&first)).await, 1);
    let second = store.poll(TOPIC, SUB, 10).await;
    assert_eq!(ids(&second), ["e-0"]);
    assert_eq!(second[0].delivery_count, 2);
    assert_ne!(second[0].lock_token, first[0].lock_token);
}

#[tokio::test(start_paused = true)]
async fn release_with_delay_hides_the_event_until_the_delay_passes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &standard(10, false)).await;
    store.publish(TOPIC, events("e", 1)).await.unwrap();
    let first = store.poll(TOPIC, SUB, 10).await;
    let release = Settle::Release {
        delay: Duration::from_secs(10),
    };
    succeeded(&store.settle_all(release, &tokens(&first)).await, 1);
    tokio::time::advance(Duration::from_secs(9)).await;
    assert!(store.poll(TOPIC, SUB, 10).await.is_empty());
    // A long poll started now returns when the delay passes.
    let started = tokio::time::Instant::now();
    let received = store
        .receive(TOPIC, SUB, 10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(ids(&received), ["e-0"]);
    assert_eq!(started.elapsed(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn renew_lock_restarts_the_lock_with_the_full_duration() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &standard(10, false)).await;
    store.publish(TOPIC, events("e", 1)).await.unwrap();
    let received = store.poll(TOPIC, SUB, 10).await;
    tokio::time::advance(LOCK - Duration::from_secs(5)).await;
    succeeded(
        &store
            .settle_all(Settle::RenewLock, &tokens(&received))
            .await,
        1,
    );
    tokio::time::advance(LOCK - Duration::from_secs(5)).await;
    assert!(store.poll(TOPIC, SUB, 10).await.is_empty(), "still locked");
    succeeded(
        &store
            .settle_all(Settle::Acknowledge, &tokens(&received))
            .await,
        1,
    );
}

#[tokio::test(start_paused = true)]
async fn an_expired_lock_makes_the_event_available_with_the_count_increased() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &standard(10, false)).await;
    store.publish(TOPIC, events("e", 1)).await.unwrap();
    let first = store.poll(TOPIC, SUB, 10).await;
    // A long poll wakes when the lock expires.
    let second = store
        .receive(TOPIC, SUB, 10, Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(ids(&second), ["e-0"]);
    assert_eq!(second[0].delivery_count, 2);
    let stale = store.settle_all(Settle::Acknowledge, &tokens(&first)).await;
    assert_eq!(
        stale.failed[0].error,
        LockTokenError::Lost,
        "the older lock's token"
    );
    succeeded(
        &store
            .settle_all(Settle::Acknowledge, &tokens(&second))
            .await,
        1,
    );
}

async fn exhaust_deliveries(store: &EventStore, max_delivery_count: u32) {
    for _ in 0..max_delivery_count {
        let received = store.poll(TOPIC, SUB, 10).await;
        assert_eq!(received.len(), 1);
        let release = Settle::Release {
            delay: Duration::ZERO,
        };
        succeeded(&store.settle_all(release, &tokens(&received)).await, 1);
    }
}

#[tokio::test(start_paused = true)]
async fn exceeding_max_delivery_count_dead_letters_with_the_extension_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &standard(3, true)).await;
    store.publish(TOPIC, events("e", 1)).await.unwrap();
    exhaust_deliveries(&store, 3).await;
    assert!(
        store.poll(TOPIC, SUB, 10).await.is_empty(),
        "not delivered a fourth time"
    );
    let dead = store.poll(DEAD, SUB, 10).await;
    assert_eq!(ids(&dead), ["e-0"]);
    let value: Value = serde_json::from_str(dead[0].event.get()).unwrap();
    assert_eq!(value["deadletterreason"], "MaxDeliveryCountExceeded");
    assert_eq!(value["deliveryattempts"], 3);
    assert_eq!(value["sourcesubscription"], SUB);
    assert_eq!(value["source"], "/tests");
    assert_eq!(value["type"], "com.example.order");
    for attribute in ["deadlettertime", "publishtime"] {
        let text = value[attribute].as_str().unwrap();
        chrono::DateTime::parse_from_rfc3339(text).unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn exceeding_max_delivery_count_without_a_dead_letter_topic_drops_the_event() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &standard(2, false)).await;
    store.publish(TOPIC, events("e", 1)).await.unwrap();
    exhaust_deliveries(&store, 2).await;
    assert!(store.poll(TOPIC, SUB, 10).await.is_empty());
    assert!(store.poll(DEAD, SUB, 10).await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_event_older_than_its_time_to_live_is_dead_lettered_instead_of_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let mut delivery = queue(10, true);
    delivery.event_time_to_live = Duration::from_secs(120);
    let snapshot = snapshot(
        vec![
            subscription(TOPIC, SUB, delivery),
            subscription(DEAD, SUB, queue(10, false)),
        ],
        json!({}),
    );
    let store = open(dir.path(), &snapshot).await;
    store.publish(TOPIC, events("e", 1)).await.unwrap();
    tokio::time::advance(Duration::from_secs(121)).await;
    assert!(store.poll(TOPIC, SUB, 10).await.is_empty());
    let dead = store.poll(DEAD, SUB, 10).await;
    let value: Value = serde_json::from_str(dead[0].event.get()).unwrap();
    assert_eq!(value["deadletterreason"], "TimeToLiveExceeded");
    assert_eq!(value["deliveryattempts"], 0);
}

#[tokio::test(start_paused = true)]
async fn reject_dead_letters_the_event() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &standard(10, true)).await;
    store.publish(TOPIC, events("e", 1)).await.unwrap();
    let received = store.poll(TOPIC, SUB, 10).await;
    succeeded(
        &store.settle_all(Settle::Reject, &tokens(&received)).await,
        1,
    );
    tokio::time::advance(LOCK * 2).await;
    assert!(store.poll(TOPIC, SUB, 10).await.is_empty());
    let dead = store.poll(DEAD, SUB, 10).await;
    let value: Value = serde_json::from_str(dead[0].event.get()).unwrap();
    assert_eq!(value["deadletterreason"], "Rejected");
    assert_eq!(value["deliveryattempts"], 1);
}

#[tokio::test(start_paused = true)]
async fn reject_without_a_dead_letter_topic_drops_the_event() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &standard(10, false)).await;
    store.publish(TOPIC, events("e", 1)).await.unwrap();
    let received = store.poll(TOPIC, SUB, 10).await;
    succeeded(
        &store.settle_all(Settle::Reject, &tokens(&received)).await,
        1,
    );
    tokio::time::advance(LOCK * 2).await;
    assert!(store.poll(TOPIC, SUB, 10).await.is_empty());
    assert!(store.poll(DEAD, SUB, 10).await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn filters_route_events_only_to_matching_subscriptions() {
    let dir = tempfile::tempdir().unwrap();
    let mut created = subscription(TOPIC, "created", queue(10, false));
    created.filter = type_filter("order.created");
    let mut shipped = subscription(TOPIC, "shipped", queue(10, false));
    shipped.filter = type_filter("order.shipped");
    let store = open(dir.path(), &snapshot(vec![created, shipped], json!({}))).await;
    let batch = vec![
        event_of_type("a", "order.created"),
        event_of_type("b", "order.shipped"),
        event_of_type("c", "ORDER.CREATED"),
    ];
    store.publish(TOPIC, batch).await.unwrap();
    assert_eq!(ids(&store.poll(TOPIC, "created", 10).await), ["a", "c"]);
    assert_eq!(ids(&store.poll(TOPIC, "shipped", 10).await), ["b"]);
}

#[tokio::test(start_paused = true)]
async fn a_subscription_added_later_does_not_see_older_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &standard(10, false)).await;
    store.publish(TOPIC, events("old", 2)).await.unwrap();
    let later = snapshot(
        vec![
            subscription(TOPIC, SUB, queue(10, false)),
            subscription(TOPIC, "later", queue(10, false)),
        ],
        json!({}),
    );
    store.apply_snapshot(later);
    store.publish(TOPIC, events("new", 1)).await.unwrap();
    assert_eq!(ids(&store.poll(TOPIC, "later", 10).await), ["new-0"]);
    assert_eq!(store.poll(TOPIC, SUB, 10).await.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn bad_lost_and_foreign_tokens_fail_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let two = snapshot(
        vec![
            subscription(TOPIC, SUB, queue(10, false)),
            subscription(TOPIC, "other", queue(10, false)),
        ],
        json!({}),
    );
    let store = open(dir.path(), &two).await;
    store.publish(TOPIC, events("e", 2)).await.unwrap();
    let mine = store.poll(TOPIC, SUB, 1).await;
    let theirs = store.poll(TOPIC, "other", 1).await;
    let acknowledged = store.poll(TOPIC, SUB, 1).await;
    succeeded(
        &store
            .settle_all(Settle::Acknowledge, &tokens(&acknowledged))
            .await,
        1,
    );
    let presented = vec![
        "garbage".to_string(),
        theirs[0].lock_token.clone(),
        acknowledged[0].lock_token.clone(),
        mine[0].lock_token.clone(),
    ];
    let outcome = store.settle_all(Settle::Acknowledge, &presented).await;
    assert_eq!(outcome.succeeded, vec![mine[0].lock_token.clone()]);
    let errors: Vec<_> = outcome
        .failed
        .iter()
        .map(|f| (&f.lock_token, &f.error))
        .collect();
    assert_eq!(
        errors,
        vec![
            (&presented[0], &LockTokenError::Malformed),
            (&presented[1], &LockTokenError::WrongSubscription),
            (&presented[2], &LockTokenError::Lost),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_long_poll_wakes_on_publish() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &standard(10, false)).await;
    let receiver = store.clone();
    let waiting = tokio::spawn(async move {
        receiver
            .receive(TOPIC, SUB, 10, Duration::from_secs(60))
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    store.publish(TOPIC, events("e", 1)).await.unwrap();
    let started = tokio::time::Instant::now();
    let received = waiting.await.unwrap();
    assert_eq!(ids(&received), ["e-0"]);
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_long_poll_returns_empty_when_the_wait_ends() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &standard(10, false)).await;
    let started = tokio::time::Instant::now();
    let received = store
        .receive(TOPIC, SUB, 10, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(received.is_empty());
    assert_eq!(started.elapsed(), Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn a_long_poll_is_not_woken_by_events_its_filter_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let mut only_shipped = subscription(TOPIC, SUB, queue(10, false));
    only_shipped.filter = type_filter("order.shipped");
    let store = open(dir.path(), &snapshot(vec![only_shipped], json!({}))).await;
    store.publish(TOPIC, events("unwanted", 5)).await.unwrap();
    let received = store
        .receive(TOPIC, SUB, 10, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(received.is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_expired_subscription_delivers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut expired = subscription(TOPIC, SUB, queue(10, false));
    expired.expiration_time = Some(chrono::Utc::now() - chrono::Duration::hours(1));
    let store = open(dir.path(), &snapshot(vec![expired], json!({}))).await;
    store.publish(TOPIC, events("e", 1)).await.unwrap();
    assert!(store.poll(TOPIC, SUB, 10).await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn unknown_names_and_push_subscriptions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut push = subscription(TOPIC, "hook", queue(10, false));
    push.delivery = Delivery::Push(gridline_crds::model::PushDelivery {
        endpoint_url: "https://example.com".into(),
        max_events_per_batch: 1,
        preferred_batch_size_bytes: 65536,
        max_delivery_count: 10,
        event_time_to_live: Duration::from_secs(3600),
        dead_letter_topic: None,
        headers: Vec::new(),
        ca_certificate_pem: None,
    });
    let store = open(dir.path(), &snapshot(vec![push], json!({}))).await;
    let missing_topic = store.publish("nope", events("e", 1)).await;
    assert!(matches!(missing_topic, Err(StoreError::TopicNotFound(_))));
    let missing_sub = store.receive(TOPIC, "nope", 1, Duration::ZERO).await;
    assert!(matches!(
        missing_sub,
        Err(StoreError::SubscriptionNotFound { .. })
    ));
    let push = store.settle(TOPIC, "hook", Settle::Acknowledge, &[]).await;
    assert!(matches!(
        push,
        Err(StoreError::NotAQueueSubscription { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn close_ends_long_polls_and_refuses_new_calls() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &standard(10, false)).await;
    let receiver = store.clone();
    let waiting = tokio::spawn(async move {
        receiver
            .receive(TOPIC, SUB, 10, Duration::from_secs(60))
            .await
    });
    tokio::task::yield_now().await;
    store.close().await;
    assert!(matches!(
        waiting.await.unwrap(),
        Err(StoreError::ShuttingDown)
    ));
    let publish = store.publish(TOPIC, events("e", 1)).await;
    assert!(matches!(publish, Err(StoreError::ShuttingDown)));
}

#[tokio::test(start_paused = true)]
async fn the_metrics_count_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new().unwrap());
    let options = StoreOptions {
        data_dir: dir.path().to_path_buf(),
        metrics: Arc::clone(&metrics),
    };
    let store = EventStore::open(options).await.unwrap();
    store.apply_snapshot(standard(10, false));
    store.publish(TOPIC, events("e", 2)).await.unwrap();
    let received = store.poll(TOPIC, SUB, 10).await;
    store
        .settle_all(Settle::Acknowledge, &tokens(&received[..1]))
        .await;
    let text = metrics.render().unwrap();
    for line in [
        "gridline_store_published_events_total{topic=\"orders\"} 2",
        "gridline_queue_received_events_total{subscription=\"all-orders\",topic=\"orders\"} 2",
        "gridline_queue_acknowledged_events_total{subscription=\"all-orders\",topic=\"orders\"} 1",
        "gridline_queue_pending_events{subscription=\"all-orders\",topic=\"orders\"} 1",
        "gridline_store_fsync_duration_seconds_count",
    ] {
        assert!(text.contains(line), "{line} missing in:\n{text}");
    }
}
