//! Client attribute values, as Event Grid allows them: a string, an integer or an array of strings.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// One value of a Client's `attributes` map.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum AttributeValue {
    Integer(i64),
    String(String),
    StringArray(Vec<String>),
}

/// A Client's attributes, keyed by attribute name.
pub type Attributes = BTreeMap<String, AttributeValue>;

impl fmt::Display for AttributeValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttributeValue::Integer(value) => write!(f, "{value}"),
            AttributeValue::String(value) => f.write_str(value),
            AttributeValue::StringArray(values) => write!(f, "[{}]", values.join(",")),
        }
    }
}

// A structural CRD schema cannot say "string, integer or array of strings" with `anyOf`
// alone (every branch must share a type), so the value keeps its unknown fields and the
// model checks the shape when it compiles.
impl JsonSchema for AttributeValue {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "AttributeValue".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A string, an integer, or an array of strings.",
            "x-kubernetes-preserve-unknown-fields": true
        })
    }
}

// Hand-written so that a wrong value says what was expected; serde's untagged enums only say
// "did not match any variant".
impl<'de> Deserialize<'de> for AttributeValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let value = serde_json::Value::deserialize(deserializer)?;
        let found = match &value {
            serde_json::Value::String(text) => return Ok(AttributeValue::String(text.clone())),
            serde_json::Value::Number(number) => match number.as_i64() {
                Some(integer) => return Ok(AttributeValue::Integer(integer)),
                None => format!("the number {number}, which is not a 64-bit integer"),
            },
            serde_json::Value::Array(items) => {
                let strings: Option<Vec<String>> = items
                    .iter()
                    .map(|item| item.as_str().map(str::to_string))
                    .collect();
                match strings {
                    Some(strings) => return Ok(AttributeValue::StringArray(strings)),
                    None => "an array with an element that is not a string".to_string(),
                }
            }
            serde_json::Value::Bool(b) => format!("the boolean {b}"),
            serde_json::Value::Null => "null".to_string(),
            serde_json::Value::Object(_) => "an object".to_string(),
        };
        Err(D::Error::custom(format!(
            "an attribute value must be a string, an integer or an array of strings, not {found}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_integers_and_string_arrays_are_attribute_values() {
        let attributes: Attributes =
            serde_json::from_str(r#"{"a":"x","b":7,"c":["p","q"]}"#).unwrap();
        assert_eq!(attributes["a"], AttributeValue::String("x".into()));
        assert_eq!(attributes["b"], AttributeValue::Integer(7));
        assert_eq!(
            attributes["c"],
            AttributeValue::StringArray(vec!["p".into(), "q".into()])
        );
    }

    #[test]
    fn other_values_are_refused_with_what_was_found() {
        for (json, found) in [
            ("1.5", "the number 1.5"),
            ("true", "the boolean true"),
            ("[1]", "element that is not a string"),
            ("{}", "an object"),
        ] {
            let error = serde_json::from_str::<AttributeValue>(json)
                .unwrap_err()
                .to_string();
            assert!(error.contains(found), "{json}: {error}");
        }
    }
}
