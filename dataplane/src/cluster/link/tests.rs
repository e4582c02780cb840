//! Links between pods in one process, on 127.0.0.1, with material from `ensure_local`, driven
//! by hand-made member sets.

use super::frame::{Frame, Goodbye, GoodbyeReason, Hello};
use super::handshake::{read_frame, write_frame};
use super::metrics::Failure;
use super::tls::CA_FILE;
use super::*;
use crate::cluster::members::{Member, MemberSet};
use crate::cluster::timing::ClusterTiming;
use crate::pod::PodIdentity;
use crate::shutdown::Stopper;
use bytes::{Bytes, BytesMut};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

const NAMESPACE: &str = "default/orders";
const ECHO: ServiceId = ServiceId(1);
/// Generous: the machine running the tests may be loaded.
const WAIT: Duration = Duration::from_secs(30);

/// One pod's links, the channels that drive it and what its echo service received.
struct Pod {
    name: &'static str,
    links: PeerLinks,
    addr: SocketAddr,
    members: watch::Sender<Arc<MemberSet>>,
    timing: watch::Sender<ClusterTiming>,
    stopper: Stopper,
    registry: prometheus::Registry,
    /// Messages the echo service received, with their sender.
    messages: mpsc::UnboundedReceiver<(Arc<str>, Bytes)>,
    /// Requests the echo service holds unanswered (body `hold`).
    held: mpsc::UnboundedReceiver<Reply>,
}

struct Bound {
    name: &'static str,
    links: BoundLinks,
    inbound: mpsc::Receiver<Inbound>,
    registry: prometheus::Registry,
}

async fn bind(name: &'static str, tls: &LinkTls) -> Bound {
    let registry = prometheus::Registry::new();
    let options = LinkOptions::new(
        PodIdentity::new(name).unwrap(),
        NAMESPACE,
        tls.clone(),
        &registry,
    );
    let mut builder = PeerLinks::builder(options);
    let inbound = builder.service(ECHO);
    let links = builder.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    Bound {
        name,
        links,
        inbound,
        registry,
    }
}

fn member(name: &str, addr: SocketAddr) -> Member {
    Member {
        pod: PodIdentity::new(name).unwrap(),
        peer_addr: addr.to_string(),
    }
}

fn set_of(this: &str, all: &[(&str, SocketAddr)]) -> Arc<MemberSet> {
    let this = all.iter().find(|(name, _)| *name == this).unwrap();
    Arc::new(MemberSet::new(
        member(this.0, this.1),
        all.iter().map(|(name, addr)| member(name, *addr)),
    ))
}

/// Start `bound` as one of `all`, with an echo service: a request is answered with its body,
/// `fail` with error 7, `drop` by dropping the Reply, `hold` by keeping it.
fn start(bound: Bound, all: &[(&str, SocketAddr)], timing: ClusterTiming) -> Pod {
    let (members, members_watch) = watch::channel(set_of(bound.name, all));
    let (timing, timing_watch) = watch::channel(timing);
    let (stopper, stop) = Stopper::new();
    let addr = bound.links.local_addr();
    let links = bound.links.start(members_watch, timing_watch, stop);
    let (messages_in, messages) = mpsc::unbounded_channel();
    let (held_in, held) = mpsc::unbounded_channel();
    let mut inbound = bound.inbound;
    tokio::spawn(async move {
        while let Some(frame) = inbound.recv().await {
            match frame {
                Inbound::Request { body, reply, .. } => match &body[..] {
                    b"fail" => reply.error(7, "asked to fail"),
                    b"drop" => drop(reply),
                    b"hold" => {
                        let _ = held_in.send(reply);
                    }
                    _ => reply.ok(body),
                },
                Inbound::Message { from, body } => {
                    let _ = messages_in.send((from, body));
                }
            }
        }
    });
    Pod {
        name: bound.name,
        links,
        addr,
        members,
        timing,
        stopper,
        registry: bound.registry,
        messages,
        held,
    }
}

/// Pods named `names`, each with all of them as members, default timing.
async fn cluster(names: &[&'static str], tls: &LinkTls) -> Vec<Pod> {
    cluster_with(names, tls, ClusterTiming::default()).await
}

async fn cluster_with(names: &[&'static str], tls: &LinkTls, timing: ClusterTiming) -> Vec<Pod> {
    let mut bound = Vec::new();
    for name in names {
        bound.push(bind(name, tls).await);
    }
    let all: Vec<(&str, SocketAddr)> = bound
        .iter()
        .map(|b| (b.name, b.links.local_addr()))
        .collect();
    bound.into_iter().map(|b| start(b, &all, timing)).collect()
}

async fn wait_connected(pod: &Pod, peers: &[&str]) {
    let wanted: BTreeSet<Arc<str>> = peers.iter().map(|p| Arc::from(*p)).collect();
    let mut connected = pod.links.connected();
    tokio::time::timeout(WAIT, connected.wait_for(|now| **now == wanted))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{} connected to {:?}, not {wanted:?}",
                pod.name,
                *pod.links.connected().borrow()
            )
        })
        .unwrap();
}

