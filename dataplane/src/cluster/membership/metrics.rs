//! The membership's metrics: how many members this pod sees, and how its lease renewals go.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// `gridline_cluster_members` and `gridline_cluster_lease_renewals_total{result}`.
#[derive(Clone, Debug)]
pub struct MembershipMetrics {
    members: IntGauge,
    renewed: IntCounter,
    failed: IntCounter,
}

impl MembershipMetrics {
    /// Create and register them on `registry` (an error means they were registered twice).
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let members = IntGauge::new(
            "gridline_cluster_members",
            "Pods in this pod's member set, this pod included",
        )?;
        let renewals = IntCounterVec::new(
            Opts::new(
                "gridline_cluster_lease_renewals_total",
                "Writes of this pod's membership lease, by result (ok, failed)",
            ),
            &["result"],
        )?;
        registry.register(Box::new(members.clone()))?;
        registry.register(Box::new(renewals.clone()))?;
        Ok(Self {
            members,
            renewed: renewals.with_label_values(&["ok"]),
            failed: renewals.with_label_values(&["failed"]),
        })
    }

    pub fn set_members(&self, count: usize) {
        self.members.set(count as i64);
    }

    pub fn renewal(&self, ok: bool) {
        if ok {
            self.renewed.inc();
        } else {
            self.failed.inc();
        }
    }
}
