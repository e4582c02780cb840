//! The Namespace's per-client limits (SPEC §D, `topicSpacesConfiguration`) and the message
//! rate limiter (see README.md, "Namespace limits").

use gridline_crds::model::Snapshot;
use std::time::Duration;
use tokio::time::Instant;

/// The Namespace's per-client bounds (SPEC §D, `topicSpacesConfiguration`), read at CONNECT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NamespaceLimits {
    /// `maximumClientSessionsPerAuthenticationName`: connected sessions per name.
    pub sessions_per_name: usize,
    /// `maximumSubscriptionsPerConnection`: subscriptions the session may hold.
    pub subscriptions_per_connection: usize,
    /// `maximumMessagesPerSecondPerConnection`: PUBLISH packets read per second.
    pub messages_per_second: u32,
    /// `maximumSessionExpiryInHours`, in seconds.
    pub max_session_expiry_secs: u32,
}

impl NamespaceLimits {
    pub fn of(snapshot: &Snapshot) -> Self {
        let defaults = gridline_crds::types::namespace::TopicSpacesConfiguration::default();
        let config = snapshot
            .namespace
            .as_ref()
            .map_or(&defaults, |n| &n.spec.topic_spaces_configuration);
        let at_least_one = |n: i32| usize::try_from(n).unwrap_or(0).max(1);
        Self {
            sessions_per_name: at_least_one(config.maximum_client_sessions_per_authentication_name),
            subscriptions_per_connection: at_least_one(config.maximum_subscriptions_per_connection),
            messages_per_second: u32::try_from(config.maximum_messages_per_second_per_connection)
                .unwrap_or(0)
                .max(1),
            max_session_expiry_secs: config.maximum_session_expiry_in_hours.clamp(1, 8) as u32
                * 3600,
        }
    }
}

/// A token bucket over inbound PUBLISH packets: `rate` per second, bursts of up to `rate`.
/// Over the rate the connection stops reading (TCP pushes back on the client) until the
/// bucket has a token again; nothing is refused or dropped.
#[derive(Debug)]
pub struct RateLimit {
    rate: f64,
    tokens: f64,
    refilled_at: Instant,
}

impl RateLimit {
    pub fn new(per_second: u32) -> Self {
        let rate = f64::from(per_second.max(1));
        Self {
            rate,
            tokens: rate,
            refilled_at: Instant::now(),
        }
    }

    /// Count one message; when reading must pause, until when.
    pub fn take(&mut self) -> Option<Instant> {
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled_at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.refilled_at = now;
        self.tokens -= 1.0;
        (self.tokens < 0.0).then(|| now + Duration::from_secs_f64(-self.tokens / self.rate))
    }
}
