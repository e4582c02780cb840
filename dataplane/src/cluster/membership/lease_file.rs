//! The local directory's lease files: `DIR/members/<pod>.json`, one per pod, each written only
//! by the process that holds it, atomically (a temporary file in the same folder, fsync,
//! rename), so that a reader sees a whole old lease or a whole new one, never half of one.
//!
//! Everything here is blocking file IO: the backend calls it on tokio's blocking pool.

use serde::{Deserialize, Serialize};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// One pod's lease, as its file holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeaseFile {
    pub pod: String,
    /// The owner number lock tokens carry (derived from the name; written for people).
    pub owner: u16,
    pub peer_address: String,
    /// The process holding the lease, so that a successor can tell a live holder from a
    /// dead one.
    pub pid: u32,
    /// Random per process start: tells this process's file from one a later process with
    /// the same pid (a container restart) or the same name wrote.
    pub incarnation: String,
    /// Unix milliseconds of the last renewal.
    pub renewed_at: u64,
    pub lease_millis: u64,
    /// The pods this pod's peer links are connected to, sorted.
    pub connected_peers: Vec<String>,
}

impl LeaseFile {
    /// Live while `renewedAt + leaseMillis > now`: processes of one machine share its clock.
    pub fn is_live(&self, now_millis: u64) -> bool {
        self.renewed_at.saturating_add(self.lease_millis) > now_millis
    }
}

/// What reading a lease file found.
#[derive(Debug)]
pub enum ReadLease {
    Missing,
    /// Not a lease (or not this pod's): why, for the log.
    Malformed(String),
    Lease(LeaseFile),
}

/// `members/<pod>.json`.
pub fn path_of(members_dir: &Path, pod: &str) -> PathBuf {
    members_dir.join(format!("{pod}.json"))
}

/// The pod a lease file's name says it belongs to (`None`: not a lease file, e.g. a
/// temporary one, which starts with a dot).
pub fn pod_of(path: &Path) -> Option<&str> {
    let name = path.file_name()?.to_str()?;
    if name.starts_with('.') {
        return None;
    }
    name.strip_suffix(".json")
}

/// Read the lease file at `path`, which must be `pod`'s.
pub fn read(path: &Path, pod: &str) -> io::Result<ReadLease> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(ReadLease::Missing),
        Err(error) => return Err(error),
    };
    Ok(match serde_json::from_slice::<LeaseFile>(&bytes) {
        Err(error) => ReadLease::Malformed(error.to_string()),
        Ok(lease) if lease.pod != pod => {
            ReadLease::Malformed(format!("it names pod {:?}, not {pod:?}", lease.pod))
        }
        Ok(lease) => ReadLease::Lease(lease),
    })
}

/// How a write puts the file in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Publish {
    /// Only if no file is there (a hard link fails on an existing name): two processes
    /// claiming a free name at once cannot both win.
    Exclusive,
    /// Over whatever is there (rename).
    Replace,
}

/// Write `lease` to `members/<pod>.json` atomically. With [`Publish::Exclusive`] an existing
/// file is an `AlreadyExists` error.
pub fn write(members_dir: &Path, lease: &LeaseFile, publish: Publish) -> io::Result<()> {
    let target = path_of(members_dir, &lease.pod);
    let temporary = members_dir.join(format!(".{}.{}.tmp", lease.pod, lease.incarnation));
    let bytes = serde_json::to_vec_pretty(lease).map_err(io::Error::other)?;
    let written = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        match publish {
            Publish::Replace => std::fs::rename(&temporary, &target),
            Publish::Exclusive => std::fs::hard_link(&temporary, &target),
        }
    })();
    if written.is_err() || publish == Publish::Exclusive {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

/// Remove temporary files a killed process of `pod` left between its write and its rename.
pub fn remove_stale_temporaries(members_dir: &Path, pod: &str) -> io::Result<()> {
    let prefix = format!(".{pod}.");
    for entry in std::fs::read_dir(members_dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with(&prefix) && name.ends_with(".tmp") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// Whether process `pid` runs (on Linux: `/proc/<pid>` exists and is not a zombie, which a
/// SIGKILLed child is until its parent reaps it).
pub fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => {
                // `pid (command) S ...`: the state follows the last ')' (the command may hold
                // parentheses and spaces).
                let state = stat
                    .rsplit_once(')')
                    .and_then(|(_, rest)| rest.trim_start().chars().next());
                !matches!(state, Some('Z') | Some('X'))
            }
            Err(_) => Path::new(&format!("/proc/{pid}")).exists(),
        }
    } else {
        // Without /proc we cannot tell: a live lease is taken as a live holder.
        true
    }
}

/// Now, in Unix milliseconds.
pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(pod: &str, incarnation: &str) -> LeaseFile {
        LeaseFile {
            pod: pod.into(),
            owner: 1,
            peer_address: "127.0.0.1:7001".into(),
            pid: std::process::id(),
            incarnation: incarnation.into(),
            renewed_at: 1_000,
            lease_millis: 500,
            connected_peers: vec!["pod-2".into()],
        }
    }

    #[test]
    fn a_lease_is_written_whole_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &lease("pod-1", "a"), Publish::Exclusive).unwrap();
        let path = path_of(dir.path(), "pod-1");
        let ReadLease::Lease(read_back) = read(&path, "pod-1").unwrap() else {
            panic!("a lease");
        };
        assert_eq!(read_back, lease("pod-1", "a"));
        let text = std::fs::read_to_string(&path).unwrap();
        for field in [
            "\"renewedAt\"",
            "\"leaseMillis\"",
            "\"connectedPeers\"",
            "\"peerAddress\"",
        ] {
            assert!(text.contains(field), "{text}");
        }
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn an_exclusive_write_refuses_an_existing_file_and_a_replace_overwrites_it() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &lease("pod-1", "a"), Publish::Exclusive).unwrap();
        let error = write(dir.path(), &lease("pod-1", "b"), Publish::Exclusive).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AlreadyExists);
        write(dir.path(), &lease("pod-1", "b"), Publish::Replace).unwrap();
        let ReadLease::Lease(now) = read(&path_of(dir.path(), "pod-1"), "pod-1").unwrap() else {
            panic!("a lease");
        };
        assert_eq!(now.incarnation, "b");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn garbage_and_a_file_naming_another_pod_are_malformed() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_of(dir.path(), "pod-1");
        std::fs::write(&path, "{not json").unwrap();
        assert!(matches!(
            read(&path, "pod-1").unwrap(),
            ReadLease::Malformed(_)
        ));
        std::fs::write(&path, serde_json::to_vec(&lease("pod-2", "a")).unwrap()).unwrap();
        let ReadLease::Malformed(why) = read(&path, "pod-1").unwrap() else {
            panic!("malformed");
        };
        assert!(why.contains("pod-2"), "{why}");
        assert!(matches!(
            read(&path_of(dir.path(), "pod-3"), "pod-3").unwrap(),
            ReadLease::Missing
        ));
    }

    #[test]
    fn liveness_and_names() {
        let lease = lease("pod-1", "a");
        assert!(lease.is_live(1_499));
        assert!(!lease.is_live(1_500));
        assert_eq!(pod_of(Path::new("/d/pod-1.json")), Some("pod-1"));
        assert_eq!(pod_of(Path::new("/d/.pod-1.a.tmp")), None);
        assert_eq!(pod_of(Path::new("/d/notes.txt")), None);
        assert!(process_alive(std::process::id()));
        assert!(!process_alive(u32::MAX - 1));
    }
}
