//! CloudEvents 1.0 as published over HTTP: the JSON event format (one event, or a batch as a
//! JSON array) and, as a Gridline extension on the publish path, the HTTP binding's binary mode
//! ([`binary`]). Every event is validated here, the first problem reported as
//! `event <index>: <problem>`, and handed on as a [`PublishedEvent`] in one normal form: a JSON
//! object whose members are the event's attributes and its `data` or `data_base64`, with
//! `null` members left out (the JSON format defines `null` as "unset"). Member values are kept
//! byte for byte as the publisher wrote them, so numbers in `data` never lose precision.
//!
//! The rules are the specification's MUSTs: `specversion` is `"1.0"`; `id`, `source` and
//! `type` are non-empty strings; `subject`, `datacontenttype` and `dataschema`, when present,
//! are non-empty strings; `time` is an RFC 3339 timestamp; attribute names are lowercase ASCII
//! letters and digits; extension values are strings, numbers or booleans; `data_base64` is
//! base64; `data` and `data_base64` are not both present. The specification's advice that names
//! *should not* exceed 20 characters is advice, and longer names are accepted (as the
//! CloudEvents SDKs do).

pub mod binary;

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use chrono::DateTime;
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::fmt;

/// One validated CloudEvent in the normal form (see the module's documentation): what the
/// store appends to a topic, evaluates filters on and hands back verbatim.
pub struct PublishedEvent {
    /// The event in structured JSON form (top-level attributes, `data` or `data_base64`):
    /// what filters evaluate.
    pub attributes: serde_json::Value,
    /// The same event serialized as JSON: what is stored and returned by `receive` verbatim.
    pub json: Box<RawValue>,
}

/// The largest event Gridline takes, as serialized JSON (Event Grid: 1 MB).
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// The media type of one event in the JSON format.
pub const STRUCTURED: &str = "application/cloudevents+json";
/// The media type of a batch (a JSON array of events).
pub const BATCH: &str = "application/cloudevents-batch+json";

/// The attributes the specification defines (besides the data members).
const CONTEXT_ATTRIBUTES: [&str; 8] = [
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
];

/// How a publish request carries its events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One event, `application/cloudevents+json`.
    Structured,
    /// A JSON array of events, `application/cloudevents-batch+json` (what Event Grid's SDKs send).
    Batch,
    /// One event in `ce-*` headers, the body its data.
    Binary,
}

impl Mode {
    /// The mode of a request with this `Content-Type`, by the HTTP binding's rule: a
    /// CloudEvents media type means structured (or batch), else `ce-*` headers mean binary.
    /// `None`: not a CloudEvents request.
    pub fn detect(content_type: Option<&str>, has_ce_headers: bool) -> Option<Mode> {
        let media = content_type.map(media_type).unwrap_or_default();
        match media.as_str() {
            STRUCTURED => Some(Mode::Structured),
            BATCH => Some(Mode::Batch),
            // Another CloudEvents format (e.g. +avro) is structured mode we cannot read.
            other if other.starts_with("application/cloudevents") => None,
            _ if has_ce_headers => Some(Mode::Binary),
            _ => None,
        }
    }
}

/// The media type of a `Content-Type` value: lowercase, without parameters.
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Why a publish body was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error(
        "a body of content type application/cloudevents+json must be one event (a JSON object); send several events as a JSON array with content type application/cloudevents-batch+json"
    )]
    NotAnEvent,
    #[error(
        "a body of content type application/cloudevents-batch+json must be a JSON array of events"
    )]
    NotABatch,
    #[error("event {index}: {problem}")]
    Invalid { index: usize, problem: Problem },
    #[error(
        "event {index} is {size} bytes; one event may be at most {MAX_EVENT_BYTES} bytes (1 MB)"
    )]
    TooLarge { index: usize, size: usize },
}

impl ParseError {
    /// The attribute at fault, for the error's `target`.
    pub fn attribute(&self) -> Option<&str> {
        match self {
            ParseError::Invalid { problem, .. } => problem.attribute(),
            _ => None,
        }
    }
}

