//! Dead-lettering: an event that leaves a subscription unacknowledged (rejected, out of
//! deliveries, past its time to live) is appended to the subscription's dead-letter Topic,
//! through the ordinary publish path (so it is as durable as any publish), as the original
//! CloudEvent plus extension attributes saying why, when and from where.

use super::clock::{Millis, rfc3339};
use crate::cloudevents::PublishedEvent;
use serde_json::Value;
use serde_json::value::RawValue;

/// Why an event leaves a subscription without being acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeadLetterReason {
    MaxDeliveryCountExceeded,
    TimeToLiveExceeded,
    Rejected,
    /// Push delivery: the endpoint answered a status that is never retried (SPEC §C).
    NonRetryableStatus,
}

impl DeadLetterReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::MaxDeliveryCountExceeded => "MaxDeliveryCountExceeded",
            DeadLetterReason::TimeToLiveExceeded => "TimeToLiveExceeded",
            DeadLetterReason::Rejected => "Rejected",
            DeadLetterReason::NonRetryableStatus => "NonRetryableStatus",
        }
    }
}

/// Push delivery: what the last delivery attempt of a dead-lettered event ended with. Only
/// the dispatcher knows it, so only events it gives up on carry it (not those the store
/// expires on its own).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastAttempt {
    /// The HTTP status, when the endpoint answered at all.
    pub http_status: Option<u16>,
    /// A short CamelCase word (`TimedOut`, `ServerError`, `NotFound`, ...).
    pub outcome: &'static str,
    pub time: Millis,
}

/// Facts about one dead-lettered event.
pub struct DeadLetter<'a> {
    pub reason: DeadLetterReason,
    pub delivery_attempts: u32,
    pub dead_letter_time: Millis,
    pub publish_time: Millis,
    pub subscription: &'a str,
    /// Push delivery: how the last attempt ended (absent for events the store expired itself).
    pub last_attempt: Option<LastAttempt>,
}

/// The event to append to the dead-letter topic: the stored CloudEvent with `deadletterreason`,
/// `deliveryattempts`, `deadlettertime`, `publishtime` and `sourcesubscription` added, and for
/// push deliveries `lastdeliveryoutcome`, `lastdeliverytime` and (when the endpoint answered)
/// `lasthttpstatuscode`. `None` if the stored bytes are not a JSON object (they always are
/// unless the disk is corrupt).
pub fn dead_letter_event(stored: &[u8], facts: &DeadLetter<'_>) -> Option<PublishedEvent> {
    let mut event: serde_json::Map<String, Value> = serde_json::from_slice(stored).ok()?;
    event.insert(
        "deadletterreason".into(),
        Value::from(facts.reason.as_str()),
    );
    event.insert(
        "deliveryattempts".into(),
        Value::from(facts.delivery_attempts),
    );
    event.insert(
        "deadlettertime".into(),
        Value::from(rfc3339(facts.dead_letter_time)),
    );
    event.insert(
        "publishtime".into(),
        Value::from(rfc3339(facts.publish_time)),
    );
    event.insert("sourcesubscription".into(), Value::from(facts.subscription));
    if let Some(last) = &facts.last_attempt {
        if let Some(status) = last.http_status {
            event.insert("lasthttpstatuscode".into(), Value::from(status));
        }
        event.insert("lastdeliveryoutcome".into(), Value::from(last.outcome));
        event.insert("lastdeliverytime".into(), Value::from(rfc3339(last.time)));
    }
    let attributes = Value::Object(event);
    let json = RawValue::from_string(attributes.to_string()).ok()?;
    Some(PublishedEvent { attributes, json })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_letter_keeps_the_event_and_says_why() {
        let stored = br#"{"specversion":"1.0","id":"e1","source":"/s","type":"t","data":{"a":1}}"#;
        let event = dead_letter_event(
            stored,
            &DeadLetter {
                reason: DeadLetterReason::MaxDeliveryCountExceeded,
                delivery_attempts: 10,
                dead_letter_time: 1_700_000_060_000,
                publish_time: 1_700_000_000_000,
                subscription: "orders-sub",
                last_attempt: None,
            },
        )
        .unwrap();
        let value: Value = serde_json::from_str(event.json.get()).unwrap();
        assert_eq!(value["id"], "e1");
        assert_eq!(value["source"], "/s");
        assert_eq!(value["data"]["a"], 1);
        assert_eq!(value["deadletterreason"], "MaxDeliveryCountExceeded");
        assert_eq!(value["deliveryattempts"], 10);
        assert_eq!(value["deadlettertime"], "2023-11-14T22:14:20.000Z");
        assert_eq!(value["publishtime"], "2023-11-14T22:13:20.000Z");
        assert_eq!(value["sourcesubscription"], "orders-sub");
        assert!(value.get("lastdeliveryoutcome").is_none());
        assert_eq!(event.attributes, value);
    }

    #[test]
    fn a_push_dead_letter_says_how_the_last_attempt_ended() {
        let stored = br#"{"specversion":"1.0","id":"e1","source":"/s","type":"t"}"#;
        let event = dead_letter_event(
            stored,
            &DeadLetter {
                reason: DeadLetterReason::NonRetryableStatus,
                delivery_attempts: 1,
                dead_letter_time: 1_700_000_060_000,
                publish_time: 1_700_000_000_000,
                subscription: "hook",
                last_attempt: Some(LastAttempt {
                    http_status: Some(404),
                    outcome: "NotFound",
                    time: 1_700_000_059_000,
                }),
            },
        )
        .unwrap();
        let value: Value = serde_json::from_str(event.json.get()).unwrap();
        assert_eq!(value["deadletterreason"], "NonRetryableStatus");
        assert_eq!(value["lasthttpstatuscode"], 404);
        assert_eq!(value["lastdeliveryoutcome"], "NotFound");
        assert_eq!(value["lastdeliverytime"], "2023-11-14T22:14:19.000Z");
        assert_eq!(value["deliveryattempts"], 1);
    }

    #[test]
    fn bytes_that_are_not_an_object_are_refused() {
        let facts = DeadLetter {
            reason: DeadLetterReason::Rejected,
            delivery_attempts: 1,
            dead_letter_time: 0,
            publish_time: 0,
            subscription: "s",
            last_attempt: None,
        };
        assert!(dead_letter_event(b"[1]", &facts).is_none());
    }
}
