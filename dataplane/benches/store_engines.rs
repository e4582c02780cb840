//! Which engine should hold the event log? Append-with-fsync throughput of 1 KiB events at
//! batch sizes 1 and 100, with 1 and 16 concurrent publishers, for:
//! - `gridline`: the store's own segment files with group commit (`EventStore::publish`, fsync
//!   policy `Always`);
//! - `segment-file`: the same file format without group commit (a mutex, write, fdatasync per
//!   publish): what group commit buys;
//! - `redb`: one write transaction per publish, `Durability::Immediate`;
//! - `fjall`: one write batch per publish, persisted with `PersistMode::SyncData`.
//!
//! `cargo bench -p gridline-dataplane --bench store_engines`. Each case runs for
//! `STORE_BENCH_SECONDS` (default 1) in a fresh directory under `STORE_BENCH_DIR` (default the
//! system temporary directory: put it on the disk you care about).

use gridline_crds::model::filter::CompiledFilter;
use gridline_crds::model::{
    CompiledSubscription, CompiledTopic, Delivery, QueueDelivery, Snapshot,
};
use gridline_dataplane::metrics::Metrics;
use gridline_dataplane::store::{EventStore, PublishedEvent, StoreOptions};
use parking_lot::Mutex;
use serde_json::value::RawValue;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const EVENT_BYTES: usize = 1024;

fn event_json(n: u64) -> String {
    let head = format!(
        r#"{{"specversion":"1.0","id":"{n}","source":"/bench","type":"bench.event","data":""#
    );
    let padding = "x".repeat(EVENT_BYTES - head.len() - 2);
    format!("{head}{padding}\"}}")
}

/// Results of one case: publishes completed and their latencies.
struct Outcome {
    events: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Outcome {
    fn print(&mut self, engine: &str, batch: usize, publishers: usize) {
        self.latencies.sort_unstable();
        let at = |q: f64| {
            let index = ((self.latencies.len() as f64 * q) as usize).min(self.latencies.len() - 1);
            self.latencies[index].as_secs_f64() * 1000.0
        };
        println!(
            "{engine:<13} batch {batch:>3}  publishers {publishers:>2}  {:>9.0} events/s  {:>7} publishes  p50 {:>6.2} ms  p99 {:>6.2} ms",
            self.events as f64 / self.elapsed.as_secs_f64(),
            self.latencies.len(),
            at(0.5),
            at(0.99),
        );
    }
}

/// Run `publish` from `publishers` threads for `duration`.
fn run_threads(
    publishers: usize,
    batch: usize,
    duration: Duration,
    publish: impl Fn(&[String]) + Sync,
) -> Outcome {
    let counter = AtomicU64::new(0);
    let started = Instant::now();
    let latencies = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..publishers {
            scope.spawn(|| {
                let mut mine = Vec::new();
                while started.elapsed() < duration {
                    let first = counter.fetch_add(batch as u64, Ordering::Relaxed);
                    let events: Vec<String> =
                        (first..first + batch as u64).map(event_json).collect();
                    let begun = Instant::now();
                    publish(&events);
                    mine.push(begun.elapsed());
                }
                latencies.lock().extend(mine);
            });
        }
    });
    let latencies = latencies.into_inner();
    Outcome {
        events: latencies.len() as u64 * batch as u64,
        elapsed: started.elapsed(),
        latencies,
    }
}

fn segment_file(dir: &Path, publishers: usize, batch: usize, duration: Duration) -> Outcome {
    let file = Mutex::new(File::create(dir.join("segment.log")).expect("create"));
    run_threads(publishers, batch, duration, |events| {
        let mut buffer = Vec::with_capacity(events.len() * (EVENT_BYTES + 32));
        for event in events {
            // The store's record framing: length, CRC, body.
            let crc = crc32fast::hash(event.as_bytes());
            buffer.extend_from_slice(&(event.len() as u32).to_le_bytes());
            buffer.extend_from_slice(&crc.to_le_bytes());
            buffer.extend_from_slice(event.as_bytes());
        }
        let mut file = file.lock();
        file.write_all(&buffer).expect("write");
        file.sync_data().expect("fsync");
    })
}

fn redb(dir: &Path, publishers: usize, batch: usize, duration: Duration) -> Outcome {
    const EVENTS: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("events");
    let database = redb::Database::create(dir.join("events.redb")).expect("create");
    let sequence = AtomicU64::new(0);
    run_threads(publishers, batch, duration, |events| {
        let transaction = database.begin_write().expect("begin");
        {
            let mut table = transaction.open_table(EVENTS).expect("table");
            for event in events {
                let key = sequence.fetch_add(1, Ordering::Relaxed);
                table.insert(key, event.as_bytes()).expect("insert");
            }
        }
        // Durability::Immediate is the default: commit returns after fsync.
        transaction.commit().expect("commit");
    })
}

fn fjall(dir: &Path, publishers: usize, batch: usize, duration: Duration) -> Outcome {
    let database = fjall::Database::builder(dir.join("fjall"))
        .open()
        .expect("open");
    let keyspace = database
        .keyspace("events", fjall::KeyspaceCreateOptions::default)
        .expect("keyspace");
    let sequence = AtomicU64::new(0);
    run_threads(publishers, batch, duration, |events| {
        let mut write = database
            .batch()
            .durability(Some(fjall::PersistMode::SyncData));
        for event in events {
            let key = sequence.fetch_add(1, Ordering::Relaxed).to_be_bytes();
            write.insert(&keyspace, key, event.as_bytes());
        }
        write.commit().expect("commit");
    })
}

