//! The local directory backend: processes on one machine that share a cluster directory form
//! one Namespace. Each holds `DIR/members/<pod>.json` ([`super::lease_file`]), renews it, and
//! reads the others' files every [`POLL_INTERVAL`]; a file whose `renewedAt + leaseMillis` has
//! passed is out.

use super::error::MembershipError;
use super::lease_file::{self, LeaseFile, Publish, ReadLease};
use crate::cluster::members::Member;
use crate::log_limit::LogLimiter;
use crate::pod::PodIdentity;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// How often the others' lease files are read.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// This process's lease file and what it last read of the others'.
pub struct LocalDirectory {
    members_dir: PathBuf,
    own: LeaseFile,
    peers: Vec<Member>,
    malformed_log: LogLimiter,
}

/// What one read of the folder found.
struct Scan {
    live: Vec<Member>,
    malformed: Vec<(PathBuf, String)>,
}

impl LocalDirectory {
    /// Claim `DIR/members/<pod>.json` for this process, refusing a name a live process holds,
    /// and read the others' files once.
    pub async fn claim(
        cluster_dir: &Path,
        this: &Member,
        lease: Duration,
        connected: &BTreeSet<Arc<str>>,
    ) -> Result<Self, MembershipError> {
        let members_dir = cluster_dir.join("members");
        let own = LeaseFile {
            pod: this.name().to_string(),
            owner: this.pod.owner(),
            peer_address: this.peer_addr.clone(),
            pid: std::process::id(),
            incarnation: incarnation()?,
            renewed_at: lease_file::unix_millis(),
            lease_millis: lease.as_millis() as u64,
            connected_peers: connected.iter().map(|p| p.to_string()).collect(),
        };
        let dir = members_dir.clone();
        let claimed = own.clone();
        blocking(move || claim(&dir, &claimed)).await??;
        let mut backend = Self {
            members_dir,
            own,
            peers: Vec::new(),
            malformed_log: LogLimiter::new(Duration::from_secs(30)),
        };
        backend.refresh().await;
        Ok(backend)
    }

    pub fn file(&self) -> PathBuf {
        lease_file::path_of(&self.members_dir, &self.own.pod)
    }

    /// Write this pod's lease with renewedAt now, unless another process took the file over.
    pub async fn renew(
        &mut self,
        lease: Duration,
        connected: &BTreeSet<Arc<str>>,
    ) -> Result<(), MembershipError> {
        self.own.renewed_at = lease_file::unix_millis();
        self.own.lease_millis = lease.as_millis() as u64;
        self.own.connected_peers = connected.iter().map(|p| p.to_string()).collect();
        let dir = self.members_dir.clone();
        let own = self.own.clone();
        blocking(move || {
            let path = lease_file::path_of(&dir, &own.pod);
            let io = |source| MembershipError::LeaseFile {
                path: path.clone(),
                source,
            };
            if let ReadLease::Lease(current) = lease_file::read(&path, &own.pod).map_err(io)?
                && current.incarnation != own.incarnation
            {
                return Err(MembershipError::TakenOver {
                    pod: own.pod.clone(),
                    pid: current.pid,
                    file: path,
                });
            }
            lease_file::write(&dir, &own, Publish::Replace).map_err(io)
        })
        .await?
    }

    /// Wait for the next poll, then read the others' files.
    pub async fn watch(&mut self) {
        tokio::time::sleep(POLL_INTERVAL).await;
        self.refresh().await;
    }

    async fn refresh(&mut self) {
        let dir = self.members_dir.clone();
        let own = self.own.pod.clone();
        let scan = match blocking(move || scan(&dir, &own)).await {
            Ok(Ok(scan)) => scan,
            Ok(Err(error)) => {
                if let Some(suppressed) = self.malformed_log.allow() {
                    warn!(dir = %self.members_dir.display(), %error, suppressed, "cannot read the cluster directory");
                }
                return;
            }
            Err(error) => {
                warn!(%error, "reading the cluster directory failed");
                return;
            }
        };
        if let Some((path, why)) = scan.malformed.first()
            && let Some(suppressed) = self.malformed_log.allow()
        {
            warn!(
                file = %path.display(),
                reason = %why,
                malformed_files = scan.malformed.len(),
                suppressed,
                "ignoring a malformed lease file"
            );
        }
        self.peers = scan.live;
    }

