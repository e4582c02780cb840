//! A JWT session at the connection, on tokio's paused clock: the token's deadline and AUTH.

use super::Transport;
use super::established::Conn;
use super::handshake::{Accepted, attach, establish};
use super::tests::development;
use crate::mqtt::authenticate::{Authenticated, Method, TokenExpiry};
use crate::mqtt::broker::{Broker, Limits};
use crate::mqtt::codec::{Codec, Connect, Packet, Version, reason};
use crate::mqtt::limits::NamespaceLimits;
use crate::mqtt::metrics::MqttMetrics;
use crate::snapshot::SharedSnapshot;
use futures::{SinkExt, StreamExt};
use gridline_crds::model::Snapshot;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::codec::Framed;

const METHOD: &str = "OAUTH2-JWT";

fn connect() -> Connect {
    Connect {
        version: Version::V5,
        client_id: "c1".into(),
        clean_start: true,
        keep_alive: 0,
        username: Some("c1".into()),
        password: None,
        session_expiry_interval: 0,
        receive_maximum: None,
        maximum_packet_size: None,
        topic_alias_maximum: 0,
        authentication_method: None,
        authentication_data: None,
        will: None,
    }
}

/// A connection past CONNECT (the served Snapshot is empty) and the client's end of the pipe;
/// with `token_expires_in`, a JWT session whose token expires then.
fn connected(
    token_expires_in: Option<Duration>,
) -> (Conn<tokio::io::DuplexStream>, tokio::task::JoinHandle<()>) {
    let metrics = MqttMetrics::register(&prometheus::Registry::new()).unwrap();
    let broker = Arc::new(Broker::new(
        SharedSnapshot::new(),
        metrics,
        Limits::default(),
    ));
    let (client, server) = tokio::io::duplex(64 * 1024);
    let server = Framed::new(server, Codec::new(Version::V5, 1 << 20));
    let limits = NamespaceLimits::of(&Snapshot::default());
    let task = tokio::spawn(async move {
        let connect = connect();
        let attached = attach(&broker, &connect, "c1", limits, Default::default()).unwrap();
        let authenticated = match token_expires_in {
            Some(expires_in) => Authenticated {
                authentication_name: "c1".into(),
                method: Method::Jwt,
                authentication_method: Some(METHOD.into()),
                token_expiry: Some(TokenExpiry {
                    expires_at: 0,
                    remaining: expires_in,
                }),
            },
            None => development("c1"),
        };
        let Accepted {
            mut connection,
            connack,
        } = establish(
            server,
            broker,
            connect,
            authenticated,
            Transport::Plaintext,
            attached,
            limits,
        );
        let end = connection.run(connack).await;
        connection.finish(end).await;
    });
    (Framed::new(client, Codec::new(Version::V5, 1 << 20)), task)
}

fn auth(code: u8, method: &str) -> Packet {
    Packet::Auth {
        reason: code,
        method: Some(method.into()),
        data: Some(bytes::Bytes::from_static(b"not.a.token")),
    }
}

async fn disconnect_reason(client: &mut Conn<tokio::io::DuplexStream>) -> Option<u8> {
    loop {
        match client.next().await {
            Some(Ok(Packet::Disconnect(d))) => return Some(d.reason),
            Some(Ok(_)) => continue,
            _ => return None,
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_jwt_session_ends_with_maximum_connect_time_when_its_token_expires() {
    let (mut client, task) = connected(Some(Duration::from_secs(30)));
    assert!(matches!(client.next().await, Some(Ok(Packet::ConnAck(a))) if a.reason == 0));
    let start = Instant::now();
    assert_eq!(
        disconnect_reason(&mut client).await,
        Some(reason::MAXIMUM_CONNECT_TIME)
    );
    assert_eq!(start.elapsed().as_secs(), 30);
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn pings_do_not_keep_a_session_past_its_token() {
    let (mut client, _task) = connected(Some(Duration::from_secs(30)));
    client.next().await.unwrap().unwrap();
    let start = Instant::now();
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_secs(10)).await;
        client.send(Packet::PingReq).await.unwrap();
        assert!(matches!(client.next().await, Some(Ok(Packet::PingResp))));
    }
    assert_eq!(
        disconnect_reason(&mut client).await,
        Some(reason::MAXIMUM_CONNECT_TIME)
    );
    assert_eq!(start.elapsed().as_secs(), 30);
}

#[tokio::test(start_paused = true)]
async fn a_failed_re_authentication_ends_the_session_with_not_authorized() {
    let (mut client, task) = connected(Some(Duration::from_secs(600)));
    client.next().await.unwrap().unwrap();
    client
        .send(auth(reason::RE_AUTHENTICATE, METHOD))
        .await
        .unwrap();
    assert_eq!(
        disconnect_reason(&mut client).await,
        Some(reason::NOT_AUTHORIZED)
    );
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn auth_without_a_method_at_connect_another_method_or_reason_is_a_protocol_error() {
    let cases = [
        (None, auth(reason::RE_AUTHENTICATE, METHOD)),
        (
            Some(Duration::from_secs(600)),
            auth(reason::RE_AUTHENTICATE, "CUSTOM-JWT"),
        ),
        // 0x18: continue authentication, a step of a method we do not run.
        (Some(Duration::from_secs(600)), auth(0x18, METHOD)),
    ];
    for (token, packet) in cases {
        let (mut client, task) = connected(token);
        client.next().await.unwrap().unwrap();
        client.send(packet).await.unwrap();
        assert_eq!(
            disconnect_reason(&mut client).await,
            Some(reason::PROTOCOL_ERROR)
        );
        task.await.unwrap();
    }
}