fn snapshot() -> Arc<Snapshot> {
    let mut snapshot = Snapshot::default();
    snapshot.topics.insert(
        "bench".into(),
        CompiledTopic {
            name: "bench".into(),
            event_retention: Duration::from_secs(86400),
        },
    );
    snapshot.subscriptions.insert(
        ("bench".into(), "all".into()),
        CompiledSubscription {
            name: "all".into(),
            topic: "bench".into(),
            delivery: Delivery::Queue(QueueDelivery {
                receive_lock_duration: Duration::from_secs(60),
                max_delivery_count: 10,
                event_time_to_live: Duration::from_secs(86400),
                dead_letter_topic: None,
            }),
            filter: CompiledFilter::accept_all(),
            expiration_time: None,
        },
    );
    Arc::new(snapshot)
}

fn gridline(dir: &Path, publishers: usize, batch: usize, duration: Duration) -> Outcome {
    // Two workers: the performance targets are for two cores.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store = EventStore::open(StoreOptions {
            data_dir: dir.to_path_buf(),
            metrics: Arc::new(Metrics::new().expect("metrics")),
        })
        .await
        .expect("open");
        store.apply_snapshot(snapshot());
        let counter = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let tasks: Vec<_> = (0..publishers)
            .map(|_| {
                let store = store.clone();
                let counter = Arc::clone(&counter);
                tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    while started.elapsed() < duration {
                        let first = counter.fetch_add(batch as u64, Ordering::Relaxed);
                        let events: Vec<PublishedEvent> = (first..first + batch as u64)
                            .map(|n| {
                                // The HTTP layer parses each event once; the subscription's
                                // filter accepts all, so only the stored bytes matter here.
                                PublishedEvent {
                                    attributes: serde_json::Value::Null,
                                    json: RawValue::from_string(event_json(n)).expect("json"),
                                }
                            })
                            .collect();
                        let begun = Instant::now();
                        store.publish("bench", events).await.expect("publish");
                        latencies.push(begun.elapsed());
                    }
                    latencies
                })
            })
            .collect();
        let mut latencies = Vec::new();
        for task in tasks {
            latencies.extend(task.await.expect("publisher"));
        }
        let elapsed = started.elapsed();
        store.close().await;
        Outcome {
            events: latencies.len() as u64 * batch as u64,
            elapsed,
            latencies,
        }
    })
}

/// Receive + acknowledge in batches of 100 from `consumers` concurrent consumers of one queue
/// subscription, over a log filled beforehand.
fn gridline_queue(dir: &Path, consumers: usize, duration: Duration) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store = EventStore::open(StoreOptions {
            data_dir: dir.to_path_buf(),
            metrics: Arc::new(Metrics::new().expect("metrics")),
        })
        .await
        .expect("open");
        store.apply_snapshot(snapshot());
        const FILL: u64 = 300_000;
        let fillers: Vec<_> = (0..16u64)
            .map(|filler| {
                let store = store.clone();
                tokio::spawn(async move {
                    for first in (filler * 100..FILL).step_by(1600) {
                        let events = (first..first + 100)
                            .map(|n| PublishedEvent {
                                attributes: serde_json::Value::Null,
                                json: RawValue::from_string(event_json(n)).expect("json"),
                            })
                            .collect();
                        store.publish("bench", events).await.expect("publish");
                    }
                })
            })
            .collect();
        for filler in fillers {
            filler.await.expect("filler");
        }
        let started = Instant::now();
        let tasks: Vec<_> = (0..consumers)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut settled = 0u64;
                    let mut latencies = Vec::new();
                    while started.elapsed() < duration {
                        let begun = Instant::now();
                        let received = store
                            .receive("bench", "all", 100, Duration::ZERO)
                            .await
                            .expect("receive");
                        if received.is_empty() {
                            break;
                        }
                        let tokens: Vec<String> =
                            received.into_iter().map(|r| r.lock_token).collect();
                        let outcome = store
                            .settle(
                                "bench",
                                "all",
                                gridline_dataplane::store::Settle::Acknowledge,
                                &tokens,
                            )
                            .await
                            .expect("acknowledge");
                        settled += outcome.succeeded.len() as u64;
                        latencies.push(begun.elapsed());
                    }
                    (settled, latencies)
                })
            })
            .collect();
        let mut settled = 0;
        let mut latencies = Vec::new();
        for task in tasks {
            let (count, mine) = task.await.expect("consumer");
            settled += count;
            latencies.extend(mine);
        }
        let mut outcome = Outcome {
            events: settled,
            elapsed: started.elapsed(),
            latencies,
        };
        store.close().await;
        outcome.print("gridline r+a", 100, consumers);
    });
}

type Case = fn(&Path, usize, usize, Duration) -> Outcome;

fn main() {
    let seconds: f64 = std::env::var("STORE_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let duration = Duration::from_secs_f64(seconds);
    let base: PathBuf = std::env::var_os("STORE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let engines: [(&str, Case); 4] = [
        ("gridline", gridline),
        ("segment-file", segment_file),
        ("redb", redb),
        ("fjall", fjall),
    ];
    println!(
        "append-with-fsync, {EVENT_BYTES}-byte events, {seconds} s per case, in {}",
        base.display()
    );
    for (batch, publishers) in [(1, 1), (1, 16), (100, 1), (100, 16)] {
        for (name, case) in engines {
            let dir = tempfile::tempdir_in(&base).expect("temporary directory");
            case(dir.path(), publishers, batch, duration).print(name, batch, publishers);
        }
        println!();
    }
    println!("receive + acknowledge (latency: one receive plus its acknowledge)");
    for consumers in [1, 4] {
        let dir = tempfile::tempdir_in(&base).expect("temporary directory");
        gridline_queue(dir.path(), consumers, duration);
    }
}
