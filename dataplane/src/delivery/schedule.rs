//! Event Grid's retry policy (SPEC §C), as pure functions: which outcomes are retried, how
//! long to wait before the next attempt, and when to give up.
//!
//! Schedule: after the first failed attempt the event is retried immediately, then after
//! 10 s, 30 s, 1 min, 5 min, and every 5 min after that, until it is delivered, until
//! `maxDeliveryCount` attempts are spent, or until its `eventTimeToLive` would pass before the
//! next attempt. Every wait gets ±10 % jitter (so a burst of failures does not come back as a
//! burst); a `Retry-After` header may lengthen a wait, never shorten it.

use crate::store::{DeadLetterReason, LastAttempt};
use std::time::Duration;

/// One attempt (one HTTP request) waits at most this long for the endpoint's answer.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// The wait after the 1st, 2nd, ... failed attempt; the last one repeats.
const SCHEDULE: [Duration; 5] = [
    Duration::ZERO,
    Duration::from_secs(10),
    Duration::from_secs(30),
    Duration::from_secs(60),
    Duration::from_secs(300),
];

/// Each wait is the schedule's ± this fraction.
pub const JITTER: f64 = 0.1;

/// Statuses that no retry can fix (Event Grid's list for namespace push delivery): the event
/// is dead-lettered at once.
const NOT_RETRIED: [u16; 5] = [400, 401, 403, 404, 414];

/// Test-only: every retry delay (not lock durations, not the delivery timeout, not a
/// `Retry-After` the endpoint asks for) is multiplied by this factor, so that integration
/// tests run the whole schedule in seconds. 1 in production.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TimeScale(f64);

impl TimeScale {
    pub const REAL: TimeScale = TimeScale(1.0);

    /// A factor in (0, 1]: tests may shrink delays, nothing may stretch them.
    pub fn new(factor: f64) -> Result<TimeScale, String> {
        if factor.is_finite() && factor > 0.0 && factor <= 1.0 {
            Ok(TimeScale(factor))
        } else {
            Err(format!("the time scale must be in (0, 1], not {factor}"))
        }
    }

    pub fn apply(self, delay: Duration) -> Duration {
        delay.mul_f64(self.0)
    }

    pub fn is_real(self) -> bool {
        self.0 == 1.0
    }
}

impl Default for TimeScale {
    fn default() -> Self {
        TimeScale::REAL
    }
}

/// How one attempt ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Attempt {
    /// Any 2xx.
    Delivered {
        status: u16,
    },
    Failed(Failure),
}

/// Why an attempt failed.
#[derive(Clone, Debug, PartialEq)]
pub enum Failure {
    /// The endpoint answered with a status that is not 2xx.
    Status {
        code: u16,
        /// From a `Retry-After` header: the endpoint's wish for the next attempt.
        retry_after: Option<Duration>,
    },
    /// No answer within [`DELIVERY_TIMEOUT`].
    Timeout,
    /// No connection (refused, reset, DNS, TLS). The message never holds the URL.
    Connection { message: String },
}

impl Failure {
    /// Event Grid does not retry timeouts and connection failures either; Gridline does (an
    /// endpoint that is restarting must not lose events).
    pub fn is_retried(&self) -> bool {
        match self {
            Failure::Status { code, .. } => !NOT_RETRIED.contains(code),
            Failure::Timeout | Failure::Connection { .. } => true,
        }
    }

    pub fn http_status(&self) -> Option<u16> {
        match self {
            Failure::Status { code, .. } => Some(*code),
            Failure::Timeout | Failure::Connection { .. } => None,
        }
    }

    /// The `class` label of the failed-attempt metric: `1xx`..`5xx`, `timeout`, `connection`.
    pub fn class(&self) -> &'static str {
        match self {
            Failure::Status { code, .. } => match code / 100 {
                1 => "1xx",
                2 => "2xx",
                3 => "3xx",
                4 => "4xx",
                _ => "5xx",
            },
            Failure::Timeout => "timeout",
            Failure::Connection { .. } => "connection",
        }
    }

    /// The dead letter's `lastdeliveryoutcome`: one CamelCase word.
    pub fn outcome(&self) -> &'static str {
        match self {
            Failure::Status { code, .. } => match code {
                400 => "BadRequest",
                401 => "Unauthorized",
                403 => "Forbidden",
                404 => "NotFound",
                408 => "TimedOut",
                413 => "PayloadTooLarge",
                414 => "UriTooLong",
                429 | 503 => "Busy",
                300..=399 => "Redirected",
                400..=499 => "ClientError",
                _ => "ServerError",
            },
            Failure::Timeout => "TimedOut",
            Failure::Connection { .. } => "ConnectionFailed",
        }
    }

    /// For people: the status page and logs.
    pub fn describe(&self) -> String {
        match self {
            Failure::Status { code, .. } => format!("HTTP {code} ({})", self.outcome()),
            Failure::Timeout => format!("no answer within {} s", DELIVERY_TIMEOUT.as_secs()),
            Failure::Connection { message } => format!("connection failed: {message}"),
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Failure::Status { retry_after, .. } => *retry_after,
            Failure::Timeout | Failure::Connection { .. } => None,
        }
    }
}

