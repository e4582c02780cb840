//! A subscriber that stops reading (mqtt/README.md "Writes that block" and "Flow control"):
//! its connection keeps reading its packets and keeping its timers while the socket takes
//! nothing, closes it when its writes make no progress for 1.5 keep-alives, and holds the
//! publishers to its topic back for at most the 5 s flow-control pause.

mod support;

use gridline_dataplane::mqtt::codec::{Packet, QoS, Version, reason};
use std::net::SocketAddr;
use std::time::Duration;
use support::mqtt::{RawClient, access, connect_packet, message, namespace_manifest};
use support::{Dataplane, Workspace, packets, poll_until};
use tokio::time::Instant;

/// The subscriber's keep-alive: it is closed 15 s after the socket stops taking bytes.
const KEEP_ALIVE: u16 = 10;
/// Large enough that the subscriber's socket buffers fill within a second.
const PAYLOAD_BYTES: usize = 4096;
/// QoS 1 messages the publisher keeps unacknowledged (our receive maximum).
const WINDOW: usize = 100;
/// How long the publisher publishes: past the subscriber's end, with room for a slow machine.
const PUBLISHING: Duration = Duration::from_secs(30);

fn broker() -> (Workspace, Dataplane) {
    let workspace = Workspace::new();
    let ns = namespace_manifest("dev")
        .topic_spaces(|t| t.maximum_messages_per_second_per_connection = 1_000_000);
    workspace.write("namespace.yaml", &ns.yaml());
    workspace.write("access.yaml", &access("dev"));
    let dataplane = workspace.start(&[]);
    (workspace, dataplane)
}

/// A subscriber to `lab/stall` over a socket with a small receive buffer, which reads
/// nothing after its SUBACK; with `pings`, it still sends PINGREQ every 5 s (half its
/// keep-alive) for as long as its socket lets it.
async fn stuck_subscriber(addr: SocketAddr, pings: bool) -> tokio::task::JoinHandle<()> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let mut connect = connect_packet(Version::V5, "stuck-reader", "dashboard");
    connect.keep_alive = KEEP_ALIVE;
    let (mut subscriber, ack) = RawClient::connect_over(Box::new(stream), connect).await;
    assert_eq!(ack.reason, reason::SUCCESS);
    assert_eq!(
        subscriber.subscribe(1, None, &[("lab/stall", false)]).await,
        [1]
    );
    tokio::spawn(async move {
        let until = Instant::now() + PUBLISHING + Duration::from_secs(10);
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_secs(u64::from(KEEP_ALIVE) / 2)).await;
            if pings {
                // Fails once the broker has closed the socket: nothing more to do then.
                let ping = subscriber.try_send(Packet::PingReq);
                if tokio::time::timeout(Duration::from_secs(1), ping)
                    .await
                    .is_ok_and(|sent| sent.is_err())
                {
                    return;
                }
            }
        }
        drop(subscriber);
    })
}

/// A 3.1.1 publisher of QoS 1 messages to `lab/stall` for [`PUBLISHING`], keeping
/// [`WINDOW`] in flight: when each PUBACK came, from its start.
async fn publish_for_a_while(addr: SocketAddr) -> Vec<Duration> {
    let (mut publisher, ack) = RawClient::connect(
        addr,
        connect_packet(Version::V311, "steady-writer", "sensor-1"),
    )
    .await;
    assert_eq!(ack.reason, reason::SUCCESS);
    let payload = "x".repeat(PAYLOAD_BYTES);
    let start = Instant::now();
    let mut acknowledged = Vec::new();
    let mut in_flight = 0;
    let mut next_id: u16 = 0;
    while start.elapsed() < PUBLISHING {
        while in_flight < WINDOW {
            next_id = next_id % 60_000 + 1;
            let message = message("lab/stall", &payload, QoS::AtLeastOnce);
            publisher.send(packets::publish(next_id, message)).await;
            in_flight += 1;
        }
        if let Some(Packet::PubAck(ack)) = publisher.next(Duration::from_secs(1)).await {
            assert_eq!(ack.reason, reason::SUCCESS);
            acknowledged.push(start.elapsed());
            in_flight -= 1;
        }
    }
    acknowledged
}

