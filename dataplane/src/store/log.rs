//! A topic's event log: append-only segment files `<topic dir>/segments/<base>.log`, where
//! `<base>` (20 decimal digits) is the address of the segment's first byte. An event's address
//! is the log-wide byte position of its record: unique, increasing, and enough to find it
//! again (the segment is the last one whose base is not above it).
//!
//! Records are framed as `record.rs` says. Bytes that hold no valid record but have valid
//! records after them are **quarantined**: the range is remembered, logged and counted, never
//! read or delivered, and left on disk untouched (the records after it keep their addresses).
//! Recovery finds such ranges in the active segment; readers find them in any segment when a
//! record fails its checks.
//!
//! Only the committer (`commit.rs`) writes; readers read concurrently with positioned reads
//! up to `readable_end`, which the committer raises once bytes are durable (or, under the
//! `Interval` policy, written).

use super::clock::Millis;
use super::durable_file::{DurableFile, sync_dir};
use super::record::{self, Corruption, EventView, Parsed, RECORD_HEADER_BYTES, parse};
use super::segment::Segment;
use parking_lot::RwLock;
use prometheus::IntCounterVec;
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use super::record::encode_event;

/// Bytes read from the log starting at a record boundary: whole valid records, the last one
/// possibly cut short by the end of the read (the next chunk starts with it).
pub struct Chunk {
    pub start: u64,
    bytes: Vec<u8>,
}

impl Chunk {
    /// The complete records of the chunk, in order.
    pub fn events(&self) -> impl Iterator<Item = EventView<'_>> {
        let mut offset = 0usize;
        std::iter::from_fn(move || {
            let rest = self.bytes.get(offset..)?;
            // `read_chunk` checked every record it kept.
            match record::parse_validated(rest, self.start + offset as u64) {
                Parsed::Event(view) => {
                    offset += view.total_len as usize;
                    Some(view)
                }
                Parsed::Incomplete(_) | Parsed::Invalid => None,
            }
        })
    }

    /// Bytes read.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Where reading should continue after this chunk.
    #[cfg(test)]
    pub fn end(&self) -> u64 {
        self.start + self.events().map(|e| u64::from(e.total_len)).sum::<u64>()
    }
}

/// A single valid record read back by address.
pub struct Record(Vec<u8>, u64);

impl Record {
    pub fn view(&self) -> Option<EventView<'_>> {
        match parse(&self.0, self.1) {
            Parsed::Event(view) => Some(view),
            _ => None,
        }
    }
}

/// Where a log reports the corrupt ranges it finds.
pub struct CorruptionReport {
    pub topic: String,
    /// `gridline_store_corrupt_records_total{topic, reason}`.
    pub counter: IntCounterVec,
}

pub struct Log {
    dir: PathBuf,
    segments: RwLock<BTreeMap<u64, Arc<Segment>>>,
    /// Quarantined ranges, start address → end address: never read, never delivered. Each
    /// lies within one segment and ends where a valid record starts (or at its segment's end).
    quarantine: RwLock<BTreeMap<u64, u64>>,
    report: CorruptionReport,
    /// Readers never read at or past this address.
    readable_end: AtomicU64,
    /// A segment is sealed and a new one started once it holds this many bytes.
    segment_bytes: u64,
}

/// The committer's handle on the active segment. Only one exists per log.
pub struct LogWriter {
    active: Arc<Segment>,
    /// The active segment's file; its length is the bytes written to the segment.
    file: DurableFile,
}