/// The wait the schedule prescribes after the `failed_attempts`-th failed attempt (1-based),
/// before jitter and time scale.
pub fn scheduled_wait(failed_attempts: u32) -> Duration {
    let index = usize::try_from(failed_attempts.saturating_sub(1)).unwrap_or(usize::MAX);
    SCHEDULE[index.min(SCHEDULE.len() - 1)]
}

/// `wait` ± [`JITTER`]; `unit` is uniform in [0, 1). "Immediately" stays immediate.
pub fn jitter(wait: Duration, unit: f64) -> Duration {
    let factor = 1.0 - JITTER + 2.0 * JITTER * unit.clamp(0.0, 1.0);
    wait.mul_f64(factor)
}

/// A uniform number in [0, 1) for [`jitter`]; 0.5 (no jitter) if the OS generator fails.
pub fn random_unit() -> f64 {
    getrandom::u32().map_or(0.5, |n| f64::from(n) / (f64::from(u32::MAX) + 1.0))
}

/// The subscription's limits on retrying.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    pub max_delivery_count: u32,
    pub time_to_live: Duration,
    pub time_scale: TimeScale,
}

/// One event's attempt history, as the store knows it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EventAttempts {
    /// Attempts made, the failed one included.
    pub attempts: u32,
    /// Wall-clock milliseconds.
    pub publish_time: i64,
}

/// What to do with an event whose attempt failed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Next {
    RetryAfter(Duration),
    GiveUp(DeadLetterReason),
}

/// Decide the next step for one event after `failure`, at wall-clock `now` (milliseconds);
/// `unit` drives the jitter (see [`random_unit`]).
pub fn after_failure(
    failure: &Failure,
    event: EventAttempts,
    policy: &RetryPolicy,
    now: i64,
    unit: f64,
) -> Next {
    if !failure.is_retried() {
        return Next::GiveUp(DeadLetterReason::NonRetryableStatus);
    }
    if event.attempts >= policy.max_delivery_count {
        return Next::GiveUp(DeadLetterReason::MaxDeliveryCountExceeded);
    }
    let scheduled = policy
        .time_scale
        .apply(jitter(scheduled_wait(event.attempts), unit));
    let wait = failure
        .retry_after()
        .map_or(scheduled, |asked| asked.max(scheduled));
    let expires = event
        .publish_time
        .saturating_add(i64::try_from(policy.time_to_live.as_millis()).unwrap_or(i64::MAX));
    let next_attempt = now.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
    // No attempt can happen within the time to live: give up now, with what this attempt
    // ended with, rather than let the store expire the event later without it.
    if next_attempt > expires {
        return Next::GiveUp(DeadLetterReason::TimeToLiveExceeded);
    }
    Next::RetryAfter(wait)
}

