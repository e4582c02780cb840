//! Membership (DESIGN §5): this pod holds a lease that names it and its peer address and
//! renews it; it reads the others' leases; the pods whose leases are live form the member
//! set, published as a [`MembersWatch`]. Two backends hold the leases: a folder shared by
//! processes on one machine ([`local`]), or `coordination.k8s.io` Leases ([`kubernetes`]).
//! See `README.md` beside this file.

mod error;
mod kubernetes;
mod lease_file;
mod local;
mod metrics;

pub use error::MembershipError;
pub use kubernetes::KubernetesTarget;
pub use local::POLL_INTERVAL;
pub use metrics::MembershipMetrics;

use crate::cluster::members::{Member, MemberSet, MembersWatch};
use crate::cluster::timing::ClusterTiming;
use crate::log_limit::LogLimiter;
use crate::pod::PodIdentity;
use crate::shutdown::{StopSignal, Stopper};
use kubernetes::KubernetesMembers;
use local::LocalDirectory;
use prometheus::Registry;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, info_span, warn};

/// Where the leases are kept.
#[derive(Clone, Debug)]
pub enum MembershipBackend {
    /// `DIR/members/<pod>.json` (`--cluster-dir DIR`).
    LocalDirectory(PathBuf),
    /// A `coordination.k8s.io/v1` Lease per pod.
    Kubernetes(KubernetesTarget),
}

/// Everything [`Membership::start`] needs.
#[derive(Debug)]
pub struct MembershipOptions {
    pub pod: PodIdentity,
    /// The address other pods dial, `host:port`, as final (a listener on port 0 is bound
    /// before, and its real port written here).
    pub peer_addr: String,
    /// The lease duration (and so the renew interval), retunable while running.
    pub timing: watch::Receiver<ClusterTiming>,
    /// The pods this pod's peer links are connected to, published in the lease.
    pub connected_peers: watch::Receiver<BTreeSet<Arc<str>>>,
    /// Leave (delete the lease) and end when it fires.
    pub stop: StopSignal,
    pub backend: MembershipBackend,
}

/// How long leaving may take (deleting the lease) before the pod gives up and exits anyway:
/// the lease then expires on its own.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(5);
/// The least time between two renewals made because the connected peers changed.
const CONNECTED_RENEWAL_SPACING: Duration = Duration::from_secs(1);
/// The longest pause before retrying a failed renewal.
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// A running membership: the member set, and the task that keeps this pod's lease.
pub struct Membership {
    members: MembersWatch,
    /// Dropping it (with the `Membership`) also makes the task leave.
    leave: Stopper,
    task: JoinHandle<()>,
}

impl Membership {
    /// Claim this pod's lease and start renewing it and reading the others'. In a local
    /// directory, a pod name whose lease a live process holds is refused
    /// ([`MembershipError::PodNameInUse`]); on Kubernetes the first write is retried in the
    /// background like any renewal.
    pub async fn start(
        options: MembershipOptions,
        registry: &Registry,
    ) -> Result<Membership, MembershipError> {
        let metrics = MembershipMetrics::register(registry)?;
        let this = Member {
            pod: options.pod.clone(),
            peer_addr: options.peer_addr.clone(),
        };
        let span = info_span!("membership", pod = %options.pod);
        let timing = *options.timing.borrow();
        let connected = options.connected_peers.borrow().clone();
        let (backend, renewed) = match options.backend {
            MembershipBackend::LocalDirectory(dir) => {
                let local = LocalDirectory::claim(&dir, &this, timing.member_lease, &connected)
                    .instrument(span.clone())
                    .await?;
                info!(parent: &span, file = %local.file().display(), peer_addr = %this.peer_addr, "membership lease claimed");
                metrics.renewal(true);
                (Backend::Local(Box::new(local)), true)
            }
            MembershipBackend::Kubernetes(target) => (
                Backend::Kubernetes(Box::new(KubernetesMembers::new(target, &this))),
                false,
            ),
        };
        let first = MemberSet::new(this.clone(), backend.live_peers());
        metrics.set_members(first.len());
        let (sender, members) = watch::channel(Arc::new(first));
        let (leave, left) = Stopper::new();
        let now = Instant::now();
        let driver = Driver {
            this,
            backend,
            timing: options.timing,
            timing_open: true,
            connected: options.connected_peers,
            connected_open: true,
            connected_changed: false,
            stop: options.stop,
            left,
            sender,
            metrics,
            failure_log: LogLimiter::new(Duration::from_secs(30)),
            failing: false,
            last_attempt: renewed.then_some(now),
            next_renewal: if renewed {
                now + timing.renew_interval()
            } else {
                now
            },
        };
        let task = tokio::spawn(driver.run().instrument(span));
        Ok(Membership {
            members,
            leave,
            task,
        })
    }

    /// The member set, this pod included from the start; a new value only on a change.
    pub fn members(&self) -> MembersWatch {
        self.members.clone()
    }

    /// Delete this pod's lease at once (a drain, or the end), so that peers drop it without
    /// waiting for the lease to expire, and stop renewing. Waits for the deletion, at most
    /// [`LEAVE_TIMEOUT`]. The stop signal given at start does the same.
    pub async fn leave(self) {
        self.leave.stop();
        let mut task = self.task;
        if tokio::time::timeout(LEAVE_TIMEOUT, &mut task)
            .await
            .is_err()
        {
            warn!(
                timeout = ?LEAVE_TIMEOUT,
                "leaving the cluster took too long; the lease will expire on its own"
            );
            task.abort();
        }
    }
}

