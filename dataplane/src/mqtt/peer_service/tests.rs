//! Brokers joined in memory (a transport of channels instead of peer links): what one pod's
//! sessions subscribe to reaches the other, messages cross once, acknowledgements wait for the
//! other pod, retained messages and shares are Namespace-wide.

use super::*;
use crate::mqtt::broker::{Limits, NewSubscription, split};
use crate::mqtt::codec::{Message, QoS, SubscriptionOptions};
use crate::mqtt::metrics::MqttMetrics;
use crate::mqtt::peers::acks::ForwardAcks;
use crate::mqtt::session::Session;
use crate::shutdown::Stopper;
use crate::snapshot::SharedSnapshot;
use std::time::Duration;
use tokio::sync::mpsc;

use crate::cluster::transport::memory::{MemoryTransport, Network};

struct Pod {
    broker: Arc<Broker>,
    _stopper: Stopper,
}

fn join(network: &Arc<Network>, names: &[&str]) -> Vec<Pod> {
    let mut inboxes = Vec::new();
    for name in names {
        let (sender, receiver) = mpsc::channel(1024);
        network.pods.lock().insert(name.to_string(), sender);
        inboxes.push(receiver);
    }
    names
        .iter()
        .zip(inboxes)
        .map(|(name, inbox)| {
            let registry = prometheus::Registry::new();
            let transport = Arc::new(MemoryTransport::new(name, network));
            let peers = Peers::new(Arc::from(*name), transport, &registry).unwrap();
            let broker = Arc::new(
                Broker::new(
                    SharedSnapshot::new(),
                    MqttMetrics::register(&registry).unwrap(),
                    Limits::default(),
                )
                .with_peers(Arc::new(peers)),
            );
            let (stopper, stop) = Stopper::new();
            let others: BTreeMap<Arc<str>, u64> = names
                .iter()
                .filter(|other| *other != name)
                .map(|other| (Arc::from(*other), 1))
                .collect();
            let (_links, connected) = watch::channel(Arc::new(others));
            tokio::spawn(serve_inbound(broker.clone(), inbox, stop.clone()));
            let telling = broker.clone();
            tokio::spawn(async move {
                // The sender lives as long as the task, so the channel never closes.
                let _links = _links;
                tell_peers(telling, connected, stop).await;
            });
            Pod {
                broker,
                _stopper: stopper,
            }
        })
        .collect()
}

fn session(broker: &Broker, client: &str) -> Arc<Session> {
    broker.attach(client, client, true, 100).unwrap().session
}

async fn subscribe(broker: &Broker, session: &Arc<Session>, raw: &str, qos: QoS) {
    let Ok(Some((share_group, filter))) = split(raw) else {
        panic!("bad filter {raw}");
    };
    broker.subscribe(
        session,
        NewSubscription {
            raw: raw.to_string(),
            share_group,
            filter,
            options: options(qos),
            subscription_id: None,
        },
    );
    broker.interest_settled(Duration::from_secs(5)).await;
}

fn options(qos: QoS) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        no_local: false,
        retain_as_published: false,
        retain_handling: 0,
    }
}

