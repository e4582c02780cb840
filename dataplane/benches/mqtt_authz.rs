//! The cost of authorization on the publish path (issue 6): QoS 0 throughput with a large
//! access model against the same load with a single allow-all Publisher binding.
//!
//! Both runs load the same 10,000 Clients (attributes `shard` 0-89 and `floor` 0-9). The
//! *full* run adds 100 ClientGroups (`attributes.shard = k`, k < 90, and `attributes.floor =
//! f`), 100 TopicSpaces of three templates each, two of them with variables, and 200
//! PermissionBindings (each group a Publisher and a Subscriber of its topic space), so every
//! publishing client holds six expanded publisher filters and each message matches only the
//! last one. The *allow-all* run has one TopicSpace `#` and one Publisher binding for `$all`
//! (plus the readers' Subscriber binding, which the publish path never looks at). Publishers
//! are distinct Clients from the 10,000, publishing as fast as TCP lets them; ten readers
//! (Clients of their own) subscribe to one floor's topics each, so every message is
//! delivered once. A single reader of everything would measure how a flood starves one
//! connection on 2 cores (BENCHMARKS.md, 100 → 1), not authorization.
//!
//! `cargo bench -p gridline-dataplane --bench mqtt_authz -- [--publishers N] [--seconds N]
//! [--rounds N]` (defaults: 20 publishers, 8 s per run, 2 rounds of full then allow-all).
//! Prints, per run, messages/s accepted from the publishers (written into their sockets:
//! with TCP back-pressure, the rate the broker reads, authorizes and routes) and delivered to
//! the readers, and the full/allow-all ratios of the means.

mod support;

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::Dataplane;
use tokio::io::AsyncWriteExt;

const CLIENTS: usize = 10_000;
const SHARDS: usize = 90;
const FLOORS: usize = 10;
const PAYLOAD: &[u8] = &[b'x'; 100];
/// Publishes per socket write.
const BATCH: usize = 64;

struct Options {
    publishers: usize,
    seconds: u64,
    rounds: usize,
}

fn options() -> Options {
    let mut options = Options {
        publishers: 20,
        seconds: 8,
        rounds: 2,
    };
    let mut args = support::Args::from_env();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--publishers" => options.publishers = args.number("--publishers"),
            "--seconds" => options.seconds = args.number("--seconds"),
            "--rounds" => options.rounds = args.number("--rounds"),
            other => panic!("unknown option {other}"),
        }
    }
    options
}

fn client_name(n: usize) -> String {
    format!("c-{n:05}")
}

/// The topic client `n` publishes to: its floor topic space's last template, so the check
/// scans every filter the client holds before it matches.
fn topic_of(n: usize) -> String {
    format!("bench/{}/{}", SHARDS + n % FLOORS, client_name(n))
}

const NAMESPACE: &str = "apiVersion: gridline.dev/v1alpha1
kind: Namespace
metadata: {name: bench}
spec:
  topicSpacesConfiguration:
    state: Enabled
    maximumMessagesPerSecondPerConnection: 10000000
  listeners:
    mqttPlaintext: {port: 1883, insecureUsernameAuthentication: true}
    mqttTls: {enabled: false, port: 8883}
    https: {enabled: false, port: 443}
    http: {port: 8080}
";

/// The 10,000 Clients and the readers, one file.
fn clients() -> String {
    let mut yaml = String::new();
    for n in 0..CLIENTS {
        let _ = write!(
            yaml,
            "---\napiVersion: gridline.dev/v1alpha1\nkind: Client\nmetadata: {{name: {}}}\nspec: {{namespaceRef: {{name: bench}}, attributes: {{shard: {}, floor: {}}}}}\n",
            client_name(n),
            n % SHARDS,
            n % FLOORS
        );
    }
    for floor in 0..FLOORS {
        let _ = write!(
            yaml,
            "---\napiVersion: gridline.dev/v1alpha1\nkind: Client\nmetadata: {{name: reader-{floor}}}\nspec: {{namespaceRef: {{name: bench}}, attributes: {{role: reader}}}}\n"
        );
    }
    yaml
}

fn object(kind: &str, name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: gridline.dev/v1alpha1\nkind: {kind}\nmetadata: {{name: {name}}}\nspec: {{namespaceRef: {{name: bench}}, {spec}}}\n"
    )
}

/// 100 groups, 100 topic spaces, 200 bindings, and the reader's access.
fn full_access() -> String {
    let mut yaml = String::new();
    for k in 0..SHARDS + FLOORS {
        let query = if k < SHARDS {
            format!("attributes.shard = {k}")
        } else {
            format!("attributes.floor = {}", k - SHARDS)
        };
        yaml.push_str(&object(
            "ClientGroup",
            &format!("g-{k:03}"),
            &format!("query: \"{query}\""),
        ));
        yaml.push_str(&object(
            "TopicSpace",
            &format!("ts-{k:03}"),
            &format!(
                "topicTemplates: ['fleet/${{client.attributes.shard}}/${{client.authenticationName}}/#', 'site/{k}/+/status', 'bench/{k}/${{client.authenticationName}}']"
            ),
        ));
        for (permission, prefix) in [("Publisher", "pub"), ("Subscriber", "sub")] {
            yaml.push_str(&object(
                "PermissionBinding",
                &format!("{prefix}-{k:03}"),
                &format!(
                    "clientGroupName: g-{k:03}, topicSpaceName: ts-{k:03}, permission: {permission}"
                ),
            ));
        }
    }
    yaml + &reader_access()
}

