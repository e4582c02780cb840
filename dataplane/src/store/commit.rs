//! Group commit for one topic: publishers and subscription changes queue their encoded bytes;
//! one flusher at a time writes everything queued with one write per file and one fsync per
//! file, then answers every waiter of that round. While a round is being fsynced the next
//! one queues up, so N concurrent publishers cost about two fsyncs, not N.
//!
//! The flusher is a closure on tokio's blocking pool, started by the first submit that finds
//! none running and ending when the queue is empty. It does not belong to any caller, so a
//! publisher whose request is dropped mid-way cannot stall the others. (Blocking-pool work also
//! holds off a paused test clock's auto-advance, so timers cannot fire while we wait on disk.)
//!
//! Under `FsyncPolicy::Interval` a round only writes; `sync_if_dirty`, called by the store's
//! maintenance task every interval, fsyncs.
//!
//! Locks: `pending` is a leaf (taken under a subscription's lock, so that a subscription's
//! records are queued in the order of their sequence numbers). `files` is only taken by the
//! flusher and by `sync_if_dirty`/`close`, never while holding `pending`.

use super::FsyncPolicy;
use super::journal::Journal;
use super::log::{Log, LogWriter};
use super::metrics::StoreMetrics;
use parking_lot::Mutex;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Instant;
use tokio::sync::{Notify, oneshot};

/// The label of `gridline_store_write_failures_total` for an error: `disk_full` when there is
/// no room to write (ENOSPC, EDQUOT, or EFBIG from a file-size limit), else `io`.
pub fn failure_reason(kind: io::ErrorKind) -> &'static str {
    if is_disk_full(kind) {
        "disk_full"
    } else {
        "io"
    }
}

pub fn is_disk_full(kind: io::ErrorKind) -> bool {
    matches!(
        kind,
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded | io::ErrorKind::FileTooLarge
    )
}

/// The outcome every waiter of a round gets. `io::Error` is not `Clone`; its kind and text are.
pub type CommitResult = Result<(), (io::ErrorKind, String)>;

/// Writes the whole state of every subscription of the topic (for journal compaction).
pub type Snapshotter = Box<dyn Fn(&mut Vec<u8>) + Send + Sync>;

/// Compact the journal when it is this much larger than its last snapshot (and larger than
/// the configured minimum).
const COMPACTION_FACTOR: u64 = 4;

#[derive(Default)]
struct Pending {
    log: Vec<u8>,
    journal: Vec<u8>,
    waiters: Vec<oneshot::Sender<CommitResult>>,
    /// A flusher is running (or about to).
    running: bool,
    closed: bool,
}

struct Files {
    log: LogWriter,
    journal: Journal,
    /// Journal size after the last compaction.
    compacted_len: u64,
}

pub struct Committer {
    log: Arc<Log>,
    pending: Mutex<Pending>,
    files: Mutex<Files>,
    snapshotter: Snapshotter,
    policy: AtomicU8,
    metrics: Arc<StoreMetrics>,
    topic: String,
    /// Signalled when a flusher stops.
    idle: Notify,
    fsyncs: AtomicU64,
    compaction_bytes: u64,
    /// A full disk fails every round: its log line is rate-limited (logs may share the disk).
    failure_log: RateLimit,
}

/// Allows one event per period.
struct RateLimit {
    last: Mutex<Option<Instant>>,
    period: std::time::Duration,
}

impl RateLimit {
    fn allow(&self) -> bool {
        let mut last = self.last.lock();
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < self.period) {
            return false;
        }
        *last = Some(now);
        true
    }
}

const ALWAYS: u8 = 0;
const INTERVAL: u8 = 1;

impl Committer {
    pub fn new(
        topic: String,
        log: Arc<Log>,
        writer: LogWriter,
        journal: Journal,
        snapshotter: Snapshotter,
        metrics: Arc<StoreMetrics>,
        compaction_bytes: u64,
    ) -> Committer {
        let compacted_len = journal.len();
        #[cfg(test)]
        let journal = {
            let mut journal = journal;
            journal.share_faults(writer.faults());
            journal
        };
        Committer {
            log,
            pending: Mutex::new(Pending::default()),
            files: Mutex::new(Files {
                log: writer,
                journal,
                compacted_len,
            }),
            snapshotter,
            policy: AtomicU8::new(ALWAYS),
            metrics,
            topic,
            idle: Notify::new(),
            fsyncs: AtomicU64::new(0),
            compaction_bytes,
            failure_log: RateLimit {
                last: Mutex::new(None),
                period: std::time::Duration::from_secs(10),
            },
        }
    }

