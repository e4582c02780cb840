//! What the API server checks about a CRD besides its CEL rules, that no mock enforces
//! (`k8s.io/apiextensions-apiserver` `pkg/apis/apiextensions/validation/validation.go`,
//! `ValidateCustomResourceDefinition` and `ValidateCustomResourceDefinitionNames`; label syntax
//! from `k8s.io/apimachinery/pkg/util/validation`). See `crd_cel_cost.rs` for the rules' cost.

use gridline_crds::crd::all_crds;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value as Json;

/// `IsDNS1123Subdomain`: at most 253 characters of lowercase letters, digits, '-' and '.',
/// each dot-separated part starting and ending with a letter or digit.
fn dns_subdomain(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 253 {
        return Err(format!("'{name}' must be 1-253 characters"));
    }
    for part in name.split('.') {
        dns_label(part, false).map_err(|e| format!("'{name}': {e}"))?;
    }
    Ok(())
}

/// `IsDNS1123Label` (`dns1035` false) or `IsDNS1035Label` (true: starts with a letter).
fn dns_label(label: &str, dns1035: bool) -> Result<(), String> {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let first_ok = label.chars().next().is_some_and(|c| {
        if dns1035 {
            c.is_ascii_lowercase()
        } else {
            alnum(c)
        }
    });
    let ok = (1..=63).contains(&label.len())
        && first_ok
        && label.chars().last().is_some_and(alnum)
        && label.chars().all(|c| alnum(c) || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{label}' is not a DNS-{} label (1-63 lowercase letters, digits and '-')",
            if dns1035 { 1035 } else { 1123 }
        ))
    }
}

