//! Damage and failures below the store: corrupt records in the log (quarantined and skipped,
//! never costing the records after them, never stalling a reader) and writes or fsyncs that
//! fail (nothing of the failed call is kept, the store works again afterwards).

use super::*;
use std::fs;
use std::io::ErrorKind;
use std::path::PathBuf;

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let segments = dir.join("store/topics").join(TOPIC).join("segments");
    let mut files: Vec<_> = fs::read_dir(segments)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// The file offsets of the records of a segment file.
fn record_offsets(path: &Path) -> Vec<u64> {
    let bytes = fs::read(path).unwrap();
    let mut offsets = Vec::new();
    record::scan(&bytes[..], 0, bytes.len() as u64, |view| {
        offsets.push(view.address)
    })
    .unwrap();
    offsets
}

/// Change one byte of a file in place (the store's open descriptors see it).
fn flip(path: &Path, offset: u64) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset as usize] ^= 0x08;
    fs::write(path, &bytes).unwrap();
}

impl EventStore {
    fn faults(&self) -> Arc<durable_file::Faults> {
        self.inner.topics.read()[TOPIC].committer.faults()
    }

    fn corrupt_records(&self, reason: &str) -> u64 {
        let family = &self.inner.metrics.corrupt_records;
        family.with_label_values(&[TOPIC, reason]).get()
    }

    fn write_failures(&self, reason: &str) -> u64 {
        let family = &self.inner.metrics.write_failures;
        family.with_label_values(&[TOPIC, reason]).get()
    }
}

async fn drain(store: &EventStore) -> Vec<String> {
    let mut all = Vec::new();
    loop {
        let received = store
            .receive(TOPIC, SUB, 100, Duration::from_millis(100))
            .await
            .unwrap();
        if received.is_empty() {
            return all;
        }
        all.extend(ids(&received));
    }
}

#[tokio::test]
async fn a_corrupt_record_in_a_sealed_segment_is_skipped_and_receive_still_answers_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = standard(10, false);
    let tuning = || StoreTuning {
        segment_bytes: 1024,
        retention_period: Duration::from_secs(365 * 24 * 3600),
        ..StoreTuning::default()
    };
    {
        let store = open_with(dir.path(), tuning()).await;
        store.apply_snapshot(Arc::clone(&snapshot));
        for n in 0..30 {
            store
                .publish(TOPIC, vec![event(&format!("e-{n}"))])
                .await
                .unwrap();
        }
        store.close().await;
    }
    let segments = segment_files(dir.path());
    assert!(segments.len() > 2);
    let offsets = record_offsets(&segments[0]);
    flip(&segments[0], offsets[2] + 30);

    let store = open_with(dir.path(), tuning()).await;
    store.apply_snapshot(Arc::clone(&snapshot));
    let started = std::time::Instant::now();
    let received = drain(&store).await;
    assert_eq!(received.len(), 29);
    assert!(!received.contains(&"e-2".to_string()));
    assert_eq!(received[..3], ["e-0", "e-1", "e-3"]);
    assert_eq!(store.corrupt_records("checksum"), 1);
    // The last receive found nothing and came back after its wait, not never.
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn push_delivery_takes_every_event_after_a_corrupt_record_in_a_sealed_segment() {
    use super::push::{HOOK, id, take_all, with_push};
    let dir = tempfile::tempdir().unwrap();
    let snapshot = with_push(10, false);
    let tuning = || StoreTuning {
        segment_bytes: 1024,
        ..StoreTuning::default()
    };
    {
        let store = open_with(dir.path(), tuning()).await;
        store.apply_snapshot(Arc::clone(&snapshot));
        for n in 0..30 {
            store
                .publish(TOPIC, vec![event(&format!("e-{n}"))])
                .await
                .unwrap();
        }
        store.close().await;
    }
    let first = &segment_files(dir.path())[0];
    // The length field: the record claims to run past its segment.
    flip(first, record_offsets(first)[2] + 2);

    let store = open_with(dir.path(), tuning()).await;
    store.apply_snapshot(Arc::clone(&snapshot));
    let consumer = store.push_consumer(TOPIC, HOOK).unwrap();
    let mut delivered = Vec::new();
    loop {
        let taken = consumer.take(take_all()).await.unwrap();
        if taken.is_empty() {
            break;
        }
        delivered.extend(taken.iter().map(id));
        let settled: Vec<_> = taken
            .iter()
            .map(|event| (event.lease, PushSettle::Delivered))
            .collect();
        consumer.settle(&settled).await.unwrap();
    }
    let expected: Vec<String> = (0..30)
        .filter(|n| *n != 2)
        .map(|n| format!("e-{n}"))
        .collect();
    assert_eq!(delivered, expected);
    assert_eq!(store.corrupt_records("length"), 1);
}

#[tokio::test]
async fn an_event_whose_record_went_bad_while_in_flight_is_forgotten_not_retried_forever() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &standard(10, false)).await;
    store.publish(TOPIC, events("e", 3)).await.unwrap();
    let received = store.poll(TOPIC, SUB, 3).await;
    let release = Settle::Release {
        delay: Duration::ZERO,
    };
    succeeded(&store.settle_all(release, &tokens(&received)).await, 3);
    let segment = &segment_files(dir.path())[0];
    flip(segment, record_offsets(segment)[1] + 30);

    assert_eq!(ids(&store.poll(TOPIC, SUB, 10).await), ["e-0", "e-2"]);
    assert_eq!(store.corrupt_records("checksum"), 1);
    let state = store.inner.topics.read()[TOPIC].served.load()[SUB]
        .state
        .clone();
    assert_eq!(
        state.lock().in_flight_count(),
        2,
        "the unreadable one is gone"
    );
}

