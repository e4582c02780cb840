//! The per-listener connection bound (`--max-connections-per-listener`): beyond it a new
//! socket is closed at once and counted; a freed place is taken again.

mod support;

use gridline_dataplane::mqtt::codec::{Version, reason};
use std::time::Duration;
use support::Workspace;
use support::mqtt::{RawClient, access, connect_packet, namespace};
use tokio::io::AsyncReadExt;

#[tokio::test]
async fn a_connection_over_the_listeners_bound_is_closed_and_counted() {
    let workspace = Workspace::new();
    workspace.write("namespace.yaml", &namespace("dev"));
    workspace.write("access.yaml", &access("dev"));
    let dataplane = workspace.start(&["--max-connections-per-listener", "2"]);
    let addr = dataplane.mqtt_addr();
    let connect = |id: &str| connect_packet(Version::V5, id, "dashboard");

    let (first, ack) = RawClient::connect(addr, connect("first")).await;
    assert_eq!(ack.reason, reason::SUCCESS);
    let (_second, ack) = RawClient::connect(addr, connect("second")).await;
    assert_eq!(ack.reason, reason::SUCCESS);
    // Counted per listener: this is the plaintext one (`mqtt`).
    assert_eq!(
        dataplane
            .metric("gridline_mqtt_connections{listener=\"mqtt\"}")
            .await,
        Some(2.0)
    );
    assert_eq!(
        dataplane
            .metric("gridline_mqtt_connections{listener=\"ws\"}")
            .await,
        Some(0.0)
    );
    assert_eq!(
        dataplane
            .metric("gridline_mqtt_connects_total{listener=\"mqtt\",result=\"accepted\"}")
            .await,
        Some(2.0)
    );

    // The third socket is accepted by the kernel, then closed by the broker at once.
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), third.read(&mut byte))
        .await
        .expect("closed within 5 s");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert_eq!(
        dataplane
            .metric("gridline_mqtt_connects_total{listener=\"mqtt\",result=\"over_limit\"}")
            .await,
        Some(1.0)
    );

    // A place freed is a place again.
    drop(first);
    let mut again = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut probe = tokio::net::TcpStream::connect(addr).await.unwrap();
        let closed = tokio::time::timeout(Duration::from_millis(300), probe.read(&mut byte))
            .await
            .is_ok();
        if !closed {
            // The probe holds the place: it becomes the client.
            let (client, ack) = RawClient::connect_over(Box::new(probe), connect("third")).await;
            assert_eq!(ack.reason, reason::SUCCESS);
            again = Some(client);
            break;
        }
    }
    assert!(again.is_some(), "the freed place was never given again");
}
