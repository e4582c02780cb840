//! How fast the cluster notices things, tunable per Namespace (`spec.cluster`) and defaulted
//! for local mode.

use std::time::Duration;

/// The timing of membership leases and peer links.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClusterTiming {
    /// How long a membership lease lives without a renewal. A pod renews it every third of
    /// this; a lease not renewed for this long puts its pod out of the member set.
    pub member_lease: Duration,
    /// How long a peer link may stay silent (no frame, no pong) before the peer is treated as
    /// out by this pod; links ping every quarter of it when idle.
    pub peer_timeout: Duration,
}

impl ClusterTiming {
    /// How often a pod renews its membership lease.
    pub fn renew_interval(&self) -> Duration {
        self.member_lease / 3
    }

    /// How often an idle link pings.
    pub fn ping_interval(&self) -> Duration {
        self.peer_timeout / 4
    }
}

impl Default for ClusterTiming {
    fn default() -> Self {
        ClusterTiming {
            member_lease: Duration::from_secs(15),
            peer_timeout: Duration::from_secs(10),
        }
    }
}
