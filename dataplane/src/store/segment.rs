//! One segment file of a topic's log, `<topic dir>/segments/<base:020>.log`: its base address,
//! its open file (shared by readers and, while it is the active segment, the writer), and the
//! publish times retention dates it by. Recovery of the active segment (the torn-tail cut and
//! the bad ranges to quarantine) is here; reading across segments is `log.rs`.

use super::clock::Millis;
use super::record::{self, EVENT_FIXED_BYTES, Parsed, RECORD_HEADER_BYTES, parse};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Unknown first publish time (an empty segment).
const NO_TIME: Millis = i64::MIN;

pub struct Segment {
    pub base: u64,
    /// Shared with the writer's `DurableFile` while the segment is active.
    pub file: Arc<File>,
    pub path: PathBuf,
    /// The first record's publish time, `NO_TIME` while the segment is empty.
    first_publish_time: AtomicI64,
    /// The newest record's publish time, known for segments written or scanned by this
    /// process (`NO_TIME` otherwise: then the next segment's first time bounds it).
    newest_publish_time: AtomicI64,
}

impl Segment {
    /// The file of the segment starting at `base` in the log folder `dir`.
    pub fn path_in(dir: &Path, base: u64) -> PathBuf {
        dir.join(format!("{base:020}.log"))
    }

    /// A new, empty segment file (the caller fsyncs the folder).
    pub fn create(dir: &Path, base: u64) -> io::Result<Segment> {
        Segment::open_file(Segment::path_in(dir, base), base, true)
    }

    /// An existing segment file, dated by its first valid record.
    pub fn open(dir: &Path, base: u64) -> io::Result<Segment> {
        let segment = Segment::open_file(Segment::path_in(dir, base), base, false)?;
        if let Some(time) = read_first_publish_time(&segment.file)? {
            segment.first_publish_time.store(time, Ordering::Release);
        }
        Ok(segment)
    }

    fn open_file(path: PathBuf, base: u64, create: bool) -> io::Result<Segment> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(&path)?;
        Ok(Segment {
            base,
            file: Arc::new(file),
            path,
            first_publish_time: AtomicI64::new(NO_TIME),
            newest_publish_time: AtomicI64::new(NO_TIME),
        })
    }

    /// Date the segment by records just appended (`was_empty`: they are its first).
    pub fn note_appended(&self, bytes: &[u8], was_empty: bool) {
        if was_empty && let Some(first) = record_times(bytes).next() {
            self.first_publish_time.store(first, Ordering::Release);
        }
        if let Some(newest) = record_times(bytes).max() {
            self.newest_publish_time.fetch_max(newest, Ordering::AcqRel);
        }
    }

    pub fn first_publish_time(&self) -> Option<Millis> {
        match self.first_publish_time.load(Ordering::Acquire) {
            NO_TIME => None,
            time => Some(time),
        }
    }

    pub fn newest_publish_time(&self) -> Option<Millis> {
        match self.newest_publish_time.load(Ordering::Acquire) {
            NO_TIME => None,
            time => Some(time),
        }
    }

    /// Scan the active segment: cut a torn tail (bytes after the last valid record holding no
    /// valid record), and return the valid length and the bad ranges with valid records after
    /// them (to quarantine).
    pub fn recover(&self) -> io::Result<(u64, Vec<record::BadRange>)> {
        let length = self.file.metadata()?.len();
        let scan = record::scan(&*self.file, self.base, length, |view| {
            self.newest_publish_time
                .fetch_max(view.publish_time, Ordering::AcqRel);
        })?;
        let valid = scan.records_end;
        if valid < length {
            tracing::warn!(
                segment = %self.path.display(),
                kept = valid,
                cut = length - valid,
                "cutting a torn tail off the event log"
            );
            self.file.set_len(valid)?;
            self.file.sync_all()?;
        }
        if valid == 0 {
            self.first_publish_time.store(NO_TIME, Ordering::Release);
            self.newest_publish_time.store(NO_TIME, Ordering::Release);
        }
        Ok((valid, scan.bad))
    }
}

/// The publish times of the records in `bytes` (encoded by this process, so not checked).
fn record_times(bytes: &[u8]) -> impl Iterator<Item = Millis> + '_ {
    let mut offset = 0usize;
    std::iter::from_fn(move || {
        let header = bytes.get(offset..offset + RECORD_HEADER_BYTES + 9)?;
        let body_len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let mut time = [0u8; 8];
        time.copy_from_slice(&header[RECORD_HEADER_BYTES + 1..]);
        offset += RECORD_HEADER_BYTES + body_len;
        Some(i64::from_le_bytes(time))
    })
}

/// The publish time of a segment's first valid record (a damaged first record must not give
/// retention a wrong age), `None` for a segment without one.
fn read_first_publish_time(file: &File) -> io::Result<Option<Millis>> {
    let length = file.metadata()?.len();
    // Usually the first record is whole: read just it. A scan only after damage.
    let mut head = [0u8; RECORD_HEADER_BYTES + EVENT_FIXED_BYTES];
    if length < head.len() as u64 {
        return Ok(None);
    }
    file.read_exact_at(&mut head, 0)?;
    // A length past any record's is refused by `parse` from the header alone.
    let claimed = (RECORD_HEADER_BYTES as u64
        + u64::from(u32::from_le_bytes([head[0], head[1], head[2], head[3]])))
    .min(length)
    .min(9 << 20);
    let mut first_record = vec![0u8; claimed as usize];
    file.read_exact_at(&mut first_record, 0)?;
    let first = match parse(&first_record, 0) {
        Parsed::Event(_) => 0,
        Parsed::Incomplete(_) | Parsed::Invalid => match record::find_record(file, 1, length)? {
            Some(first) => first,
            None => return Ok(None),
        },
    };
    file.read_exact_at(&mut head, first)?;
    let mut time = [0u8; 8];
    time.copy_from_slice(&head[RECORD_HEADER_BYTES + 1..RECORD_HEADER_BYTES + 9]);
    Ok(Some(i64::from_le_bytes(time)))
}