fn local_tls() -> (tempfile::TempDir, LinkTls) {
    let dir = tempfile::tempdir().unwrap();
    let tls = LinkTls::ensure_local(dir.path()).unwrap();
    (dir, tls)
}

fn failures(pod: &Pod, failure: Failure) -> u64 {
    pod.registry
        .gather()
        .iter()
        .filter(|family| family.name() == "gridline_peer_link_failures_total")
        .flat_map(|family| family.get_metric())
        .filter(|metric| {
            metric
                .get_label()
                .iter()
                .any(|l| l.value() == failure.label())
        })
        .map(|metric| metric.get_counter().get_value() as u64)
        .sum()
}

#[tokio::test]
async fn three_pods_link_each_pair_and_answer_requests_both_ways() {
    let (_dir, tls) = local_tls();
    let pods = cluster(&["pod-0", "pod-1", "pod-2"], &tls).await;
    for pod in &pods {
        let others: Vec<&str> = pods
            .iter()
            .map(|p| p.name)
            .filter(|n| *n != pod.name)
            .collect();
        wait_connected(pod, &others).await;
    }
    for from in &pods {
        for to in pods.iter().filter(|p| p.name != from.name) {
            let body = Bytes::from(format!("{} to {}", from.name, to.name));
            let answer = from
                .links
                .request(to.name, ECHO, body.clone(), WAIT)
                .await
                .unwrap();
            assert_eq!(answer, body);
        }
    }
}

#[tokio::test]
async fn errors_say_who_answered_what_or_why_nobody_did() {
    let (_dir, tls) = local_tls();
    let pods = cluster(&["pod-0", "pod-1"], &tls).await;
    wait_connected(&pods[0], &["pod-1"]).await;
    let links = &pods[0].links;
    let request =
        |body: &'static str, service| links.request("pod-1", service, Bytes::from(body), WAIT);
    assert!(matches!(
        request("fail", ECHO).await,
        Err(PeerError::Remote { code: 7, ref message, .. }) if message == "asked to fail"
    ));
    assert!(matches!(
        request("drop", ECHO).await,
        Err(PeerError::Remote {
            code: UNANSWERED,
            ..
        })
    ));
    assert!(matches!(
        request("x", ServiceId(99)).await,
        Err(PeerError::Remote {
            code: NO_SERVICE,
            ..
        })
    ));
    assert!(matches!(
        links.request("pod-7", ECHO, Bytes::new(), WAIT).await,
        Err(PeerError::NotMember { .. })
    ));
    assert!(matches!(
        links.send("pod-0", ECHO, Bytes::new()).await,
        Err(PeerError::ThisPod { .. })
    ));
    let held = links.request(
        "pod-1",
        ECHO,
        Bytes::from("hold"),
        Duration::from_millis(200),
    );
    assert!(matches!(held.await, Err(PeerError::Timeout { .. })));
}

#[tokio::test]
async fn ten_thousand_messages_and_requests_keep_their_order() {
    let (_dir, tls) = local_tls();
    let mut pods = cluster(&["pod-0", "pod-1"], &tls).await;
    wait_connected(&pods[1], &["pod-0"]).await;
    let sender = pods[1].links.clone();
    let sending = tokio::spawn(async move {
        for n in 0u32..10_000 {
            let body = Bytes::copy_from_slice(&n.to_be_bytes());
            if n % 1000 == 999 {
                // A request between messages is answered after the messages before it
                // reached the service.
                sender.request("pod-0", ECHO, body, WAIT).await.unwrap();
            } else if let Err(PeerError::QueueFull { .. }) =
                sender.try_send("pod-0", ECHO, body.clone())
            {
                sender.send("pod-0", ECHO, body).await.unwrap();
            }
        }
    });
    let receiver = &mut pods[0].messages;
    for n in 0u32..10_000 {
        if n % 1000 == 999 {
            continue;
        }
        let (from, body) = tokio::time::timeout(WAIT, receiver.recv())
            .await
            .expect("the messages arrive")
            .unwrap();
        assert_eq!(&*from, "pod-1");
        assert_eq!(u32::from_be_bytes(body[..].try_into().unwrap()), n);
    }
    sending.await.unwrap();
}