/// What is wrong with one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    NotAnObject,
    Missing(&'static str),
    NotAString(String),
    Empty(String),
    SpecVersion(String),
    Time(String),
    AttributeName(String),
    ExtensionValue(String),
    DataAndBase64,
    Base64,
    /// Binary mode: a `ce-*` header that is not percent-encoded UTF-8.
    HeaderValue(String),
    /// Binary mode: `ce-data` / `ce-data_base64` (the body is the data).
    DataHeader(String),
}

impl Problem {
    fn attribute(&self) -> Option<&str> {
        match self {
            Problem::NotAnObject => None,
            Problem::Missing(name) => Some(name),
            Problem::NotAString(name)
            | Problem::Empty(name)
            | Problem::AttributeName(name)
            | Problem::ExtensionValue(name)
            | Problem::HeaderValue(name)
            | Problem::DataHeader(name) => Some(name),
            Problem::SpecVersion(_) => Some("specversion"),
            Problem::Time(_) => Some("time"),
            Problem::DataAndBase64 | Problem::Base64 => Some("data_base64"),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::NotAnObject => write!(f, "an event must be a JSON object"),
            Problem::Missing(name) => write!(f, "required attribute '{name}' is missing"),
            Problem::NotAString(name) => write!(f, "attribute '{name}' must be a string"),
            Problem::Empty(name) => write!(f, "attribute '{name}' must not be empty"),
            Problem::SpecVersion(got) => {
                write!(f, "attribute 'specversion' must be \"1.0\", not {got:?}")
            }
            Problem::Time(got) => write!(
                f,
                "attribute 'time' must be an RFC 3339 timestamp (2024-06-01T12:00:00Z), not {got:?}"
            ),
            Problem::AttributeName(name) => write!(
                f,
                "attribute name '{name}' is not valid: CloudEvents attribute names are lowercase letters a-z and digits 0-9"
            ),
            Problem::ExtensionValue(name) => write!(
                f,
                "extension attribute '{name}' must be a string, a number or a boolean"
            ),
            Problem::DataAndBase64 => write!(
                f,
                "'data' and 'data_base64' are both present; an event carries at most one of them"
            ),
            Problem::Base64 => write!(f, "attribute 'data_base64' must be a base64 string"),
            Problem::HeaderValue(name) => {
                write!(f, "header 'ce-{name}' is not percent-encoded UTF-8")
            }
            Problem::DataHeader(name) => write!(
                f,
                "header 'ce-{name}' is not allowed in binary mode: the body is the event's data"
            ),
        }
    }
}

/// One event, `application/cloudevents+json`.
pub fn parse_structured(body: &[u8]) -> Result<PublishedEvent, ParseError> {
    let raw = parse_json(body)?;
    if !raw.get().starts_with('{') {
        return Err(ParseError::NotAnEvent);
    }
    validate(0, raw)
}

/// A batch, `application/cloudevents-batch+json`: all events valid, or none published.
pub fn parse_batch(body: &[u8]) -> Result<Vec<PublishedEvent>, ParseError> {
    let raw = parse_json(body)?;
    if !raw.get().starts_with('[') {
        return Err(ParseError::NotABatch);
    }
    let events: Vec<&RawValue> = serde_json::from_str(raw.get())
        .map_err(|error| ParseError::MalformedJson(error.to_string()))?;
    events
        .into_iter()
        .enumerate()
        .map(|(index, event)| validate(index, event))
        .collect()
}

/// The body as one JSON value, borrowed.
fn parse_json(body: &[u8]) -> Result<&RawValue, ParseError> {
    let text = std::str::from_utf8(body)
        .map_err(|error| ParseError::MalformedJson(format!("not UTF-8: {error}")))?;
    serde_json::from_str(text).map_err(|error| ParseError::MalformedJson(error.to_string()))
}

