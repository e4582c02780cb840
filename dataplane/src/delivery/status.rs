//! The delivery status of every push subscription, kept in memory and served as JSON at
//! `GET /status/eventsubscriptions`, shaped so that the operator can later copy it into the
//! EventSubscription's status: Kubernetes conditions (`type`, `status`, `reason`, `message`,
//! `lastTransitionTime`, which changes only when `status` does).
//!
//! - `EndpointValidated`: `Unknown`/`Validating` until the handshake answered; `True`/
//!   `HandshakeSucceeded`; `False` with `ValidationRefused`, `OriginNotAllowed`,
//!   `RateNotAllowed`, `EndpointUnreachable` or `InvalidEndpoint`.
//! - `EndpointHealthy`: `Unknown`/`NoDeliveryYet`; `True`/`Delivering` after a delivered
//!   request; `False`/`DeliveryFailing` once [`FAILING_AFTER`] requests in a row failed.
//!
//! Dispatchers write their own entry through a [`StatusHandle`] (a short lock, never held
//! across an `.await`); the HTTP handler renders a copy.

use chrono::{DateTime, SecondsFormat, Utc};
use parking_lot::Mutex;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Requests failing in a row before the endpoint counts as failing (one failure among
/// successes is ordinary and retried; the condition should not flap with it).
pub const FAILING_AFTER: u32 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    pub kind: &'static str,
    pub status: ConditionStatus,
    pub reason: String,
    pub message: String,
    pub last_transition_time: DateTime<Utc>,
}

impl Condition {
    fn new(kind: &'static str, reason: &str, message: &str) -> Condition {
        Condition {
            kind,
            status: ConditionStatus::Unknown,
            reason: reason.to_string(),
            message: message.to_string(),
            last_transition_time: Utc::now(),
        }
    }

    /// Kubernetes convention: the transition time moves only when the status changes.
    fn set(&mut self, status: ConditionStatus, reason: &str, message: &str) {
        if self.status != status {
            self.status = status;
            self.last_transition_time = Utc::now();
        }
        if self.reason != reason {
            self.reason = reason.to_string();
        }
        if self.message != message {
            self.message = message.to_string();
        }
    }

    fn render(&self) -> Value {
        json!({
            "type": self.kind,
            "status": self.status.as_str(),
            "reason": self.reason,
            "message": self.message,
            "lastTransitionTime": self.last_transition_time.to_rfc3339_opts(SecondsFormat::Secs, true),
        })
    }
}

/// One push subscription's delivery status.
#[derive(Clone, Debug)]
pub struct SubscriptionStatus {
    /// The endpoint without query string or user info.
    pub endpoint: String,
    pub validated: Condition,
    pub healthy: Condition,
    pub delivered_events: u64,
    pub failed_attempts: u64,
    pub consecutive_failures: u32,
    pub last_delivery_time: Option<DateTime<Utc>>,
    /// When and how the latest failed request failed.
    pub last_failure: Option<(DateTime<Utc>, String)>,
}

impl SubscriptionStatus {
    fn new(endpoint: String) -> SubscriptionStatus {
        SubscriptionStatus {
            endpoint,
            validated: Condition::new(
                "EndpointValidated",
                "Validating",
                "the validation handshake has not been answered yet",
            ),
            healthy: Condition::new(
                "EndpointHealthy",
                "NoDeliveryYet",
                "nothing has been delivered yet",
            ),
            delivered_events: 0,
            failed_attempts: 0,
            consecutive_failures: 0,
            last_delivery_time: None,
            last_failure: None,
        }
    }

    fn render(&self, topic: &str, name: &str) -> Value {
        let time = |t: &DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
        json!({
            "topic": topic,
            "name": name,
            "endpoint": self.endpoint,
            "conditions": [self.validated.render(), self.healthy.render()],
            "deliveredEvents": self.delivered_events,
            "failedAttempts": self.failed_attempts,
            "consecutiveFailedRequests": self.consecutive_failures,
            "lastDeliveryTime": self.last_delivery_time.as_ref().map(time),
            "lastFailure": self.last_failure.as_ref().map(|(at, message)| json!({
                "time": time(at),
                "message": message,
            })),
        })
    }
}

/// (topic, subscription).
pub type Key = (String, String);

/// Every push subscription's status. Cheap to clone.
#[derive(Clone, Default)]
pub struct StatusBoard {
    entries: Arc<Mutex<BTreeMap<Key, SubscriptionStatus>>>,
}

impl StatusBoard {
    /// A fresh entry for a dispatcher that starts (replacing any earlier one).
    pub fn track(&self, topic: &str, subscription: &str, endpoint: String) -> StatusHandle {
        let key = (topic.to_string(), subscription.to_string());
        self.entries
            .lock()
            .insert(key.clone(), SubscriptionStatus::new(endpoint));
        StatusHandle {
            board: self.clone(),
            key,
        }
    }

    /// Forget a subscription that is no longer served.
    pub fn forget(&self, topic: &str, subscription: &str) {
        self.entries
            .lock()
            .remove(&(topic.to_string(), subscription.to_string()));
    }

    pub fn get(&self, topic: &str, subscription: &str) -> Option<SubscriptionStatus> {
        self.entries
            .lock()
            .get(&(topic.to_string(), subscription.to_string()))
            .cloned()
    }

    /// A copy of every entry, by topic then subscription name.
    pub fn entries(&self) -> Vec<(Key, SubscriptionStatus)> {
        self.entries
            .lock()
            .iter()
            .map(|(key, status)| (key.clone(), status.clone()))
            .collect()
    }