impl Log {
    /// Open the log in `dir`, creating it if needed. The last segment is scanned: a torn tail
    /// (a crash mid-write) is cut off, bad records followed by valid ones are quarantined.
    /// Sealed segments were fsynced before the next one was created, so only their first
    /// record is read (for retention); damage there is found when they are read.
    pub fn open(
        dir: PathBuf,
        segment_bytes: u64,
        report: CorruptionReport,
    ) -> io::Result<(Log, LogWriter)> {
        fs::create_dir_all(&dir)?;
        let mut bases = Vec::new();
        for entry in fs::read_dir(&dir)? {
            let name = entry?.file_name();
            let Some(base) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".log"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            bases.push(base);
        }
        bases.sort_unstable();
        // An empty last segment (a crash right after a roll) is dropped and its predecessor
        // becomes active again, so the active segment's newest time is always known.
        while bases.len() > 1 {
            let Some(&last) = bases.last() else { break };
            let path = Segment::path_in(&dir, last);
            if fs::metadata(&path)?.len() > 0 {
                break;
            }
            fs::remove_file(&path)?;
            sync_dir(&dir)?;
            bases.pop();
        }
        let mut segments = BTreeMap::new();
        for &base in &bases {
            segments.insert(base, Arc::new(Segment::open(&dir, base)?));
        }
        let active = match segments.last_key_value() {
            Some((_, segment)) => Arc::clone(segment),
            None => {
                let segment = Arc::new(Segment::create(&dir, 0)?);
                sync_dir(&dir)?;
                segments.insert(0, Arc::clone(&segment));
                segment
            }
        };
        let (position, bad) = active.recover()?;
        let log = Log {
            dir,
            segments: RwLock::new(segments),
            quarantine: RwLock::new(BTreeMap::new()),
            report,
            readable_end: AtomicU64::new(active.base + position),
            segment_bytes,
        };
        for range in bad {
            log.quarantine(
                &active,
                active.base + range.start,
                active.base + range.end,
                range.corruption,
            );
        }
        let writer = LogWriter {
            file: DurableFile::new(Arc::clone(&active.file), position),
            active,
        };
        Ok((log, writer))
    }

    /// The address after the last readable record.
    pub fn end(&self) -> u64 {
        self.readable_end.load(Ordering::Acquire)
    }

    /// The address of the oldest record still on disk.
    pub fn start(&self) -> u64 {
        self.segments
            .read()
            .first_key_value()
            .map_or(0, |(b, _)| *b)
    }

