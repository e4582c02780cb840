//! The HTTP binding's binary mode, a Gridline extension on the publish path: each attribute is
//! a `ce-<name>` header (its value percent-decoded), `Content-Type` is `datacontenttype`, and
//! the body is the data: a JSON body (`application/json`, `text/json`, `*+json`) becomes
//! `data`, any other body `data_base64`, an empty body no data. The event is then validated by
//! the same rules as a structured one, so both modes store the same normal form.

use super::{
    BASE64, ParseError, Problem, PublishedEvent, is_attribute_name, media_type, object_text,
    validate,
};
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use base64::Engine;
use percent_encoding::percent_decode;
use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// The prefix of attribute headers.
const PREFIX: &str = "ce-";

/// Whether a request has any `ce-*` header (which makes a non-CloudEvents content type binary
/// mode).
pub fn has_ce_headers(headers: &HeaderMap) -> bool {
    headers.keys().any(|name| name.as_str().starts_with(PREFIX))
}

/// The one event of a binary-mode request.
pub fn parse_binary(headers: &HeaderMap, body: &[u8]) -> Result<PublishedEvent, ParseError> {
    let invalid = |problem| ParseError::Invalid { index: 0, problem };
    // name -> JSON text of the value.
    let mut members: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        // Header names arrive lowercase.
        let Some(attribute) = name.as_str().strip_prefix(PREFIX) else {
            continue;
        };
        if attribute == "data" || attribute == "data_base64" {
            return Err(invalid(Problem::DataHeader(attribute.to_string())));
        }
        if !is_attribute_name(attribute) {
            return Err(invalid(Problem::AttributeName(attribute.to_string())));
        }
        let decoded = percent_decode(value.as_bytes())
            .decode_utf8()
            .map_err(|_| invalid(Problem::HeaderValue(attribute.to_string())))?;
        // A repeated header: the first one counts.
        members
            .entry(attribute.to_string())
            .or_insert_with(|| serde_json::Value::from(decoded.as_ref()).to_string());
    }

    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|value| !value.is_empty());
    if let Some(content_type) = content_type {
        members.insert(
            "datacontenttype".into(),
            serde_json::Value::from(content_type).to_string(),
        );
    }
    if !body.is_empty() {
        let (name, value) = if content_type.is_some_and(is_json) {
            let text = std::str::from_utf8(body)
                .map_err(|error| ParseError::MalformedJson(format!("not UTF-8: {error}")))?;
            let data: &RawValue = serde_json::from_str(text)
                .map_err(|error| ParseError::MalformedJson(error.to_string()))?;
            ("data", data.get().to_string())
        } else {
            (
                "data_base64",
                serde_json::Value::from(BASE64.encode(body)).to_string(),
            )
        };
        members.insert(name.into(), value);
    }

    let text = object_text(members.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let event: Box<RawValue> = RawValue::from_string(text)
        .map_err(|error| ParseError::MalformedJson(error.to_string()))?;
    validate(0, &event)
}

