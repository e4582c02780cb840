use super::*;
use bytes::Bytes;
use futures::FutureExt;

fn message(qos: QoS) -> Message {
    Message {
        topic: "a".into(),
        payload: Bytes::from_static(b"x"),
        qos,
        retain: false,
        properties: Default::default(),
    }
}

#[test]
fn qos1_flow_ends_with_puback() {
    let mut state = SessionState::default();
    let id = state.next_packet_id().unwrap().get();
    state.inflight.push(
        id,
        Outbound::AwaitingPubAck(Delivery::of(message(QoS::AtLeastOnce))),
    );
    assert!(!state.on_pubcomp(id));
    assert!(state.on_puback(id));
    assert!(state.inflight.is_empty());
    assert!(
        !state.on_puback(id),
        "a second PUBACK is not an acknowledgement"
    );
}

#[test]
fn qos2_outgoing_flow_is_publish_pubrec_pubrel_pubcomp() {
    let mut state = SessionState::default();
    let id = state.next_packet_id().unwrap().get();
    state.inflight.push(
        id,
        Outbound::AwaitingPubRec(Delivery::of(message(QoS::ExactlyOnce))),
    );
    assert!(!state.on_puback(id));
    assert!(!state.on_pubcomp(id), "PUBCOMP before PUBREC is ignored");
    assert!(state.on_pubrec(id, false));
    assert_eq!(state.inflight.get(id), Some(&Outbound::AwaitingPubComp));
    assert!(
        state.on_pubrec(id, false),
        "a resent PUBREC gets PUBREL again"
    );
    assert!(state.on_pubcomp(id));
    assert!(state.inflight.is_empty());
}

#[test]
fn a_refused_pubrec_ends_the_exchange() {
    let mut state = SessionState::default();
    state.inflight.push(
        7,
        Outbound::AwaitingPubRec(Delivery::of(message(QoS::ExactlyOnce))),
    );
    assert!(!state.on_pubrec(7, true));
    assert!(state.inflight.is_empty());
}

#[test]
fn qos2_incoming_is_routed_once_until_pubrel() {
    let mut state = SessionState::default();
    assert!(state.on_incoming_qos2(5));
    assert!(!state.on_incoming_qos2(5), "a resend is not routed again");
    assert!(state.on_pubrel(5));
    assert!(!state.on_pubrel(5));
    assert!(
        state.on_incoming_qos2(5),
        "after PUBREL the id is free again"
    );
}

#[test]
fn packet_ids_skip_zero_and_those_in_flight() {
    let mut state = SessionState::default();
    state.inflight.push(1, Outbound::AwaitingPubComp);
    assert_eq!(state.next_packet_id().unwrap().get(), 2);
    state.next_packet_id = u16::MAX;
    assert_eq!(state.next_packet_id().unwrap().get(), 2);
}

#[test]
fn an_out_of_order_acknowledgement_leaves_the_others_in_sending_order() {
    let mut state = SessionState::default();
    let ids: Vec<u16> = (0..4)
        .map(|_| {
            let id = state.next_packet_id().unwrap().get();
            state.inflight.push(
                id,
                Outbound::AwaitingPubAck(Delivery::of(message(QoS::AtLeastOnce))),
            );
            id
        })
        .collect();
    assert!(state.on_puback(ids[2]));
    assert!(state.on_puback(ids[0]));
    let left: Vec<u16> = state.inflight.iter().map(|(id, _)| id).collect();
    assert_eq!(left, vec![ids[1], ids[3]]);
}

#[test]
fn after_packet_ids_wrap_messages_are_resent_in_sending_order_not_id_order() {
    let mut state = SessionState {
        next_packet_id: u16::MAX - 1,
        ..SessionState::default()
    };
    for _ in 0..3 {
        let id = state.next_packet_id().unwrap().get();
        state.inflight.push(id, Outbound::AwaitingPubComp);
    }
    let order: Vec<u16> = state.inflight.iter().map(|(id, _)| id).collect();
    assert_eq!(order, vec![u16::MAX, 1, 2]);
}

#[test]
fn a_packet_id_still_in_flight_after_a_full_wrap_is_skipped() {
    let mut state = SessionState::default();
    let oldest = state.next_packet_id().unwrap().get();
    state.inflight.push(oldest, Outbound::AwaitingPubComp);
    state.next_packet_id = u16::MAX;
    assert_eq!(state.next_packet_id().unwrap().get(), oldest + 1);
}