/// The dead letter's facts about the failed attempt made at `time`.
pub fn last_attempt(failure: &Failure, time: i64) -> LastAttempt {
    LastAttempt {
        http_status: failure.http_status(),
        outcome: failure.outcome(),
        time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_delivery_count: 10,
            time_to_live: 24 * HOUR,
            time_scale: TimeScale::REAL,
        }
    }

    fn status(code: u16) -> Failure {
        Failure::Status {
            code,
            retry_after: None,
        }
    }

    fn after(attempts: u32, failure: &Failure) -> Next {
        let event = EventAttempts {
            attempts,
            publish_time: 0,
        };
        after_failure(failure, event, &policy(), 0, 0.5)
    }

    #[test]
    fn the_schedule_is_immediately_then_10s_30s_1min_5min_then_every_5min() {
        let waits: Vec<u64> = (1..=8).map(|n| scheduled_wait(n).as_secs()).collect();
        assert_eq!(waits, [0, 10, 30, 60, 300, 300, 300, 300]);
        assert_eq!(scheduled_wait(0), Duration::ZERO);
        assert_eq!(scheduled_wait(u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn jitter_stays_within_ten_percent_and_immediately_stays_immediate() {
        let wait = Duration::from_secs(100);
        assert_eq!(jitter(wait, 0.0), Duration::from_secs(90));
        assert_eq!(jitter(wait, 0.5), wait);
        assert!(jitter(wait, 0.999_999) <= Duration::from_secs(110));
        assert_eq!(jitter(wait, 7.0), Duration::from_secs(110), "clamped");
        for _ in 0..1000 {
            let drawn = jitter(wait, random_unit());
            assert!(drawn >= Duration::from_secs(90) && drawn <= Duration::from_secs(110));
        }
        assert_eq!(jitter(Duration::ZERO, random_unit()), Duration::ZERO);
    }

    #[test]
    fn only_400_401_403_404_and_414_are_not_retried() {
        for code in [400, 401, 403, 404, 414] {
            assert!(!status(code).is_retried(), "{code}");
            assert_eq!(
                after(1, &status(code)),
                Next::GiveUp(DeadLetterReason::NonRetryableStatus)
            );
        }
        for code in [300, 302, 405, 408, 409, 413, 429, 500, 502, 503, 504] {
            assert!(status(code).is_retried(), "{code}");
        }
        assert!(Failure::Timeout.is_retried(), "Gridline retries timeouts");
        let refused = Failure::Connection {
            message: "refused".into(),
        };
        assert!(refused.is_retried(), "and connection failures");
    }

    #[test]
    fn outcomes_are_classified_for_metrics_and_dead_letters() {
        assert_eq!(status(503).class(), "5xx");
        assert_eq!(status(429).class(), "4xx");
        assert_eq!(status(301).class(), "3xx");
        assert_eq!(Failure::Timeout.class(), "timeout");
        let refused = Failure::Connection {
            message: "refused".into(),
        };
        assert_eq!(refused.class(), "connection");
        assert_eq!(status(404).outcome(), "NotFound");
        assert_eq!(status(503).outcome(), "Busy");
        assert_eq!(status(500).outcome(), "ServerError");
        assert_eq!(status(418).outcome(), "ClientError");
        assert_eq!(Failure::Timeout.outcome(), "TimedOut");
        assert_eq!(refused.outcome(), "ConnectionFailed");
        let last = last_attempt(&status(503), 42);
        assert_eq!(
            (last.http_status, last.outcome, last.time),
            (Some(503), "Busy", 42)
        );
        assert_eq!(last_attempt(&Failure::Timeout, 1).http_status, None);
    }

    #[test]
    fn a_retryable_failure_waits_the_scheduled_time() {
        assert_eq!(after(1, &status(503)), Next::RetryAfter(Duration::ZERO));
        assert_eq!(
            after(2, &Failure::Timeout),
            Next::RetryAfter(Duration::from_secs(10))
        );
        assert_eq!(
            after(9, &status(500)),
            Next::RetryAfter(Duration::from_secs(300))
        );
    }

    #[test]
    fn the_last_allowed_attempt_failing_gives_up() {
        assert_eq!(
            after(10, &status(503)),
            Next::GiveUp(DeadLetterReason::MaxDeliveryCountExceeded)
        );
    }

    #[test]
    fn retry_after_lengthens_a_wait_but_never_shortens_it() {
        let longer = Failure::Status {
            code: 429,
            retry_after: Some(Duration::from_secs(120)),
        };
        assert_eq!(
            after(2, &longer),
            Next::RetryAfter(Duration::from_secs(120))
        );
        let shorter = Failure::Status {
            code: 503,
            retry_after: Some(Duration::from_secs(1)),
        };
        assert_eq!(
            after(3, &shorter),
            Next::RetryAfter(Duration::from_secs(30))
        );
    }

    #[test]
    fn an_event_whose_next_attempt_would_be_past_its_time_to_live_is_given_up_now() {
        let short = RetryPolicy {
            time_to_live: Duration::from_secs(60),
            ..policy()
        };
        let event = |attempts| EventAttempts {
            attempts,
            publish_time: 0,
        };
        // After the 4th attempt at 40 s, the next would be at 100 s: past the minute.
        assert_eq!(
            after_failure(&status(503), event(3), &short, 20_000, 0.5),
            Next::RetryAfter(Duration::from_secs(30))
        );
        assert_eq!(
            after_failure(&status(503), event(4), &short, 40_000, 0.5),
            Next::GiveUp(DeadLetterReason::TimeToLiveExceeded)
        );
    }

    #[test]
    fn the_time_scale_shrinks_the_schedule_but_not_retry_after() {
        let fast = RetryPolicy {
            time_scale: TimeScale::new(0.01).unwrap(),
            ..policy()
        };
        let event = EventAttempts {
            attempts: 5,
            publish_time: 0,
        };
        assert_eq!(
            after_failure(&status(503), event, &fast, 0, 0.5),
            Next::RetryAfter(Duration::from_secs(3))
        );
        let asked = Failure::Status {
            code: 503,
            retry_after: Some(Duration::from_secs(5)),
        };
        assert_eq!(
            after_failure(&asked, event, &fast, 0, 0.5),
            Next::RetryAfter(Duration::from_secs(5))
        );
        assert!(TimeScale::new(0.0).is_err());
        assert!(TimeScale::new(2.0).is_err(), "never stretches");
        assert!(TimeScale::new(f64::NAN).is_err());
    }
}