#[tokio::test]
async fn a_write_that_runs_out_of_space_is_refused_whole_and_publishing_resumes_when_space_returns()
{
    let dir = tempfile::tempdir().unwrap();
    let snapshot = standard(10, false);
    let store = open(dir.path(), &snapshot).await;
    store.publish(TOPIC, events("a", 5)).await.unwrap();
    let segment = &segment_files(dir.path())[0];
    let length = fs::metadata(segment).unwrap().len();

    // ENOSPC halfway through the round's write.
    *store.faults().write.lock() = Some(ErrorKind::StorageFull);
    let error = store.publish(TOPIC, events("b", 5)).await.unwrap_err();
    assert!(error.is_storage_full(), "{error}");
    assert_eq!(
        fs::metadata(segment).unwrap().len(),
        length,
        "the half-written part is cut"
    );
    assert_eq!(store.write_failures("disk_full"), 1);
    // EDQUOT and a file-size limit read the same to callers.
    *store.faults().write.lock() = Some(ErrorKind::QuotaExceeded);
    assert!(
        store
            .publish(TOPIC, events("b", 1))
            .await
            .unwrap_err()
            .is_storage_full()
    );

    store.publish(TOPIC, events("c", 5)).await.unwrap();
    store.close().await;
    let store = open(dir.path(), &snapshot).await;
    let received = drain(&store).await;
    let expected: Vec<String> = (0..5)
        .map(|n| format!("a-{n}"))
        .chain((0..5).map(|n| format!("c-{n}")))
        .collect();
    assert_eq!(received, expected);
    assert_eq!(
        store.corrupt_records("checksum") + store.corrupt_records("length"),
        0
    );
}

#[tokio::test]
async fn a_failed_fsync_is_not_trusted_later_the_round_is_cut_and_not_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = standard(10, false);
    let store = open(dir.path(), &snapshot).await;
    store.publish(TOPIC, events("a", 3)).await.unwrap();
    let segment = &segment_files(dir.path())[0];
    let length = fs::metadata(segment).unwrap().len();

    *store.faults().sync.lock() = Some(ErrorKind::Other);
    let error = store.publish(TOPIC, events("b", 3)).await.unwrap_err();
    assert!(!error.is_storage_full());
    assert_eq!(store.write_failures("io"), 1);
    // The round's bytes are gone, not left for the next fsync to vouch for.
    assert_eq!(fs::metadata(segment).unwrap().len(), length);
    assert_eq!(
        store.poll(TOPIC, SUB, 10).await.len(),
        3,
        "`b` was never exposed"
    );

    store.publish(TOPIC, events("c", 3)).await.unwrap();
    store.close().await;
    let store = open(dir.path(), &snapshot).await;
    // The three `a` were received before the restart; their locks still hold.
    assert_eq!(drain(&store).await, ["c-0", "c-1", "c-2"]);
}

#[tokio::test]
async fn an_acknowledgement_that_could_not_be_written_leaves_the_locks_valid_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = standard(10, false);
    let store = open(dir.path(), &snapshot).await;
    store.publish(TOPIC, events("a", 2)).await.unwrap();
    let received = store.poll(TOPIC, SUB, 2).await;
    // A round holding an acknowledgement (journal) whose write fails.
    *store.faults().write.lock() = Some(ErrorKind::StorageFull);
    let error = store
        .settle(TOPIC, SUB, Settle::Acknowledge, &tokens(&received))
        .await
        .unwrap_err();
    assert!(error.is_storage_full());
    store.close().await;
    let store = open(dir.path(), &snapshot).await;
    // Not acknowledged durably: the locks are still there and valid.
    succeeded(
        &store
            .settle_all(Settle::Acknowledge, &tokens(&received))
            .await,
        2,
    );
}

#[tokio::test]
async fn under_the_interval_policy_a_failed_fsync_keeps_the_acknowledged_events_and_a_later_fsync_succeeds()
 {
    let dir = tempfile::tempdir().unwrap();
    let interval = json!({"fsyncPolicy": "Interval", "fsyncIntervalMilliseconds": 3_600_000});
    let snapshot = snapshot(vec![subscription(TOPIC, SUB, queue(10, false))], interval);
    let store = open(dir.path(), &snapshot).await;
    store.publish(TOPIC, events("a", 5)).await.unwrap();
    let committer = Arc::clone(&store.inner.topics.read()[TOPIC].committer);

    *store.faults().sync.lock() = Some(ErrorKind::Other);
    assert!(committer.sync_if_dirty().is_err());
    assert_eq!(store.write_failures("io"), 1);
    // Acknowledged already: kept, written again, and fsynced by the next attempt.
    committer.sync_if_dirty().unwrap();
    store.publish(TOPIC, events("b", 5)).await.unwrap();
    committer.sync_if_dirty().unwrap();
    store.close().await;

    let store = open(dir.path(), &snapshot).await;
    assert_eq!(drain(&store).await.len(), 10);
}
