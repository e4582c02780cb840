//! Recovery after a close or a crash, retention, the fsync policies and group commit.

use super::*;
use std::fs;
use std::io::Write;

fn segment_file(dir: &Path, topic: &str) -> std::path::PathBuf {
    let segments = dir.join("store/topics").join(topic).join("segments");
    let mut files: Vec<_> = fs::read_dir(segments)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.pop().unwrap()
}

fn append_garbage(path: &Path, bytes: &[u8]) {
    fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn reopening_recovers_cursor_locks_tokens_and_delivery_counts() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = standard(10, false);
    let (locked, released) = {
        let store = open(dir.path(), &snapshot).await;
        store.publish(TOPIC, events("e", 5)).await.unwrap();
        let received = store.poll(TOPIC, SUB, 4).await;
        succeeded(
            &store
                .settle_all(Settle::Acknowledge, &tokens(&received[..1]))
                .await,
            1,
        );
        let release = Settle::Release {
            delay: Duration::ZERO,
        };
        succeeded(
            &store.settle_all(release, &tokens(&received[1..2])).await,
            1,
        );
        store.close().await;
        (tokens(&received[2..4]), id_of(&received[1]))
    };
    let store = open(dir.path(), &snapshot).await;
    let again = store.poll(TOPIC, SUB, 10).await;
    assert_eq!(
        ids(&again),
        [released.as_str(), "e-4"],
        "acknowledged and locked ones stay out"
    );
    assert_eq!(again[0].delivery_count, 2);
    assert_eq!(again[1].delivery_count, 1);
    succeeded(&store.settle_all(Settle::Acknowledge, &locked).await, 2);
}

#[tokio::test(start_paused = true)]
async fn a_delayed_release_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = standard(10, false);
    {
        let store = open(dir.path(), &snapshot).await;
        store.publish(TOPIC, events("e", 1)).await.unwrap();
        let received = store.poll(TOPIC, SUB, 1).await;
        let release = Settle::Release {
            delay: Duration::from_secs(600),
        };
        succeeded(&store.settle_all(release, &tokens(&received)).await, 1);
        store.close().await;
    }
    let store = open(dir.path(), &snapshot).await;
    assert!(store.poll(TOPIC, SUB, 10).await.is_empty());
    tokio::time::advance(Duration::from_secs(601)).await;
    let received = store.poll(TOPIC, SUB, 10).await;
    assert_eq!(received[0].delivery_count, 2);
}

#[tokio::test(start_paused = true)]
async fn a_store_dropped_without_close_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = standard(10, false);
    {
        let store = open(dir.path(), &snapshot).await;
        store.publish(TOPIC, events("e", 3)).await.unwrap();
        let received = store.poll(TOPIC, SUB, 1).await;
        succeeded(
            &store
                .settle_all(Settle::Acknowledge, &tokens(&received))
                .await,
            1,
        );
        // No close: as far as the files know, the process died here.
    }
    let store = open(dir.path(), &snapshot).await;
    assert_eq!(ids(&store.poll(TOPIC, SUB, 10).await), ["e-1", "e-2"]);
}

#[tokio::test(start_paused = true)]
async fn a_torn_log_tail_is_cut_and_publishing_continues_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = standard(10, false);
    {
        let store = open(dir.path(), &snapshot).await;
        store.publish(TOPIC, events("e", 3)).await.unwrap();
        store.close().await;
    }
    // A record header promising more bytes than were written, as a kill -9 mid-write leaves.
    append_garbage(
        &segment_file(dir.path(), TOPIC),
        &[200, 0, 0, 0, 1, 2, 3, 4, 1, 9, 9],
    );
    let store = open(dir.path(), &snapshot).await;
    store.publish(TOPIC, events("after", 1)).await.unwrap();
    assert_eq!(
        ids(&store.poll(TOPIC, SUB, 10).await),
        ["e-0", "e-1", "e-2", "after-0"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_torn_journal_tail_is_cut_and_earlier_acknowledgements_hold() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = standard(10, false);
    {
        let store = open(dir.path(), &snapshot).await;
        store.publish(TOPIC, events("e", 2)).await.unwrap();
        let received = store.poll(TOPIC, SUB, 1).await;
        succeeded(
            &store
                .settle_all(Settle::Acknowledge, &tokens(&received))
                .await,
            1,
        );
        store.close().await;
    }
    let journal = dir
        .path()
        .join("store/topics")
        .join(TOPIC)
        .join("subscriptions.journal");
    append_garbage(&journal, &[50, 0, 0, 0, 0xde, 0xad]);
    let store = open(dir.path(), &snapshot).await;
    assert_eq!(ids(&store.poll(TOPIC, SUB, 10).await), ["e-1"]);
}

#[tokio::test(start_paused = true)]
async fn journal_compaction_keeps_every_state() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = standard(10, false);
    let tuning = StoreTuning {
        journal_compaction_bytes: 4096,
        retention_period: Duration::from_secs(1 << 30),
        ..StoreTuning::default()
    };
    let held = {
        let store = open_with(dir.path(), tuning.clone()).await;
        store.apply_snapshot(Arc::clone(&snapshot));
        store.publish(TOPIC, events("e", 500)).await.unwrap();
        for _ in 0..24 {
            let received = store.poll(TOPIC, SUB, 20).await;
            succeeded(
                &store
                    .settle_all(Settle::Acknowledge, &tokens(&received))
                    .await,
                20,
            );
        }
        let held = store.poll(TOPIC, SUB, 5).await;
        store.close().await;
        held
    };
    let journal = dir
        .path()
        .join("store/topics")
        .join(TOPIC)
        .join("subscriptions.journal");
    assert!(
        fs::metadata(&journal).unwrap().len() < 16 * 4096,
        "the journal was compacted"
    );
    let store = open_with(dir.path(), tuning).await;
    store.apply_snapshot(snapshot);
    succeeded(
        &store.settle_all(Settle::Acknowledge, &tokens(&held)).await,
        5,
    );
    assert_eq!(id_of(&store.poll(TOPIC, SUB, 1).await[0]), "e-485");
}