/// Validate one event in the JSON format and bring it into normal form (module docs).
fn validate(index: usize, event: &RawValue) -> Result<PublishedEvent, ParseError> {
    let invalid = |problem| ParseError::Invalid { index, problem };
    if !event.get().starts_with('{') {
        return Err(invalid(Problem::NotAnObject));
    }
    let members: BTreeMap<String, &RawValue> = serde_json::from_str(event.get())
        .map_err(|error| ParseError::MalformedJson(error.to_string()))?;
    let members: BTreeMap<String, &RawValue> = members
        .into_iter()
        .filter(|(_, value)| value.get() != "null")
        .collect();
    let string = |name: &str| -> Result<Option<String>, ParseError> {
        members
            .get(name)
            .map(|value| {
                serde_json::from_str::<String>(value.get())
                    .map_err(|_| invalid(Problem::NotAString(name.to_string())))
            })
            .transpose()
    };

    match string("specversion")? {
        None => return Err(invalid(Problem::Missing("specversion"))),
        Some(version) if version != "1.0" => return Err(invalid(Problem::SpecVersion(version))),
        Some(_) => {}
    }
    for name in ["id", "source", "type"] {
        match string(name)? {
            None => return Err(invalid(Problem::Missing(name))),
            Some(value) if value.is_empty() => {
                return Err(invalid(Problem::Empty(name.to_string())));
            }
            Some(_) => {}
        }
    }
    for name in ["subject", "datacontenttype", "dataschema"] {
        if string(name)?.is_some_and(|value| value.is_empty()) {
            return Err(invalid(Problem::Empty(name.to_string())));
        }
    }
    if let Some(time) = string("time")?
        && DateTime::parse_from_rfc3339(&time).is_err()
    {
        return Err(invalid(Problem::Time(time)));
    }
    if let Some(encoded) = string("data_base64")? {
        if members.contains_key("data") {
            return Err(invalid(Problem::DataAndBase64));
        }
        if BASE64.decode(encoded).is_err() {
            return Err(invalid(Problem::Base64));
        }
    }
    for (name, value) in &members {
        if CONTEXT_ATTRIBUTES.contains(&name.as_str()) || name == "data" || name == "data_base64" {
            continue;
        }
        if !is_attribute_name(name) {
            return Err(invalid(Problem::AttributeName(name.clone())));
        }
        if value.get().starts_with(['{', '[']) {
            return Err(invalid(Problem::ExtensionValue(name.clone())));
        }
    }

    finish(
        index,
        object_text(members.iter().map(|(k, v)| (k.as_str(), v.get()))),
    )
}

/// Check the size of a normalized event and hand it on.
fn finish(index: usize, json: String) -> Result<PublishedEvent, ParseError> {
    if json.len() > MAX_EVENT_BYTES {
        return Err(ParseError::TooLarge {
            index,
            size: json.len(),
        });
    }
    let attributes = serde_json::from_str(&json)
        .map_err(|error| ParseError::MalformedJson(error.to_string()))?;
    let json = RawValue::from_string(json)
        .map_err(|error| ParseError::MalformedJson(error.to_string()))?;
    Ok(PublishedEvent { attributes, json })
}

/// `{"name":value,...}` from names and JSON texts.
fn object_text<'a>(members: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut text = String::from("{");
    for (i, (name, value)) in members.enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&serde_json::Value::from(name).to_string());
        text.push(':');
        text.push_str(value);
    }
    text.push('}');
    text
}

