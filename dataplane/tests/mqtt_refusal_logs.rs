//! Refusals any client can cause on the MQTT side write a small, bounded log: names it sent
//! are cut, and the lines are rate-limited (every refusal is still counted).

mod support;

use gridline_dataplane::mqtt::codec::Version;
use support::Workspace;
use support::mqtt::{RawClient, access, connect_packet, namespace};

#[tokio::test]
async fn refused_connects_with_huge_usernames_leave_a_small_bounded_log() {
    let workspace = Workspace::new();
    workspace.write("namespace.yaml", &namespace("dev"));
    workspace.write("access.yaml", &access("dev"));
    let dataplane = workspace.start(&[]);
    let mqtt = dataplane.mqtt_addr();
    let before = dataplane.logs().len();
    let huge = "u".repeat(60_000);
    let started = std::time::Instant::now();
    for attempt in 0..10 {
        let connect = connect_packet(Version::V5, &format!("huge-{attempt}"), &huge);
        let (_client, ack) = RawClient::connect(mqtt, connect).await;
        assert_ne!(
            ack.reason, 0,
            "an unknown authentication name is refused: {ack:?}"
        );
    }
    // One line a second at most (the ten may span more than a second on a slow machine), and
    // a few hundred bytes a request (debug lines included) instead of the 60 KB names.
    let seconds = started.elapsed().as_secs() as usize + 1;
    let logs = dataplane.logs();
    let written = logs.len() - before;
    assert!(
        written < 10_000 * seconds,
        "{written} bytes of log for 10 refused CONNECTs"
    );
    let lines = logs[before..].matches("CONNECT refused").count();
    assert!(
        (1..=seconds).contains(&lines),
        "{lines} lines in {seconds} s:\n{}",
        &logs[before..]
    );
}
