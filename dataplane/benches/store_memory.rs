//! Memory with many events stored: publish `STORE_MEMORY_EVENTS` (default 1,000,000) events of
//! `STORE_MEMORY_EVENT_BYTES` (default 256) bytes, receive and acknowledge a slice of them,
//! reopen the store (recovery) and receive again, printing the process's resident set size
//! after each step. The store keeps no per-event state, so RSS should not grow with the count.
//!
//! `cargo bench -p gridline-dataplane --bench store_memory`; for the 10-million target:
//! `STORE_MEMORY_EVENTS=10000000 STORE_MEMORY_EVENT_BYTES=1024` (10 GB of disk).

use gridline_crds::model::filter::CompiledFilter;
use gridline_crds::model::{
    CompiledSubscription, CompiledTopic, Delivery, QueueDelivery, Snapshot,
};
use gridline_dataplane::metrics::Metrics;
use gridline_dataplane::store::{EventStore, PublishedEvent, Settle, StoreOptions};
use serde_json::value::RawValue;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn snapshot() -> Arc<Snapshot> {
    let mut snapshot = Snapshot::default();
    snapshot.topics.insert(
        "big".into(),
        CompiledTopic {
            name: "big".into(),
            event_retention: Duration::from_secs(7 * 86400),
        },
    );
    for name in ["first", "second"] {
        snapshot.subscriptions.insert(
            ("big".into(), name.into()),
            CompiledSubscription {
                name: name.into(),
                topic: "big".into(),
                delivery: Delivery::Queue(QueueDelivery {
                    receive_lock_duration: Duration::from_secs(300),
                    max_delivery_count: 10,
                    event_time_to_live: Duration::from_secs(7 * 86400),
                    dead_letter_topic: None,
                }),
                filter: CompiledFilter::accept_all(),
                expiration_time: None,
            },
        );
    }
    Arc::new(snapshot)
}

async fn open(dir: &Path) -> EventStore {
    let store = EventStore::open(StoreOptions {
        data_dir: dir.to_path_buf(),
        metrics: Arc::new(Metrics::new().expect("metrics")),
    })
    .await
    .expect("open");
    store.apply_snapshot(snapshot());
    store
}

async fn drain(store: &EventStore, subscription: &str, batches: usize) -> usize {
    let mut settled = 0;
    for _ in 0..batches {
        let received = store
            .receive("big", subscription, 100, Duration::ZERO)
            .await
            .expect("receive");
        let tokens: Vec<String> = received.into_iter().map(|r| r.lock_token).collect();
        if tokens.is_empty() {
            break;
        }
        let outcome = store
            .settle("big", subscription, Settle::Acknowledge, &tokens)
            .await
            .expect("acknowledge");
        settled += outcome.succeeded.len();
    }
    settled
}

fn main() {
    let events = env_number("STORE_MEMORY_EVENTS", 1_000_000);
    let event_bytes = env_number("STORE_MEMORY_EVENT_BYTES", 256) as usize;
    let base = std::env::var_os("STORE_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(base).expect("temporary directory");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        println!("start: RSS {:.1} MiB", rss_mib());
        let store = open(dir.path()).await;
        let started = Instant::now();
        let publishers: Vec<_> = (0..8u64)
            .map(|publisher| {
                let store = store.clone();
                tokio::spawn(async move {
                    let padding = "x".repeat(event_bytes.saturating_sub(90));
                    for first in (publisher * 100..events).step_by(800) {
                        let batch = (first..(first + 100).min(events))
                            .map(|n| PublishedEvent {
                                attributes: serde_json::Value::Null,
                                json: RawValue::from_string(format!(
                                    r#"{{"specversion":"1.0","id":"{n}","source":"/m","type":"t","data":"{padding}"}}"#
                                ))
                                .expect("json"),
                            })
                            .collect();
                        store.publish("big", batch).await.expect("publish");
                    }
                })
            })
            .collect();
        for publisher in publishers {
            publisher.await.expect("publisher");
        }
        println!(
            "published {events} events of {event_bytes} bytes in {:.1} s: RSS {:.1} MiB",
            started.elapsed().as_secs_f64(),
            rss_mib()
        );
        let settled = drain(&store, "first", 1000).await;
        // Locked and never settled: these stay in flight (the sparse part of the state).
        let held = store
            .receive("big", "second", 100, Duration::ZERO)
            .await
            .expect("receive")
            .len();
        println!(
            "received+acknowledged {settled}, {held} left locked: RSS {:.1} MiB",
            rss_mib()
        );
        store.close().await;
        drop(store);
        let started = Instant::now();
        let store = open(dir.path()).await;
        println!(
            "reopened in {:.2} s: RSS {:.1} MiB",
            started.elapsed().as_secs_f64(),
            rss_mib()
        );
        let settled = drain(&store, "first", 1000).await;
        println!(
            "received+acknowledged {settled} more: RSS {:.1} MiB",
            rss_mib()
        );
        store.close().await;
    });
}
