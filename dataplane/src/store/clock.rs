//! The store's notion of time: wall-clock milliseconds (what is persisted: publish times, lock
//! deadlines, release times) derived from tokio's clock, so that tests with a paused clock move
//! every deadline of the store, TTLs included, by advancing tokio's time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

#[derive(Clone, Copy, Debug)]
pub struct Clock {
    base_instant: Instant,
    base_wall: Millis,
}

impl Clock {
    pub fn new() -> Clock {
        let base_wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Clock {
            base_instant: Instant::now(),
            base_wall,
        }
    }

    /// Now, in wall-clock milliseconds.
    pub fn now(&self) -> Millis {
        let elapsed = Instant::now().saturating_duration_since(self.base_instant);
        self.base_wall + duration_millis(elapsed)
    }

    /// The tokio instant at which the wall clock reads `at`.
    pub fn instant_at(&self, at: Millis) -> Instant {
        let offset = at.saturating_sub(self.base_wall);
        if offset <= 0 {
            self.base_instant
        } else {
            self.base_instant + Duration::from_millis(offset.unsigned_abs())
        }
    }
}

/// A duration in whole milliseconds, saturating.
pub fn duration_millis(duration: Duration) -> Millis {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// RFC 3339 text of a wall-clock time (for dead-letter attributes).
pub fn rfc3339(at: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(at)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn advancing_tokio_time_advances_the_store_clock() {
        let clock = Clock::new();
        let before = clock.now();
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(clock.now() - before, 90_000);
        assert_eq!(
            clock.instant_at(before + 1000) - clock.instant_at(before),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn rfc3339_is_utc_with_milliseconds() {
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