#[tokio::test]
async fn a_request_fails_as_soon_as_its_link_closes() {
    let (_dir, tls) = local_tls();
    let mut pods = cluster(&["pod-0", "pod-1"], &tls).await;
    wait_connected(&pods[0], &["pod-1"]).await;
    let links = pods[0].links.clone();
    let waiting = tokio::spawn(async move {
        links
            .request("pod-1", ECHO, Bytes::from("hold"), Duration::from_secs(300))
            .await
    });
    let _held = pods[1].held.recv().await.unwrap();
    pods[1].stopper.stop();
    let result = tokio::time::timeout(WAIT, waiting)
        .await
        .expect("the request failed long before its timeout")
        .unwrap();
    assert!(
        matches!(result, Err(PeerError::LinkClosed { .. })),
        "{result:?}"
    );
    wait_connected(&pods[0], &[]).await;
    assert!(matches!(
        pods[0]
            .links
            .request("pod-1", ECHO, Bytes::new(), WAIT)
            .await,
        Err(PeerError::LinkDown { .. })
    ));
}

#[tokio::test]
async fn a_restarted_peer_on_a_new_port_is_linked_again() {
    let (_dir, tls) = local_tls();
    let mut pods = cluster(&["pod-0", "pod-1"], &tls).await;
    wait_connected(&pods[0], &["pod-1"]).await;
    let old = pods.pop().unwrap();
    old.stopper.stop();
    wait_connected(&pods[0], &[]).await;
    let restarted = bind("pod-1", &tls).await;
    let all = [
        ("pod-0", pods[0].addr),
        ("pod-1", restarted.links.local_addr()),
    ];
    assert_ne!(all[1].1, old.addr);
    let restarted = start(restarted, &all, ClusterTiming::default());
    pods[0].members.send_replace(set_of("pod-0", &all));
    wait_connected(&pods[0], &["pod-1"]).await;
    wait_connected(&restarted, &["pod-0"]).await;
    let answer = pods[0]
        .links
        .request("pod-1", ECHO, Bytes::from("again"), WAIT)
        .await
        .unwrap();
    assert_eq!(answer, "again");
}

#[tokio::test]
async fn a_peer_leaving_the_member_set_is_disconnected_and_linked_when_back() {
    let (_dir, tls) = local_tls();
    let pods = cluster(&["pod-0", "pod-1", "pod-2"], &tls).await;
    wait_connected(&pods[1], &["pod-0", "pod-2"]).await;
    let all = [
        ("pod-0", pods[0].addr),
        ("pod-1", pods[1].addr),
        ("pod-2", pods[2].addr),
    ];
    // pod-1 dials pod-2 and accepts pod-0: both roles lose their link.
    pods[1].members.send_replace(set_of("pod-1", &all[1..2]));
    wait_connected(&pods[1], &[]).await;
    wait_connected(&pods[0], &["pod-2"]).await;
    wait_connected(&pods[2], &["pod-0"]).await;
    pods[1].members.send_replace(set_of("pod-1", &all));
    wait_connected(&pods[1], &["pod-0", "pod-2"]).await;
}