/// Whether a content type says the body is JSON.
fn is_json(content_type: &str) -> bool {
    let media = media_type(content_type);
    media == "application/json" || media == "text/json" || media.ends_with("+json")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use serde_json::{Value, json};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    const REQUIRED: [(&str, &str); 4] = [
        ("ce-specversion", "1.0"),
        ("ce-id", "1"),
        ("ce-source", "/sensors/7"),
        ("ce-type", "com.example.reading"),
    ];

    fn required_and(extra: &[(&str, &str)]) -> HeaderMap {
        let mut pairs = REQUIRED.to_vec();
        pairs.extend_from_slice(extra);
        headers(&pairs)
    }

    #[test]
    fn a_json_body_becomes_data_and_the_content_type_datacontenttype() {
        let headers = required_and(&[("content-type", "application/json; charset=utf-8")]);
        let event = parse_binary(&headers, br#"{"celsius": 21.5}"#).unwrap();
        assert_eq!(
            event.attributes,
            json!({
                "specversion": "1.0", "id": "1", "source": "/sensors/7",
                "type": "com.example.reading",
                "datacontenttype": "application/json; charset=utf-8",
                "data": {"celsius": 21.5}
            })
        );
    }

    #[test]
    fn another_body_becomes_data_base64() {
        let headers = required_and(&[("content-type", "application/octet-stream")]);
        let event = parse_binary(&headers, b"\x00\x01binary").unwrap();
        assert_eq!(event.attributes["data_base64"], json!("AAFiaW5hcnk="));
        assert_eq!(event.attributes.get("data"), None);
    }

    #[test]
    fn a_text_body_without_content_type_is_data_base64_and_no_datacontenttype() {
        let event = parse_binary(&required_and(&[]), b"hello").unwrap();
        assert_eq!(event.attributes["data_base64"], json!("aGVsbG8="));
        assert_eq!(event.attributes.get("datacontenttype"), None);
    }

    #[test]
    fn an_empty_body_carries_no_data() {
        let event = parse_binary(&required_and(&[]), b"").unwrap();
        let object = event.attributes.as_object().unwrap();
        assert!(!object.contains_key("data") && !object.contains_key("data_base64"));
    }

    #[test]
    fn extension_headers_become_attributes_percent_decoded() {
        let headers = required_and(&[
            ("ce-subject", "caf%C3%A9%20n%C2%B01"),
            ("ce-site", "lab"),
            ("ce-time", "2024-06-01T12:00:00Z"),
            ("x-other", "ignored"),
        ]);
        let event = parse_binary(&headers, b"").unwrap();
        assert_eq!(event.attributes["subject"], json!("café n°1"));
        assert_eq!(event.attributes["site"], json!("lab"));
        assert_eq!(event.attributes["time"], json!("2024-06-01T12:00:00Z"));
        assert_eq!(event.attributes.get("x-other"), None);
    }

    #[test]
    fn binary_events_are_validated_like_structured_ones() {
        let missing = headers(&REQUIRED[..2]);
        assert_eq!(
            parse_binary(&missing, b"").err().unwrap().to_string(),
            "event 0: required attribute 'source' is missing"
        );
        let old = required_and(&[]);
        let mut old = old.clone();
        old.insert("ce-specversion", HeaderValue::from_static("0.3"));
        assert_eq!(
            parse_binary(&old, b"").err().unwrap().to_string(),
            "event 0: attribute 'specversion' must be \"1.0\", not \"0.3\""
        );
        let bad_time = required_and(&[("ce-time", "noon")]);
        assert!(matches!(
            parse_binary(&bad_time, b"").err(),
            Some(ParseError::Invalid {
                problem: Problem::Time(_),
                ..
            })
        ));
    }

    #[test]
    fn a_bad_header_name_or_data_header_is_refused() {
        let bad_name = required_and(&[("ce-my_ext", "x")]);
        assert_eq!(
            parse_binary(&bad_name, b"").err(),
            Some(ParseError::Invalid {
                index: 0,
                problem: Problem::AttributeName("my_ext".into())
            })
        );
        let data = required_and(&[("ce-data", "x")]);
        assert_eq!(
            parse_binary(&data, b"").err().unwrap().to_string(),
            "event 0: header 'ce-data' is not allowed in binary mode: the body is the event's data"
        );
    }

    #[test]
    fn a_json_content_type_with_a_malformed_body_is_malformed_json() {
        let headers = required_and(&[("content-type", "application/cloudevent-data+json")]);
        assert!(matches!(
            parse_binary(&headers, b"{not json").err(),
            Some(ParseError::MalformedJson(_))
        ));
    }

    #[test]
    fn structured_and_binary_store_the_same_event() {
        let headers = required_and(&[("content-type", "application/json")]);
        let binary = parse_binary(&headers, b"[1,2]").unwrap();
        let structured = super::super::parse_structured(
            json!({
                "specversion": "1.0", "id": "1", "source": "/sensors/7",
                "type": "com.example.reading", "datacontenttype": "application/json",
                "data": [1, 2]
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(binary.json.get(), structured.json.get());
        let _: Value = serde_json::from_str(binary.json.get()).unwrap();
    }
}
