//! What routing and lifecycle events share in making the CloudEvents the broker publishes:
//! the store's form of an event, Event Grid's event ids and time format.

use crate::store::PublishedEvent;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

/// An event built here, in the store's form; `None` (counted by the caller as not appended)
/// only if serializing a JSON value failed, which it does not for values built from strings.
pub fn published(event: Value) -> Option<PublishedEvent> {
    let json = serde_json::to_string(&event).ok()?;
    let json = serde_json::value::RawValue::from_string(json).ok()?;
    Some(PublishedEvent {
        attributes: event,
        json,
    })
}

/// A random (version 4) UUID, as Event Grid stamps its events.
pub fn new_event_id() -> String {
    let mut bytes = [0u8; 16];
    // The OS generator does not fail on the platforms we run on; an all-zero id would still
    // be a valid (if not unique) CloudEvents id.
    let _ = getrandom::fill(&mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// RFC 3339 in UTC with microseconds, as Event Grid writes `time`.
pub fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}