/// The longest wait between two PUBACKs, and the time spent in waits longer than 1 s.
fn pauses(acknowledged: &[Duration]) -> (Duration, Duration) {
    let gaps: Vec<Duration> = acknowledged.windows(2).map(|w| w[1] - w[0]).collect();
    let longest = gaps.iter().copied().max().unwrap_or_default();
    let held = gaps.iter().filter(|g| **g > Duration::from_secs(1)).sum();
    (longest, held)
}

async fn metric(dataplane: &Dataplane, sample: &str) -> f64 {
    dataplane.metric(sample).await.unwrap_or(0.0)
}

/// Connections ended so far: for keep-alive (or a closed socket), for stalled writes.
async fn ended(dataplane: &Dataplane) -> (f64, f64) {
    let lost = metric(
        dataplane,
        "gridline_mqtt_disconnections_total{reason=\"ConnectionLost\"}",
    );
    let stalled = metric(
        dataplane,
        "gridline_mqtt_disconnections_total{reason=\"SessionOverflow\"}",
    );
    (lost.await, stalled.await)
}

/// Wait (up to 40 s, the publisher still connected) until the subscriber's connection has
/// ended: how long after `started`, and the disconnections counted then.
async fn subscriber_ends(dataplane: &Dataplane, started: Instant) -> (Duration, (f64, f64)) {
    poll_until(Duration::from_secs(40), || async {
        let (lost, stalled) = ended(dataplane).await;
        lost + stalled >= 1.0
    })
    .await;
    let elapsed = started.elapsed();
    (elapsed, ended(dataplane).await)
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_is_closed_and_its_publisher_is_held_back_once_at_most_five_seconds()
 {
    let (_workspace, dataplane) = broker();
    let addr = dataplane.mqtt_addr();
    let subscriber = stuck_subscriber(addr, false).await;
    let started = Instant::now();
    let publishing = publish_for_a_while(addr);
    let watching = subscriber_ends(&dataplane, started);
    let (acknowledged, (closed_after, (lost, stalled))) = tokio::join!(publishing, watching);
    println!("closed after {closed_after:?}; lost {lost}, stalled {stalled}");
    assert_eq!(lost + stalled, 1.0, "the subscriber is gone");
    // 1.5 keep-alives after it went quiet, plus the time its buffers took to fill.
    assert!(
        closed_after <= Duration::from_secs(25),
        "closed {closed_after:?} after it stopped reading"
    );
    let (longest, held) = pauses(&acknowledged);
    for pair in acknowledged.windows(2) {
        if pair[1] - pair[0] > Duration::from_secs(1) {
            println!("no PUBACK from {:?} to {:?}", pair[0], pair[1]);
        }
    }
    assert!(
        longest <= Duration::from_secs(7),
        "the publisher waited {longest:?} for a PUBACK (the pause is at most 5 s)"
    );
    // 5 s after the subscriber last took a message (its buffers filled in the first second),
    // with room for a loaded machine; held back pause after pause, it would be 25 s.
    assert!(
        held <= Duration::from_secs(10),
        "held back {held:?} in all: again and again"
    );
    let late = acknowledged
        .iter()
        .filter(|at| **at > Duration::from_secs(10))
        .count();
    assert!(
        late >= 1_000,
        "only {late} PUBACKs after the first 10 s: the publisher did not go on"
    );
    assert!(
        dataplane
            .metric("gridline_mqtt_limited_total{limit=\"subscriber_stalled\"}")
            .await
            .unwrap_or(0.0)
            >= 1.0,
        "publishers stopped waiting for the stuck subscriber"
    );
    subscriber.abort();
}

#[tokio::test]
async fn a_subscriber_that_pings_but_does_not_read_is_closed_for_its_stalled_writes_not_for_keep_alive()
 {
    let (_workspace, dataplane) = broker();
    let addr = dataplane.mqtt_addr();
    let subscriber = stuck_subscriber(addr, true).await;
    let started = Instant::now();
    let publishing = publish_for_a_while(addr);
    let watching = subscriber_ends(&dataplane, started);
    let (_acknowledged, (closed_after, (lost, stalled))) = tokio::join!(publishing, watching);
    println!("closed after {closed_after:?}; lost {lost}, stalled {stalled}");
    assert!(
        closed_after <= Duration::from_secs(25),
        "closed {closed_after:?} after it stopped reading"
    );
    assert_eq!(stalled, 1.0, "closed because its socket took nothing");
    assert_eq!(lost, 0.0, "its PINGREQs were read: no keep-alive timeout");
    subscriber.abort();
}
