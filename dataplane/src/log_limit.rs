//! Keeping what clients can make us log bounded: a line an unauthenticated client can cause
//! is rate-limited, and a name it sent is cut before it goes into a log field. Without this,
//! ten requests naming a 60 KB topic wrote 600 KB of log.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Longest client-sent text put into a log field, in characters.
pub const MAX_LOGGED_CHARS: usize = 128;

/// `text` as it may be logged: at most [`MAX_LOGGED_CHARS`] characters, the cut marked with
/// how long the whole was.
pub fn truncated(text: &str) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(MAX_LOGGED_CHARS) {
        None => std::borrow::Cow::Borrowed(text),
        Some((end, _)) => {
            std::borrow::Cow::Owned(format!("{}… ({} bytes)", &text[..end], text.len()))
        }
    }
}

/// Lets one line through per interval and counts the ones it held back, so that a flood is
/// visible (and counted in the next line) without filling the disk.
#[derive(Debug)]
pub struct LogLimiter {
    interval: Duration,
    started: Instant,
    /// Milliseconds since `started` of the last line let through, plus one (0: none yet).
    last: AtomicU64,
    suppressed: AtomicU64,
}

impl LogLimiter {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            started: Instant::now(),
            last: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Whether to log now; when yes, how many lines were held back since the last one.
    pub fn allow(&self) -> Option<u64> {
        let now = self.started.elapsed().as_millis() as u64 + 1;
        let last = self.last.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= self.interval.as_millis() as u64;
        if due
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// One [`LogLimiter`] per kind of line (a refusal's reason, say): a flood of one kind does
/// not hide the first line of another. Kinds are `'static` labels, a fixed set.
#[derive(Debug)]
pub struct LogLimiters {
    interval: Duration,
    by_kind: parking_lot::Mutex<std::collections::HashMap<&'static str, LogLimiter>>,
}

impl LogLimiters {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            by_kind: parking_lot::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// [`LogLimiter::allow`] for lines of `kind`.
    pub fn allow(&self, kind: &'static str) -> Option<u64> {
        let mut by_kind = self.by_kind.lock();
        by_kind
            .entry(kind)
            .or_insert_with(|| LogLimiter::new(self.interval))
            .allow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_name_is_cut_and_says_how_long_it_was() {
        let long = "a".repeat(60_000);
        let logged = truncated(&long);
        assert_eq!(
            logged.chars().count(),
            MAX_LOGGED_CHARS + " (60000 bytes)".len() + 1
        );
        assert!(logged.ends_with("… (60000 bytes)"), "{logged}");
        assert_eq!(truncated("orders"), "orders");
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        let long = "é".repeat(MAX_LOGGED_CHARS + 1);
        assert!(truncated(&long).starts_with(&"é".repeat(MAX_LOGGED_CHARS)));
    }

    #[test]
    fn one_line_per_interval_passes_and_the_rest_are_counted() {
        let limiter = LogLimiter::new(Duration::from_secs(3600));
        assert_eq!(limiter.allow(), Some(0));
        for _ in 0..1_000 {
            assert_eq!(limiter.allow(), None);
        }
        assert_eq!(limiter.suppressed.load(Ordering::Relaxed), 1_000);
    }

    #[test]
    fn each_kind_of_line_has_its_own_allowance() {
        let limiters = LogLimiters::new(Duration::from_secs(3600));
        assert_eq!(limiters.allow("wrong_key"), Some(0));
        assert_eq!(limiters.allow("wrong_key"), None);
        assert_eq!(limiters.allow("expired"), Some(0));
        assert_eq!(limiters.allow("expired"), None);
    }

    #[test]
    fn after_the_interval_the_next_line_reports_what_was_held_back() {
        let limiter = LogLimiter::new(Duration::from_millis(20));
        assert_eq!(limiter.allow(), Some(0));
        assert_eq!(limiter.allow(), None);
        assert_eq!(limiter.allow(), None);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(limiter.allow(), Some(2));
    }
}
