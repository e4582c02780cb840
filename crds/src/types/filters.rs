//! The `filtersConfiguration` of an event subscription, shaped like Event Grid's ARM API for
//! namespace topic event subscriptions (`includedEventTypes`, `filters`,
//! `enableAdvancedFilteringOnArrays`).
//!
//! These types only carry what the user wrote. `crate::model::filter::CompiledFilter` checks
//! them (operators, value shapes, limits) and evaluates them against events.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;

/// Which events of a namespace topic an event subscription receives.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FiltersConfiguration {
    /// CloudEvent `type` values this subscription receives, compared exactly but without regard
    /// to case. Empty or absent, or an entry `All`, means every event type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_event_types: Vec<String>,

    /// Advanced filters on event attributes or data; an event must match all of them. At most
    /// 25 filters, with at most 25 values across all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 25))]
    pub filters: Vec<AdvancedFilter>,

    /// When true, a filter whose key holds an array matches if any element of the array matches
    /// (for the Not operators: if no element matches the positive operator). When false, an
    /// array never matches any operator except IsNotNull and IsNullOrUndefined.
    #[serde(default)]
    pub enable_advanced_filtering_on_arrays: bool,
}

/// One advanced filter: an operator applied to the value found at `key` in the event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdvancedFilter {
    /// The comparison: NumberIn, NumberNotIn, NumberLessThan, NumberGreaterThan,
    /// NumberLessThanOrEquals, NumberGreaterThanOrEquals, NumberInRange, NumberNotInRange,
    /// BoolEquals, StringIn, StringNotIn, StringBeginsWith, StringNotBeginsWith, StringEndsWith,
    /// StringNotEndsWith, StringContains, StringNotContains, IsNullOrUndefined or IsNotNull.
    pub operator_type: OperatorType,

    /// Where the value is taken from: a CloudEvents context attribute (`type`, `source`,
    /// `subject`, `id`, `time`, `dataschema`, `datacontenttype`, `specversion`, or an extension
    /// attribute name) or a dot-separated path into the event data, like `data.order.total`.
    #[schemars(length(min = 1))]
    pub key: String,

    /// The single operand of NumberLessThan, NumberGreaterThan, NumberLessThanOrEquals,
    /// NumberGreaterThanOrEquals (a number) and BoolEquals (a boolean).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_value_schema")]
    pub value: Option<serde_json::Value>,

    /// The operands of the multi-valued operators, any one of which may match: numbers for
    /// NumberIn and NumberNotIn, `[min, max]` pairs for NumberInRange and NumberNotInRange,
    /// strings for the String operators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_values_schema")]
    pub values: Option<Vec<serde_json::Value>>,
}

// A structural CRD schema needs a type on every property, and `value` / `values[*]` can be a
// number, a string, a boolean or a `[min, max]` pair. No single type covers that, so those
// schemas keep unknown fields and the model checks the shape when it compiles.
fn any_value_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "The single operand: a number for the NumberLessThan/GreaterThan family, a boolean for BoolEquals.",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

fn any_values_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "The operands, any one of which may match: numbers (NumberIn, NumberNotIn), [min, max] pairs (NumberInRange, NumberNotInRange) or strings (String operators).",
        "type": "array",
        "maxItems": 25,
        "items": {
            "x-kubernetes-preserve-unknown-fields": true
        }
    })
}

/// The operator of an advanced filter.
///
/// The schema lists the 19 Event Grid operators, so the API server rejects anything else. Any
/// other name still deserializes (as [`OperatorType::Unknown`]) so that an object stored under
/// an older schema, or read from a file, reaches compilation and gets a problem naming its
/// field instead of failing to parse as a whole.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum OperatorType {
    NumberIn,
    NumberNotIn,
    NumberLessThan,
    NumberGreaterThan,
    NumberLessThanOrEquals,
    NumberGreaterThanOrEquals,
    NumberInRange,
    NumberNotInRange,
    BoolEquals,
    StringIn,
    StringNotIn,
    StringBeginsWith,
    StringNotBeginsWith,
    StringEndsWith,
    StringNotEndsWith,
    StringContains,
    StringNotContains,
    IsNullOrUndefined,
    IsNotNull,
    /// A name that is not one of the operators above, kept as written.
    Unknown(String),
}