    /// `{"eventSubscriptions": [...]}`, by topic then subscription name.
    pub fn render(&self) -> Value {
        let entries = self.entries.lock().clone();
        let list: Vec<Value> = entries
            .iter()
            .map(|((topic, name), status)| status.render(topic, name))
            .collect();
        json!({ "eventSubscriptions": list })
    }
}

/// A dispatcher's pen for its own entry.
pub struct StatusHandle {
    board: StatusBoard,
    key: Key,
}

impl StatusHandle {
    fn update(&self, change: impl FnOnce(&mut SubscriptionStatus)) {
        if let Some(status) = self.board.entries.lock().get_mut(&self.key) {
            change(status);
        }
    }

    pub fn validated(&self, message: &str) {
        self.update(|s| {
            s.validated
                .set(ConditionStatus::True, "HandshakeSucceeded", message);
        });
    }

    pub fn not_validated(&self, reason: &str, message: &str) {
        self.update(|s| {
            s.validated.set(ConditionStatus::False, reason, message);
            s.healthy.set(
                ConditionStatus::Unknown,
                "NotValidated",
                "nothing is delivered before the endpoint is validated",
            );
        });
    }

    pub fn delivered(&self, events: u64) {
        self.update(|s| {
            s.delivered_events += events;
            s.consecutive_failures = 0;
            s.last_delivery_time = Some(Utc::now());
            s.healthy.set(
                ConditionStatus::True,
                "Delivering",
                "the endpoint accepts deliveries",
            );
        });
    }

    /// A request failed; `description` says how (never a secret: no URL, no header).
    pub fn failed(&self, events: u64, description: &str) {
        self.update(|s| {
            s.failed_attempts += events;
            s.consecutive_failures = s.consecutive_failures.saturating_add(1);
            s.last_failure = Some((Utc::now(), description.to_string()));
            if s.consecutive_failures >= FAILING_AFTER {
                let message = format!(
                    "{FAILING_AFTER} or more requests in a row failed; the last: {description}"
                );
                s.healthy
                    .set(ConditionStatus::False, "DeliveryFailing", &message);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition<'a>(rendered: &'a Value, kind: &str) -> &'a Value {
        rendered["eventSubscriptions"][0]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == kind)
            .unwrap()
    }

    #[test]
    fn a_new_entry_is_unknown_until_the_handshake_answers() {
        let board = StatusBoard::default();
        board.track("orders", "hook", "https://example.com/".into());
        let rendered = board.render();
        assert_eq!(rendered["eventSubscriptions"][0]["topic"], "orders");
        assert_eq!(rendered["eventSubscriptions"][0]["name"], "hook");
        let validated = condition(&rendered, "EndpointValidated");
        assert_eq!(validated["status"], "Unknown");
        assert_eq!(validated["reason"], "Validating");
        assert!(
            validated["lastTransitionTime"]
                .as_str()
                .unwrap()
                .ends_with('Z')
        );
    }

    #[test]
    fn a_refused_handshake_says_why() {
        let board = StatusBoard::default();
        let handle = board.track("orders", "hook", "https://example.com/".into());
        handle.not_validated("OriginNotAllowed", "the endpoint allows origin 'x'");
        let rendered = board.render();
        let validated = condition(&rendered, "EndpointValidated");
        assert_eq!(validated["status"], "False");
        assert_eq!(validated["reason"], "OriginNotAllowed");
        assert_eq!(validated["message"], "the endpoint allows origin 'x'");
    }

    #[test]
    fn the_endpoint_counts_as_failing_after_three_failed_requests_in_a_row() {
        let board = StatusBoard::default();
        let handle = board.track("orders", "hook", "https://example.com/".into());
        handle.validated("ok");
        handle.delivered(2);
        handle.failed(1, "HTTP 503 (Busy)");
        handle.failed(1, "HTTP 503 (Busy)");
        assert_eq!(
            board.get("orders", "hook").unwrap().healthy.status,
            ConditionStatus::True
        );
        handle.failed(1, "HTTP 503 (Busy)");
        let status = board.get("orders", "hook").unwrap();
        assert_eq!(status.healthy.status, ConditionStatus::False);
        assert_eq!(status.healthy.reason, "DeliveryFailing");
        assert!(status.healthy.message.contains("HTTP 503"));
        assert_eq!(status.failed_attempts, 3);
        handle.delivered(1);
        let status = board.get("orders", "hook").unwrap();
        assert_eq!(status.healthy.status, ConditionStatus::True);
        assert_eq!(status.delivered_events, 3);
        assert_eq!(status.consecutive_failures, 0);
    }

    #[test]
    fn the_transition_time_moves_only_when_the_status_changes() {
        let mut condition = Condition::new("EndpointHealthy", "NoDeliveryYet", "");
        condition.set(ConditionStatus::True, "Delivering", "a");
        let first = condition.last_transition_time;
        std::thread::sleep(std::time::Duration::from_millis(5));
        condition.set(ConditionStatus::True, "Delivering", "b");
        assert_eq!(condition.last_transition_time, first);
        assert_eq!(condition.message, "b");
        condition.set(ConditionStatus::False, "DeliveryFailing", "c");
        assert!(condition.last_transition_time > first);
    }

    #[test]
    fn a_forgotten_subscription_leaves_the_board() {
        let board = StatusBoard::default();
        let handle = board.track("orders", "hook", "https://example.com/".into());
        board.forget("orders", "hook");
        handle.delivered(1);
        assert_eq!(board.render()["eventSubscriptions"], json!([]));
    }
}