#[tokio::test(start_paused = true)]
async fn retention_deletes_old_segments_only_when_every_subscription_is_past_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut slow = queue(10, false);
    slow.event_time_to_live = Duration::from_secs(72 * 3600);
    let snapshot = snapshot(
        vec![
            subscription(TOPIC, SUB, queue(10, false)),
            subscription(TOPIC, "slow", slow),
        ],
        json!({}),
    );
    let tuning = StoreTuning {
        segment_bytes: 1024,
        retention_period: Duration::from_secs(1 << 30),
        ..StoreTuning::default()
    };
    let store = open_with(dir.path(), tuning).await;
    store.apply_snapshot(snapshot);
    for n in 0..10 {
        store
            .publish(TOPIC, events(&format!("b{n}"), 5))
            .await
            .unwrap();
    }
    let segments = store.segment_count(TOPIC);
    assert!(segments > 3);
    let everything = store.poll(TOPIC, SUB, 100).await;
    succeeded(
        &store
            .settle_all(Settle::Acknowledge, &tokens(&everything))
            .await,
        50,
    );

    store.run_retention().await.unwrap();
    assert_eq!(
        store.segment_count(TOPIC),
        segments,
        "nothing is older than retention yet"
    );

    tokio::time::advance(Duration::from_secs(25 * 3600)).await;
    store.run_retention().await.unwrap();
    assert_eq!(
        store.segment_count(TOPIC),
        segments,
        "'slow' has not received anything"
    );

    let slow_batch = store
        .receive(TOPIC, "slow", 100, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(slow_batch.len(), 50);
    let slow_tokens = tokens(&slow_batch);
    let acknowledged = store.settle(TOPIC, "slow", Settle::Acknowledge, &slow_tokens);
    succeeded(&acknowledged.await.unwrap(), 50);
    store.run_retention().await.unwrap();
    assert_eq!(
        store.segment_count(TOPIC),
        1,
        "only the active segment is left"
    );
}

#[tokio::test(start_paused = true)]
async fn the_retention_pass_dead_letters_expired_events_nobody_received() {
    let dir = tempfile::tempdir().unwrap();
    let mut short = queue(10, true);
    short.event_time_to_live = Duration::from_secs(120);
    let snapshot = snapshot(
        vec![
            subscription(TOPIC, SUB, short),
            subscription(DEAD, SUB, queue(10, false)),
        ],
        json!({}),
    );
    let store = open(dir.path(), &snapshot).await;
    store.publish(TOPIC, events("e", 2)).await.unwrap();
    tokio::time::advance(Duration::from_secs(121)).await;
    store.run_retention().await.unwrap();
    assert_eq!(ids(&store.poll(DEAD, SUB, 10).await), ["e-0", "e-1"]);
    assert_eq!(
        store.inner.topics.read()[TOPIC].low_watermark(),
        store.inner.topics.read()[TOPIC].log.end()
    );
}

#[tokio::test]
async fn the_interval_policy_answers_before_fsyncing_and_fsyncs_within_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let interval = json!({"fsyncPolicy": "Interval", "fsyncIntervalMilliseconds": 50});
    let snapshot = snapshot(vec![subscription(TOPIC, SUB, queue(10, false))], interval);
    let store = open(dir.path(), &snapshot).await;
    for n in 0..20 {
        store
            .publish(TOPIC, events(&format!("e{n}"), 1))
            .await
            .unwrap();
    }
    assert!(
        store.fsync_count(TOPIC) <= 2,
        "publishes do not wait for fsyncs"
    );
    assert_eq!(
        store.poll(TOPIC, SUB, 100).await.len(),
        20,
        "written events are readable"
    );
    let before = store.fsync_count(TOPIC);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        store.fsync_count(TOPIC) > before,
        "the interval fsyncs what was written"
    );
}

#[tokio::test]
async fn the_always_policy_fsyncs_before_answering() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &standard(10, false)).await;
    for n in 0..5 {
        store
            .publish(TOPIC, events(&format!("e{n}"), 1))
            .await
            .unwrap();
        assert_eq!(store.fsync_count(TOPIC), n + 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &standard(10, false)).await;
    const PUBLISHERS: usize = 50;
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                for round in 0..4 {
                    store
                        .publish(TOPIC, events(&format!("p{n}r{round}"), 1))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for publisher in publishers {
        publisher.await.unwrap();
    }
    let publishes = (PUBLISHERS * 4) as u64;
    let fsyncs = store.fsync_count(TOPIC);
    assert!(
        fsyncs * 4 <= publishes,
        "{fsyncs} fsyncs for {publishes} publishes: no batching"
    );
    assert_eq!(store.poll(TOPIC, SUB, 100).await.len(), 100);
}