impl OperatorType {
    /// Every known operator, in the order Event Grid's documentation lists them.
    pub const ALL: [OperatorType; 19] = [
        OperatorType::NumberIn,
        OperatorType::NumberNotIn,
        OperatorType::NumberLessThan,
        OperatorType::NumberGreaterThan,
        OperatorType::NumberLessThanOrEquals,
        OperatorType::NumberGreaterThanOrEquals,
        OperatorType::NumberInRange,
        OperatorType::NumberNotInRange,
        OperatorType::BoolEquals,
        OperatorType::StringIn,
        OperatorType::StringNotIn,
        OperatorType::StringBeginsWith,
        OperatorType::StringNotBeginsWith,
        OperatorType::StringEndsWith,
        OperatorType::StringNotEndsWith,
        OperatorType::StringContains,
        OperatorType::StringNotContains,
        OperatorType::IsNullOrUndefined,
        OperatorType::IsNotNull,
    ];

    /// The name as written in the API (`NumberIn`, ...); for `Unknown`, the name it was given.
    pub fn as_str(&self) -> &str {
        match self {
            OperatorType::NumberIn => "NumberIn",
            OperatorType::NumberNotIn => "NumberNotIn",
            OperatorType::NumberLessThan => "NumberLessThan",
            OperatorType::NumberGreaterThan => "NumberGreaterThan",
            OperatorType::NumberLessThanOrEquals => "NumberLessThanOrEquals",
            OperatorType::NumberGreaterThanOrEquals => "NumberGreaterThanOrEquals",
            OperatorType::NumberInRange => "NumberInRange",
            OperatorType::NumberNotInRange => "NumberNotInRange",
            OperatorType::BoolEquals => "BoolEquals",
            OperatorType::StringIn => "StringIn",
            OperatorType::StringNotIn => "StringNotIn",
            OperatorType::StringBeginsWith => "StringBeginsWith",
            OperatorType::StringNotBeginsWith => "StringNotBeginsWith",
            OperatorType::StringEndsWith => "StringEndsWith",
            OperatorType::StringNotEndsWith => "StringNotEndsWith",
            OperatorType::StringContains => "StringContains",
            OperatorType::StringNotContains => "StringNotContains",
            OperatorType::IsNullOrUndefined => "IsNullOrUndefined",
            OperatorType::IsNotNull => "IsNotNull",
            OperatorType::Unknown(name) => name,
        }
    }

    /// The operator with this exact name, or `Unknown` carrying the name.
    pub fn from_name(name: &str) -> OperatorType {
        OperatorType::ALL
            .iter()
            .find(|known| known.as_str() == name)
            .cloned()
            .unwrap_or_else(|| OperatorType::Unknown(name.to_string()))
    }
}

impl fmt::Display for OperatorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for OperatorType {
    fn from(name: &str) -> Self {
        OperatorType::from_name(name)
    }
}

impl Serialize for OperatorType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for OperatorType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = Cow::<'de, str>::deserialize(deserializer)?;
        Ok(OperatorType::from_name(&name))
    }
}

