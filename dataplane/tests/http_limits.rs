//! What one client can hold on the HTTP listeners: sockets (a cap per listener, all
//! listeners together under the open-file limit), time (header-read, idle and body-read
//! timeouts) and log lines (client-sent names cut, authentication failures rate-limited).

mod support;

use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes `stream` (or resets it), within `within`; how long it took.
async fn closed_by_server(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buffer = [0u8; 1024];
    loop {
        match tokio::time::timeout(
            within.saturating_sub(started.elapsed()),
            stream.read(&mut buffer),
        )
        .await
        {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue, // a response (408 or the like) before the close
            Err(_) => return None,
        }
    }
}

fn started(extra: &[&str]) -> (Workspace, Dataplane) {
    let workspace = Workspace::new();
    workspace.write(
        "namespace.yaml",
        &documents(&[
            support::mqtt::namespace_manifest("dev")
                .sas_keys("keys")
                .yaml(),
            sas_keys_secret("keys", "right-key", "other-key"),
            topic("orders", "dev", 1),
        ]),
    );
    workspace.write("access.yaml", &support::mqtt::access("dev"));
    let dataplane = workspace.start(extra);
    (workspace, dataplane)
}

/// [`started`], once the Namespace is served.
async fn serving(extra: &[&str]) -> (Workspace, Dataplane) {
    let (workspace, dataplane) = started(extra);
    dataplane.wait_ready().await;
    (workspace, dataplane)
}

#[tokio::test]
async fn a_socket_that_never_sends_a_request_is_closed_after_the_header_read_timeout() {
    let (_w, dataplane) = started(&["--http-header-read-timeout", "1"]);
    let mut idle = TcpStream::connect(dataplane.addr).await.unwrap();
    let took = closed_by_server(&mut idle, Duration::from_secs(10)).await;
    assert!(
        took.is_some(),
        "still open after 10 s\n{}",
        dataplane.logs()
    );
}

#[tokio::test]
async fn a_keep_alive_connection_is_closed_once_idle_for_the_header_read_timeout() {
    let (_w, dataplane) = started(&["--http-header-read-timeout", "1"]);
    let mut stream = TcpStream::connect(dataplane.addr).await.unwrap();
    let (status, _) = support::tls_client::request(&mut stream, "GET", "/healthz", &[], "").await;
    assert_eq!(status, 200);
    let took = closed_by_server(&mut stream, Duration::from_secs(10)).await;
    assert!(
        took.is_some(),
        "idle keep-alive still open\n{}",
        dataplane.logs()
    );
}

#[tokio::test]
async fn a_half_sent_header_is_cut_at_the_header_read_timeout() {
    let (_w, dataplane) = started(&["--http-header-read-timeout", "1"]);
    let mut stream = TcpStream::connect(dataplane.addr).await.unwrap();
    stream
        .write_all(b"POST /topics/orders:publish HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert!(
        closed_by_server(&mut stream, Duration::from_secs(10))
            .await
            .is_some()
    );
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_cut_at_the_body_read_timeout() {
    let (_w, dataplane) = serving(&["--http-body-read-timeout", "1"]).await;
    let mut stream = TcpStream::connect(dataplane.addr).await.unwrap();
    stream
        .write_all(
            b"POST /topics/orders:publish?api-version=2024-06-01 HTTP/1.1\r\nHost: x\r\n\
              Authorization: SharedAccessKey right-key\r\n\
              Content-Type: application/cloudevents+json\r\nContent-Length: 1000\r\n\r\n{\"id\":",
        )
        .await
        .unwrap();
    assert!(
        closed_by_server(&mut stream, Duration::from_secs(10))
            .await
            .is_some(),
        "{}",
        dataplane.logs()
    );
    // Nothing was stored from the cut request, and the listener serves others.
    assert_eq!(dataplane.get("/healthz").await.0, 200);
}

#[tokio::test]
async fn beyond_the_connection_cap_sockets_are_closed_and_counted_while_mqtt_still_connects() {
    let (_w, dataplane) = started(&[
        "--max-http-connections-per-listener",
        "4",
        "--http-header-read-timeout",
        "30",
    ]);
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(dataplane.addr).await.unwrap());
    }
    // The listener counts its connections when their tasks start: let the four settle.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut refused = TcpStream::connect(dataplane.addr).await.unwrap();
    assert!(
        closed_by_server(&mut refused, Duration::from_secs(5))
            .await
            .is_some(),
        "the fifth socket is closed at once"
    );
    // MQTT has descriptors of its own to give.
    let mqtt = dataplane.mqtt_addr();
    let published = support::mqtt::publish(
        mqtt,
        "mqttv5",
        "sensor-1",
        &["-t", "devices/sensor-1/telemetry", "-m", "x", "-q", "1"],
    );
    assert!(
        published.status.success(),
        "{published:?}\n{}",
        dataplane.logs()
    );
    // Once the held sockets go, requests are served again, and the refusal was counted.
    drop(held);
    let served = poll_until(Duration::from_secs(10), || async {
        reqwest::get(dataplane.url("/metrics")).await.is_ok()
    })
    .await;
    assert!(served.is_some());
    let refusals = dataplane
        .metric(r#"gridline_http_connections_refused_total{listener="http",reason="over_limit"}"#)
        .await;
    assert!(refusals.is_some_and(|n| n >= 1.0), "{refusals:?}");
}

#[tokio::test]
async fn the_open_file_limit_and_the_connection_caps_under_it_are_logged_at_start() {
    let (_w, dataplane) = serving(&[]).await;
    let logs = dataplane.logs();
    assert!(logs.contains("open_file_limit="), "{logs}");
    assert!(logs.contains("connection_budget="), "{logs}");
    assert!(logs.contains("mqtt_per_listener="), "{logs}");
}

#[tokio::test]
async fn refused_requests_with_huge_names_leave_a_small_bounded_log() {
    let (_w, dataplane) = serving(&[]).await;
    let before = dataplane.logs().len();
    let huge = "t".repeat(60_000);
    let started = std::time::Instant::now();
    for _ in 0..10 {
        let response = dataplane
            .client()
            .post(dataplane.url(&format!("/topics/{huge}:publish?api-version=2024-06-01")))
            .header("Authorization", "SharedAccessKey wrong-key")
            .body("[]")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
    }
    // One line a second at most (the ten may span more than a second on a slow machine), and
    // a few hundred bytes a request (debug lines included) instead of the 60 KB names.
    let seconds = started.elapsed().as_secs() as usize + 1;
    let logs = dataplane.logs();
    let written = logs.len() - before;
    assert!(
        written < 10_000 * seconds,
        "{written} bytes of log for 10 refused requests"
    );
    let lines = logs[before..].matches("authentication failed").count();
    assert!(
        (1..=seconds).contains(&lines),
        "{lines} lines in {seconds} s:\n{}",
        &logs[before..]
    );
    let failures = dataplane
        .metric(r#"gridline_http_auth_failures_total{reason="wrong_key"}"#)
        .await;
    assert!(
        failures.is_some_and(|n| n >= 10.0),
        "every refusal counted: {failures:?}"
    );
}
