//! A kill -9 of the data plane in the middle of push delivery loses nothing: after a restart
//! every published event is delivered (2xx) or dead-lettered, and the duplicates that
//! at-least-once delivery allows (attempts cut short by the kill) are counted, reported and
//! bounded by what was in flight.

mod support;

use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::webhook::*;
use support::*;

const EVENTS: usize = 12_000;
const PUBLISH_BATCH: usize = 200;
const PER_REQUEST: usize = 5;
/// A duplicate is an event the endpoint accepted whose outcome the kill kept from the journal:
/// in one of the 16 requests in flight, or one of the 64 answered requests queued for the
/// settler, of 5 events each.
const MOST_IN_FLIGHT: usize = (16 + 64) * PER_REQUEST;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_during_delivery_loses_nothing() {
    let webhook = Webhook::start().await;
    // A request fails the first time it carries one of every 20th event: about one request
    // in four fails, so retries are pending when the kill comes. Once a third of the events
    // got through, answers before the kill take 200 ms (at most 16 x 5 events per 200 ms,
    // so the rest takes 20 seconds or more): a fast machine could otherwise deliver everything
    // before the test sees its threshold and kills.
    let seen = std::sync::Mutex::new(BTreeSet::new());
    let kill_after = EVENTS / 3;
    let answered = AtomicUsize::new(0);
    let killed = Arc::new(AtomicBool::new(false));
    let killed_flag = Arc::clone(&killed);
    webhook.reply_with(move |events, _| {
        if !killed_flag.load(Ordering::SeqCst)
            && answered.fetch_add(events.len(), Ordering::SeqCst) >= kill_after
        {
            return Reply::After(Duration::from_millis(200), 200);
        }
        let mut seen = seen.lock().unwrap();
        let unlucky = events.iter().any(|e| {
            let id = e["id"].as_str().unwrap_or_default().to_string();
            let n: usize = id.trim_start_matches("event-").parse().unwrap_or(1);
            n.is_multiple_of(20) && seen.insert(id)
        });
        if unlucky {
            Reply::Status(503)
        } else {
            Reply::Status(200)
        }
    });
    let workspace = Workspace::new();
    let subscription = webhook_subscription("hook", &webhook.url("/events"), |push| {
        dead_lettering(push);
        push.destination.properties.max_events_per_batch = PER_REQUEST as i32;
    });
    workspace.write("push.yaml", &[base_manifests(), subscription].join("---\n"));
    let args = ["--test-time-scale", "0.01"];
    let dataplane = workspace.start(&args);
    dataplane.wait_ready().await;
    let ids: Vec<String> = (0..EVENTS).map(|n| format!("event-{n}")).collect();
    for chunk in ids.chunks(PUBLISH_BATCH) {
        let events: Vec<Value> = chunk.iter().map(|id| event(id, 300)).collect();
        publish(&dataplane, &events).await;
    }
    assert!(
        webhook
            .wait_until(Duration::from_secs(30), |_| {
                // Half: answered events include the failed attempts.
                webhook.delivered_ids().len() >= kill_after / 2
            })
            .await,
        "deliveries did not start"
    );
    drop(dataplane); // SIGKILL
    killed.store(true, Ordering::SeqCst);
    let delivered_before = webhook.delivered_ids().len();
    assert!(
        delivered_before < EVENTS,
        "the kill came after everything was delivered; raise EVENTS"
    );

    let dataplane = workspace.start(&args);
    dataplane.wait_ready().await;
    // Wait until everything is delivered, or deliveries stop making progress (the rest
    // should then be in the dead-letter topic).
    let started = Instant::now();
    let (mut progress, mut last_count) = (Instant::now(), 0);
    loop {
        let count = webhook
            .delivered_ids()
            .into_iter()
            .collect::<BTreeSet<_>>()
            .len();
        if count == EVENTS || progress.elapsed() > Duration::from_secs(5) {
            break;
        }
        if count != last_count {
            (progress, last_count) = (Instant::now(), count);
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{count} of {EVENTS} delivered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let missing = EVENTS
        - last_count.max(
            webhook
                .delivered_ids()
                .into_iter()
                .collect::<BTreeSet<_>>()
                .len(),
        );
    let dead = if missing > 0 {
        dead_letters(&dataplane, missing, Duration::from_secs(15)).await
    } else {
        Vec::new()
    };

    let delivered = webhook.delivered_ids();
    let mut times: HashMap<&str, usize> = HashMap::new();
    for id in &delivered {
        *times.entry(id.as_str()).or_default() += 1;
    }
    let dead_ids: BTreeSet<String> = dead
        .iter()
        .map(|e| e["id"].as_str().unwrap_or_default().to_string())
        .collect();
    let lost: Vec<&String> = ids
        .iter()
        .filter(|id| !times.contains_key(id.as_str()) && !dead_ids.contains(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} events lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    let duplicates = delivered.len() - times.len();
    println!(
        "{EVENTS} events: {} delivered before the kill, {} deliveries in all, {duplicates} duplicates, {} dead-lettered",
        delivered_before,
        delivered.len(),
        dead_ids.len()
    );
    assert!(
        duplicates <= MOST_IN_FLIGHT,
        "{duplicates} duplicates: more than could have been in flight at the kill"
    );
    let logs = dataplane.logs();
    assert!(
        logs.contains("attempts of an earlier dispatcher were cut short") || duplicates == 0,
        "{logs}"
    );
}