impl JsonSchema for OperatorType {
    fn schema_name() -> Cow<'static, str> {
        "OperatorType".into()
    }

    // Inlined so the CRD carries the enum at the field, as Kubernetes schemas have no `$ref`.
    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let names: Vec<&str> = OperatorType::ALL.iter().map(OperatorType::as_str).collect();
        schemars::json_schema!({
            "type": "string",
            "enum": names
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn filters_configuration_reads_event_grid_arm_json() {
        let config: FiltersConfiguration = serde_json::from_value(json!({
            "includedEventTypes": ["Contoso.Orders.Created"],
            "enableAdvancedFilteringOnArrays": true,
            "filters": [
                {"operatorType": "NumberGreaterThan", "key": "data.total", "value": 100},
                {"operatorType": "StringIn", "key": "source", "values": ["/shop"]},
                {"operatorType": "NumberInRange", "key": "data.qty", "values": [[1, 5]]},
                {"operatorType": "IsNotNull", "key": "subject"}
            ]
        }))
        .unwrap();
        assert_eq!(config.included_event_types, vec!["Contoso.Orders.Created"]);
        assert!(config.enable_advanced_filtering_on_arrays);
        assert_eq!(config.filters.len(), 4);
        assert_eq!(
            config.filters[0].operator_type,
            OperatorType::NumberGreaterThan
        );
        assert_eq!(config.filters[0].value, Some(json!(100)));
        assert_eq!(config.filters[1].values, Some(vec![json!("/shop")]));
        assert_eq!(config.filters[3].value, None);
        assert_eq!(config.filters[3].values, None);
    }

    #[test]
    fn enable_advanced_filtering_on_arrays_defaults_to_false() {
        let config: FiltersConfiguration = serde_json::from_value(json!({})).unwrap();
        assert_eq!(config, FiltersConfiguration::default());
        assert!(!config.enable_advanced_filtering_on_arrays);
    }

    #[test]
    fn serialization_omits_empty_lists_and_absent_operands() {
        let config = FiltersConfiguration {
            included_event_types: vec![],
            filters: vec![AdvancedFilter {
                operator_type: OperatorType::IsNotNull,
                key: "subject".into(),
                value: None,
                values: None,
            }],
            enable_advanced_filtering_on_arrays: false,
        };
        assert_eq!(
            serde_json::to_value(&config).unwrap(),
            json!({
                "filters": [{"operatorType": "IsNotNull", "key": "subject"}],
                "enableAdvancedFilteringOnArrays": false
            })
        );
    }

    #[test]
    fn unknown_operator_names_survive_a_round_trip() {
        let filter: AdvancedFilter = serde_json::from_value(
            json!({"operatorType": "StringEquals", "key": "subject", "values": ["a"]}),
        )
        .unwrap();
        assert_eq!(
            filter.operator_type,
            OperatorType::Unknown("StringEquals".into())
        );
        assert_eq!(
            serde_json::to_value(&filter).unwrap()["operatorType"],
            json!("StringEquals")
        );
    }

    #[test]
    fn every_known_operator_name_round_trips() {
        for operator in OperatorType::ALL {
            let text = serde_json::to_value(&operator).unwrap();
            assert_eq!(text, json!(operator.as_str()));
            let back: OperatorType = serde_json::from_value(text).unwrap();
            assert_eq!(back, operator);
        }
    }

    #[test]
    fn operator_schema_is_a_string_enum_of_the_19_operators() {
        let schema = schemars::schema_for!(OperatorType);
        let value = schema.as_value();
        assert_eq!(value["type"], json!("string"));
        let names: Vec<&str> = value["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|name| name.as_str().unwrap())
            .collect();
        assert_eq!(names.len(), 19);
        assert!(names.contains(&"NumberInRange"));
        assert!(names.contains(&"IsNotNull"));
    }

    /// The schema as kube-rs generates it for a CRD: every subschema inlined.
    fn crd_schema() -> Value {
        let generator = schemars::generate::SchemaSettings::openapi3()
            .with(|settings| settings.inline_subschemas = true)
            .into_generator();
        generator
            .into_root_schema_for::<FiltersConfiguration>()
            .to_value()
    }

    /// Kubernetes' structural-schema rule: every property and array item states a type,
    /// unless it keeps unknown fields.
    fn assert_structural(schema: &Value, path: &str) {
        let preserves = schema["x-kubernetes-preserve-unknown-fields"] == json!(true);
        assert!(
            preserves || schema.get("type").is_some(),
            "{path} has no type: {schema}"
        );
        for keyword in ["anyOf", "oneOf", "allOf", "$ref"] {
            assert!(
                schema.get(keyword).is_none(),
                "{path} uses {keyword}: {schema}"
            );
        }
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            for (name, property) in properties {
                assert_structural(property, &format!("{path}.{name}"));
            }
        }
        if let Some(items) = schema.get("items") {
            assert_structural(items, &format!("{path}[*]"));
        }
    }

    #[test]
    fn crd_schema_is_structural() {
        assert_structural(&crd_schema(), "filtersConfiguration");
    }

    #[test]
    fn crd_schema_limits_filters_to_25_and_documents_every_field() {
        let schema = crd_schema();
        let properties = &schema["properties"];
        assert_eq!(properties["filters"]["maxItems"], json!(25));
        assert_eq!(
            properties["enableAdvancedFilteringOnArrays"]["default"],
            json!(false)
        );
        for name in [
            "includedEventTypes",
            "filters",
            "enableAdvancedFilteringOnArrays",
        ] {
            assert!(
                properties[name]["description"].is_string(),
                "{name} has no description"
            );
        }
        let filter = &properties["filters"]["items"];
        for name in ["operatorType", "key", "value", "values"] {
            assert!(
                filter["properties"][name]["description"].is_string(),
                "{name} has no description"
            );
        }
        let mut required: Vec<&str> = filter["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|name| name.as_str().unwrap())
            .collect();
        required.sort_unstable();
        assert_eq!(required, vec!["key", "operatorType"]);
        assert_eq!(filter["properties"]["key"]["minLength"], json!(1));
        assert_eq!(
            filter["properties"]["operatorType"]["enum"]
                .as_array()
                .unwrap()
                .len(),
            19
        );
        assert_eq!(
            filter["properties"]["values"]["items"]["x-kubernetes-preserve-unknown-fields"],
            json!(true)
        );
    }
}