/// A TLS client configuration trusting `ca_pem`, presenting `leaf` if given.
fn client_config(ca_pem: &[u8], leaf: Option<(&[u8], &[u8])>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(certificate.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match leaf {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert)
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_slice(key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![tls::ALPN.to_vec()];
    Arc::new(config)
}

/// Whether the server closed the connection on the client: reading ends in an error or EOF
/// (after a TLS alert, perhaps) within the wait.
async fn refused<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> bool {
    use tokio::io::AsyncReadExt;
    let mut bytes = [0u8; 256];
    let until_closed = async {
        loop {
            match stream.read(&mut bytes).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(WAIT, until_closed).await.is_ok()
}

#[tokio::test]
async fn connections_without_the_namespace_certificate_are_refused_and_links_stay_up() {
    let (dir, tls) = local_tls();
    let pods = cluster(&["pod-0", "pod-1"], &tls).await;
    wait_connected(&pods[1], &["pod-0"]).await;
    let target = pods[1].addr;
    let ca = std::fs::read(dir.path().join("peer-tls").join(CA_FILE)).unwrap();

    let mut plain = TcpStream::connect(target).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut plain, b"GET / HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    assert!(refused(&mut plain).await, "plain TCP");

    let connector = tokio_rustls::TlsConnector::from(client_config(&ca, None));
    let socket = TcpStream::connect(target).await.unwrap();
    if let Ok(mut stream) = connector.connect(LinkTls::server_name(), socket).await {
        assert!(refused(&mut stream).await, "no client certificate");
    }

    let other = issue_peer_material("default/orders", Duration::from_secs(3600)).unwrap();
    let config = client_config(
        &ca,
        Some((other.cert_pem.as_bytes(), other.key_pem.as_bytes())),
    );
    let socket = TcpStream::connect(target).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(config);
    if let Ok(mut stream) = connector.connect(LinkTls::server_name(), socket).await {
        assert!(refused(&mut stream).await, "a certificate of another CA");
    }

    tokio::time::timeout(WAIT, async {
        while failures(&pods[1], Failure::Tls) < 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("three TLS failures counted");
    assert_eq!(pods[1].links.connected().borrow().len(), 1);
    let answer = pods[0]
        .links
        .request("pod-1", ECHO, Bytes::from("still"), WAIT)
        .await
        .unwrap();
    assert_eq!(answer, "still");
}

/// A TLS connection to `addr` with the Namespace's own material, as a pod would make it.
async fn raw_link(addr: SocketAddr, tls: &LinkTls) -> tokio_rustls::client::TlsStream<TcpStream> {
    let socket = TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(tls.client_config())
        .connect(LinkTls::server_name(), socket)
        .await
        .unwrap()
}

fn hello(pod: &str, versions: std::ops::RangeInclusive<u16>) -> Frame {
    Frame::Hello(Hello {
        min_version: *versions.start(),
        max_version: *versions.end(),
        owner: PodIdentity::new(pod).unwrap().owner(),
        pod: pod.into(),
        namespace: NAMESPACE.into(),
    })
}

#[tokio::test]
async fn a_hello_with_no_common_version_gets_a_goodbye_naming_the_versions() {
    let (_dir, tls) = local_tls();
    let pods = cluster(&["pod-0", "pod-1"], &tls).await;
    let mut stream = raw_link(pods[1].addr, &tls).await;
    write_frame(&mut stream, &hello("pod-0", 2..=3))
        .await
        .unwrap();
    let answer = read_frame(&mut stream, &mut BytesMut::new()).await.unwrap();
    let Frame::Goodbye(Goodbye { reason, message }) = answer else {
        panic!("{answer:?}")
    };
    assert_eq!(reason, GoodbyeReason::Version);
    assert!(
        message.contains("1..=1") && message.contains("2..=3"),
        "{message}"
    );
    assert!(failures(&pods[1], Failure::Version) >= 1);
}

#[tokio::test]
async fn a_silent_peer_is_dropped_after_the_peer_timeout() {
    let (_dir, tls) = local_tls();
    // "pod-0" is a hand-driven client: pod-1 accepts it (lower name) and never dials it.
    let bound = bind("pod-1", &tls).await;
    let silent_addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let all = [("pod-0", silent_addr), ("pod-1", bound.links.local_addr())];
    let pod = start(bound, &all, ClusterTiming::default());
    let mut stream = raw_link(pod.addr, &tls).await;
    write_frame(&mut stream, &hello("pod-0", 1..=1))
        .await
        .unwrap();
    let answer = read_frame(&mut stream, &mut BytesMut::new()).await.unwrap();
    assert!(matches!(answer, Frame::Hello(_)), "{answer:?}");
    wait_connected(&pod, &["pod-0"]).await;
    // The Namespace retunes the timeout; the link already up follows it.
    pod.timing.send_replace(ClusterTiming {
        member_lease: Duration::from_secs(15),
        peer_timeout: Duration::from_secs(1),
    });
    // Reads nothing, answers nothing: pod-1's pings go unanswered.
    wait_connected(&pod, &[]).await;
    assert!(failures(&pod, Failure::Timeout) >= 1);
}

#[tokio::test]
async fn a_hello_from_a_pod_that_should_accept_is_refused() {
    let (_dir, tls) = local_tls();
    let pods = cluster(&["pod-0", "pod-1"], &tls).await;
    let mut stream = raw_link(pods[0].addr, &tls).await;
    write_frame(&mut stream, &hello("pod-1", 1..=1))
        .await
        .unwrap();
    let answer = read_frame(&mut stream, &mut BytesMut::new()).await.unwrap();
    assert!(
        matches!(
            answer,
            Frame::Goodbye(Goodbye {
                reason: GoodbyeReason::Refused,
                ..
            })
        ),
        "{answer:?}"
    );
    assert!(failures(&pods[0], Failure::Refused) >= 1);
}

#[tokio::test]
async fn a_stopped_pod_says_goodbye_to_its_peers_and_its_links_end() {
    let (_dir, tls) = local_tls();
    let pods = cluster(&["pod-0", "pod-1"], &tls).await;
    wait_connected(&pods[1], &["pod-0"]).await;
    // pod-0 dials; pod-1 only accepts, so it makes no connection attempt of its own that
    // could fail once pod-0 is gone.
    pods[0].stopper.stop();
    tokio::time::timeout(WAIT, pods[0].links.closed())
        .await
        .expect("every task of the stopped pod's links ended");
    wait_connected(&pods[1], &[]).await;
    assert_eq!(
        failures(&pods[1], Failure::Io),
        0,
        "pod-1 learnt of the stop from a Goodbye, not from a broken connection"
    );
}