    /// The other pods whose lease was live at the last read.
    pub fn live_peers(&self) -> Vec<Member> {
        self.peers.clone()
    }

    /// Delete this pod's file (if it is still this process's).
    pub async fn leave(&mut self) -> Result<(), MembershipError> {
        let path = self.file();
        let own = self.own.clone();
        blocking(move || {
            let io = |source| MembershipError::LeaseFile {
                path: path.clone(),
                source,
            };
            match lease_file::read(&path, &own.pod).map_err(io)? {
                ReadLease::Lease(current) if current.incarnation != own.incarnation => Ok(()),
                ReadLease::Missing => Ok(()),
                _ => match std::fs::remove_file(&path) {
                    Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(io(error)),
                    _ => Ok(()),
                },
            }
        })
        .await?
    }
}

/// Make `members/<pod>.json` this process's: write it if missing (exclusively), take it over
/// if it is malformed, expired, or held by a process that is gone; refuse it if a live
/// process holds it.
fn claim(members_dir: &Path, own: &LeaseFile) -> Result<(), MembershipError> {
    let path = lease_file::path_of(members_dir, &own.pod);
    let io = |source| MembershipError::LeaseFile {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(members_dir).map_err(|source| MembershipError::Directory {
        path: members_dir.to_path_buf(),
        source,
    })?;
    lease_file::remove_stale_temporaries(members_dir, &own.pod).map_err(io)?;
    // Two rounds: a process that claimed the free name between our read and our write is
    // read, and judged, on the second.
    for _ in 0..2 {
        match lease_file::read(&path, &own.pod).map_err(io)? {
            ReadLease::Missing => match lease_file::write(members_dir, own, Publish::Exclusive) {
                Ok(()) => return Ok(()),
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(error) => return Err(io(error)),
            },
            ReadLease::Malformed(why) => {
                warn!(file = %path.display(), reason = %why, "replacing a malformed lease file");
            }
            ReadLease::Lease(held) => {
                let live = held.is_live(lease_file::unix_millis());
                let other = held.pid != own.pid;
                if live && other && lease_file::process_alive(held.pid) {
                    return Err(MembershipError::PodNameInUse {
                        pod: own.pod.clone(),
                        pid: held.pid,
                        file: path,
                    });
                }
                info!(
                    file = %path.display(),
                    previous_pid = held.pid,
                    expired = !live,
                    "taking over the lease file of a process that is gone"
                );
            }
        }
        return lease_file::write(members_dir, own, Publish::Replace).map_err(io);
    }
    let holder = match lease_file::read(&path, &own.pod) {
        Ok(ReadLease::Lease(held)) => held.pid,
        _ => 0,
    };
    Err(MembershipError::PodNameInUse {
        pod: own.pod.clone(),
        pid: holder,
        file: path,
    })
}

/// Read every lease file but `own`'s.
fn scan(members_dir: &Path, own: &str) -> std::io::Result<Scan> {
    let now = lease_file::unix_millis();
    let mut found = Scan {
        live: Vec::new(),
        malformed: Vec::new(),
    };
    for entry in std::fs::read_dir(members_dir)? {
        let path = entry?.path();
        let Some(pod) = lease_file::pod_of(&path) else {
            continue;
        };
        if pod == own {
            continue;
        }
        let lease = match lease_file::read(&path, pod) {
            Ok(ReadLease::Lease(lease)) => lease,
            // Deleted since the listing: that pod left.
            Ok(ReadLease::Missing) => continue,
            Ok(ReadLease::Malformed(why)) => {
                found.malformed.push((path, why));
                continue;
            }
            Err(error) => {
                found.malformed.push((path, error.to_string()));
                continue;
            }
        };
        if !lease.is_live(now) {
            continue;
        }
        match PodIdentity::new(pod) {
            Ok(identity) => found.live.push(Member {
                pod: identity,
                peer_addr: lease.peer_address,
            }),
            Err(error) => found.malformed.push((path, error.to_string())),
        }
    }
    Ok(found)
}

/// A random id for this process's lease (128 bits, hex).
fn incarnation() -> Result<String, MembershipError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|error| MembershipError::LeaseFile {
        path: PathBuf::from("<random incarnation id>"),
        source: std::io::Error::other(error.to_string()),
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Run blocking file IO on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, MembershipError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| MembershipError::Task(error.to_string()))
}

#[cfg(test)]
#[path = "local_tests.rs"]
mod tests;