    pub fn set_policy(&self, policy: FsyncPolicy) {
        let value = match policy {
            FsyncPolicy::Always => ALWAYS,
            FsyncPolicy::Interval => INTERVAL,
        };
        self.policy.store(value, Ordering::Relaxed);
    }

    fn policy(&self) -> FsyncPolicy {
        match self.policy.load(Ordering::Relaxed) {
            INTERVAL => FsyncPolicy::Interval,
            _ => FsyncPolicy::Always,
        }
    }

    /// How many fsyncs this topic did (for tests of the batching).
    #[cfg(test)]
    pub fn fsync_count(&self) -> u64 {
        self.fsyncs.load(Ordering::Relaxed)
    }

    /// Queue bytes for the log and the journal; the receiver answers once they are durable
    /// (per the policy). `None` once the store is closing.
    pub fn submit(
        self: &Arc<Self>,
        log: &[u8],
        journal: &[u8],
    ) -> Option<oneshot::Receiver<CommitResult>> {
        let (sender, receiver) = oneshot::channel();
        self.enqueue(log, journal, Some(sender)).then_some(receiver)
    }

    /// Queue journal bytes nobody waits for (a cursor moved past events that did not match:
    /// losing it in a crash only costs a rescan).
    pub fn submit_quietly(self: &Arc<Self>, journal: &[u8]) {
        self.enqueue(&[], journal, None);
    }