    /// When the newest event was published; for an empty log, when its segment file was
    /// last written (so that an empty log counts from its creation). `None` if unknown.
    pub fn newest_activity(&self) -> Option<Millis> {
        let segments = self.segments.read();
        let mut newer_first: Option<Millis> = None;
        for segment in segments.values().rev() {
            // A segment's newest time is unknown only for sealed segments this process did
            // not write; the first time of the segment after it bounds it from above.
            if let Some(time) = segment.newest_publish_time().or(newer_first) {
                return Some(time);
            }
            newer_first = segment.first_publish_time();
        }
        let modified = segments
            .values()
            .next_back()?
            .file
            .metadata()
            .ok()?
            .modified()
            .ok()?;
        let since_epoch = modified.duration_since(std::time::UNIX_EPOCH).ok()?;
        Some(i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX))
    }

    /// Bytes held on disk (approximately: the span of addresses still present).
    pub fn bytes_on_disk(&self) -> u64 {
        self.end().saturating_sub(self.start())
    }

    /// The segment holding `address` and where it ends (the next base, or the readable end).
    fn locate(&self, address: u64) -> Option<(Arc<Segment>, u64, u64)> {
        let segments = self.segments.read();
        let end = self.end();
        let mut range = segments.range(..=address);
        let (segment, address) = match range.next_back() {
            Some((_, segment)) => (Arc::clone(segment), address),
            // Before the first segment: the records there were deleted by retention.
            None => {
                let (_, first) = segments.first_key_value()?;
                (Arc::clone(first), first.base)
            }
        };
        let segment_end = segments
            .range(segment.base + 1..)
            .next()
            .map_or(end, |(base, _)| *base)
            .min(end);
        Some((segment, address, segment_end))
    }

    /// Read whole records from `from` (a record boundary), at most about `max_bytes` (but at
    /// least one record), stopping at the end of a segment. An empty chunk whose `start` is
    /// past `from` means: continue at the next segment. Quarantined ranges are skipped (the
    /// chunk then starts past `from`); a record found bad here is quarantined and the chunk
    /// ends before it. So a chunk always holds a record or starts past `from`, unless it is
    /// empty at the readable end: a reader always makes progress.
    pub fn read_chunk(&self, from: u64, max_bytes: usize) -> io::Result<Chunk> {
        let mut from = from;
        loop {
            let Some((segment, start, segment_end)) = self.locate(from) else {
                return Ok(Chunk {
                    start: from,
                    bytes: Vec::new(),
                });
            };
            if let Some(end) = self.quarantined_end(start) {
                from = end;
                continue;
            }
            // Sealed segments end exactly where the next begins, so `start` only reaches the
            // end of its segment at the end of the readable log.
            if start >= segment_end {
                return Ok(Chunk {
                    start,
                    bytes: Vec::new(),
                });
            }
            let available = usize::try_from(segment_end - start).unwrap_or(usize::MAX);
            let mut bytes = vec![0u8; available.min(max_bytes.max(RECORD_HEADER_BYTES))];
            segment
                .file
                .read_exact_at(&mut bytes, start - segment.base)?;
            // A first record larger than the chunk: read exactly that record.
            if let Parsed::Incomplete(needed) = parse(&bytes, start)
                && needed <= available
            {
                bytes.resize(needed, 0);
                segment
                    .file
                    .read_exact_at(&mut bytes, start - segment.base)?;
            }
            let Some(bad) = first_bad_record(&bytes, start, segment_end) else {
                return Ok(Chunk { start, bytes });
            };
            let next = self.quarantine_from(&segment, start + bad as u64, segment_end)?;
            if bad > 0 {
                bytes.truncate(bad);
                return Ok(Chunk { start, bytes });
            }
            from = next;
        }
    }

    /// Read the record of `total_len` bytes at `address`; `None` if it is no longer on disk or
    /// is quarantined (found bad now or before).
    pub fn read_record(&self, address: u64, total_len: u32) -> io::Result<Option<Record>> {
        let Some((segment, start, segment_end)) = self.locate(address) else {
            return Ok(None);
        };
        if start != address
            || address + u64::from(total_len) > segment_end
            || self.quarantined_end(address).is_some()
        {
            return Ok(None);
        }
        let mut bytes = vec![0u8; total_len as usize];
        segment
            .file
            .read_exact_at(&mut bytes, address - segment.base)?;
        match parse(&bytes, address) {
            Parsed::Event(view) if view.total_len == total_len => Ok(Some(Record(bytes, address))),
            Parsed::Event(_) => Ok(None),
            Parsed::Incomplete(_) | Parsed::Invalid => {
                self.quarantine_from(&segment, address, segment_end)?;
                Ok(None)
            }
        }
    }

    /// The end of the quarantined range holding `address`, if any.
    fn quarantined_end(&self, address: u64) -> Option<u64> {
        let ranges = self.quarantine.read();
        let (_, end) = ranges.range(..=address).next_back()?;
        (address < *end).then_some(*end)
    }

    /// A bad record starts at `address`: quarantine everything up to the next valid record of
    /// its segment (or the segment's readable end). Returns where reading goes on.
    fn quarantine_from(
        &self,
        segment: &Segment,
        address: u64,
        segment_end: u64,
    ) -> io::Result<u64> {
        let (offset, end) = (address - segment.base, segment_end - segment.base);
        let next = record::find_record(&*segment.file, offset + 1, end)?.unwrap_or(end);
        let mut head = [0u8; RECORD_HEADER_BYTES];
        let head_len = usize::try_from(end - offset).map_or(head.len(), |n| n.min(head.len()));
        segment.file.read_exact_at(&mut head[..head_len], offset)?;
        let corruption = Corruption::of(&head[..head_len], offset, next);
        self.quarantine(segment, address, segment.base + next, corruption);
        Ok(segment.base + next)
    }

    /// Remember `start..end` as quarantined; the first time, log it and count it.
    fn quarantine(&self, segment: &Segment, start: u64, end: u64, corruption: Corruption) {
        {
            let mut ranges = self.quarantine.write();
            // Found already (by another reader, or from an earlier point of the same range).
            if ranges
                .range(..=start)
                .next_back()
                .is_some_and(|(_, known)| *known >= end)
            {
                return;
            }
            ranges.insert(start, end);
        }
        tracing::error!(
            topic = %self.report.topic,
            segment = %segment.path.display(),
            offset = start - segment.base,
            length = end - start,
            reason = corruption.as_str(),
            "corrupt bytes in the event log: quarantined and skipped, the records after them are kept"
        );
        self.report
            .counter
            .with_label_values(&[self.report.topic.as_str(), corruption.as_str()])
            .inc();
    }

    /// Delete the sealed segments whose records all lie before `before` and were all published
    /// at or before `published_by`. The active segment is never deleted. Returns how many.
    pub fn delete_segments(&self, before: u64, published_by: Millis) -> io::Result<usize> {
        let doomed: Vec<Arc<Segment>> = {
            let segments = self.segments.read();
            let list: Vec<&Arc<Segment>> = segments.values().collect();
            list.windows(2)
                .take_while(|pair| {
                    let (segment, next) = (pair[0], pair[1]);
                    // The next segment's first record was published after every record of
                    // this one, so its time bounds this segment's newest record.
                    let newest = segment
                        .newest_publish_time()
                        .or_else(|| next.first_publish_time());
                    next.base <= before && newest.is_some_and(|t| t <= published_by)
                })
                .map(|pair| Arc::clone(pair[0]))
                .collect()
        };
        if doomed.is_empty() {
            return Ok(0);
        }
        {
            let mut segments = self.segments.write();
            for segment in &doomed {
                segments.remove(&segment.base);
            }
            let first_kept = segments.first_key_value().map_or(0, |(base, _)| *base);
            self.quarantine
                .write()
                .retain(|start, _| *start >= first_kept);
        }
        for segment in &doomed {
            // Readers still holding the segment keep reading from the open descriptor.
            fs::remove_file(&segment.path)?;
        }
        sync_dir(&self.dir)?;
        Ok(doomed.len())
    }

    /// How many segment files the log has.
    #[cfg(test)]
    pub fn segment_count(&self) -> usize {
        self.segments.read().len()
    }

    /// Raise the readable end (the committer, after a write or an fsync).
    fn publish_end(&self, end: u64) {
        self.readable_end.fetch_max(end, Ordering::AcqRel);
    }
}

