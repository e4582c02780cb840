//! A topic's event log: append-only segment files `<topic dir>/segments/<base>.log`, where
//! `<base>` (20 decimal digits) is the address of the segment's first byte. An event's address
//! is the log-wide byte position of its record: unique, increasing, and enough to find it
//! again (the segment is the last one whose base is not above it).
//!
//! Record: `len u32 | crc32 u32 | body`, little-endian, CRC over the body; event body:
//! `kind u8 (1) | publish_time i64 (ms) | n u16 | n × subscription id u32 | event JSON`.
//! The subscription ids are those whose filter matched when the event was published.
//!
//! Only the committer (`commit.rs`) writes; readers read concurrently with positioned reads
//! up to `readable_end`, which the committer raises once bytes are durable (or, under the
//! `Interval` policy, written).

use super::clock::Millis;
use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

pub const RECORD_HEADER_BYTES: usize = 8;
const EVENT_KIND: u8 = 1;
/// Fixed part of an event body before the subscription ids.
const EVENT_FIXED_BYTES: usize = 1 + 8 + 2;
/// Larger than any event the HTTP layer accepts (1 MB); a length past it is a torn or corrupt
/// header, never a real record.
const MAX_RECORD_BYTES: usize = 8 << 20;
/// Unknown first publish time (an empty segment).
const NO_TIME: Millis = i64::MIN;

