//! The request rate an endpoint allowed in its validation answer (`WebHook-Allowed-Rate`,
//! requests per minute): a token bucket that holds at most one second's worth of requests
//! (at least one), so the rate holds over any minute without bursting past it.

use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug)]
pub struct RateLimit {
    per_minute: u32,
    capacity: f64,
    tokens: f64,
    updated: Instant,
}

impl RateLimit {
    /// Starts full.
    pub fn per_minute(per_minute: u32) -> RateLimit {
        let per_minute = per_minute.max(1);
        let capacity = (f64::from(per_minute) / 60.0).max(1.0);
        RateLimit {
            per_minute,
            capacity,
            tokens: capacity,
            updated: Instant::now(),
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens =
            (self.tokens + elapsed * f64::from(self.per_minute) / 60.0).min(self.capacity);
        self.updated = now;
    }

    /// How many requests may go at once (a second's worth, at least one).
    pub fn burst(&self) -> usize {
        self.capacity as usize
    }

    /// Take one request's token, or say when one will be there.
    pub fn try_acquire(&mut self) -> Result<(), Instant> {
        let now = Instant::now();
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        let missing = 1.0 - self.tokens;
        let wait = Duration::from_secs_f64(missing * 60.0 / f64::from(self.per_minute));
        Err(now + wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn sixty_per_minute_is_one_per_second() {
        let mut limit = RateLimit::per_minute(60);
        assert!(limit.try_acquire().is_ok());
        let next = limit.try_acquire().unwrap_err();
        assert_eq!(next - Instant::now(), Duration::from_secs(1));
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(limit.try_acquire().is_err());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(limit.try_acquire().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_rate_waits_minutes_and_a_fast_one_bursts_one_second_of_requests() {
        let mut slow = RateLimit::per_minute(2);
        assert!(slow.try_acquire().is_ok());
        let next = slow.try_acquire().unwrap_err();
        assert_eq!(next - Instant::now(), Duration::from_secs(30));

        let mut fast = RateLimit::per_minute(600);
        assert_eq!((slow.burst(), fast.burst()), (1, 10));
        let burst = (0..20).take_while(|_| fast.try_acquire().is_ok()).count();
        assert_eq!(burst, 10);
        tokio::time::advance(Duration::from_secs(60)).await;
        let after_a_minute = (0..20).take_while(|_| fast.try_acquire().is_ok()).count();
        assert_eq!(
            after_a_minute, 10,
            "never more than a second's worth at once"
        );
    }
}
