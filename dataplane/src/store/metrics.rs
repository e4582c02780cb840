//! The store's metrics, registered into the data plane's registry. Labels are topic and
//! subscription names (bounded by the configuration), never lock tokens or event ids.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Opts, Registry};

pub struct StoreMetrics {
    pub published_events: IntCounterVec,
    pub store_bytes: IntGaugeVec,
    pub fsync_duration: Histogram,
    pub received_events: IntCounterVec,
    pub acknowledged_events: IntCounterVec,
    pub released_events: IntCounterVec,
    pub rejected_events: IntCounterVec,
    pub dead_lettered_events: IntCounterVec,
    pub dropped_events: IntCounterVec,
    pub lock_expiries: IntCounterVec,
    pub pending_events: IntGaugeVec,
    pub corrupt_records: IntCounterVec,
    pub write_failures: IntCounterVec,
}

fn counter(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntCounterVec> {
    IntCounterVec::new(Opts::new(name, help), labels)
}

impl StoreMetrics {
    pub fn new() -> prometheus::Result<StoreMetrics> {
        const SUB: &[&str] = &["topic", "subscription"];
        const REASON: &[&str] = &["topic", "subscription", "reason"];
        Ok(StoreMetrics {
            published_events: counter(
                "gridline_store_published_events_total",
                "Events appended to a topic's log",
                &["topic"],
            )?,
            store_bytes: IntGaugeVec::new(
                Opts::new("gridline_store_bytes", "Bytes of a topic's log on disk"),
                &["topic"],
            )?,
            fsync_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "gridline_store_fsync_duration_seconds",
                    "Time of one group-commit fsync (log and journal of a topic)",
                )
                .buckets(vec![
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                    0.5, 1.0,
                ]),
            )?,
            received_events: counter(
                "gridline_queue_received_events_total",
                "Events handed out by receive (each delivery counts)",
                SUB,
            )?,
            acknowledged_events: counter(
                "gridline_queue_acknowledged_events_total",
                "Events acknowledged",
                SUB,
            )?,
            released_events: counter(
                "gridline_queue_released_events_total",
                "Events released",
                SUB,
            )?,
            rejected_events: counter(
                "gridline_queue_rejected_events_total",
                "Events rejected",
                SUB,
            )?,
            dead_lettered_events: counter(
                "gridline_queue_dead_lettered_events_total",
                "Events appended to the dead-letter topic, by reason",
                REASON,
            )?,
            dropped_events: counter(
                "gridline_queue_dropped_events_total",
                "Events dropped (no dead-letter topic), by reason",
                REASON,
            )?,
            lock_expiries: counter(
                "gridline_queue_lock_expiries_total",
                "Locks that expired before the event was settled",
                SUB,
            )?,
            pending_events: IntGaugeVec::new(
                Opts::new(
                    "gridline_queue_pending_events",
                    "Events not yet settled (best effort: estimated after a restart)",
                ),
                SUB,
            )?,
            corrupt_records: counter(
                "gridline_store_corrupt_records_total",
                "Ranges of a topic's log found corrupt and quarantined (skipped, never delivered), by what was wrong: checksum (the record's bytes changed) or length (its boundary was lost)",
                &["topic", "reason"],
            )?,
            write_failures: counter(
                "gridline_store_write_failures_total",
                "Group-commit rounds of a topic that failed to write or fsync (nothing of the round was acknowledged), by reason: disk_full (ENOSPC, EDQUOT, EFBIG) or io",
                &["topic", "reason"],
            )?,
        })
    }

    /// Register every family. A family already registered (a second store on the same
    /// registry, as in tests that reopen a store) is skipped: its series stay unexported.
    pub fn register(&self, registry: &Registry) {
        let collectors: [Box<dyn prometheus::core::Collector>; 13] = [
            Box::new(self.published_events.clone()),
            Box::new(self.store_bytes.clone()),
            Box::new(self.fsync_duration.clone()),
            Box::new(self.received_events.clone()),
            Box::new(self.acknowledged_events.clone()),
            Box::new(self.released_events.clone()),
            Box::new(self.rejected_events.clone()),
            Box::new(self.dead_lettered_events.clone()),
            Box::new(self.dropped_events.clone()),
            Box::new(self.lock_expiries.clone()),
            Box::new(self.pending_events.clone()),
            Box::new(self.corrupt_records.clone()),
            Box::new(self.write_failures.clone()),
        ];
        for collector in collectors {
            if let Err(error) = registry.register(collector) {
                tracing::warn!(%error, "store metric not registered");
            }
        }
    }

    /// Forget the series of a topic whose files were deleted.
    pub fn forget_topic(&self, topic: &str) {
        let _ = self.published_events.remove_label_values(&[topic]);
        let _ = self.store_bytes.remove_label_values(&[topic]);
    }

    /// Forget the series of a subscription that is no longer served.
    pub fn forget_subscription(&self, topic: &str, subscription: &str) {
        for family in [
            &self.received_events,
            &self.acknowledged_events,
            &self.released_events,
            &self.rejected_events,
            &self.lock_expiries,
        ] {
            let _ = family.remove_label_values(&[topic, subscription]);
        }
        let _ = self
            .pending_events
            .remove_label_values(&[topic, subscription]);
    }
}