/// The reader's group, topic space and binding (both runs).
fn reader_access() -> String {
    object(
        "ClientGroup",
        "readers",
        "query: \"attributes.role = 'reader'\"",
    ) + &object("TopicSpace", "everything", "topicTemplates: ['bench/#']")
        + &object(
            "PermissionBinding",
            "readers-read",
            "clientGroupName: readers, topicSpaceName: everything, permission: Subscriber",
        )
}

fn allow_all_access() -> String {
    object("TopicSpace", "all", "topicTemplates: ['#']")
        + &object(
            "PermissionBinding",
            "all-publish",
            "clientGroupName: $all, topicSpaceName: all, permission: Publisher",
        )
        + &reader_access()
}

struct Figures {
    accepted_per_second: f64,
    delivered_per_second: f64,
    rss_mib: f64,
}

/// Start the data plane on `access`, run the load, stop it.
async fn run(dir: &Path, name: &str, access: &str, options: &Options) -> Figures {
    let manifests = dir.join(name).join("manifests");
    std::fs::create_dir_all(&manifests).expect("manifests dir");
    std::fs::write(manifests.join("namespace.yaml"), NAMESPACE).expect("namespace");
    std::fs::write(manifests.join("clients.yaml"), clients()).expect("clients");
    std::fs::write(manifests.join("access.yaml"), access).expect("access");
    let started = Instant::now();
    let dataplane = Dataplane::start(
        &manifests,
        &dir.join(name).join("data"),
        Duration::from_secs(60),
    );
    println!(
        "{name}: serving after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let mut readers = Vec::new();
    for floor in 0..FLOORS {
        let name = format!("reader-{floor}");
        let filter = format!("bench/{}/#", SHARDS + floor);
        readers.push(
            support::session(dataplane.mqtt, &name, &name, Some((&filter, 0)))
                .await
                .expect("reader session"),
        );
    }
    let mut publishers = Vec::new();
    for p in 0..options.publishers {
        // A prime stride coprime with 10,000: distinct Clients, spread over the floors.
        let n = (p * 7919) % CLIENTS;
        let stream = support::session(dataplane.mqtt, &client_name(n), &client_name(n), None)
            .await
            .expect("publisher session");
        publishers.push((stream, topic_of(n)));
    }

    let accepted = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let until = Instant::now() + Duration::from_secs(options.seconds);
    let counting: Vec<_> = readers
        .into_iter()
        .map(|reader| tokio::spawn(support::count_publishes(reader, until)))
        .collect();
    let started = Instant::now();
    let tasks: Vec<_> = publishers
        .into_iter()
        .map(|(mut stream, topic)| {
            let (accepted, stop) = (accepted.clone(), stop.clone());
            tokio::spawn(async move {
                let mut out = Vec::with_capacity(BATCH * 128);
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..BATCH {
                        support::publish_qos0(&mut out, &topic, PAYLOAD);
                    }
                    if stream.write_all(&out).await.is_err() {
                        return;
                    }
                    out.clear();
                    accepted.fetch_add(BATCH as u64, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let mut delivered = 0;
    for reader in counting {
        delivered += reader.await.expect("reader task");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rss_mib = dataplane.rss_mib();
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.abort();
    }
    Figures {
        // Written into the sockets; TCP back-pressure keeps it close to what the broker read.
        accepted_per_second: accepted.load(Ordering::Relaxed) as f64 / elapsed,
        delivered_per_second: delivered as f64 / elapsed,
        rss_mib,
    }
}

fn main() {
    let options = options();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    println!(
        "{CLIENTS} Clients; {} publishers (QoS 0, {} B payloads), {FLOORS} readers; {} s per run",
        options.publishers,
        PAYLOAD.len(),
        options.seconds
    );
    let mut full = Vec::new();
    let mut allow_all = Vec::new();
    for round in 1..=options.rounds {
        for (name, access, figures) in [
            ("full", full_access(), &mut full),
            ("allow-all", allow_all_access(), &mut allow_all),
        ] {
            let run_name = format!("{name}-{round}");
            let result = runtime.block_on(run(dir.path(), &run_name, &access, &options));
            println!(
                "{run_name:<12} accepted {:>10.0} msg/s  delivered {:>10.0} msg/s  RSS {:>6.1} MiB",
                result.accepted_per_second, result.delivered_per_second, result.rss_mib
            );
            figures.push(result);
        }
    }
    let mean = |runs: &[Figures], f: fn(&Figures) -> f64| {
        runs.iter().map(f).sum::<f64>() / runs.len().max(1) as f64
    };
    for (name, runs) in [
        ("full (100 groups, 100 spaces, 200 bindings)", &full),
        ("allow-all (1 Publisher binding)", &allow_all),
    ] {
        println!(
            "mean {name:<45} accepted {:>10.0} msg/s  delivered {:>10.0} msg/s",
            mean(runs, |f| f.accepted_per_second),
            mean(runs, |f| f.delivered_per_second)
        );
    }
    println!(
        "full / allow-all: accepted {:.3}, delivered {:.3} (target: delivered >= 0.8)",
        mean(&full, |f| f.accepted_per_second) / mean(&allow_all, |f| f.accepted_per_second),
        mean(&full, |f| f.delivered_per_second) / mean(&allow_all, |f| f.delivered_per_second)
    );
}