/// One of the two backends (an enum: the set is closed, and each is used in one place).
enum Backend {
    // Boxed: the task holds one for its whole life; the enum need not be as large as both.
    Local(Box<LocalDirectory>),
    Kubernetes(Box<KubernetesMembers>),
}

impl Backend {
    async fn renew(
        &mut self,
        lease: Duration,
        connected: &BTreeSet<Arc<str>>,
    ) -> Result<(), MembershipError> {
        match self {
            Backend::Local(local) => local.renew(lease, connected).await,
            Backend::Kubernetes(kubernetes) => kubernetes.renew(lease, connected).await,
        }
    }

    /// Resolves when the others' leases may have changed (cancel-safe).
    async fn watch(&mut self) {
        match self {
            Backend::Local(local) => local.watch().await,
            Backend::Kubernetes(kubernetes) => kubernetes.watch().await,
        }
    }

    fn live_peers(&self) -> Vec<Member> {
        match self {
            Backend::Local(local) => local.live_peers(),
            Backend::Kubernetes(kubernetes) => kubernetes.live_peers(),
        }
    }

    async fn leave(&mut self) -> Result<(), MembershipError> {
        match self {
            Backend::Local(local) => local.leave().await,
            Backend::Kubernetes(kubernetes) => kubernetes.leave().await,
        }
    }
}

/// What woke the membership task.
enum Wake {
    Renew,
    Timing(bool),
    Connected(bool),
    Observed,
    Stop,
}

/// The membership task's state.
struct Driver {
    this: Member,
    backend: Backend,
    timing: watch::Receiver<ClusterTiming>,
    timing_open: bool,
    connected: watch::Receiver<BTreeSet<Arc<str>>>,
    connected_open: bool,
    /// The connected peers changed since the last renewal wrote them.
    connected_changed: bool,
    stop: StopSignal,
    left: StopSignal,
    sender: watch::Sender<Arc<MemberSet>>,
    metrics: MembershipMetrics,
    failure_log: LogLimiter,
    /// The last renewal failed (so that the next success is logged).
    failing: bool,
    last_attempt: Option<Instant>,
    next_renewal: Instant,
}

impl Driver {
    async fn run(mut self) {
        loop {
            let due = self.renewal_due();
            let wake = tokio::select! {
                () = self.stop.stopped() => Wake::Stop,
                () = self.left.stopped() => Wake::Stop,
                () = tokio::time::sleep_until(due) => Wake::Renew,
                changed = self.timing.changed(), if self.timing_open => Wake::Timing(changed.is_ok()),
                changed = self.connected.changed(), if self.connected_open => {
                    Wake::Connected(changed.is_ok())
                }
                () = self.backend.watch() => Wake::Observed,
            };
            match wake {
                Wake::Stop => break,
                Wake::Renew => self.renew().await,
                // A new lease duration is written at once; the renew interval follows it.
                Wake::Timing(true) => self.next_renewal = Instant::now(),
                Wake::Timing(false) => self.timing_open = false,
                Wake::Connected(true) => self.connected_changed = true,
                Wake::Connected(false) => self.connected_open = false,
                Wake::Observed => {}
            }
            self.publish();
        }
        match tokio::time::timeout(LEAVE_TIMEOUT, self.backend.leave()).await {
            Ok(Ok(())) => info!("left the cluster: membership lease deleted"),
            Ok(Err(error)) => warn!(%error, "cannot delete the membership lease; it will expire"),
            Err(_) => warn!("deleting the membership lease timed out; it will expire"),
        }
    }

    /// The regular renewal, or sooner when the connected peers changed (at most once a
    /// [`CONNECTED_RENEWAL_SPACING`]).
    fn renewal_due(&self) -> Instant {
        if !self.connected_changed {
            return self.next_renewal;
        }
        let spaced = self
            .last_attempt
            .map_or_else(Instant::now, |at| at + CONNECTED_RENEWAL_SPACING);
        spaced.min(self.next_renewal)
    }

    async fn renew(&mut self) {
        let timing = *self.timing.borrow_and_update();
        let connected = self.connected.borrow_and_update().clone();
        self.connected_changed = false;
        let now = Instant::now();
        self.last_attempt = Some(now);
        let interval = timing.renew_interval();
        // Bounded: a renewal that hangs must not keep the pod from noticing a stop or
        // retrying, and one slower than the interval is as good as failed.
        let result = match tokio::time::timeout(
            interval.max(Duration::from_millis(100)),
            self.backend.renew(timing.member_lease, &connected),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(MembershipError::Timeout(interval)),
        };
        self.metrics.renewal(result.is_ok());
        match result {
            Ok(()) => {
                if self.failing {
                    info!("membership lease renewed again");
                    self.failing = false;
                }
                self.next_renewal = now + interval;
            }
            Err(error) => {
                self.failing = true;
                if let Some(suppressed) = self.failure_log.allow() {
                    warn!(%error, suppressed, "renewing the membership lease failed; retrying (this pod stays in its own member set)");
                }
                self.next_renewal = now + interval.min(RETRY_DELAY);
            }
        }
    }

    /// Send the member set if it changed.
    fn publish(&mut self) {
        let set = MemberSet::new(self.this.clone(), self.backend.live_peers());
        self.metrics.set_members(set.len());
        self.sender.send_if_modified(|current| {
            if **current == set {
                return false;
            }
            for joined in set.peers().filter(|m| !current.contains(m.name())) {
                debug!(peer = joined.name(), peer_addr = %joined.peer_addr, "member joined");
            }
            for left in current.peers().filter(|m| !set.contains(m.name())) {
                debug!(peer = left.name(), "member left");
            }
            *current = Arc::new(set);
            true
        });
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