    fn enqueue(
        self: &Arc<Self>,
        log: &[u8],
        journal: &[u8],
        waiter: Option<oneshot::Sender<CommitResult>>,
    ) -> bool {
        let start = {
            let mut pending = self.pending.lock();
            if pending.closed {
                return false;
            }
            pending.log.extend_from_slice(log);
            pending.journal.extend_from_slice(journal);
            pending.waiters.extend(waiter);
            !std::mem::replace(&mut pending.running, true)
        };
        if start {
            let committer = Arc::clone(self);
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => {
                    handle.spawn_blocking(move || committer.flush_loop());
                }
                // Outside a runtime (start-up, configuration application): flush here.
                Err(_) => committer.flush_loop(),
            }
        }
        true
    }

    fn flush_loop(&self) {
        loop {
            let (log, journal, waiters) = {
                let mut pending = self.pending.lock();
                if pending.log.is_empty()
                    && pending.journal.is_empty()
                    && pending.waiters.is_empty()
                {
                    pending.running = false;
                    drop(pending);
                    self.idle.notify_waiters();
                    return;
                }
                (
                    std::mem::take(&mut pending.log),
                    std::mem::take(&mut pending.journal),
                    std::mem::take(&mut pending.waiters),
                )
            };
            let result = self
                .write_round(&log, &journal)
                .map_err(|e| (e.kind(), e.to_string()));
            if let Err((kind, message)) = &result {
                self.count_failure(*kind);
                if self.failure_log.allow() {
                    tracing::error!(
                        topic = %self.topic,
                        error = %message,
                        "store write failed; nothing of this round was acknowledged and it was cut off (logged at most every 10 s, gridline_store_write_failures_total counts every one)"
                    );
                }
            }
            for waiter in waiters {
                // A waiter that went away (its request was dropped) needs no answer.
                let _ = waiter.send(result.clone());
            }
        }
    }

    /// Write one round. A round that fails leaves nothing behind: what it wrote of either file
    /// is cut off before anything else is appended, it is not exposed to readers, and its
    /// waiters get the error. (Under `Always`, everything before the round was fsynced, so a
    /// later successful fsync never vouches for bytes whose write or fsync failed.)
    fn write_round(&self, log: &[u8], journal: &[u8]) -> io::Result<()> {
        let mut files = self.files.lock();
        let files = &mut *files;
        if files.journal.len()
            > self
                .compaction_bytes
                .max(files.compacted_len * COMPACTION_FACTOR)
        {
            // Everything queued before this round is in the snapshot; what this round writes
            // after it and is already in it is skipped at replay (see journal.rs).
            let mut snapshot = Vec::new();
            (self.snapshotter)(&mut snapshot);
            match files.journal.replace(&snapshot) {
                Ok(()) => files.compacted_len = snapshot.len() as u64,
                // The journal is as it was: compact on a later round.
                Err(error) => {
                    tracing::warn!(topic = %self.topic, %error, "journal compaction failed")
                }
            }
        }
        let (log_start, journal_start) = (files.log.end(), files.journal.len());
        let written = files
            .log
            .append(log)
            .and_then(|()| files.journal.append(journal))
            .and_then(|()| match self.policy() {
                FsyncPolicy::Always => self.sync_files(files),
                FsyncPolicy::Interval => Ok(()),
            });
        if let Err(error) = written {
            files.log.cut_back(log_start);
            files.journal.cut_back(journal_start);
            return Err(error);
        }
        files.log.expose(&self.log);
        // The round is durable and visible whatever happens to the roll: a segment that
        // cannot be sealed now grows past its size until it can.
        if let Err(error) = files.log.roll_if_full(&self.log) {
            self.count_failure(error.kind());
            if self.failure_log.allow() {
                tracing::error!(topic = %self.topic, %error, "cannot seal the full log segment; retrying on the next write");
            }
        }
        self.metrics
            .store_bytes
            .with_label_values(&[self.topic.as_str()])
            .set(i64::try_from(self.log.bytes_on_disk()).unwrap_or(i64::MAX));
        Ok(())
    }

    fn count_failure(&self, kind: io::ErrorKind) {
        self.metrics
            .write_failures
            .with_label_values(&[self.topic.as_str(), failure_reason(kind)])
            .inc();
    }

    fn sync_files(&self, files: &mut Files) -> io::Result<()> {
        if !files.log.is_dirty() && !files.journal.is_dirty() {
            return Ok(());
        }
        let started = Instant::now();
        files.log.sync()?;
        files.journal.sync()?;
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .fsync_duration
            .observe(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Fsync what was written and not yet synced (the `Interval` policy's timer). Blocking.
    /// What was written is acknowledged already; a failed fsync is retried by writing it again
    /// first (see `LogWriter::sync`).
    pub fn sync_if_dirty(&self) -> io::Result<()> {
        let mut files = self.files.lock();
        let synced = self.sync_files(&mut files);
        if let Err(error) = &synced {
            self.count_failure(error.kind());
            if self.failure_log.allow() {
                tracing::error!(topic = %self.topic, %error, "interval fsync failed; the unsynced bytes are written again before the next attempt");
            }
        }
        synced
    }

    /// The failure injection shared by the topic's log and journal (tests only).
    #[cfg(test)]
    pub fn faults(&self) -> Arc<super::durable_file::Faults> {
        self.files.lock().log.faults()
    }

    /// Refuse new work from now on (the topic's files are being deleted).
    pub fn refuse_new_work(&self) {
        self.pending.lock().closed = true;
    }

    /// Refuse new work, wait for the running flusher, fsync everything.
    pub async fn close(self: &Arc<Self>) {
        loop {
            let idle = self.idle.notified();
            {
                let mut pending = self.pending.lock();
                pending.closed = true;
                if !pending.running {
                    break;
                }
            }
            idle.await;
        }
        let committer = Arc::clone(self);
        let synced = tokio::task::spawn_blocking(move || committer.sync_if_dirty()).await;
        if let Ok(Err(error)) | Err(error) = synced.map_err(io::Error::other) {
            tracing::error!(topic = %self.topic, %error, "final fsync failed");
        }
    }

    /// Create a subscription: `make` gets the address the next published event will have,
    /// registers the state and returns its creation record, written and fsynced at once. The
    /// files lock is held throughout, so a compaction cannot run between the registration and
    /// the record (and miss both).
    pub fn create_with(&self, make: impl FnOnce(u64) -> io::Result<Vec<u8>>) -> io::Result<()> {
        let mut files = self.files.lock();
        let record = make(files.log.end())?;
        files.journal.append(&record)?;
        files.journal.sync()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_logged_once_per_period_however_often_it_happens() {
        let limit = RateLimit {
            last: Mutex::new(None),
            period: std::time::Duration::from_secs(3600),
        };
        assert!(limit.allow());
        assert!((0..1000).all(|_| !limit.allow()));
        *limit.last.lock() = Some(Instant::now() - std::time::Duration::from_secs(3601));
        assert!(limit.allow());
    }

    #[test]
    fn every_way_of_running_out_of_room_is_disk_full() {
        for kind in [
            io::ErrorKind::StorageFull,
            io::ErrorKind::QuotaExceeded,
            io::ErrorKind::FileTooLarge,
        ] {
            assert_eq!(failure_reason(kind), "disk_full");
        }
        assert_eq!(failure_reason(io::ErrorKind::Other), "io");
        // ENOSPC, EDQUOT and EFBIG on Linux.
        for errno in [28, 122, 27] {
            let kind = io::Error::from_raw_os_error(errno).kind();
            assert!(is_disk_full(kind), "errno {errno}: {kind:?}");
        }
    }
}
