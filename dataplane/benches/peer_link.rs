//! Peer links (cluster/link/README.md): two pods' `PeerLinks` in one process, linked over
//! TLS on 127.0.0.1 with local-mode material. Prints one-way messages of 100 bytes per second,
//! request round trips per second with 1 and 64 outstanding, and request latency (p50, p99).
//!
//! `cargo bench -p gridline-dataplane --bench peer_link -- [--seconds N]` (each phase runs N
//! seconds, default 3).

use bytes::Bytes;
use gridline_dataplane::cluster::link::{
    Inbound, LinkOptions, LinkTls, PeerError, PeerLinks, ServiceId,
};
use gridline_dataplane::cluster::members::{Member, MemberSet};
use gridline_dataplane::cluster::timing::ClusterTiming;
use gridline_dataplane::pod::PodIdentity;
use gridline_dataplane::shutdown::Stopper;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;

const SERVICE: ServiceId = ServiceId(1);
const PAYLOAD_BYTES: usize = 100;
const TIMEOUT: Duration = Duration::from_secs(30);

fn main() {
    let mut seconds = 3u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--seconds" {
            seconds = args
                .next()
                .and_then(|n| n.parse().ok())
                .expect("--seconds N");
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(Duration::from_secs(seconds)));
}

/// What the receiving pod's service counted.
#[derive(Default)]
struct Received {
    messages: AtomicU64,
}

async fn run(phase: Duration) {
    let dir = tempfile::tempdir().unwrap();
    let tls = LinkTls::ensure_local(dir.path()).unwrap();
    let (_stopper, stop) = Stopper::new();
    let timing = watch::channel(ClusterTiming::default()).1;
    let mut bound = Vec::new();
    let mut services = Vec::new();
    for name in ["pod-0", "pod-1"] {
        let registry = prometheus::Registry::new();
        let options = LinkOptions::new(
            PodIdentity::new(name).unwrap(),
            "bench",
            tls.clone(),
            &registry,
        );
        let mut builder = PeerLinks::builder(options);
        services.push(builder.service(SERVICE));
        bound.push(builder.bind("127.0.0.1:0".parse().unwrap()).await.unwrap());
    }
    let addrs: Vec<SocketAddr> = bound.iter().map(|b| b.local_addr()).collect();
    let member = |name: &str, addr: SocketAddr| Member {
        pod: PodIdentity::new(name).unwrap(),
        peer_addr: addr.to_string(),
    };
    let mut links = Vec::new();
    for (index, bound) in bound.into_iter().enumerate() {
        let names = ["pod-0", "pod-1"];
        let set = MemberSet::new(
            member(names[index], addrs[index]),
            [member(names[1 - index], addrs[1 - index])],
        );
        let members = watch::channel(Arc::new(set)).1;
        links.push(bound.start(members, timing.clone(), stop.clone()));
    }
    let received = Arc::new(Received::default());
    for mut inbound in services {
        let received = received.clone();
        tokio::spawn(async move {
            while let Some(frame) = inbound.recv().await {
                match frame {
                    Inbound::Request { body, reply, .. } => reply.ok(body),
                    Inbound::Message { .. } => {
                        received.messages.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    let sender = links[0].clone();
    let mut connected = sender.connected();
    tokio::time::timeout(TIMEOUT, connected.wait_for(|up| up.contains("pod-1")))
        .await
        .expect("the pods linked")
        .unwrap();

    println!(
        "peer links, two pods in one process, TLS 1.3 on 127.0.0.1, {PAYLOAD_BYTES}-byte bodies, {phase:?} per phase"
    );
    println!(
        "{:<34} {:>14} {:>10} {:>10}",
        "phase", "per second", "p50", "p99"
    );
    let messages = one_way(&sender, &received, phase).await;
    println!(
        "{:<34} {:>14.0} {:>10} {:>10}",
        "one-way messages", messages, "", ""
    );
    for outstanding in [1, 64] {
        let (rate, mut latencies) = round_trips(&sender, outstanding, phase).await;
        latencies.sort_unstable();
        println!(
            "{:<34} {:>14.0} {:>10} {:>10}",
            format!("requests, {outstanding} outstanding"),
            rate,
            micros(percentile(&latencies, 0.50)),
            micros(percentile(&latencies, 0.99)),
        );
    }
}

/// Messages the receiver got per second while one task sent as fast as the queue allowed.
async fn one_way(sender: &PeerLinks, received: &Received, phase: Duration) -> f64 {
    let body = Bytes::from(vec![7u8; PAYLOAD_BYTES]);
    let running = Arc::new(AtomicBool::new(true));
    let sending = tokio::spawn({
        let sender = sender.clone();
        let running = running.clone();
        async move {
            while running.load(Ordering::Relaxed) {
                match sender.try_send("pod-1", SERVICE, body.clone()) {
                    Ok(()) => {}
                    Err(PeerError::QueueFull { .. }) => {
                        sender.send("pod-1", SERVICE, body.clone()).await.unwrap()
                    }
                    Err(error) => panic!("{error}"),
                }
            }
        }
    });
    // Warm up, then measure what arrives.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = received.messages.load(Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(phase).await;
    let count = received.messages.load(Ordering::Relaxed) - before;
    let rate = count as f64 / started.elapsed().as_secs_f64();
    running.store(false, Ordering::Relaxed);
    sending.await.unwrap();
    rate
}

/// Round trips per second with `outstanding` requests always in flight, and each one's
/// latency.
async fn round_trips(
    sender: &PeerLinks,
    outstanding: usize,
    phase: Duration,
) -> (f64, Vec<Duration>) {
    let body = Bytes::from(vec![7u8; PAYLOAD_BYTES]);
    let started = Instant::now();
    let deadline = started + phase;
    let tasks: Vec<_> = (0..outstanding)
        .map(|_| {
            let sender = sender.clone();
            let body = body.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    sender
                        .request("pod-1", SERVICE, body.clone(), TIMEOUT)
                        .await
                        .unwrap();
                    latencies.push(sent.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let rate = latencies.len() as f64 / started.elapsed().as_secs_f64();
    (rate, latencies)
}

fn percentile(sorted: &[Duration], quantile: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * quantile).round() as usize]
}

fn micros(duration: Duration) -> String {
    format!("{} µs", duration.as_micros())
}