#[test]
fn expiry_left_rounds_up_and_ends_when_the_interval_has_passed() {
    let mut expiring = message(QoS::AtLeastOnce);
    expiring.properties.message_expiry_interval = NonZeroU32::new(10);
    let delivery = Delivery::of(expiring);
    let at = delivery.expires_at.unwrap();
    let left = |before: std::time::Duration| delivery.expiry_left(at - before);
    assert_eq!(
        left(std::time::Duration::from_millis(9_500)),
        Ok(NonZeroU32::new(10))
    );
    assert_eq!(
        left(std::time::Duration::from_millis(1)),
        Ok(NonZeroU32::new(1))
    );
    assert_eq!(left(std::time::Duration::ZERO), Err(Expired));
    assert_eq!(
        Delivery::of(message(QoS::AtMostOnce)).expiry_left(at),
        Ok(None)
    );
}

#[test]
fn only_a_message_into_an_empty_queue_asks_for_a_wake_up() {
    let metrics = MqttMetrics::register(&prometheus::Registry::new()).unwrap();
    let session = Session::new("c".into(), "c".into());
    session.state.lock().attachment = Some(Attachment::new(1));
    let enqueue = || {
        let queued = Queued {
            delivery: Delivery::of(message(QoS::AtLeastOnce)),
            subscription_ids: Vec::new(),
        };
        session.enqueue_quietly(queued, limits(), &metrics)
    };
    assert_eq!(enqueue(), Enqueued::QueuedFirst);
    assert_eq!(enqueue(), Enqueued::Queued, "its connection is due already");
    session.state.lock().queue.clear();
    assert_eq!(enqueue(), Enqueued::QueuedFirst, "drained: due again");
    assert!(
        session.wake.notified().now_or_never().is_none(),
        "quietly: the caller wakes"
    );
}

#[test]
fn subscriptions_are_kept_in_filter_order_and_replaced_in_place() {
    let options = |qos| SubscriptionOptions {
        qos,
        no_local: false,
        retain_as_published: false,
        retain_handling: 0,
    };
    let id = NonZeroU32::new(7);
    let mut held = Subscriptions::default();
    held.insert("b/#".into(), options(QoS::AtMostOnce), None);
    held.insert("a/+".into(), options(QoS::AtLeastOnce), id);
    held.insert("$share/g/c".into(), options(QoS::AtMostOnce), None);
    assert_eq!(held.filters(), ["$share/g/c", "a/+", "b/#"]);
    held.insert("b/#".into(), options(QoS::ExactlyOnce), id);
    assert_eq!(held.len(), 3, "a second SUBSCRIBE replaces");
    let b = held.iter().find(|h| h.raw == "b/#").unwrap();
    assert_eq!((b.options.qos, b.id), (QoS::ExactlyOnce, id));
    assert!(held.remove("a/+"));
    assert!(!held.remove("a/+"), "already gone");
    assert!(!held.contains("a/+"));
    assert!(held.contains("b/#"));
    assert_eq!(held.filters(), ["$share/g/c", "b/#"]);
}

fn limits() -> QueueLimits {
    QueueLimits {
        pause_publishers_at: 3,
        resume_publishers_below: 2,
        max_queued: 4,
        max_queued_offline: 2,
        max_queued_qos0_offline: 1,
    }
}

fn dropped(metrics: &MqttMetrics, reason: &str) -> u64 {
    metrics.dropped.with_label_values(&[reason]).get()
}

#[test]
fn an_offline_session_drops_qos0_first_then_everything() {
    let metrics = MqttMetrics::register(&prometheus::Registry::new()).unwrap();
    let session = Session::new("c".into(), "c".into());
    let enqueue = |qos| session.enqueue(message(qos), limits(), &metrics);
    assert_eq!(enqueue(QoS::AtMostOnce), Enqueued::Queued);
    assert_eq!(enqueue(QoS::AtMostOnce), Enqueued::Dropped);
    assert_eq!(enqueue(QoS::AtLeastOnce), Enqueued::Queued);
    assert_eq!(enqueue(QoS::ExactlyOnce), Enqueued::Dropped);
    assert_eq!(dropped(&metrics, "queue_full_qos0"), 1);
    assert_eq!(dropped(&metrics, "queue_full_offline"), 1);
    assert!(!session.is_congested(), "nobody to wait for while offline");
}

