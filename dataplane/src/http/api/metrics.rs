//! The Event Grid API's own metrics, registered into the data plane's registry. Labels are
//! bounded: auth failure reasons are a fixed list, topics are those of the served
//! configuration (counted only once a publish to them succeeded).

use crate::auth::AuthError;
use crate::log_limit::LogLimiters;
use prometheus::{IntCounterVec, Opts, Registry};

pub struct ApiMetrics {
    auth_failures: IntCounterVec,
    published_events: IntCounterVec,
    /// Authentication failures are logged at most once a second per reason (anyone can cause
    /// them).
    pub auth_failure_log: LogLimiters,
}

impl ApiMetrics {
    /// Create and register. Fails only on a programming error (a name registered twice).
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let auth_failures = IntCounterVec::new(
            Opts::new(
                "gridline_http_auth_failures_total",
                "Event Grid API requests refused for their credentials, by reason",
            ),
            &["reason"],
        )?;
        let published_events = IntCounterVec::new(
            Opts::new(
                "gridline_http_published_events_total",
                "Events published over the Event Grid API and stored, by topic",
            ),
            &["topic"],
        )?;
        registry.register(Box::new(auth_failures.clone()))?;
        registry.register(Box::new(published_events.clone()))?;
        for reason in AuthError::REASONS {
            auth_failures.with_label_values(&[reason]);
        }
        Ok(Self {
            auth_failures,
            published_events,
            auth_failure_log: LogLimiters::new(std::time::Duration::from_secs(1)),
        })
    }

    pub fn auth_failed(&self, error: &AuthError) {
        self.auth_failures
            .with_label_values(&[error.reason()])
            .inc();
    }

    pub fn published(&self, topic: &str, events: usize) {
        self.published_events
            .with_label_values(&[topic])
            .inc_by(u64::try_from(events).unwrap_or(u64::MAX));
    }
}
