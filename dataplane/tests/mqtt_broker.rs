//! The MQTT broker, driven by mosquitto's clients against the real binary.

mod support;

use gridline_dataplane::mqtt::codec::{Connect, Packet, QoS, Version};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use support::mqtt::{access, finish, namespace, publish, subscribe};
use support::{Dataplane, Workspace, packets};

const V311: &str = "mqttv311";
const V5: &str = "mqttv5";

fn broker() -> (Workspace, Dataplane, std::net::SocketAddr) {
    let workspace = Workspace::new();
    workspace.write("namespace.yaml", &namespace("dev"));
    workspace.write("access.yaml", &access("dev"));
    let dataplane = workspace.start(&[]);
    let addr = dataplane.mqtt_addr();
    (workspace, dataplane, addr)
}

#[test]
fn the_example_dashboard_receives_sensor_telemetry_at_every_qos_in_both_versions() {
    let (_w, _d, addr) = broker();
    for version in [V311, V5] {
        for qos in ["0", "1", "2"] {
            let sub = subscribe(
                addr,
                version,
                "dashboard",
                &[
                    "-t",
                    "devices/+/telemetry/#",
                    "-q",
                    qos,
                    "-C",
                    "1",
                    "-W",
                    "5",
                ],
            );
            let out = publish(
                addr,
                version,
                "sensor-1",
                &["-t", "devices/sensor-1/telemetry", "-m", "hi", "-q", qos],
            );
            assert!(out.status.success(), "{version} qos {qos}: {out:?}");
            let (stdout, stderr) = finish(sub);
            assert_eq!(
                stdout.trim(),
                "devices/sensor-1/telemetry hi",
                "{version} qos {qos}: {stderr}"
            );
        }
    }
}

#[test]
fn publishing_outside_ones_topic_space_is_refused_and_not_delivered() {
    let (_w, _d, addr) = broker();
    let sub = subscribe(
        addr,
        V5,
        "dashboard",
        &["-t", "devices/+/telemetry/#", "-W", "2"],
    );
    let refused = publish(
        addr,
        V5,
        "sensor-1",
        &["-t", "devices/sensor-2/telemetry", "-m", "x", "-q", "1"],
    );
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("Not authorized"),
        "MQTT 5 PUBACK carries 0x87: {refused:?}"
    );
    // 3.1.1 cannot say no: the PUBACK comes, the message is dropped.
    let dropped = publish(
        addr,
        V311,
        "sensor-1",
        &["-t", "devices/sensor-2/telemetry", "-m", "y", "-q", "1"],
    );
    assert!(dropped.status.success(), "{dropped:?}");
    let (stdout, _) = finish(sub);
    assert_eq!(stdout, "", "nothing refused is delivered");
}

#[test]
fn subscribing_outside_ones_topic_space_is_refused_in_suback() {
    let (_w, _d, addr) = broker();
    for version in [V311, V5] {
        let sub = subscribe(
            addr,
            version,
            "sensor-1",
            &["-t", "devices/+/telemetry/#", "-W", "2"],
        );
        let (_, stderr) = finish(sub);
        assert!(stderr.contains("denied"), "{version}: {stderr}");
    }
}

#[test]
fn unknown_and_disabled_clients_are_refused_at_connect() {
    let (_w, _d, addr) = broker();
    for (user, v5_text) in [
        ("nobody", "bad user name or password"),
        ("retired", "not authorised"),
    ] {
        for version in [V311, V5] {
            let out = publish(addr, version, user, &["-t", "lab/x", "-m", "x"]);
            let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
            assert!(!out.status.success(), "{user} {version}");
            assert!(
                stderr.contains(v5_text) || stderr.contains(&v5_text.replace('s', "z")),
                "{user} {version}: {stderr}"
            );
        }
    }
}

#[test]
fn a_retained_message_reaches_a_later_subscriber_until_an_empty_one_deletes_it() {
    let (_w, _d, addr) = broker();
    let out = publish(
        addr,
        V5,
        "sensor-1",
        &["-t", "lab/state", "-m", "on", "-r", "-q", "1"],
    );
    assert!(out.status.success());
    let (stdout, _) = finish(subscribe(
        addr,
        V311,
        "dashboard",
        &["-t", "lab/#", "-C", "1", "-W", "3"],
    ));
    assert_eq!(stdout.trim(), "lab/state on");
    publish(addr, V311, "sensor-1", &["-t", "lab/state", "-n", "-r"]);
    let (stdout, _) = finish(subscribe(
        addr,
        V5,
        "dashboard",
        &["-t", "lab/#", "-W", "1"],
    ));
    assert_eq!(stdout, "");
}

