//! Wills: the MQTT 5 Will Delay Interval and the will of a connection taken over. The
//! subscriber is mosquitto_sub; the clients with a will are raw clients on the broker's codec.

mod support;

use gridline_dataplane::mqtt::codec::{Packet, QoS, Version, Will, reason};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::mqtt::{RawClient, access, connect_packet, finish, message, namespace, subscribe};
use support::{Dataplane, Workspace};

fn broker() -> (Workspace, Dataplane, SocketAddr) {
    let workspace = Workspace::new();
    workspace.write("namespace.yaml", &namespace("dev"));
    workspace.write("access.yaml", &access("dev"));
    let dataplane = workspace.start(&[]);
    let addr = dataplane.mqtt_addr();
    (workspace, dataplane, addr)
}

/// `sensor-1` connecting as `client_id` with a will on `lab/wills`, `delay` seconds of will
/// delay and `expiry` seconds of session expiry.
async fn with_will(
    addr: SocketAddr,
    version: Version,
    client_id: &str,
    delay: u32,
    expiry: u32,
) -> RawClient {
    let mut connect = connect_packet(version, client_id, "sensor-1");
    connect.session_expiry_interval = expiry;
    connect.will = Some(Will {
        message: message("lab/wills", &format!("{client_id} gone"), QoS::AtLeastOnce),
        delay_interval: (delay > 0).then_some(delay),
    });
    let (client, ack) = RawClient::connect(addr, connect).await;
    assert_eq!(ack.reason, 0);
    client
}

/// A new connection for `client_id` resuming (or, with `clean_start`, replacing) its session.
async fn reconnect(addr: SocketAddr, client_id: &str, clean_start: bool) -> RawClient {
    let mut connect = connect_packet(Version::V5, client_id, "sensor-1");
    connect.clean_start = clean_start;
    connect.session_expiry_interval = 60;
    let (client, ack) = RawClient::connect(addr, connect).await;
    assert_eq!(ack.reason, 0);
    client
}

fn wills_subscriber(addr: SocketAddr, wait_secs: u32) -> std::process::Child {
    subscribe(
        addr,
        "mqttv5",
        "dashboard",
        &["-t", "lab/wills", "-C", "1", "-W", &wait_secs.to_string()],
    )
}

#[tokio::test]
async fn a_delayed_will_is_published_once_its_delay_has_passed() {
    let (_w, _d, addr) = broker();
    let sub = wills_subscriber(addr, 8);
    let client = with_will(addr, Version::V5, "delayed", 2, 60).await;
    let lost_at = Instant::now();
    drop(client);
    let (stdout, _) = tokio::task::spawn_blocking(move || finish(sub))
        .await
        .unwrap();
    assert_eq!(stdout.trim(), "lab/wills delayed gone");
    assert!(
        lost_at.elapsed() >= Duration::from_millis(1900),
        "not before the delay: {:?}",
        lost_at.elapsed()
    );
}

#[tokio::test]
async fn a_delayed_will_is_discarded_when_the_session_is_resumed_in_time() {
    let (_w, _d, addr) = broker();
    let sub = wills_subscriber(addr, 4);
    drop(with_will(addr, Version::V5, "flaky", 2, 60).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _back = reconnect(addr, "flaky", false).await;
    let (stdout, _) = tokio::task::spawn_blocking(move || finish(sub))
        .await
        .unwrap();
    assert_eq!(stdout, "", "the client came back before the delay");
}

#[tokio::test]
async fn a_delayed_will_is_published_when_the_session_ends_first() {
    let (_w, _d, addr) = broker();
    let sub = wills_subscriber(addr, 5);
    let client = with_will(addr, Version::V5, "short-lived", 3600, 1).await;
    let lost_at = Instant::now();
    drop(client);
    let (stdout, _) = tokio::task::spawn_blocking(move || finish(sub))
        .await
        .unwrap();
    assert_eq!(stdout.trim(), "lab/wills short-lived gone");
    assert!(
        lost_at.elapsed() < Duration::from_secs(4),
        "at the session's end, not after an hour"
    );
}

#[tokio::test]
async fn a_clean_start_ends_the_session_and_publishes_a_delayed_will_at_once() {
    let (_w, _d, addr) = broker();
    let sub = wills_subscriber(addr, 5);
    drop(with_will(addr, Version::V5, "restarted", 3600, 3600).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _fresh = reconnect(addr, "restarted", true).await;
    let (stdout, _) = tokio::task::spawn_blocking(move || finish(sub))
        .await
        .unwrap();
    assert_eq!(stdout.trim(), "lab/wills restarted gone");
}

#[tokio::test]
async fn a_connection_taken_over_publishes_its_will_in_both_versions() {
    let (_w, _d, addr) = broker();
    for (version, id) in [(Version::V5, "twin-5"), (Version::V311, "twin-3")] {
        let sub = wills_subscriber(addr, 5);
        let mut old = with_will(addr, version, id, 0, 60).await;
        let _new = reconnect_as(addr, version, id).await;
        if version == Version::V5 {
            let packet = old.next(Duration::from_secs(5)).await;
            assert!(
                matches!(packet, Some(Packet::Disconnect(ref d)) if d.reason == reason::SESSION_TAKEN_OVER),
                "{packet:?}"
            );
        }
        let (stdout, _) = tokio::task::spawn_blocking(move || finish(sub))
            .await
            .unwrap();
        assert_eq!(stdout.trim(), format!("lab/wills {id} gone"), "{version:?}");
    }
}

async fn reconnect_as(addr: SocketAddr, version: Version, client_id: &str) -> RawClient {
    let mut connect = connect_packet(version, client_id, "sensor-1");
    connect.clean_start = false;
    connect.session_expiry_interval = 60;
    RawClient::connect(addr, connect).await.0
}

#[tokio::test]
async fn a_take_over_that_resumes_the_session_discards_a_delayed_will() {
    let (_w, _d, addr) = broker();
    let sub = wills_subscriber(addr, 4);
    let _old = with_will(addr, Version::V5, "mover", 2, 60).await;
    let _new = reconnect(addr, "mover", false).await;
    let (stdout, _) = tokio::task::spawn_blocking(move || finish(sub))
        .await
        .unwrap();
    assert_eq!(stdout, "", "the session lives on in the new connection");
}

#[tokio::test]
async fn a_take_over_with_clean_start_publishes_a_delayed_will_at_once() {
    let (_w, _d, addr) = broker();
    let sub = wills_subscriber(addr, 4);
    let _old = with_will(addr, Version::V5, "replaced", 3600, 3600).await;
    let _new = reconnect(addr, "replaced", true).await;
    let (stdout, _) = tokio::task::spawn_blocking(move || finish(sub))
        .await
        .unwrap();
    assert_eq!(stdout.trim(), "lab/wills replaced gone");
}
