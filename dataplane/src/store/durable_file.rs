//! An append-only file that one writer appends to and fsyncs, and that never keeps a failed
//! append: the state machine shared by the active log segment (`log.rs`) and the subscription
//! journal (`journal.rs`).
//!
//! State: `length` (the bytes that count; the next append goes there), `dirty` (appended or
//! cut since the last successful fsync), `synced` (where the last successful fsync left the
//! file), `sync_failed` and `cut_pending`:
//! - An append that fails (ENOSPC midway, EIO) is cut back off at once, so the next append
//!   starts at a record boundary. If the cut itself fails, `cut_pending` says the file still
//!   runs past `length`, and it is cut before the next append.
//! - After a failed fsync Linux may mark the pages it could not write clean ("fsyncgate"): a
//!   later fsync would succeed without writing them. So `sync_failed` makes the next `sync`
//!   first write everything since `synced` again (from the page cache, page-aligned), and only
//!   a successful fsync after that counts.
//!
//! The file is shared (`Arc`) because the log's readers read the active segment while the
//! writer appends to it.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// The page size assumed when rewriting after a failed fsync (a multiple of the real one
/// rewrites a little more, never less).
const PAGE_BYTES: u64 = 4096;

pub struct DurableFile {
    file: Arc<File>,
    /// Bytes appended (and not cut back): where the next append goes.
    length: u64,
    /// Appended or cut since the last successful `sync`.
    dirty: bool,
    /// Where the last successful fsync left the file.
    synced: u64,
    /// The last fsync failed: see `sync`.
    sync_failed: bool,
    /// The file still runs past `length` (a cut failed): cut it before the next append.
    cut_pending: bool,
    #[cfg(test)]
    pub faults: Arc<Faults>,
}

/// Test-only failure injection for the writes and fsyncs of one topic's files (its log and
/// journal share one).
#[cfg(test)]
#[derive(Default)]
pub struct Faults {
    /// The next write writes half its bytes, then fails with this error (ENOSPC midway).
    pub write: parking_lot::Mutex<Option<io::ErrorKind>>,
    /// The next fsync fails with this error.
    pub sync: parking_lot::Mutex<Option<io::ErrorKind>>,
}

impl DurableFile {
    /// A file whose first `length` bytes are durable (recovered, or just fsynced).
    pub fn new(file: Arc<File>, length: u64) -> DurableFile {
        DurableFile {
            file,
            length,
            dirty: false,
            synced: length,
            sync_failed: false,
            cut_pending: false,
            #[cfg(test)]
            faults: Arc::default(),
        }
    }

    /// Go on with another file whose first `length` bytes are durable (a new log segment after
    /// a seal, a compacted journal after the swap). The failure injection stays.
    pub fn replace_file(&mut self, file: Arc<File>, length: u64) {
        self.file = file;
        self.length = length;
        self.dirty = false;
        self.synced = length;
        self.sync_failed = false;
        self.cut_pending = false;
    }

    /// Bytes appended: where the next append goes.
    pub fn len(&self) -> u64 {
        self.length
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Write `bytes` at the end. On failure nothing of `bytes` stays: what part was written is
    /// cut off, so the next append starts where this one did.
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        if self.cut_pending {
            self.file.set_len(self.length)?;
            self.cut_pending = false;
        }
        if let Err(error) = self.write_at(bytes, self.length) {
            self.cut_back(self.length);
            return Err(error);
        }
        self.length += bytes.len() as u64;
        self.dirty = true;
        Ok(())
    }

    /// Forget what was appended from `length` on (a failed round's bytes, never exposed): the
    /// file is cut there now, or before the next append if the cut fails. The cut is made
    /// durable by the next `sync`.
    pub fn cut_back(&mut self, length: u64) {
        self.length = length.min(self.length);
        self.synced = self.synced.min(self.length);
        self.dirty = true;
        self.cut_pending = self.file.set_len(self.length).is_err();
    }

    /// Make every appended byte durable (fdatasync), if anything changed since the last
    /// successful fsync. After a failed fsync, everything since the last successful one is
    /// written again first (see the module's documentation).
    pub fn sync(&mut self) -> io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        if self.sync_failed {
            rewrite(
                &self.file,
                self.synced - self.synced % PAGE_BYTES,
                self.length,
            )?;
        }
        match self.sync_data() {
            Ok(()) => {
                self.dirty = false;
                self.sync_failed = false;
                self.synced = self.length;
                Ok(())
            }
            Err(error) => {
                self.sync_failed = true;
                Err(error)
            }
        }
    }

    /// fsync even if nothing changed since the last successful fsync (sealing a log segment
    /// fsyncs whatever the policy).
    pub fn sync_always(&mut self) -> io::Result<()> {
        self.dirty = true;
        self.sync()
    }

    /// Positioned write of all of `bytes` (failing as a test's `Faults` says).
    fn write_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        #[cfg(test)]
        if let Some(kind) = self.faults.write.lock().take() {
            self.file.write_all_at(&bytes[..bytes.len() / 2], offset)?;
            return Err(kind.into());
        }
        self.file.write_all_at(bytes, offset)
    }

    /// fdatasync (failing as a test's `Faults` says).
    fn sync_data(&self) -> io::Result<()> {
        #[cfg(test)]
        if let Some(kind) = self.faults.sync.lock().take() {
            return Err(kind.into());
        }
        self.file.sync_data()
    }
}

/// Write `file`'s bytes `from..to` again, as they are in the page cache, so that they are dirty
/// again and the next fsync really writes them.
fn rewrite(file: &File, from: u64, to: u64) -> io::Result<()> {
    const STEP: u64 = 1 << 20;
    let mut buffer = Vec::new();
    let mut at = from;
    while at < to {
        let length = (to - at).min(STEP);
        buffer.resize(length as usize, 0);
        file.read_exact_at(&mut buffer, at)?;
        file.write_all_at(&buffer, at)?;
        at += length;
    }
    Ok(())
}

/// Make a directory entry (a new, renamed or removed file) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::ErrorKind;

    fn open(dir: &Path) -> (DurableFile, std::path::PathBuf) {
        let path = dir.join("file");
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .unwrap();
        (DurableFile::new(Arc::new(file), 0), path)
    }

    #[test]
    fn a_failed_append_leaves_nothing_and_the_next_one_starts_where_it_did() {
        let dir = tempfile::tempdir().unwrap();
        let (mut file, path) = open(dir.path());
        file.append(b"first").unwrap();
        *file.faults.write.lock() = Some(ErrorKind::StorageFull);
        let error = file.append(b"refused").unwrap_err();
        assert_eq!(error.kind(), ErrorKind::StorageFull);
        assert_eq!(file.len(), 5);
        file.append(b"second").unwrap();
        file.sync().unwrap();
        assert_eq!(std::fs::read(path).unwrap(), b"firstsecond");
    }

    #[test]
    fn a_failed_sync_keeps_the_file_dirty_until_a_sync_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let (mut file, _) = open(dir.path());
        file.append(b"bytes").unwrap();
        *file.faults.sync.lock() = Some(ErrorKind::Other);
        assert!(file.sync().is_err());
        assert!(file.is_dirty());
        file.sync().unwrap();
        assert!(!file.is_dirty());
    }

    #[test]
    fn a_cut_back_round_is_cut_off_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (mut file, path) = open(dir.path());
        file.append(b"kept").unwrap();
        file.sync().unwrap();
        file.append(b"round").unwrap();
        file.cut_back(4);
        assert!(file.is_dirty(), "the cut is made durable by the next sync");
        file.sync().unwrap();
        assert_eq!(std::fs::read(path).unwrap(), b"kept");
    }
}