/// `IsQualifiedName` for label keys and `IsValidLabelValue`.
fn label(key: &str, value: &str) -> Result<(), String> {
    let name_ok = |name: &str, may_be_empty: bool| {
        (may_be_empty && name.is_empty())
            || ((1..=63).contains(&name.len())
                && name.starts_with(|c: char| c.is_ascii_alphanumeric())
                && name.ends_with(|c: char| c.is_ascii_alphanumeric())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
    };
    let (prefix, name) = key.rsplit_once('/').unwrap_or(("", key));
    if !prefix.is_empty() {
        dns_subdomain(prefix)?;
    }
    if !name_ok(name, false) {
        return Err(format!("label key '{key}' is not a qualified name"));
    }
    if !name_ok(value, true) {
        return Err(format!(
            "label value '{value}' of '{key}' is not a label value"
        ));
    }
    Ok(())
}

fn problems_of(crd: &CustomResourceDefinition) -> Vec<String> {
    let mut problems = Vec::new();
    let mut schema_problems = Vec::new();
    let mut check = |what: &str, result: Result<(), String>| {
        if let Err(error) = result {
            problems.push(format!("{what}: {error}"));
        }
    };
    let spec = &crd.spec;
    let names = &spec.names;
    let name = crd.metadata.name.clone().unwrap_or_default();
    check("metadata.name", dns_subdomain(&name));
    if name != format!("{}.{}", names.plural, spec.group) {
        check(
            "metadata.name",
            Err("must be spec.names.plural + '.' + spec.group".into()),
        );
    }
    for (key, value) in crd.metadata.labels.iter().flatten() {
        check("metadata.labels", label(key, value));
    }
    check("spec.group", dns_subdomain(&spec.group));
    if !spec.group.contains('.') {
        check("spec.group", Err("must have at least one dot".into()));
    }
    check("spec.names.plural", dns_label(&names.plural, true));
    if let Some(singular) = &names.singular {
        check("spec.names.singular", dns_label(singular, true));
    }
    check(
        "spec.names.kind",
        dns_label(&names.kind.to_lowercase(), true),
    );
    // The API server defaults listKind to <kind>List.
    let list_kind = names
        .list_kind
        .clone()
        .unwrap_or_else(|| format!("{}List", names.kind));
    check(
        "spec.names.listKind",
        dns_label(&list_kind.to_lowercase(), true),
    );
    if list_kind == names.kind {
        check("spec.names.listKind", Err("must differ from kind".into()));
    }
    for short in names.short_names.iter().flatten() {
        check("spec.names.shortNames", dns_label(short, true));
    }
    for category in names.categories.iter().flatten() {
        check("spec.names.categories", dns_label(category, true));
    }
    if spec.versions.iter().filter(|v| v.storage).count() != 1 {
        check("spec.versions", Err("exactly one storage version".into()));
    }
    for version in &spec.versions {
        check("spec.versions[].name", dns_label(&version.name, true));
        for column in version.additional_printer_columns.iter().flatten() {
            let what = format!("printer column '{}'", column.name);
            if !["integer", "number", "string", "boolean", "date"].contains(&column.type_.as_str())
            {
                check(
                    &what,
                    Err(format!("type '{}' is not allowed", column.type_)),
                );
            }
            let formats = [
                "int32",
                "int64",
                "float",
                "double",
                "byte",
                "date",
                "date-time",
                "password",
            ];
            if let Some(format) = column.format.as_deref().filter(|f| !formats.contains(f)) {
                check(&what, Err(format!("format '{format}' is not allowed")));
            }
            if !column.json_path.starts_with('.') {
                check(&what, Err("jsonPath must start with '.'".into()));
            }
        }
        let Some(schema) = version
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
        else {
            check("schema", Err("a schema is required".into()));
            continue;
        };
        let root = serde_json::to_value(schema).expect("a schema is JSON");
        let status_subresource = version
            .subresources
            .as_ref()
            .is_some_and(|s| s.status.is_some());
        schema_problems.extend(root_schema_problems(&root, status_subresource));
    }
    problems.extend(schema_problems);
    problems
}

/// With the status subresource, only these may appear at the root of the schema
/// (`allowedFieldsAtRootSchema`); and `metadata` may restrict only `name` and `generateName`
/// (`validateStructuralMetadataInvariants`).
fn root_schema_problems(root: &Json, status_subresource: bool) -> Vec<String> {
    const ALLOWED_AT_ROOT: [&str; 23] = [
        "description",
        "type",
        "format",
        "title",
        "maximum",
        "exclusiveMaximum",
        "minimum",
        "exclusiveMinimum",
        "maxLength",
        "minLength",
        "pattern",
        "maxItems",
        "minItems",
        "uniqueItems",
        "multipleOf",
        "required",
        "items",
        "properties",
        "externalDocs",
        "example",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-validations",
        "nullable",
    ];
    let mut problems = Vec::new();
    if status_subresource {
        for key in root.as_object().into_iter().flat_map(|o| o.keys()) {
            if !ALLOWED_AT_ROOT.contains(&key.as_str()) {
                problems.push(format!(
                    "root schema: '{key}' is not allowed with a status subresource"
                ));
            }
        }
    }
    if root.get("nullable") == Some(&Json::Bool(true)) {
        problems.push("root schema: nullable cannot be true".into());
    }
    let properties = &root["properties"];
    if let Some(metadata) = properties.get("metadata") {
        let allowed = ["type", "properties"];
        for key in metadata.as_object().into_iter().flat_map(|o| o.keys()) {
            if !allowed.contains(&key.as_str()) {
                problems.push(format!("metadata: '{key}' may not be specified"));
            }
        }
        for field in metadata["properties"]
            .as_object()
            .into_iter()
            .flat_map(|o| o.keys())
        {
            if field != "name" && field != "generateName" {
                problems.push(format!(
                    "metadata: only name and generateName may be restricted, not '{field}'"
                ));
            }
        }
    }
    for field in ["apiVersion", "kind"] {
        if let Some(schema) = properties.get(field)
            && schema.get("type") != Some(&Json::String("string".into()))
        {
            problems.push(format!("{field}: must be of type string"));
        }
    }
    problems
}

#[test]
fn crd_names_labels_versions_and_printer_columns_are_what_the_api_server_accepts() {
    let problems: Vec<String> = all_crds()
        .iter()
        .flat_map(|crd| {
            let name = crd.metadata.name.clone().unwrap_or_default();
            problems_of(crd)
                .into_iter()
                .map(move |problem| format!("{name}: {problem}"))
        })
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checks_refuse_what_the_api_server_refuses() {
    assert!(dns_label("gridline", true).is_ok());
    assert!(dns_label("1st", true).is_err());
    assert!(dns_label(&"a".repeat(64), true).is_err());
    assert!(dns_label("Upper", true).is_err());
    assert!(dns_subdomain(&format!("{}.dev", "a".repeat(250))).is_err());
    assert!(label("app.kubernetes.io/name", "gridline").is_ok());
    assert!(label("app.kubernetes.io/name", &"v".repeat(64)).is_err());
    assert!(label(&format!("{}/x", "A_b"), "v").is_err());

    let mut crd = all_crds().remove(0);
    crd.spec.names.short_names = Some(vec!["g_ns".into()]);
    crd.metadata.name = Some("namespaces.other.dev".into());
    let problems = problems_of(&crd);
    assert_eq!(problems.len(), 2, "{problems:?}");

    let root = serde_json::json!({
        "type": "object",
        "additionalProperties": true,
        "properties": {"metadata": {"type": "object", "properties": {"labels": {"type": "object"}}}}
    });
    assert_eq!(root_schema_problems(&root, true).len(), 2);
}
