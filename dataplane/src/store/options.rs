//! How the store is opened: where its files go, and the knobs tests and benchmarks turn.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where the store keeps its files and where it registers its metrics.
pub struct StoreOptions {
    /// The store owns `<data_dir>/store/`.
    pub data_dir: PathBuf,
    /// Store metrics are registered into `metrics.registry()`.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Knobs that production leaves at their defaults and tests and benchmarks turn.
#[doc(hidden)]
#[derive(Clone, Debug)]
pub struct StoreTuning {
    /// A log segment is sealed once it holds this many bytes.
    pub segment_bytes: u64,
    /// How often the retention pass (TTL sweep, segment deletion) runs.
    pub retention_period: Duration,
    /// The subscription journal is compacted once larger than this (and than 4× its last
    /// compacted size).
    pub journal_compaction_bytes: u64,
}

impl Default for StoreTuning {
    fn default() -> Self {
        StoreTuning {
            segment_bytes: 64 << 20,
            retention_period: Duration::from_secs(60),
            journal_compaction_bytes: 4 << 20,
        }
    }
}