impl LogWriter {
    /// The address the next appended byte gets.
    pub fn end(&self) -> u64 {
        self.active.base + self.file.len()
    }

    /// Write encoded records (one or more whole batches) at the end of the active segment.
    /// On failure nothing of `bytes` stays: what part was written is cut off, so the next
    /// append starts at a record boundary.
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let was_empty = self.file.len() == 0;
        self.file.append(bytes)?;
        self.active.note_appended(bytes, was_empty);
        Ok(())
    }

    /// Forget what was appended from address `end` on (a failed round's records, never
    /// exposed): the file is cut there now, or before the next append if the cut fails. The
    /// cut is made durable by the next `sync`.
    pub fn cut_back(&mut self, end: u64) {
        self.file.cut_back(end.saturating_sub(self.active.base));
    }

    /// Make every appended byte durable (see `DurableFile::sync` for what follows a failed
    /// fsync).
    pub fn sync(&mut self) -> io::Result<()> {
        self.file.sync()
    }

    pub fn is_dirty(&self) -> bool {
        self.file.is_dirty()
    }

    /// The failure injection of this log's files (tests only).
    #[cfg(test)]
    pub fn faults(&self) -> Arc<super::durable_file::Faults> {
        Arc::clone(&self.file.faults)
    }

    /// Let readers see everything appended so far.
    pub fn expose(&self, log: &Log) {
        log.publish_end(self.end());
    }

    /// Seal the active segment once it is full: fsync it, then start the next one. Sealing
    /// fsyncs even under the `Interval` policy, so that only the last segment can have a torn
    /// tail.
    pub fn roll_if_full(&mut self, log: &Log) -> io::Result<()> {
        if self.file.len() < log.segment_bytes {
            return Ok(());
        }
        self.file.sync_always()?;
        let base = self.end();
        let segment = Arc::new(Segment::create(&log.dir, base)?);
        sync_dir(&log.dir)?;
        log.segments.write().insert(base, Arc::clone(&segment));
        self.file.replace_file(Arc::clone(&segment.file), 0);
        self.active = segment;
        Ok(())
    }
}

