//! The delivery-state journal of a topic's subscriptions: `<topic dir>/subscriptions.journal`.
//!
//! Record: `len u32 | crc32 u32 | body` (little-endian, CRC over the body); body:
//! `kind u8 | subscription u32 | seq u64 | payload`:
//! - `Snapshot` (1): `name_len u16 | name | cursor u64 | n u32 | n × entry` — a subscription's
//!   whole state; written at its creation and when the journal is compacted.
//! - `Upsert` (2): `cursor u64 | n u32 | n × entry` — receive, release, renew, expiry.
//! - `Remove` (3): `n u32 | n × address u64` — acknowledge, reject, dead-letter, drop.
//! - `Retire` (4): `time i64` — the configuration stopped (time > 0) or resumed (0) serving it.
//! - `Forget` (5): nothing — its state is gone for good (retired for longer than retention).
//!
//! A `Snapshot` of a retired subscription ends with its retirement time (`i64`); a snapshot
//! without those trailing bytes is of a served subscription (and of every journal written
//! before retirement was recorded).
//!
//! Entry: `address u64 | len u32 | publish_time i64 | delivery_count u32 | state u8 |
//! time i64 | nonce u64`, state 1 = locked until `time` with `nonce`, 2 = waiting until `time`.
//!
//! Every change of a subscription gets the next `seq` and is queued for writing while the
//! subscription's lock is held, so records of one subscription are in `seq` order in the
//! file. A snapshot carries the `seq` it includes; replay skips records at or below it. That
//! makes compaction safe while changes keep coming (see `commit.rs`).

use super::durable_file::{DurableFile, sync_dir};
use super::subscription::{EventState, InFlight, SubscriptionId, SubscriptionState};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const SNAPSHOT: u8 = 1;
const UPSERT: u8 = 2;
const REMOVE: u8 = 3;
const RETIRE: u8 = 4;
const FORGET: u8 = 5;
const LOCKED: u8 = 1;
const WAITING: u8 = 2;
const HEADER: usize = 8;
const MAX_RECORD_BYTES: usize = 64 << 20;

fn begin(buf: &mut Vec<u8>, kind: u8, id: SubscriptionId, seq: u64) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0; HEADER]);
    buf.push(kind);
    buf.extend_from_slice(&id.to_le_bytes());
    buf.extend_from_slice(&seq.to_le_bytes());
    start
}