/// CloudEvents attribute names: one or more of `a-z` and `0-9`.
pub fn is_attribute_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Standard base64, padding optional.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn event() -> Value {
        json!({
            "specversion": "1.0",
            "id": "A234-1234-1234",
            "source": "/orders/account/123",
            "type": "com.example.order.created",
        })
    }

    fn with(mut event: Value, name: &str, value: Value) -> Value {
        event[name] = value;
        event
    }

    fn without(mut event: Value, name: &str) -> Value {
        event.as_object_mut().unwrap().remove(name);
        event
    }

    fn one(event: &Value) -> Result<PublishedEvent, ParseError> {
        parse_structured(event.to_string().as_bytes())
    }

    fn message(event: Value) -> String {
        match one(&event) {
            Ok(_) => panic!("accepted: {event}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn a_minimal_event_is_accepted_as_it_was_sent() {
        let published = one(&event()).unwrap();
        assert_eq!(published.attributes, event());
        let stored: Value = serde_json::from_str(published.json.get()).unwrap();
        assert_eq!(stored, event());
    }

    #[test]
    fn every_optional_attribute_and_extension_is_kept() {
        let full = json!({
            "specversion": "1.0", "id": "1", "source": "s", "type": "t",
            "subject": "orders/1", "time": "2024-06-01T12:00:00.123+02:00",
            "datacontenttype": "application/json", "dataschema": "https://example.com/schema",
            "comexampleextension1": "value", "comexampleothervalue": 5, "flag": true,
            "averyveryverylongextensionname": "over twenty characters is advice, not a rule",
            "data": {"orderId": "O-28964"}
        });
        assert_eq!(one(&full).unwrap().attributes, full);
    }

    #[test]
    fn numbers_in_data_keep_every_digit() {
        let body = r#"{"specversion":"1.0","id":"1","source":"s","type":"t","data":{"total":12345678901234567890.123456789}}"#;
        let published = parse_structured(body.as_bytes()).unwrap();
        assert!(
            published
                .json
                .get()
                .contains("12345678901234567890.123456789"),
            "{}",
            published.json.get()
        );
    }

    #[test]
    fn null_members_are_unset_attributes() {
        let sent = with(with(event(), "subject", Value::Null), "data", Value::Null);
        let published = one(&sent).unwrap();
        assert_eq!(published.attributes, event());
        assert!(!published.json.get().contains("null"));
    }

    #[test]
    fn each_required_attribute_must_be_present() {
        for name in ["specversion", "id", "source", "type"] {
            assert_eq!(
                message(without(event(), name)),
                format!("event 0: required attribute '{name}' is missing")
            );
            // null is unset, so it is missing too.
            assert_eq!(
                message(with(event(), name, Value::Null)),
                format!("event 0: required attribute '{name}' is missing")
            );
        }
    }

    #[test]
    fn required_attributes_must_be_non_empty_strings() {
        for name in ["id", "source", "type"] {
            assert_eq!(
                message(with(event(), name, json!(""))),
                format!("event 0: attribute '{name}' must not be empty")
            );
            assert_eq!(
                message(with(event(), name, json!(7))),
                format!("event 0: attribute '{name}' must be a string")
            );
        }
    }

    #[test]
    fn specversion_must_be_1_0() {
        assert_eq!(
            message(with(event(), "specversion", json!("0.3"))),
            "event 0: attribute 'specversion' must be \"1.0\", not \"0.3\""
        );
        assert_eq!(
            message(with(event(), "specversion", json!(1.0))),
            "event 0: attribute 'specversion' must be a string"
        );
    }

    #[test]
    fn optional_string_attributes_must_not_be_empty() {
        for name in ["subject", "datacontenttype", "dataschema"] {
            assert_eq!(
                message(with(event(), name, json!(""))),
                format!("event 0: attribute '{name}' must not be empty")
            );
            assert_eq!(
                message(with(event(), name, json!(["x"]))),
                format!("event 0: attribute '{name}' must be a string")
            );
        }
    }

    #[test]
    fn time_must_be_rfc_3339() {
        assert_eq!(
            message(with(event(), "time", json!("yesterday"))),
            "event 0: attribute 'time' must be an RFC 3339 timestamp (2024-06-01T12:00:00Z), not \"yesterday\""
        );
        assert_eq!(
            message(with(event(), "time", json!(1717243200))),
            "event 0: attribute 'time' must be a string"
        );
        for good in ["2024-06-01T12:00:00Z", "2024-06-01T12:00:00.5-07:00"] {
            assert!(one(&with(event(), "time", json!(good))).is_ok(), "{good}");
        }
    }

    #[test]
    fn attribute_names_are_lowercase_letters_and_digits() {
        for bad in ["Subject", "my-ext", "my_ext", "ext.1", "ünicode"] {
            assert_eq!(
                message(with(event(), bad, json!("x"))),
                format!(
                    "event 0: attribute name '{bad}' is not valid: CloudEvents attribute names are lowercase letters a-z and digits 0-9"
                )
            );
        }
        assert!(one(&with(event(), "ext1", json!("x"))).is_ok());
    }

    #[test]
    fn extension_values_are_scalars() {
        for bad in [json!({"a": 1}), json!([1])] {
            assert_eq!(
                message(with(event(), "ext", bad)),
                "event 0: extension attribute 'ext' must be a string, a number or a boolean"
            );
        }
    }

    #[test]
    fn data_and_data_base64_exclude_each_other() {
        let both = with(
            with(event(), "data", json!("x")),
            "data_base64",
            json!("eA=="),
        );
        assert_eq!(
            message(both),
            "event 0: 'data' and 'data_base64' are both present; an event carries at most one of them"
        );
    }

    #[test]
    fn data_base64_must_be_base64() {
        assert_eq!(
            message(with(event(), "data_base64", json!("not base64!"))),
            "event 0: attribute 'data_base64' must be a base64 string"
        );
        assert_eq!(
            message(with(event(), "data_base64", json!(12))),
            "event 0: attribute 'data_base64' must be a string"
        );
        for good in ["aGVsbG8=", "aGVsbG8", ""] {
            assert!(
                one(&with(event(), "data_base64", json!(good))).is_ok(),
                "{good}"
            );
        }
    }

    #[test]
    fn a_batch_names_the_index_of_the_first_bad_event() {
        let batch = json!([event(), event(), event(), without(event(), "source")]);
        let error = parse_batch(batch.to_string().as_bytes()).err().unwrap();
        assert_eq!(
            error.to_string(),
            "event 3: required attribute 'source' is missing"
        );
        assert_eq!(error.attribute(), Some("source"));
    }

    #[test]
    fn a_batch_of_events_is_accepted_in_order() {
        let batch = json!([
            with(event(), "id", json!("1")),
            with(event(), "id", json!("2"))
        ]);
        let events = parse_batch(batch.to_string().as_bytes()).unwrap();
        let ids: Vec<_> = events.iter().map(|e| e.attributes["id"].clone()).collect();
        assert_eq!(ids, [json!("1"), json!("2")]);
    }

    #[test]
    fn an_empty_batch_publishes_nothing() {
        assert!(parse_batch(b"[]").unwrap().is_empty());
    }

    #[test]
    fn a_batch_element_must_be_an_object() {
        let error = parse_batch(br#"[{"specversion":"1.0","id":"1","source":"s","type":"t"}, 5]"#)
            .err()
            .unwrap();
        assert_eq!(error.to_string(), "event 1: an event must be a JSON object");
    }

    #[test]
    fn the_body_shape_must_match_the_content_type() {
        let batch = json!([event()]).to_string();
        assert_eq!(
            parse_structured(batch.as_bytes()).err(),
            Some(ParseError::NotAnEvent)
        );
        let single = event().to_string();
        assert_eq!(
            parse_batch(single.as_bytes()).err(),
            Some(ParseError::NotABatch)
        );
    }

    #[test]
    fn malformed_json_is_reported_with_its_position() {
        let error = parse_batch(b"[{\"id\": }]").err().unwrap();
        assert!(
            matches!(&error, ParseError::MalformedJson(m) if m.contains("line 1 column")),
            "{error}"
        );
        assert!(
            error
                .to_string()
                .starts_with("the body is not valid JSON: ")
        );
        assert!(matches!(
            parse_structured(b"").err(),
            Some(ParseError::MalformedJson(_))
        ));
        assert!(matches!(
            parse_structured(&[0xff, 0xfe]).err(),
            Some(ParseError::MalformedJson(m)) if m.starts_with("not UTF-8")
        ));
    }

    #[test]
    fn an_event_over_1_mb_is_too_large() {
        let big = with(event(), "data", json!("x".repeat(MAX_EVENT_BYTES)));
        let error = one(&big).err().unwrap();
        assert!(matches!(error, ParseError::TooLarge { index: 0, size } if size > MAX_EVENT_BYTES));
        assert!(
            error
                .to_string()
                .ends_with("one event may be at most 1048576 bytes (1 MB)"),
            "{error}"
        );
    }

    #[test]
    fn the_mode_follows_the_content_type_then_the_ce_headers() {
        let cases = [
            (
                Some("application/cloudevents+json; charset=utf-8"),
                false,
                Some(Mode::Structured),
            ),
            (
                Some("Application/CloudEvents+JSON"),
                true,
                Some(Mode::Structured),
            ),
            (
                Some("application/cloudevents-batch+json; charset=utf-8"),
                false,
                Some(Mode::Batch),
            ),
            (Some("application/json"), true, Some(Mode::Binary)),
            (None, true, Some(Mode::Binary)),
            (Some("application/json"), false, None),
            (None, false, None),
            (Some("application/cloudevents+avro"), true, None),
        ];
        for (content_type, ce_headers, expected) in cases {
            assert_eq!(
                Mode::detect(content_type, ce_headers),
                expected,
                "{content_type:?} {ce_headers}"
            );
        }
    }
}
