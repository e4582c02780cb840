//! Unknown fields: a misspelt field (`eventRetentionDays`) deserializes fine and is silently
//! dropped, while the API server (with kubectl's default strict field validation) refuses
//! it. This walks a manifest alongside its CRD's structural schema and names every field the
//! schema does not declare.

use gridline_crds::crd::all_crds;
use gridline_crds::model::Kind;
use serde_json::Value;
use std::collections::BTreeMap;

/// The fields of a Secret manifest (a core kind: no CRD schema to read them from).
const SECRET_FIELDS: [&str; 7] = [
    "apiVersion",
    "kind",
    "metadata",
    "data",
    "stringData",
    "type",
    "immutable",
];

/// The fields of every object, left out of CRD schemas.
const ROOT_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// The structural schema of every Gridline kind.
pub struct KnownFields {
    schemas: BTreeMap<Kind, Value>,
}

impl KnownFields {
    pub fn new() -> Self {
        let schemas = all_crds()
            .into_iter()
            .filter_map(|crd| {
                let version = crd.spec.versions.first()?;
                let kind = Kind::from_manifest(
                    &format!("{}/{}", crd.spec.group, version.name),
                    &crd.spec.names.kind,
                )?;
                let schema = version.schema.as_ref()?.open_api_v3_schema.as_ref()?;
                Some((kind, serde_json::to_value(schema).ok()?))
            })
            .collect();
        Self { schemas }
    }

    /// The paths of the fields of `object` that its kind does not declare, e.g.
    /// `spec.eventRetentionDays`.
    pub fn unknown(&self, kind: Kind, object: &Value) -> Vec<String> {
        let mut unknown = Vec::new();
        match (kind, self.schemas.get(&kind)) {
            (Kind::Secret, _) => {
                if let Some(fields) = object.as_object() {
                    unknown.extend(
                        fields
                            .keys()
                            .filter(|k| !SECRET_FIELDS.contains(&k.as_str()))
                            .cloned(),
                    );
                }
            }
            (_, Some(schema)) => walk(schema, object, "", &mut unknown),
            (_, None) => {}
        }
        unknown
    }
}

impl Default for KnownFields {
    fn default() -> Self {
        Self::new()
    }
}

fn walk(schema: &Value, value: &Value, path: &str, unknown: &mut Vec<String>) {
    // Where the schema lets anything in, or says nothing of the structure, stop looking.
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
        || schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
    {
        return;
    }
    match value {
        Value::Object(fields) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            for (name, field) in fields {
                // A CRD schema declares `spec` and `status`; every object also has these,
                // which the API server checks itself.
                if path.is_empty() && ROOT_FIELDS.contains(&name.as_str()) {
                    continue;
                }
                let child = join(path, name);
                match (properties.and_then(|p| p.get(name)), additional) {
                    (Some(field_schema), _) => walk(field_schema, field, &child, unknown),
                    (None, Some(Value::Bool(true))) => {}
                    (None, Some(map_schema @ Value::Object(_))) => {
                        walk(map_schema, field, &child, unknown)
                    }
                    // An object schema without properties says nothing about its fields.
                    (None, _) if properties.is_none() => {}
                    (None, _) => unknown.push(child),
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (index, item) in items.iter().enumerate() {
                    walk(item_schema, item, &format!("{path}[{index}]"), unknown);
                }
            }
        }
        _ => {}
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_misspelt_field_is_unknown() {
        let topic = json!({
            "apiVersion": "gridline.dev/v1alpha1",
            "kind": "Topic",
            "metadata": {"name": "orders", "labels": {"a": "b"}},
            "spec": {"namespaceRef": {"name": "ns1"}, "eventRetentionDays": 3}
        });
        assert_eq!(
            KnownFields::new().unknown(Kind::Topic, &topic),
            ["spec.eventRetentionDays"]
        );
    }

    #[test]
    fn fields_inside_lists_are_checked_with_their_index() {
        let namespace = json!({
            "apiVersion": "gridline.dev/v1alpha1",
            "kind": "Namespace",
            "metadata": {"name": "ns1"},
            "spec": {"caCertificates": [{"name": "a", "secretName": "s", "keyy": "x"}]}
        });
        assert_eq!(
            KnownFields::new().unknown(Kind::Namespace, &namespace),
            ["spec.caCertificates[0].keyy"]
        );
    }

    #[test]
    fn a_secret_has_a_fixed_set_of_fields() {
        let secret = json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "stringData": {"any-key": "v"}, "type": "Opaque", "strinData": {}
        });
        assert_eq!(
            KnownFields::new().unknown(Kind::Secret, &secret),
            ["strinData"]
        );
    }
}