fn finish(buf: &mut [u8], start: usize) {
    let body_len = u32::try_from(buf.len() - start - HEADER).unwrap_or(u32::MAX);
    let crc = crc32fast::hash(&buf[start + HEADER..]);
    buf[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn put_entry(buf: &mut Vec<u8>, address: u64, entry: &InFlight) {
    buf.extend_from_slice(&address.to_le_bytes());
    buf.extend_from_slice(&entry.len.to_le_bytes());
    buf.extend_from_slice(&entry.publish_time.to_le_bytes());
    buf.extend_from_slice(&entry.delivery_count.to_le_bytes());
    let (state, time, nonce) = match entry.state {
        EventState::Locked { deadline, nonce } => (LOCKED, deadline, nonce),
        EventState::Waiting { not_before } => (WAITING, not_before, 0),
        // Retried after a restart: the dead-letter append may not have happened.
        EventState::DeadLettering => (WAITING, 0, 0),
    };
    buf.push(state);
    buf.extend_from_slice(&time.to_le_bytes());
    buf.extend_from_slice(&nonce.to_le_bytes());
}

fn put_entries(buf: &mut Vec<u8>, entries: &[(u64, InFlight)]) {
    buf.extend_from_slice(
        &u32::try_from(entries.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    for (address, entry) in entries {
        put_entry(buf, *address, entry);
    }
}

/// The record of entries set by a change of `state` (and its cursor), with the next `seq`.
pub fn upsert_record(
    state: &mut SubscriptionState,
    entries: &[(u64, InFlight)],
    buf: &mut Vec<u8>,
) {
    let seq = state.next_seq();
    encode_upsert(buf, state.id, seq, state.cursor, entries);
}

/// The record of entries removed by a change of `state`, with the next `seq`.
pub fn remove_record(state: &mut SubscriptionState, addresses: &[u64], buf: &mut Vec<u8>) {
    let seq = state.next_seq();
    encode_remove(buf, state.id, seq, addresses);
}

/// The record of `state`'s retirement (after `retire` or `revive`), with the next `seq`.
pub fn retire_record(state: &mut SubscriptionState, buf: &mut Vec<u8>) {
    let seq = state.next_seq();
    encode_retire(buf, state.id, seq, state.retired_at);
}

/// The record that forgets `state`'s subscription, with the next `seq`.
pub fn forget_record(state: &mut SubscriptionState, buf: &mut Vec<u8>) {
    let seq = state.next_seq();
    encode_forget(buf, state.id, seq);
}

/// The record of `state` whole (creation and compaction).
pub fn snapshot_record(state: &SubscriptionState, buf: &mut Vec<u8>) {
    encode_snapshot(buf, state);
}

fn encode_upsert(
    buf: &mut Vec<u8>,
    id: SubscriptionId,
    seq: u64,
    cursor: u64,
    entries: &[(u64, InFlight)],
) {
    let start = begin(buf, UPSERT, id, seq);
    buf.extend_from_slice(&cursor.to_le_bytes());
    put_entries(buf, entries);
    finish(buf, start);
}

fn encode_remove(buf: &mut Vec<u8>, id: SubscriptionId, seq: u64, addresses: &[u64]) {
    let start = begin(buf, REMOVE, id, seq);
    buf.extend_from_slice(
        &u32::try_from(addresses.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    for address in addresses {
        buf.extend_from_slice(&address.to_le_bytes());
    }
    finish(buf, start);
}

fn encode_snapshot(buf: &mut Vec<u8>, state: &SubscriptionState) {
    let start = begin(buf, SNAPSHOT, state.id, state.seq);
    let name = state.name.as_bytes();
    buf.extend_from_slice(&u16::try_from(name.len()).unwrap_or(u16::MAX).to_le_bytes());
    buf.extend_from_slice(&name[..name.len().min(usize::from(u16::MAX))]);
    buf.extend_from_slice(&state.cursor.to_le_bytes());
    let entries: Vec<(u64, InFlight)> = state.in_flight().map(|(a, e)| (*a, *e)).collect();
    put_entries(buf, &entries);
    if let Some(retired_at) = state.retired_at {
        buf.extend_from_slice(&retired_at.to_le_bytes());
    }
    finish(buf, start);
}

/// `retired_at`: `None` when the subscription is served again.
fn encode_retire(buf: &mut Vec<u8>, id: SubscriptionId, seq: u64, retired_at: Option<i64>) {
    let start = begin(buf, RETIRE, id, seq);
    buf.extend_from_slice(&retired_at.unwrap_or(0).to_le_bytes());
    finish(buf, start);
}

fn encode_forget(buf: &mut Vec<u8>, id: SubscriptionId, seq: u64) {
    let start = begin(buf, FORGET, id, seq);
    finish(buf, start);
}

/// A little-endian reader over a record body; `None` past the end.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_le_bytes)
    }
    fn bytes(&mut self, n: usize) -> Option<&[u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }
    fn entry(&mut self) -> Option<(u64, InFlight)> {
        let address = self.u64()?;
        let len = self.u32()?;
        let publish_time = self.i64()?;
        let delivery_count = self.u32()?;
        let state = self.u8()?;
        let time = self.i64()?;
        let nonce = self.u64()?;
        let state = match state {
            LOCKED => EventState::Locked {
                deadline: time,
                nonce,
            },
            WAITING => EventState::Waiting { not_before: time },
            _ => return None,
        };
        Some((
            address,
            InFlight {
                len,
                publish_time,
                delivery_count,
                state,
            },
        ))
    }
    fn entries(&mut self) -> Option<Vec<(u64, InFlight)>> {
        let count = self.u32()? as usize;
        // Bounded by the body length, whatever the count field says.
        let mut entries = Vec::with_capacity(count.min(self.0.len() / 45));
        for _ in 0..count {
            entries.push(self.entry()?);
        }
        Some(entries)
    }
}

/// Apply one record body to the states being recovered. `false`: not a valid body.
fn apply(
    body: &[u8],
    states: &mut BTreeMap<SubscriptionId, SubscriptionState>,
    owner: u16,
) -> bool {
    let mut r = Reader(body);
    let parsed = (|| {
        let kind = r.u8()?;
        let id = r.u32()?;
        let seq = r.u64()?;
        match kind {
            SNAPSHOT => {
                let name_len = usize::from(r.u16()?);
                let name = String::from_utf8(r.bytes(name_len)?.to_vec()).ok()?;
                let cursor = r.u64()?;
                let entries = r.entries()?;
                let retired_at = if r.0.is_empty() { None } else { Some(r.i64()?) };
                // A creation record can be written after a compaction snapshot that already
                // holds the subscription: the newer state wins.
                if states.get(&id).is_none_or(|s| seq >= s.seq && seq > 0) {
                    let mut state = SubscriptionState::new(id, name, cursor, owner);
                    for (address, entry) in entries {
                        state.set(address, entry);
                    }
                    state.seq = seq;
                    state.retired_at = retired_at;
                    states.insert(id, state);
                }
            }
            RETIRE => {
                let time = r.i64()?;
                if let Some(state) = states.get_mut(&id).filter(|s| seq > s.seq) {
                    state.retired_at = (time != 0).then_some(time);
                    state.seq = seq;
                }
            }
            FORGET => {
                if states.get(&id).is_some_and(|s| seq > s.seq) {
                    states.remove(&id);
                }
            }
            UPSERT => {
                let cursor = r.u64()?;
                let entries = r.entries()?;
                if let Some(state) = states.get_mut(&id).filter(|s| seq > s.seq) {
                    state.cursor = state.cursor.max(cursor);
                    for (address, entry) in entries {
                        state.set(address, entry);
                    }
                    state.seq = seq;
                }
            }
            REMOVE => {
                let count = r.u32()? as usize;
                let mut addresses = Vec::with_capacity(count.min(r.0.len() / 8));
                for _ in 0..count {
                    addresses.push(r.u64()?);
                }
                if let Some(state) = states.get_mut(&id).filter(|s| seq > s.seq) {
                    for address in addresses {
                        state.remove(address);
                    }
                    state.seq = seq;
                }
            }
            _ => return None,
        }
        Some(())
    })();
    parsed.is_some()
}

/// The journal file of one topic. Only the committer writes it; failed writes and fsyncs are
/// handled as for the log (`DurableFile`).
pub struct Journal {
    path: PathBuf,
    file: DurableFile,
}

impl Journal {
    /// Open (or create) the journal and replay it. A torn or corrupt tail is cut off.
    pub fn open(
        path: PathBuf,
        owner: u16,
    ) -> io::Result<(Journal, BTreeMap<SubscriptionId, SubscriptionState>)> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let bytes = fs::read(&path)?;
        let mut states = BTreeMap::new();
        let mut offset = 0usize;
        while let Some(header) = bytes.get(offset..offset + HEADER) {
            let body_len =
                u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
            let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
            if body_len > MAX_RECORD_BYTES {
                break;
            }
            let Some(body) = bytes.get(offset + HEADER..offset + HEADER + body_len) else {
                break;
            };
            if crc32fast::hash(body) != crc || !apply(body, &mut states, owner) {
                break;
            }
            offset += HEADER + body_len;
        }
        if offset < bytes.len() {
            tracing::warn!(
                journal = %path.display(),
                kept = offset,
                cut = bytes.len() - offset,
                "cutting a torn tail off the subscription journal"
            );
            file.set_len(offset as u64)?;
            file.sync_all()?;
        }
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        let journal = Journal {
            path,
            file: DurableFile::new(Arc::new(file), offset as u64),
        };
        Ok((journal, states))
    }

    pub fn len(&self) -> u64 {
        self.file.len()
    }

    /// Append records; on failure nothing of `bytes` stays.
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.append(bytes)
    }

    /// Forget what was appended from `length` on (a failed round's records).
    pub fn cut_back(&mut self, length: u64) {
        self.file.cut_back(length);
    }

    /// fsync; after a failed one, the unsynced bytes are written again first.
    pub fn sync(&mut self) -> io::Result<()> {
        self.file.sync()
    }

    pub fn is_dirty(&self) -> bool {
        self.file.is_dirty()
    }

    /// Fail as the log's failure injection says (tests only: a topic's files share one).
    #[cfg(test)]
    pub fn share_faults(&mut self, faults: Arc<super::durable_file::Faults>) {
        self.file.faults = faults;
    }

    /// Replace the journal by `snapshot` (the records of every subscription's whole state):
    /// written to a temporary file, fsynced, renamed over the journal, directory fsynced.
    pub fn replace(&mut self, snapshot: &[u8]) -> io::Result<()> {
        let temporary = self.path.with_extension("journal.compacting");
        let written = File::create(&temporary).and_then(|mut file| {
            file.write_all(snapshot)?;
            file.sync_all()
        });
        if let Err(error) = written {
            // The journal is untouched; a half-written copy would only take space.
            let _ = fs::remove_file(&temporary);
            return Err(error);
        }
        fs::rename(&temporary, &self.path)?;
        if let Some(dir) = self.path.parent() {
            sync_dir(dir)?;
        }
        let file = OpenOptions::new().read(true).write(true).open(&self.path)?;
        self.file
            .replace_file(Arc::new(file), snapshot.len() as u64);
        Ok(())
    }
}

/// The journal path of a topic directory.
pub fn path(topic_dir: &Path) -> PathBuf {
    topic_dir.join("subscriptions.journal")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locked(count: u32, deadline: i64) -> InFlight {
        InFlight {
            len: 40,
            publish_time: 5,
            delivery_count: count,
            state: EventState::Locked {
                deadline,
                nonce: 99,
            },
        }
    }

    fn sample_state() -> (SubscriptionState, Vec<u8>) {
        let mut state = SubscriptionState::new(4, "orders-sub".into(), 100, 0);
        let mut buf = Vec::new();
        snapshot_record(&state, &mut buf);
        state.cursor = 200;
        state.set(100, locked(1, 1000));
        state.set(150, locked(2, 2000));
        upsert_record(
            &mut state,
            &[(100, locked(1, 1000)), (150, locked(2, 2000))],
            &mut buf,
        );
        state.remove(100);
        remove_record(&mut state, &[100], &mut buf);
        (state, buf)
    }

    #[test]
    fn replay_rebuilds_cursor_and_locks() {
        let dir = tempfile::tempdir().unwrap();
        let path = path(dir.path());
        let (_, buf) = sample_state();
        fs::write(&path, &buf).unwrap();
        let (journal, states) = Journal::open(path, 0).unwrap();
        assert_eq!(journal.len(), buf.len() as u64);
        let state = &states[&4];
        assert_eq!(state.name, "orders-sub");
        assert_eq!(state.cursor, 200);
        let entries: Vec<_> = state.in_flight().map(|(a, e)| (*a, *e)).collect();
        assert_eq!(entries, vec![(150, locked(2, 2000))]);
    }

    #[test]
    fn records_already_in_a_snapshot_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = path(dir.path());
        let (state, _) = sample_state();
        // A compaction snapshot taken after every change, then changes it already holds
        // (queued before the snapshot was taken, written after it).
        let mut buf = Vec::new();
        snapshot_record(&state, &mut buf);
        encode_upsert(&mut buf, 4, 1, 200, &[(100, locked(1, 1000))]);
        encode_snapshot(
            &mut buf,
            &SubscriptionState::new(4, "orders-sub".into(), 0, 0),
        );
        fs::write(&path, &buf).unwrap();
        let (_, states) = Journal::open(path, 0).unwrap();
        assert_eq!(
            states[&4].in_flight_count(),
            1,
            "the acknowledged event stays gone"
        );
    }

    #[test]
    fn retirement_survives_replay_and_compaction_and_forget_removes_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = path(dir.path());
        let (mut state, mut buf) = sample_state();
        let seq = state.next_seq();
        encode_retire(&mut buf, 4, seq, Some(1_000));
        fs::write(&path, &buf).unwrap();
        let (_, states) = Journal::open(path.clone(), 0).unwrap();
        assert_eq!(states[&4].retired_at, Some(1_000));

        let mut compacted = Vec::new();
        snapshot_record(&states[&4], &mut compacted);
        let revived = states[&4].seq + 1;
        encode_retire(&mut compacted, 4, revived, None);
        fs::write(&path, &compacted).unwrap();
        let (_, states) = Journal::open(path.clone(), 0).unwrap();
        assert_eq!(states[&4].retired_at, None, "served again");
        assert_eq!(states[&4].in_flight_count(), 1);

        encode_forget(&mut compacted, 4, revived + 1);
        fs::write(&path, &compacted).unwrap();
        let (_, states) = Journal::open(path, 0).unwrap();
        assert!(states.is_empty());
    }

    #[test]
    fn a_torn_journal_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = path(dir.path());
        let (_, mut buf) = sample_state();
        let good = buf.len();
        let mut extra = Vec::new();
        encode_remove(&mut extra, 4, 9, &[150]);
        buf.extend_from_slice(&extra[..extra.len() - 3]);
        fs::write(&path, &buf).unwrap();
        let (journal, states) = Journal::open(path.clone(), 0).unwrap();
        assert_eq!(journal.len(), good as u64);
        assert_eq!(fs::metadata(&path).unwrap().len(), good as u64);
        assert_eq!(states[&4].in_flight_count(), 1);
    }
}