/// The offset in `bytes` (read at address `start`) of the first record that is not valid,
/// where a valid record either ends within `bytes` or is only cut short by the end of the read
/// (not by `segment_end`: a record running past its segment has a wrong length).
fn first_bad_record(bytes: &[u8], start: u64, segment_end: u64) -> Option<usize> {
    let mut offset = 0usize;
    while offset < bytes.len() {
        let address = start + offset as u64;
        match parse(&bytes[offset..], address) {
            Parsed::Event(view) => offset += view.total_len as usize,
            Parsed::Incomplete(needed) if address + needed as u64 <= segment_end => return None,
            Parsed::Incomplete(_) | Parsed::Invalid => return Some(offset),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::metrics::StoreMetrics;
    use std::path::Path;

    fn open_counted(path: &Path, segment_bytes: u64) -> (Log, LogWriter, IntCounterVec) {
        let counter = StoreMetrics::new().unwrap().corrupt_records;
        let report = CorruptionReport {
            topic: "orders".into(),
            counter: counter.clone(),
        };
        let (log, writer) = Log::open(path.to_path_buf(), segment_bytes, report).unwrap();
        (log, writer, counter)
    }

    fn open(path: &Path, segment_bytes: u64) -> (Log, LogWriter) {
        let (log, writer, _) = open_counted(path, segment_bytes);
        (log, writer)
    }

    fn corrupt(counter: &IntCounterVec, reason: &str) -> u64 {
        counter.with_label_values(&["orders", reason]).get()
    }

    /// Flip one bit of the file at `offset`.
    fn flip(path: &Path, offset: u64) {
        let mut bytes = fs::read(path).unwrap();
        bytes[offset as usize] ^= 0x20;
        fs::write(path, &bytes).unwrap();
    }

    /// The addresses of the records of a segment file, read without the log.
    fn record_offsets(path: &Path) -> Vec<u64> {
        let bytes = fs::read(path).unwrap();
        let mut offsets = Vec::new();
        record::scan(&bytes[..], 0, bytes.len() as u64, |view| {
            offsets.push(view.address)
        })
        .unwrap();
        offsets
    }

    fn append_events(writer: &mut LogWriter, log: &Log, count: usize, time: Millis) {
        let mut buf = Vec::new();
        for n in 0..count {
            encode_event(&mut buf, time, &[7], format!("{{\"n\":{n}}}").as_bytes());
        }
        writer.append(&buf).unwrap();
        writer.sync().unwrap();
        writer.expose(log);
        writer.roll_if_full(log).unwrap();
    }

    fn read_all(log: &Log) -> Vec<String> {
        let mut out = Vec::new();
        let mut at = log.start();
        loop {
            let chunk = log.read_chunk(at, 64).unwrap();
            let events: Vec<_> = chunk.events().collect();
            if events.is_empty() {
                if chunk.start > at {
                    at = chunk.start;
                    continue;
                }
                return out;
            }
            out.extend(
                events
                    .iter()
                    .map(|e| String::from_utf8(e.json.to_vec()).unwrap()),
            );
            at = chunk.end();
        }
    }

    #[test]
    fn appended_events_read_back_in_order_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let (log, mut writer) = open(dir.path(), 100);
        for n in 0..5 {
            append_events(&mut writer, &log, 3, n);
        }
        assert!(log.segment_count() > 1);
        let all = read_all(&log);
        assert_eq!(all.len(), 15);
        assert_eq!(all[0], "{\"n\":0}");
        assert_eq!(all[14], "{\"n\":2}");
    }

    #[test]
    fn a_torn_tail_is_cut_on_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let end = {
            let (log, mut writer) = open(&path, 1 << 20);
            append_events(&mut writer, &log, 4, 1);
            log.end()
        };
        // Half a record at the end, as a kill -9 mid-write leaves it.
        let segment = Segment::path_in(&path, 0);
        let mut partial = Vec::new();
        encode_event(&mut partial, 2, &[7], b"{\"torn\":true}");
        let mut bytes = fs::read(&segment).unwrap();
        bytes.extend_from_slice(&partial[..partial.len() / 2]);
        fs::write(&segment, &bytes).unwrap();

        let (log, writer) = open(&path, 1 << 20);
        assert_eq!(log.end(), end);
        assert_eq!(writer.end(), end);
        assert_eq!(fs::metadata(&segment).unwrap().len(), end);
        assert_eq!(read_all(&log).len(), 4);
    }

    #[test]
    fn a_corrupt_final_record_is_cut_as_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        {
            let (log, mut writer) = open(&path, 1 << 20);
            append_events(&mut writer, &log, 4, 1);
        }
        let segment = Segment::path_in(&path, 0);
        let mut bytes = fs::read(&segment).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 0xff;
        fs::write(&segment, &bytes).unwrap();
        let (log, _writer) = open(&path, 1 << 20);
        assert_eq!(read_all(&log).len(), 3);
    }

    #[test]
    fn a_record_larger_than_the_chunk_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (log, mut writer) = open(dir.path(), 1 << 20);
        let big = format!("\"{}\"", "x".repeat(10_000));
        let mut buf = Vec::new();
        encode_event(&mut buf, 1, &[], big.as_bytes());
        writer.append(&buf).unwrap();
        writer.expose(&log);
        let chunk = log.read_chunk(0, 100).unwrap();
        let events: Vec<_> = chunk.events().collect();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].json, big.as_bytes());
        assert!(!events[0].matched(7));
    }

    #[test]
    fn segments_are_deleted_only_before_the_address_and_time_given() {
        let dir = tempfile::tempdir().unwrap();
        let (log, mut writer) = open(dir.path(), 50);
        for time in 0..4 {
            append_events(&mut writer, &log, 3, time * 1000);
        }
        let segments = log.segment_count();
        assert_eq!(
            log.delete_segments(0, i64::MAX).unwrap(),
            0,
            "no reader is past any"
        );
        assert_eq!(
            log.delete_segments(u64::MAX, -1).unwrap(),
            0,
            "none old enough"
        );
        assert_eq!(log.delete_segments(u64::MAX, 999).unwrap(), 1);
        assert_eq!(log.segment_count(), segments - 1);
        assert_eq!(read_all(&log).len(), 9);
    }

    #[test]
    fn a_corrupt_record_in_the_active_segment_is_quarantined_and_the_records_after_it_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let end = {
            let (log, mut writer) = open(&path, 1 << 20);
            append_events(&mut writer, &log, 10, 1);
            log.end()
        };
        let segment = Segment::path_in(&path, 0);
        let offsets = record_offsets(&segment);
        flip(&segment, offsets[4] + 20);

        let (log, writer, counter) = open_counted(&path, 1 << 20);
        assert_eq!(writer.end(), end, "nothing cut");
        assert_eq!(fs::metadata(&segment).unwrap().len(), end);
        let all = read_all(&log);
        assert_eq!(all.len(), 9);
        assert!(!all.contains(&"{\"n\":4}".to_string()));
        assert_eq!(corrupt(&counter, "checksum"), 1);
        assert!(
            log.read_record(offsets[4], (offsets[5] - offsets[4]) as u32)
                .unwrap()
                .is_none()
        );
        // Reading it again neither finds nor counts it again.
        assert_eq!(read_all(&log).len(), 9);
        assert_eq!(corrupt(&counter, "checksum"), 1);
    }

    #[test]
    fn a_flipped_length_in_the_active_segment_costs_only_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        {
            let (log, mut writer) = open(&path, 1 << 20);
            append_events(&mut writer, &log, 10, 1);
        }
        let segment = Segment::path_in(&path, 0);
        let offsets = record_offsets(&segment);
        // The length's third byte: the record now claims to run far past the segment's end.
        flip(&segment, offsets[6] + 2);

        let (log, _writer, counter) = open_counted(&path, 1 << 20);
        assert_eq!(read_all(&log).len(), 9);
        assert_eq!(corrupt(&counter, "length"), 1);
    }

    #[test]
    fn a_bad_record_in_a_sealed_segment_is_skipped_by_readers_and_counted_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        {
            let (log, mut writer) = open(&path, 100);
            for time in 0..4 {
                append_events(&mut writer, &log, 3, time);
            }
            assert!(log.segment_count() > 2);
        }
        let sealed = Segment::path_in(&path, 0);
        let offsets = record_offsets(&sealed);
        flip(&sealed, offsets[1] + 2);
        let (log, _writer, counter) = open_counted(&path, 100);
        assert_eq!(
            corrupt(&counter, "length"),
            0,
            "sealed segments are read lazily"
        );

        let all = read_all(&log);
        assert_eq!(all.len(), 11);
        assert_eq!(all.iter().filter(|e| *e == "{\"n\":1}").count(), 3);
        assert_eq!(corrupt(&counter, "length"), 1);
        assert_eq!(read_all(&log).len(), 11);
        assert_eq!(corrupt(&counter, "length"), 1);
    }

    #[test]
    fn a_damaged_first_record_does_not_date_its_segment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        {
            let (log, mut writer) = open(&path, 100);
            for time in [1_000, 1_000, 2_000, 2_000, 3_000, 3_000] {
                append_events(&mut writer, &log, 3, time);
            }
            assert!(log.segment_count() > 3);
        }
        // The highest byte of the second segment's first publish time.
        let mut files: Vec<PathBuf> = fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        flip(&files[1], 8 + 1 + 7);
        let (log, _writer) = open(&path, 100);
        // Its first valid record was published at 2,000: the first segment, older, may go.
        assert_eq!(log.delete_segments(u64::MAX, 2_000).unwrap(), 1);
    }

    #[test]
    fn a_chunk_at_a_bad_record_starts_past_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        {
            let (log, mut writer) = open(&path, 1 << 20);
            append_events(&mut writer, &log, 3, 1);
            append_events(&mut writer, &log, 3, 2);
        }
        let segment = Segment::path_in(&path, 0);
        let offsets = record_offsets(&segment);
        let (log, _writer) = open(&path, 1 << 20);
        // Damaged after recovery (a bad sector read later): found by the reader.
        flip(&segment, offsets[0] + 12);
        let chunk = log.read_chunk(0, 1 << 16).unwrap();
        assert_eq!(chunk.start, offsets[1]);
        assert_eq!(chunk.events().count(), 5);
        // A reader whose cursor is inside the quarantined range goes on after it too.
        assert_eq!(log.read_chunk(offsets[0], 10).unwrap().start, offsets[1]);
    }
}
