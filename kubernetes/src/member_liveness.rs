//! Which watched member Leases are live, decided the way client-go's leader election decides
//! whether a leader's Lease expired: a Lease is live while its renewTime changed within its
//! `leaseDurationSeconds` *as observed on this pod's monotonic clock*. No other node's wall
//! clock is trusted to compare times, so skew between nodes cannot put a renewing pod out or
//! keep a dead one in.
//!
//! The one place a wall clock is read is a Lease seen for the first time (at start, or after a
//! re-list): it counts as just renewed only when its renewTime is within its duration of our
//! wall clock; otherwise it is out until it changes. That keeps the Lease of a pod that died
//! long ago from counting as live for one more duration at every start.

use crate::members::{InvalidMemberLease, MemberRecord};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::watcher;
use std::collections::{BTreeMap, BTreeSet};
use tokio::time::Instant;

/// A member Lease being tracked.
#[derive(Clone, Debug)]
struct Tracked {
    record: MemberRecord,
    /// When this pod saw its renewTime change (`None`: never while live, so out until it does).
    renewed: Option<Instant>,
}

impl Tracked {
    fn expires(&self) -> Option<Instant> {
        self.renewed.map(|at| at + self.record.lease_duration)
    }

    fn is_live(&self, now: Instant) -> bool {
        self.expires().is_some_and(|expires| now < expires)
    }
}

/// What happened to one watched Lease, for the caller to log.
#[derive(Debug, PartialEq, Eq)]
pub enum Observation {
    /// Tracked (new, renewed, or unchanged).
    Tracked,
    /// This pod's own Lease: not a peer.
    Own,
    /// Carries the member labels but not the contract; ignored.
    Invalid(InvalidMemberLease),
}

/// The member Leases of one Namespace as this pod has watched them.
#[derive(Debug)]
pub struct PeerLeases {
    own_pod: String,
    /// By pod name.
    tracked: BTreeMap<String, Tracked>,
    /// During a re-list: the pods listed so far (the others are gone at `InitDone`).
    relisting: Option<BTreeSet<String>>,
}

impl PeerLeases {
    /// Track the Leases of every pod but `own_pod`.
    pub fn new(own_pod: impl Into<String>) -> Self {
        Self {
            own_pod: own_pod.into(),
            tracked: BTreeMap::new(),
            relisting: None,
        }
    }

    /// Take in one watch event, observed at `now` (monotonic) and `wall_now`.
    pub fn apply(
        &mut self,
        event: watcher::Event<Lease>,
        now: Instant,
        wall_now: Timestamp,
    ) -> Vec<Observation> {
        match event {
            watcher::Event::Apply(lease) => vec![self.observe(&lease, now, wall_now)],
            watcher::Event::Delete(lease) => {
                if let Ok(record) = MemberRecord::from_lease(&lease) {
                    self.tracked.remove(&record.pod);
                } else if let Some(name) = &lease.metadata.name {
                    // An invalid Lease was never tracked under its name; one that turned
                    // invalid was dropped when it did.
                    self.tracked
                        .retain(|pod, _| &crate::members::lease_name(pod) != name);
                }
                Vec::new()
            }
            watcher::Event::Init => {
                self.relisting = Some(BTreeSet::new());
                Vec::new()
            }
            watcher::Event::InitApply(lease) => {
                let observation = self.observe(&lease, now, wall_now);
                if let (Some(listed), Ok(record)) =
                    (&mut self.relisting, MemberRecord::from_lease(&lease))
                {
                    listed.insert(record.pod);
                }
                vec![observation]
            }
            watcher::Event::InitDone => {
                if let Some(listed) = self.relisting.take() {
                    // Deleted while the watch was down: no Delete event comes for those.
                    self.tracked.retain(|pod, _| listed.contains(pod));
                }
                Vec::new()
            }
        }
    }

    fn observe(&mut self, lease: &Lease, now: Instant, wall_now: Timestamp) -> Observation {
        let record = match MemberRecord::from_lease(lease) {
            Ok(record) => record,
            Err(invalid) => {
                if let Some(name) = &lease.metadata.name {
                    self.tracked
                        .retain(|pod, _| &crate::members::lease_name(pod) != name);
                }
                return Observation::Invalid(invalid);
            }
        };
        if record.pod == self.own_pod {
            return Observation::Own;
        }
        let renewed = match self.tracked.get(&record.pod) {
            Some(known) if known.record.renew_time == record.renew_time => known.renewed,
            // Seen renewing: live for a whole duration from now, whatever its clock says.
            Some(_) => Some(now),
            None => first_sight(&record, now, wall_now),
        };
        self.tracked
            .insert(record.pod.clone(), Tracked { record, renewed });
        Observation::Tracked
    }

    /// The peers whose Leases are live at `now`, by pod name.
    pub fn live(&self, now: Instant) -> impl Iterator<Item = &MemberRecord> {
        self.tracked
            .values()
            .filter(move |t| t.is_live(now))
            .map(|t| &t.record)
    }

    /// When the next live Lease expires unless renewed (the moment to look again).
    pub fn next_expiry(&self, now: Instant) -> Option<Instant> {
        self.tracked
            .values()
            .filter(|t| t.is_live(now))
            .filter_map(Tracked::expires)
            .min()
    }
}

/// A Lease seen for the first time counts as renewed now if its renewTime is within its
/// duration of our wall clock (either side: a little skew is not death), else as out.
fn first_sight(record: &MemberRecord, now: Instant, wall_now: Timestamp) -> Option<Instant> {
    let MicroTime(renewed_at) = record.renew_time.as_ref()?;
    let age = wall_now.duration_since(*renewed_at).unsigned_abs();
    (age < record.lease_duration).then_some(now)
}

#[cfg(test)]
#[path = "member_liveness_tests.rs"]
mod tests;