fn message(topic: &str, qos: QoS, retain: bool, payload: &str) -> Message {
    Message {
        topic: topic.into(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        qos,
        retain,
        properties: Default::default(),
    }
}

fn queued(session: &Session) -> Vec<String> {
    session
        .state
        .lock()
        .queue
        .iter()
        .map(|q| String::from_utf8_lossy(&q.delivery.message.payload).into_owned())
        .collect()
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..500 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never: {what}");
}

#[tokio::test]
async fn a_message_reaches_a_subscriber_on_another_pod_once_and_its_acknowledgement_waits() {
    let network = Arc::new(Network::default());
    let pods = join(&network, &["a", "b", "c"]);
    let (a, b, c) = (&pods[0].broker, &pods[1].broker, &pods[2].broker);
    let subscriber = session(b, "sub");
    subscribe(b, &subscriber, "t/+", QoS::AtLeastOnce).await;
    // Twice on the same pod: one copy still.
    subscribe(b, &subscriber, "t/#", QoS::AtLeastOnce).await;
    let publisher = session(a, "pub");
    let acks = Arc::new(ForwardAcks::new(publisher.clone()));
    let mut outbox = Outbox::default();
    let published = a.publish_from(
        message("t/1", QoS::AtLeastOnce, false, "one"),
        "pub",
        &mut outbox,
        Origin::Here { acks: Some(&acks) },
    );
    assert_eq!(published.forwarded, Some(1), "it waits for pod b");
    eventually("pod b queued it", || acks.finished() == 1).await;
    assert_eq!(queued(&subscriber), ["one"]);
    // Pod c has no interest: nothing went there (its broker saw no message).
    assert_eq!(c.metrics.messages_in.with_label_values(&["1"]).get(), 0);
    // A topic nobody holds is not forwarded, and does not wait.
    let published = a.publish_from(
        message("u", QoS::AtLeastOnce, false, "none"),
        "pub",
        &mut outbox,
        Origin::Here { acks: Some(&acks) },
    );
    assert_eq!(published.forwarded, None);
}

#[tokio::test]
async fn an_unsubscribed_filter_stops_the_forwarding() {
    let network = Arc::new(Network::default());
    let pods = join(&network, &["a", "b"]);
    let (a, b) = (&pods[0].broker, &pods[1].broker);
    let subscriber = session(b, "sub");
    subscribe(b, &subscriber, "t", QoS::AtMostOnce).await;
    b.unsubscribe(&subscriber, "t");
    b.interest_settled(Duration::from_secs(5)).await;
    a.publish(message("t", QoS::AtMostOnce, false, "x"), "pub");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(queued(&subscriber).is_empty());
    assert_eq!(b.metrics.messages_in.with_label_values(&["0"]).get(), 0);
}

#[tokio::test]
async fn a_retained_message_is_found_by_a_late_subscriber_on_another_pod() {
    let network = Arc::new(Network::default());
    let pods = join(&network, &["a", "b"]);
    let (a, b) = (&pods[0].broker, &pods[1].broker);
    a.publish(message("r/1", QoS::AtLeastOnce, true, "kept"), "pub");
    let late = session(b, "late");
    let mut found = Vec::new();
    eventually("pod b has the retained message", || {
        let Ok(Some((share_group, filter))) = split("r/#") else {
            return false;
        };
        let (_, retained) = b.subscribe(
            &late,
            NewSubscription {
                raw: "r/#".into(),
                share_group,
                filter,
                options: options(QoS::AtMostOnce),
                subscription_id: None,
            },
        );
        found = retained;
        !found.is_empty()
    })
    .await;
    assert_eq!(&found[0].payload[..], b"kept");
    // Cleared on pod b: gone on pod a too.
    b.publish(message("r/1", QoS::AtMostOnce, true, ""), "pub");
    eventually("pod a cleared it", || a.retained_updates().is_empty()).await;
}

#[tokio::test]
async fn a_share_spread_over_pods_gets_each_message_once() {
    let network = Arc::new(Network::default());
    let pods = join(&network, &["a", "b", "c"]);
    let (a, b, c) = (&pods[0].broker, &pods[1].broker, &pods[2].broker);
    let on_a = session(a, "m-a");
    let on_b = session(b, "m-b");
    subscribe(a, &on_a, "$share/g/s/#", QoS::AtLeastOnce).await;
    subscribe(b, &on_b, "$share/g/s/#", QoS::AtLeastOnce).await;
    // Pod c has no member: its publishes go to a or b.
    eventually("pod c knows both members", || {
        c.peers.as_ref().unwrap().targets("s/x").shares.len() == 1
            && c.peers.as_ref().unwrap().targets("s/x").shares[0].1.len() == 2
    })
    .await;
    for n in 0..20 {
        let publisher = if n % 2 == 0 { a } else { c };
        publisher.publish(
            message("s/x", QoS::AtLeastOnce, false, &n.to_string()),
            "pub",
        );
    }
    eventually("20 delivered", || {
        queued(&on_a).len() + queued(&on_b).len() == 20
    })
    .await;
    let mut all: Vec<u32> = queued(&on_a)
        .into_iter()
        .chain(queued(&on_b))
        .map(|n| n.parse().unwrap())
        .collect();
    all.sort();
    assert_eq!(all, (0..20).collect::<Vec<_>>(), "each message once");
    assert!(
        !queued(&on_a).is_empty() && !queued(&on_b).is_empty(),
        "spread"
    );
}

#[tokio::test]
async fn a_pod_without_a_link_counts_as_done() {
    let network = Arc::new(Network::default());
    let pods = join(&network, &["a", "b"]);
    let (a, b) = (&pods[0].broker, &pods[1].broker);
    let subscriber = session(b, "sub");
    subscribe(b, &subscriber, "t", QoS::AtLeastOnce).await;
    network.pods.lock().remove("b");
    let publisher = session(a, "pub");
    let acks = Arc::new(ForwardAcks::new(publisher));
    let published = a.publish_from(
        message("t", QoS::AtLeastOnce, false, "x"),
        "pub",
        &mut Outbox::default(),
        Origin::Here { acks: Some(&acks) },
    );
    assert_eq!(published.forwarded, Some(1));
    eventually("done without pod b", || acks.finished() == 1).await;
    assert_eq!(acks.failure(1), None);
}

#[tokio::test]
async fn a_session_claimed_on_another_pod_moves_there_with_its_subscriptions_and_messages() {
    let network = Arc::new(Network::default());
    let pods = join(&network, &["a", "b"]);
    let (a, b) = (&pods[0].broker, &pods[1].broker);
    let attached = b.attach("dev", "dev", false, 100).unwrap();
    let held = attached.session.clone();
    held.state.lock().expiry_interval = 3600;
    subscribe(b, &held, "cmd/#", QoS::AtLeastOnce).await;
    b.publish(message("cmd/1", QoS::AtLeastOnce, false, "queued"), "x");
    assert_eq!(queued(&held), ["queued"]);

    let answers = a.peers.as_ref().unwrap().claim("dev", "dev", false).await;
    assert_eq!(answers.len(), 1);
    let answer = answers.into_iter().next().unwrap();
    assert!(answer.was_connected);
    assert!(
        !attached.attachment.session_ended(),
        "resumed elsewhere, not ended"
    );
    let session = answer.session.expect("handed over");
    a.adopt(session, answer.last_sequence);
    let resumed = a
        .attach_claimed(
            "dev",
            "dev",
            false,
            100,
            crate::mqtt::broker::Elsewhere {
                connected_for_name: answer.connected_for_name as usize,
                took_over_connected: true,
            },
        )
        .unwrap();
    assert!(resumed.present, "the session was resumed");
    assert_eq!(queued(&resumed.session), ["queued"]);
    assert!(b.retained_updates().is_empty());
    // Its subscription moved: a message published on b now goes to a.
    a.interest_settled(Duration::from_secs(5)).await;
    eventually("pod b knows pod a's interest", || {
        b.peers.as_ref().unwrap().targets("cmd/2").plain.len() == 1
    })
    .await;
    b.publish(message("cmd/2", QoS::AtLeastOnce, false, "after"), "x");
    eventually("the next message reached pod a", || {
        queued(&resumed.session) == ["queued", "after"]
    })
    .await;
}

#[tokio::test]
async fn a_clean_start_elsewhere_ends_the_session_and_the_limit_counts_every_pod() {
    let network = Arc::new(Network::default());
    let pods = join(&network, &["a", "b"]);
    let (a, b) = (&pods[0].broker, &pods[1].broker);
    let first = b.attach("n-1", "n", true, 100).unwrap();
    b.attach("n-2", "n", true, 100).unwrap();
    // A clean start for n-1 on pod a: ended on b, nothing handed over, and b still has one.
    let answers = a.peers.as_ref().unwrap().claim("n-1", "n", true).await;
    assert!(first.attachment.session_ended());
    assert!(answers[0].session.is_none());
    assert!(answers[0].was_connected);
    assert_eq!(answers[0].connected_for_name, 1);
    // A third session of "n" with a limit of 2: refused, counting pod b's.
    let answers = a.peers.as_ref().unwrap().claim("n-3", "n", true).await;
    let elsewhere = crate::mqtt::broker::Elsewhere {
        connected_for_name: answers[0].connected_for_name as usize,
        took_over_connected: false,
    };
    a.attach_claimed("n-1", "n", true, 2, elsewhere).unwrap();
    assert!(matches!(
        a.attach_claimed("n-3", "n", true, 2, elsewhere),
        Err(crate::mqtt::reason::ReasonCode::QuotaExceeded)
    ));
}

#[tokio::test]
async fn a_forward_not_confirmed_before_its_link_goes_fails_and_the_publisher_is_told() {
    let network = Arc::new(Network::default());
    // Pod b's queue exists but nothing serves it: nothing is ever confirmed.
    let (sender, _unserved) = mpsc::channel(16);
    network.pods.lock().insert("b".to_string(), sender);
    let registry = prometheus::Registry::new();
    let peers = Peers::new(
        Arc::from("a"),
        Arc::new(MemoryTransport::new("a", &network)),
        &registry,
    )
    .unwrap();
    let publisher = Arc::new(Session::new("pub".into(), "pub".into()));
    let acks = Arc::new(ForwardAcks::new(publisher));
    let b: Arc<str> = Arc::from("b");
    let mut plan = crate::mqtt::peers::ForwardPlan::default();
    plan.pods.insert(
        b.clone(),
        crate::mqtt::peers::PodForward {
            plain: true,
            shares: Vec::new(),
        },
    );
    peers.forward(
        &message("t", QoS::AtLeastOnce, false, "x"),
        plan,
        Some(acks.open(1)),
    );
    assert_eq!(acks.finished(), 0, "waiting for pod b");
    // A cumulative answer for an older number confirms nothing newer.
    peers.on_queued(&b, 0);
    assert_eq!(acks.finished(), 0);
    peers.link_lost(&b);
    assert_eq!(acks.finished(), 1);
    assert_eq!(
        acks.failure(1),
        Some(crate::mqtt::reason::ReasonCode::UnspecifiedError)
    );
}
