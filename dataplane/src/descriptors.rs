//! The process's file descriptors, shared by every listener. Each accepted socket costs one;
//! when they run out, `accept` fails on every listener at once and a publish cannot even open
//! a segment. So connections together may hold at most the descriptor limit less a reserve
//! for everything else (segment and journal files, peer links, webhook and Kubernetes
//! clients), and each listener's own cap defaults to a share of that.

use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{info, warn};

/// Descriptors kept for what is not a client connection.
pub const RESERVED: u64 = 1_024;
/// The least the connections get, whatever the limit says (a tiny limit is a misconfiguration
/// the log reports; the data plane still starts).
const MINIMUM_FOR_CONNECTIONS: u64 = 64;

/// How many client connections the process may hold at once, all listeners together.
#[derive(Clone, Debug)]
pub struct ConnectionBudget {
    permits: Arc<Semaphore>,
    total: usize,
}

impl ConnectionBudget {
    /// Raise the soft `RLIMIT_NOFILE` to the hard one (as Go's runtime and systemd's services
    /// do: the soft default of 1,024 exists for `select(2)`, which nothing here uses), log both,
    /// and budget connections under it.
    pub fn from_process_limit() -> Self {
        let limit = match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(limit) => limit,
            Err(error) => {
                let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((1_024, 0));
                warn!(%error, soft, "cannot raise the open-file limit");
                soft
            }
        };
        let budget = Self::for_limit(limit);
        info!(
            open_file_limit = limit,
            connection_budget = budget.total,
            "file descriptors: connections on all listeners together are held under the limit"
        );
        if limit < RESERVED + MINIMUM_FOR_CONNECTIONS {
            warn!(
                open_file_limit = limit,
                "the open-file limit is very low: raise it (ulimit -n, or the container's nofile)"
            );
        }
        budget
    }

    /// The budget under an open-file limit of `limit`.
    pub fn for_limit(limit: u64) -> Self {
        let total = limit
            .saturating_sub(RESERVED)
            .max(MINIMUM_FOR_CONNECTIONS)
            .min(Semaphore::MAX_PERMITS as u64) as usize;
        Self {
            permits: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    /// Connections all listeners together may hold.
    pub fn total(&self) -> usize {
        self.total
    }

    /// One descriptor for a connection, returned when the permit drops; None when the budget
    /// is spent.
    pub fn take(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }

    /// The default cap of one MQTT listener: `configured`, at most the whole budget.
    pub fn mqtt_listener_cap(&self, configured: usize) -> usize {
        configured.min(self.total)
    }

    /// The default cap of one HTTP listener: a quarter of the budget, at most `configured`,
    /// so that a flood of idle HTTP sockets on both HTTP listeners leaves half the
    /// descriptors to MQTT.
    pub fn http_listener_cap(&self, configured: usize) -> usize {
        configured.min((self.total / 4).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_budgeted_under_the_limit_less_the_reserve() {
        let budget = ConnectionBudget::for_limit(20_000);
        assert_eq!(budget.total(), 20_000 - RESERVED as usize);
        assert_eq!(budget.mqtt_listener_cap(100_000), budget.total());
        assert_eq!(budget.http_listener_cap(10_000), budget.total() / 4);
        assert_eq!(budget.http_listener_cap(100), 100);
    }

    #[test]
    fn a_spent_budget_refuses_until_a_connection_ends() {
        let budget = ConnectionBudget::for_limit(RESERVED + MINIMUM_FOR_CONNECTIONS);
        let held: Vec<_> = (0..MINIMUM_FOR_CONNECTIONS)
            .map(|_| budget.take().expect("within the budget"))
            .collect();
        assert!(budget.take().is_none());
        drop(held);
        assert!(budget.take().is_some());
    }

    #[test]
    fn a_tiny_limit_still_leaves_some_connections() {
        assert_eq!(
            ConnectionBudget::for_limit(100).total(),
            MINIMUM_FOR_CONNECTIONS as usize
        );
    }
}