#[test]
fn a_connected_session_asks_publishers_to_pause_then_lets_them_go_once_drained() {
    let metrics = MqttMetrics::register(&prometheus::Registry::new()).unwrap();
    let session = Session::new("c".into(), "c".into());
    session.state.lock().attachment = Some(Attachment::new(1));
    let enqueue = |qos| session.enqueue(message(qos), limits(), &metrics);
    assert_eq!(enqueue(QoS::AtMostOnce), Enqueued::Queued);
    assert_eq!(enqueue(QoS::AtMostOnce), Enqueued::Queued);
    assert_eq!(enqueue(QoS::AtLeastOnce), Enqueued::QueuedCongested);
    assert!(session.is_congested());
    assert_eq!(enqueue(QoS::AtLeastOnce), Enqueued::QueuedCongested);
    assert_eq!(
        enqueue(QoS::AtLeastOnce),
        Enqueued::Dropped,
        "the hard bound"
    );
    assert_eq!(dropped(&metrics, "queue_full"), 1);

    session.state.lock().queue.pop_front();
    session.state.lock().queue.pop_front();
    session.after_drain(limits(), 2);
    assert!(
        session.is_congested(),
        "2 waiting: not under the resume mark yet"
    );
    session.state.lock().queue.pop_front();
    session.after_drain(limits(), 1);
    assert!(!session.is_congested());
}

#[tokio::test(start_paused = true)]
async fn a_session_that_takes_nothing_for_a_whole_pause_stalls_and_publishers_stop_waiting_for_it()
{
    let metrics = MqttMetrics::register(&prometheus::Registry::new()).unwrap();
    let session = Session::new("c".into(), "c".into());
    session.state.lock().attachment = Some(Attachment::new(1));
    let enqueue = |qos| session.enqueue(message(qos), limits(), &metrics);
    for _ in 0..2 {
        enqueue(QoS::AtLeastOnce);
    }
    assert_eq!(enqueue(QoS::AtLeastOnce), Enqueued::QueuedCongested);
    let patience = std::time::Duration::from_secs(5);
    assert!(
        !session.stall_if_idle_for(patience),
        "it has a whole pause to take some"
    );
    // Its connection is stuck: it takes nothing before the pause runs out.
    tokio::time::advance(std::time::Duration::from_secs(3)).await;
    session.after_drain(limits(), 0);
    assert_eq!(
        session.patience_ends(patience) - Instant::now(),
        std::time::Duration::from_secs(2)
    );
    tokio::time::advance(std::time::Duration::from_secs(2)).await;
    assert!(session.stall_if_idle_for(patience));
    assert!(session.is_stalled() && !session.is_congested());
    assert_eq!(
        enqueue(QoS::AtMostOnce),
        Enqueued::Dropped,
        "no QoS 0 for a stalled subscriber"
    );
    assert_eq!(dropped(&metrics, "subscriber_stalled"), 1);
    assert_eq!(
        enqueue(QoS::AtLeastOnce),
        Enqueued::Queued,
        "QoS 1 is kept, and nobody is asked to pause"
    );
    assert_eq!(
        enqueue(QoS::AtLeastOnce),
        Enqueued::Dropped,
        "up to the hard bound"
    );
    assert_eq!(dropped(&metrics, "queue_full"), 1);
    // It takes one message: it is slow, not stuck, and publishers wait for it again.
    session.state.lock().queue.pop_front();
    session.after_drain(limits(), 1);
    assert!(session.is_congested());
    tokio::time::advance(std::time::Duration::from_secs(4)).await;
    session.state.lock().queue.pop_front();
    session.after_drain(limits(), 1);
    tokio::time::advance(std::time::Duration::from_secs(4)).await;
    assert!(
        !session.stall_if_idle_for(patience),
        "it took one 4 s ago: not stalled"
    );
}

#[tokio::test]
async fn a_paused_publisher_is_woken_when_the_session_drains() {
    let metrics = MqttMetrics::register(&prometheus::Registry::new()).unwrap();
    let session = Arc::new(Session::new("c".into(), "c".into()));
    session.state.lock().attachment = Some(Attachment::new(1));
    for _ in 0..3 {
        session.enqueue(message(QoS::AtLeastOnce), limits(), &metrics);
    }
    let waiter = {
        let session = Arc::clone(&session);
        tokio::spawn(async move {
            let drained = session.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if session.is_congested() {
                drained.await;
            }
        })
    };
    tokio::task::yield_now().await;
    session.state.lock().queue.clear();
    session.after_drain(limits(), 3);
    tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
        .await
        .expect("woken")
        .unwrap();
}

#[test]
fn connection_ids_carry_the_pods_owner_number_above_the_count() {
    let id = connection_id(3, 5);
    assert_eq!(id >> CONNECTION_COUNT_BITS, 3);
    assert_eq!(id & ((1 << CONNECTION_COUNT_BITS) - 1), 5);
    assert_ne!(
        connection_id(3, 5),
        connection_id(4, 5),
        "unique across pods"
    );
    assert_eq!(connection_id(0, 5), 5, "the local pod's ids are the count");
}