#[test]
fn the_will_is_published_when_a_client_vanishes() {
    let (_w, _d, addr) = broker();
    let sub = subscribe(
        addr,
        V5,
        "dashboard",
        &["-t", "lab/wills", "-C", "1", "-W", "5"],
    );
    // An MQTT 3.1.1 CONNECT with a will, then the socket is dropped without DISCONNECT.
    let mut socket = TcpStream::connect(addr).unwrap();
    let connect = packets::with_will(
        packets::connect(Version::V311, "vanishing", "sensor-2"),
        packets::message("lab/wills", "gone", QoS::AtMostOnce),
    );
    socket
        .write_all(&packets::encode(
            Version::V311,
            Packet::Connect(Box::new(connect)),
        ))
        .unwrap();
    let mut connack = [0u8; 4];
    socket.read_exact(&mut connack).unwrap();
    assert_eq!(connack, [0x20, 2, 0, 0]);
    drop(socket);
    let (stdout, _) = finish(sub);
    assert_eq!(stdout.trim(), "lab/wills gone");
}

#[test]
fn a_shared_subscription_spreads_messages_across_its_members() {
    let (_w, _d, addr) = broker();
    let a = subscribe(
        addr,
        V5,
        "dashboard",
        &["-t", "$share/g/lab/jobs", "-W", "3", "-i", "a"],
    );
    let b = subscribe(
        addr,
        V5,
        "sensor-2",
        &["-t", "$share/g/lab/jobs", "-W", "3", "-i", "b"],
    );
    for n in 0..10 {
        publish(
            addr,
            V5,
            "sensor-1",
            &["-t", "lab/jobs", "-m", &n.to_string(), "-q", "1"],
        );
    }
    let (a, _) = finish(a);
    let (b, _) = finish(b);
    let (a, b) = (a.lines().count(), b.lines().count());
    assert_eq!(a + b, 10, "each message exactly once");
    assert!(a > 0 && b > 0, "both members get some: {a} and {b}");
}

/// Malformed on purpose: no packet type starts with 0xF0 and the remaining length never ends.
const MALFORMED_GARBAGE: &[u8] = b"\xff\xff\xff\xff\xff garbage";
/// Malformed on purpose: a QoS 1 PUBLISH whose topic length (5) runs past its remaining
/// length (3).
const MALFORMED_PUBLISH: &[u8] = b"\x32\x03\x00\x05a";

#[test]
fn malformed_bytes_and_idle_sockets_do_not_harm_the_listener() {
    let (_w, mut dataplane, addr) = broker();
    // An idle socket that never sends CONNECT.
    let _idle = TcpStream::connect(addr).unwrap();
    // Garbage: not a CONNECT.
    let mut garbage = TcpStream::connect(addr).unwrap();
    garbage.write_all(MALFORMED_GARBAGE).unwrap();
    garbage
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buffer = [0u8; 16];
    assert_eq!(garbage.read(&mut buffer).unwrap_or(0), 0, "closed");
    // A well-formed CONNECT followed by a malformed PUBLISH (remaining length past the
    // packet). The CONNECT carries no username, as the bytes this test first wrote by hand
    // decoded (their username flag was unset).
    let mut bad = TcpStream::connect(addr).unwrap();
    let connect = Connect {
        username: None,
        ..packets::connect(Version::V5, "a", "")
    };
    bad.write_all(&packets::encode(
        Version::V5,
        Packet::Connect(Box::new(connect)),
    ))
    .unwrap();
    bad.write_all(MALFORMED_PUBLISH).unwrap();
    bad.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut received = Vec::new();
    let _ = bad.read_to_end(&mut received);
    assert!(dataplane.is_running());
    // The listener still serves others at once.
    let out = publish(addr, V311, "sensor-1", &["-t", "lab/ok", "-m", "x"]);
    assert!(out.status.success(), "{out:?}");
}
