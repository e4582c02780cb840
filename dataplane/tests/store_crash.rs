//! kill -9 in the middle of publishing and acknowledging: after a restart, every event whose
//! publish returned is still there, and no event whose acknowledgement returned comes back.
//! The test re-runs its own binary as the process to kill.

use gridline_crds::model::filter::CompiledFilter;
use gridline_crds::model::{
    CompiledSubscription, CompiledTopic, Delivery, QueueDelivery, Snapshot,
};
use gridline_dataplane::metrics::Metrics;
use gridline_dataplane::store::{EventStore, PublishedEvent, Settle, StoreOptions};
use serde_json::value::RawValue;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

const CHILD: &str = "GRIDLINE_STORE_CRASH_CHILD";
const TEST: &str = "a_kill_9_loses_no_acknowledged_publish_and_forgets_no_acknowledgement";
const LOCK: Duration = Duration::from_secs(1);

fn snapshot() -> Arc<Snapshot> {
    let mut snapshot = Snapshot::default();
    snapshot.topics.insert(
        "orders".into(),
        CompiledTopic {
            name: "orders".into(),
            event_retention: Duration::from_secs(86400),
        },
    );
    snapshot.subscriptions.insert(
        ("orders".into(), "all".into()),
        CompiledSubscription {
            name: "all".into(),
            topic: "orders".into(),
            delivery: Delivery::Queue(QueueDelivery {
                receive_lock_duration: LOCK,
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

async fn open(dir: &Path) -> EventStore {
    let store = EventStore::open(StoreOptions {
        data_dir: dir.to_path_buf(),
        metrics: Arc::new(Metrics::new().unwrap()),
    })
    .await
    .unwrap();
    store.apply_snapshot(snapshot());
    store
}

fn id_of(event: &RawValue) -> u64 {
    let value: serde_json::Value = serde_json::from_str(event.get()).unwrap();
    value["id"].as_str().unwrap().parse().unwrap()
}

/// The process that gets killed: four publishers and one consumer, reporting on stdout what
/// the store confirmed.
async fn child(dir: &Path) {
    let store = open(dir).await;
    // Running until the kill; the handles are never awaited.
    let _publishers: Vec<_> = (0..4u64)
        .map(|publisher| {
            let store = store.clone();
            tokio::spawn(async move {
                for batch in 0.. {
                    let first = (batch * 4 + publisher) * 100;
                    let events = (first..first + 100)
                        .map(|n| PublishedEvent {
                            attributes: serde_json::Value::Null,
                            json: RawValue::from_string(format!(
                                r#"{{"specversion":"1.0","id":"{n}","source":"/crash","type":"t","data":"{}"}}"#,
                                "x".repeat(500)
                            ))
                            .unwrap(),
                        })
                        .collect();
                    store.publish("orders", events).await.unwrap();
                    println!("published {first} {}", first + 100);
                }
            })
        })
        .collect();
    loop {
        let received = store
            .receive("orders", "all", 100, Duration::from_secs(1))
            .await
            .unwrap();
        // Acknowledge half of them; the other half stay locked when the kill comes.
        let (acknowledge, _hold): (Vec<_>, Vec<_>) = received
            .into_iter()
            .partition(|r| id_of(&r.event).is_multiple_of(2));
        let tokens: Vec<String> = acknowledge.iter().map(|r| r.lock_token.clone()).collect();
        // Announced first: a kill between the settle and the report below leaves these
        // acknowledged in the store, yet unreported.
        for event in &acknowledge {
            println!("acknowledging {}", id_of(&event.event));
        }
        let outcome = store
            .settle("orders", "all", Settle::Acknowledge, &tokens)
            .await
            .unwrap();
        assert!(outcome.failed.is_empty());
        for event in &acknowledge {
            println!("acknowledged {}", id_of(&event.event));
        }
    }
}

#[test]
fn a_kill_9_loses_no_acknowledged_publish_and_forgets_no_acknowledgement() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if let Some(dir) = std::env::var_os(CHILD) {
        runtime.block_on(child(Path::new(&dir)));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut process = Command::new(std::env::current_exe().unwrap())
        .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut published = BTreeSet::new();
    let mut acknowledged = BTreeSet::new();
    let mut being_acknowledged = BTreeSet::new();
    let mut stdout = BufReader::new(process.stdout.take().unwrap()).lines();
    let mut record = |line: String| {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["published", first, end] => {
                published.extend(first.parse::<u64>().unwrap()..end.parse::<u64>().unwrap());
            }
            ["acknowledging", id] => {
                being_acknowledged.insert(id.parse::<u64>().unwrap());
            }
            ["acknowledged", id] => {
                acknowledged.insert(id.parse::<u64>().unwrap());
            }
            _ => {}
        }
        published.len() >= 30_000 && acknowledged.len() >= 1_000
    };
    for line in stdout.by_ref() {
        if record(line.unwrap()) {
            break;
        }
    }
    process.kill().unwrap();
    process.wait().unwrap();
    // What the child reported between our last read and the kill is still in the pipe: an
    // acknowledgement announced there is as real as one read before.
    for line in stdout.map_while(Result::ok) {
        record(line);
    }

    let delivered = runtime.block_on(async {
        let store = open(dir.path()).await;
        // Let the locks held at the kill expire.
        tokio::time::sleep(LOCK + Duration::from_millis(100)).await;
        let mut delivered = BTreeSet::new();
        loop {
            let received = store
                .receive("orders", "all", 100, Duration::from_millis(200))
                .await
                .unwrap();
            if received.is_empty() {
                break;
            }
            let tokens: Vec<String> = received.iter().map(|r| r.lock_token.clone()).collect();
            store
                .settle("orders", "all", Settle::Acknowledge, &tokens)
                .await
                .unwrap();
            delivered.extend(received.iter().map(|r| id_of(&r.event)));
        }
        store.close().await;
        delivered
    });
    // An event whose acknowledgement was under way at the kill may be either.
    let lost: Vec<_> = published
        .difference(&acknowledged)
        .filter(|id| !delivered.contains(id) && !being_acknowledged.contains(id))
        .take(10)
        .collect();
    assert!(lost.is_empty(), "published events lost: {lost:?}...");
    let resurrected: Vec<_> = acknowledged.intersection(&delivered).take(10).collect();
    assert!(
        resurrected.is_empty(),
        "acknowledged events delivered again: {resurrected:?}"
    );
}
