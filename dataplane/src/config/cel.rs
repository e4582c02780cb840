//! The CRDs' CEL rules (`x-kubernetes-validations`), evaluated client-side so a folder of
//! manifests is refused exactly where the API server would refuse a `kubectl apply`.
//!
//! Only creation rules apply: there is no previous version of an object here, so transition
//! rules (those using `oldSelf`) are skipped, as the API server does on create.

use gridline_crds::crd::all_crds;
use gridline_crds::model::Kind;
use kube::core::cel::{CompiledSchema, Validator, compile_schema};
use std::collections::BTreeMap;

/// A CEL rule an object breaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleViolation {
    /// Path of the field the rule is attached to (empty for the object itself).
    pub field: String,
    pub message: String,
}

/// The compiled CEL rules of every Gridline kind.
pub struct CelRules {
    validator: Validator,
    schemas: BTreeMap<Kind, CompiledSchema>,
}

impl CelRules {
    /// Compile the rules of every CRD. Compiling takes a few milliseconds, so one `CelRules`
    /// serves a whole load.
    pub fn new() -> Self {
        let schemas = all_crds()
            .into_iter()
            .filter_map(|crd| {
                let kind = Kind::from_manifest(
                    &format!("{}/{}", crd.spec.group, crd.spec.versions.first()?.name),
                    &crd.spec.names.kind,
                )?;
                let schema = crd
                    .spec
                    .versions
                    .first()?
                    .schema
                    .as_ref()?
                    .open_api_v3_schema
                    .as_ref()?;
                let schema = serde_json::to_value(schema).ok()?;
                Some((kind, compile_schema(&schema)))
            })
            .collect();
        Self {
            validator: Validator::new(),
            schemas,
        }
    }

    /// The rules `object` (the raw manifest, as JSON) breaks. Kinds without a CRD (Secrets)
    /// have no rules.
    pub fn violations(&self, kind: Kind, object: &serde_json::Value) -> Vec<RuleViolation> {
        let Some(schema) = self.schemas.get(&kind) else {
            return Vec::new();
        };
        match self.validator.validate_compiled(schema, object, None) {
            Ok(()) => Vec::new(),
            Err(errors) => errors
                .into_vec()
                .into_iter()
                .map(|error| RuleViolation {
                    field: error.field_path,
                    message: error.message,
                })
                .collect(),
        }
    }
}

impl Default for CelRules {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn topic(name: &str) -> serde_json::Value {
        json!({
            "apiVersion": "gridline.dev/v1alpha1",
            "kind": "Topic",
            "metadata": {"name": name},
            "spec": {"namespaceRef": {"name": "ns1"}}
        })
    }

    #[test]
    fn every_gridline_kind_has_compiled_rules() {
        let rules = CelRules::new();
        for kind in Kind::ALL.into_iter().filter(|k| *k != Kind::Secret) {
            assert!(rules.schemas.contains_key(&kind), "{kind} has no schema");
        }
    }

    #[test]
    fn a_valid_object_breaks_no_rule() {
        assert_eq!(
            CelRules::new().violations(Kind::Topic, &topic("orders")),
            vec![]
        );
    }

    #[test]
    fn transition_rules_are_skipped_without_an_old_object() {
        // namespaceRef carries `self == oldSelf`: it must not fire on creation.
        let violations = CelRules::new().violations(Kind::Topic, &topic("orders"));
        assert!(violations.iter().all(|v| !v.message.contains("immutable")));
    }

    #[test]
    fn a_name_rule_violation_is_reported_with_its_message() {
        let violations = CelRules::new().violations(Kind::Topic, &topic("x"));
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(
            violations[0].message.contains("3-50 characters"),
            "{violations:?}"
        );
    }

    #[test]
    fn a_field_rule_violation_names_the_field() {
        let subscription = json!({
            "apiVersion": "gridline.dev/v1alpha1",
            "kind": "EventSubscription",
            "metadata": {"name": "sub1"},
            "spec": {
                "topicRef": {"name": "orders"},
                "deliveryConfiguration": {"deliveryMode": "Push"}
            }
        });
        let violations = CelRules::new().violations(Kind::EventSubscription, &subscription);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].field, "spec.deliveryConfiguration");
        assert!(violations[0].message.contains("deliveryMode Push"));
    }

    #[test]
    fn secrets_have_no_rules() {
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}});
        assert_eq!(CelRules::new().violations(Kind::Secret, &secret), vec![]);
    }
}