/// Append one event record to `buf`.
pub fn encode_event(buf: &mut Vec<u8>, publish_time: Millis, matches: &[u32], json: &[u8]) {
    let count = u16::try_from(matches.len()).unwrap_or(u16::MAX);
    let body_len = EVENT_FIXED_BYTES + usize::from(count) * 4 + json.len();
    let start = buf.len();
    buf.extend_from_slice(&u32::try_from(body_len).unwrap_or(u32::MAX).to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.push(EVENT_KIND);
    buf.extend_from_slice(&publish_time.to_le_bytes());
    buf.extend_from_slice(&count.to_le_bytes());
    for id in &matches[..usize::from(count)] {
        buf.extend_from_slice(&id.to_le_bytes());
    }
    buf.extend_from_slice(json);
    let crc = crc32fast::hash(&buf[start + RECORD_HEADER_BYTES..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// One event record inside a buffer read from the log.
#[derive(Clone, Copy, Debug)]
pub struct EventView<'a> {
    pub address: u64,
    /// Header included: the distance to the next record.
    pub total_len: u32,
    pub publish_time: Millis,
    matches: &'a [u8],
    pub json: &'a [u8],
}

impl EventView<'_> {
    /// Whether the subscription's filter matched this event at publish time.
    pub fn matched(&self, subscription: u32) -> bool {
        let wanted = subscription.to_le_bytes();
        self.matches.chunks_exact(4).any(|id| id == wanted)
    }
}

/// What a record at the start of `bytes` is.
enum Parsed<'a> {
    Event(EventView<'a>),
    /// The buffer ends inside the record; it needs this many bytes in all.
    Incomplete(usize),
    /// Not a valid record (torn write or corruption).
    Invalid,
}

fn parse(bytes: &[u8], address: u64) -> Parsed<'_> {
    let Some(header) = bytes.get(..RECORD_HEADER_BYTES) else {
        return Parsed::Incomplete(RECORD_HEADER_BYTES);
    };
    let body_len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if !(EVENT_FIXED_BYTES..=MAX_RECORD_BYTES).contains(&body_len) {
        return Parsed::Invalid;
    }
    let total = RECORD_HEADER_BYTES + body_len;
    let Some(body) = bytes.get(RECORD_HEADER_BYTES..total) else {
        return Parsed::Incomplete(total);
    };
    if crc32fast::hash(body) != crc || body[0] != EVENT_KIND {
        return Parsed::Invalid;
    }
    let mut time = [0u8; 8];
    time.copy_from_slice(&body[1..9]);
    let count = usize::from(u16::from_le_bytes([body[9], body[10]]));
    let Some(matches) = body.get(EVENT_FIXED_BYTES..EVENT_FIXED_BYTES + count * 4) else {
        return Parsed::Invalid;
    };
    Parsed::Event(EventView {
        address,
        total_len: total as u32,
        publish_time: i64::from_le_bytes(time),
        matches,
        json: &body[EVENT_FIXED_BYTES + count * 4..],
    })
}

/// Bytes read from the log starting at a record boundary.
pub struct Chunk {
    pub start: u64,
    bytes: Vec<u8>,
}

impl Chunk {
    /// The complete, valid records of the chunk, in order.
    pub fn events(&self) -> impl Iterator<Item = EventView<'_>> {
        let mut offset = 0usize;
        std::iter::from_fn(move || {
            let rest = self.bytes.get(offset..)?;
            match parse(rest, self.start + offset as u64) {
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

/// A single record read back by address.
pub struct Record(Vec<u8>, u64);

impl Record {
    pub fn view(&self) -> Option<EventView<'_>> {
        match parse(&self.0, self.1) {
            Parsed::Event(view) => Some(view),
            _ => None,
        }
    }
}

pub struct Segment {
    pub base: u64,
    file: File,
    path: PathBuf,
    /// The first record's publish time, `NO_TIME` while the segment is empty.
    first_publish_time: AtomicI64,
    /// The newest record's publish time, known for segments written or scanned by this
    /// process (`NO_TIME` otherwise: then the next segment's first time bounds it).
    newest_publish_time: AtomicI64,
}

impl Segment {
    fn first_publish_time(&self) -> Option<Millis> {
        match self.first_publish_time.load(Ordering::Acquire) {
            NO_TIME => None,
            time => Some(time),
        }
    }

    fn newest_publish_time(&self) -> Option<Millis> {
        match self.newest_publish_time.load(Ordering::Acquire) {
            NO_TIME => None,
            time => Some(time),
        }
    }
}

pub struct Log {
    dir: PathBuf,
    segments: RwLock<BTreeMap<u64, Arc<Segment>>>,
    /// Readers never read at or past this address.
    readable_end: AtomicU64,
    /// A segment is sealed and a new one started once it holds this many bytes.
    segment_bytes: u64,
}

/// The committer's handle on the active segment. Only one exists per log.
pub struct LogWriter {
    active: Arc<Segment>,
    /// Bytes written to the active segment.
    position: u64,
    /// Written since the last `sync`.
    dirty: bool,
}

fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

fn open_segment(path: PathBuf, base: u64, create: bool) -> io::Result<Segment> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(&path)?;
    Ok(Segment {
        base,
        file,
        path,
        first_publish_time: AtomicI64::new(NO_TIME),
        newest_publish_time: AtomicI64::new(NO_TIME),
    })
}

/// Make a directory entry (a new or removed file) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Log {
    /// Open the log in `dir`, creating it if needed. The last segment is scanned and a torn
    /// tail (a crash mid-write) is cut off; sealed segments were fsynced before the next one
    /// was created, so only their first record is read (for retention).
    pub fn open(dir: PathBuf, segment_bytes: u64) -> io::Result<(Log, LogWriter)> {
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
            let path = segment_path(&dir, last);
            if fs::metadata(&path)?.len() > 0 {
                break;
            }
            fs::remove_file(&path)?;
            sync_dir(&dir)?;
            bases.pop();
        }
        let mut segments = BTreeMap::new();
        for &base in &bases {
            let segment = open_segment(segment_path(&dir, base), base, false)?;
            if let Some(time) = read_first_publish_time(&segment.file)? {
                segment.first_publish_time.store(time, Ordering::Release);
            }
            segments.insert(base, Arc::new(segment));
        }
        let active = match segments.last_key_value() {
            Some((_, segment)) => Arc::clone(segment),
            None => {
                let segment = Arc::new(open_segment(segment_path(&dir, 0), 0, true)?);
                sync_dir(&dir)?;
                segments.insert(0, Arc::clone(&segment));
                segment
            }
        };
        let position = recover_tail(&active)?;
        let log = Log {
            dir,
            segments: RwLock::new(segments),
            readable_end: AtomicU64::new(active.base + position),
            segment_bytes,
        };
        let writer = LogWriter {
            active,
            position,
            dirty: false,
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
    /// past `from` means: continue at the next segment.
    pub fn read_chunk(&self, from: u64, max_bytes: usize) -> io::Result<Chunk> {
        let Some((segment, start, segment_end)) = self.locate(from) else {
            return Ok(Chunk {
                start: from,
                bytes: Vec::new(),
            });
        };
        // Sealed segments end exactly where the next begins, so `start` only reaches the end
        // of its segment at the end of the readable log.
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
        Ok(Chunk { start, bytes })
    }

    /// Read the record of `total_len` bytes at `address`; `None` if it is no longer on disk.
    pub fn read_record(&self, address: u64, total_len: u32) -> io::Result<Option<Record>> {
        let Some((segment, start, segment_end)) = self.locate(address) else {
            return Ok(None);
        };
        if start != address || address + u64::from(total_len) > segment_end {
            return Ok(None);
        }
        let mut bytes = vec![0u8; total_len as usize];
        segment
            .file
            .read_exact_at(&mut bytes, address - segment.base)?;
        Ok(Some(Record(bytes, address)))
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
        self.active.base + self.position
    }

    /// Write encoded records (one or more whole batches) at the end of the active segment.
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        if self.position == 0
            && let Some(first) = record_times(bytes).next()
        {
            self.active
                .first_publish_time
                .store(first, Ordering::Release);
        }
        if let Some(newest) = record_times(bytes).max() {
            self.active
                .newest_publish_time
                .fetch_max(newest, Ordering::AcqRel);
        }
        if let Err(error) = self.active.file.write_all_at(bytes, self.position) {
            // Cut off whatever part was written, so the next append starts at a boundary.
            let _ = self.active.file.set_len(self.position);
            return Err(error);
        }
        self.position += bytes.len() as u64;
        self.dirty = true;
        Ok(())
    }

    /// Make every appended byte durable.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.dirty {
            self.active.file.sync_data()?;
            self.dirty = false;
        }
        Ok(())
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Let readers see everything appended so far.
    pub fn expose(&self, log: &Log) {
        log.publish_end(self.end());
    }

    /// Seal the active segment once it is full: fsync it, then start the next one. Sealing
    /// fsyncs even under the `Interval` policy, so that only the last segment can have a torn
    /// tail.
    pub fn roll_if_full(&mut self, log: &Log) -> io::Result<()> {
        if self.position < log.segment_bytes {
            return Ok(());
        }
        self.active.file.sync_data()?;
        self.dirty = false;
        let base = self.end();
        let segment = Arc::new(open_segment(segment_path(&log.dir, base), base, true)?);
        sync_dir(&log.dir)?;
        log.segments.write().insert(base, Arc::clone(&segment));
        self.active = segment;
        self.position = 0;
        Ok(())
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

fn read_first_publish_time(file: &File) -> io::Result<Option<Millis>> {
    let mut head = [0u8; RECORD_HEADER_BYTES + EVENT_FIXED_BYTES];
    match file.read_exact_at(&mut head, 0) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut time = [0u8; 8];
    time.copy_from_slice(&head[RECORD_HEADER_BYTES + 1..RECORD_HEADER_BYTES + 9]);
    Ok(Some(i64::from_le_bytes(time)))
}

/// Scan the active segment, cut a torn or corrupt tail, and return the valid length.
fn recover_tail(segment: &Segment) -> io::Result<u64> {
    let length = segment.file.metadata()?.len();
    let mut valid = 0u64;
    let mut buffer = Vec::new();
    const CHUNK: usize = 1 << 20;
    'scan: while valid < length {
        let want = usize::try_from(length - valid)
            .unwrap_or(usize::MAX)
            .min(CHUNK);
        buffer.resize(want, 0);
        segment.file.read_exact_at(&mut buffer, valid)?;
        let mut offset = 0usize;
        loop {
            match parse(&buffer[offset..], segment.base + valid + offset as u64) {
                Parsed::Event(view) => {
                    offset += view.total_len as usize;
                    segment
                        .newest_publish_time
                        .fetch_max(view.publish_time, Ordering::AcqRel);
                }
                Parsed::Incomplete(needed) => {
                    if valid + (offset + needed) as u64 > length {
                        valid += offset as u64;
                        break 'scan;
                    }
                    if offset == 0 {
                        // One record larger than the chunk: read it whole.
                        buffer.resize(needed, 0);
                        segment.file.read_exact_at(&mut buffer, valid)?;
                        continue;
                    }
                    valid += offset as u64;
                    continue 'scan;
                }
                Parsed::Invalid => {
                    valid += offset as u64;
                    break 'scan;
                }
            }
        }
    }
    if valid < length {
        tracing::warn!(
            segment = %segment.path.display(),
            kept = valid,
            cut = length - valid,
            "cutting a torn tail off the event log"
        );
        segment.file.set_len(valid)?;
        segment.file.sync_all()?;
    }
    if valid == 0 {
        segment.first_publish_time.store(NO_TIME, Ordering::Release);
        segment
            .newest_publish_time
            .store(NO_TIME, Ordering::Release);
    }
    Ok(valid)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let (log, mut writer) = Log::open(dir.path().to_path_buf(), 100).unwrap();
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
            let (log, mut writer) = Log::open(path.clone(), 1 << 20).unwrap();
            append_events(&mut writer, &log, 4, 1);
            log.end()
        };
        // Half a record at the end, as a kill -9 mid-write leaves it.
        let segment = segment_path(&path, 0);
        let mut partial = Vec::new();
        encode_event(&mut partial, 2, &[7], b"{\"torn\":true}");
        let mut bytes = fs::read(&segment).unwrap();
        bytes.extend_from_slice(&partial[..partial.len() / 2]);
        fs::write(&segment, &bytes).unwrap();

        let (log, writer) = Log::open(path, 1 << 20).unwrap();
        assert_eq!(log.end(), end);
        assert_eq!(writer.end(), end);
        assert_eq!(fs::metadata(&segment).unwrap().len(), end);
        assert_eq!(read_all(&log).len(), 4);
    }

    #[test]
    fn a_corrupt_record_ends_the_recovered_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        {
            let (log, mut writer) = Log::open(path.clone(), 1 << 20).unwrap();
            append_events(&mut writer, &log, 4, 1);
        }
        let segment = segment_path(&path, 0);
        let mut bytes = fs::read(&segment).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 0xff;
        fs::write(&segment, &bytes).unwrap();
        let (log, _writer) = Log::open(path, 1 << 20).unwrap();
        assert_eq!(read_all(&log).len(), 3);
    }

    #[test]
    fn a_record_larger_than_the_chunk_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (log, mut writer) = Log::open(dir.path().to_path_buf(), 1 << 20).unwrap();
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
        let (log, mut writer) = Log::open(dir.path().to_path_buf(), 50).unwrap();
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
}
