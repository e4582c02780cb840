//! Manifests → typed objects: the YAML a user would `kubectl apply`, read from a folder.
//!
//! Every document of every `*.yaml` / `*.yml` file is parsed; Gridline kinds and Secrets are
//! deserialized into their typed form, checked against the CRDs' CEL rules and recorded with
//! the file and document they came from. Other kinds (ConfigMaps, Deployments, a
//! kustomization) are ignored, so the same folder can be applied to a cluster as it is.

use super::cel::CelRules;
use super::fields::KnownFields;
use super::loaded::{LoadedConfig, Origin, Problem};
use gridline_crds::model::{DEFAULT_K8S_NAMESPACE, Kind, ObjectKey, Objects};
use gridline_crds::types::{
    Client, ClientGroup, EventSubscription, GROUP, Namespace, PermissionBinding, Topic, TopicSpace,
};
use k8s_openapi::api::core::v1::Secret;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use tracing::debug;

/// What a manifest is checked against besides its Rust type: the CRDs' CEL rules and their
/// declared fields. Built once per load (compiling the rules takes milliseconds).
#[derive(Default)]
pub struct SchemaRules {
    pub cel: CelRules,
    pub fields: KnownFields,
}

impl SchemaRules {
    pub fn new() -> Self {
        Self::default()
    }
}

/// One manifest file's path and text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestFile {
    pub path: PathBuf,
    pub text: String,
}

/// Read and parse every manifest under `path` (a folder, searched recursively, or one file).
pub fn load(path: &Path) -> LoadedConfig {
    let (files, read_problems) = read_manifests(path);
    let mut loaded = parse_manifests(&files, &SchemaRules::new());
    // Unreadable files come first: they usually explain what follows.
    loaded.problems.splice(0..0, read_problems);
    loaded
}

/// The text of every manifest under `path`, in path order (so loads are deterministic), plus
/// a problem for each file or folder that could not be read.
///
/// Hidden entries (`.git`, an editor's `.x.yaml.swp`, and the `..data` links Kubernetes puts
/// in a mounted ConfigMap) are skipped: reading through `..data` too would see every object
/// twice. Symbolic links to files are followed; links to folders are not, so a loop of links
/// cannot make the walk endless.
pub fn read_manifests(path: &Path) -> (Vec<ManifestFile>, Vec<Problem>) {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    if path.is_file() {
        read_one(path, &mut files, &mut problems);
    } else {
        walk(path, &mut files, &mut problems);
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    (files, problems)
}

fn walk(dir: &Path, files: &mut Vec<ManifestFile>, problems: &mut Vec<Problem>) {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            problems.push(Problem::document(
                Origin::Path(dir.to_path_buf()),
                format!("cannot read folder: {error}"),
            ));
            return;
        }
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(error) => {
                problems.push(Problem::document(
                    Origin::Path(dir.to_path_buf()),
                    format!("cannot list folder: {error}"),
                ));
                continue;
            }
        };
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let Ok(link_type) = entry.file_type() else {
            continue;
        };
        if link_type.is_dir() {
            walk(&path, files, problems);
        } else if is_manifest_name(&path) && path.is_file() {
            read_one(&path, files, problems);
        }
    }
}

fn read_one(path: &Path, files: &mut Vec<ManifestFile>, problems: &mut Vec<Problem>) {
    match fs::read_to_string(path) {
        Ok(text) => files.push(ManifestFile {
            path: path.to_path_buf(),
            text,
        }),
        Err(error) => problems.push(Problem::document(
            Origin::Path(path.to_path_buf()),
            format!("cannot read file: {error}"),
        )),
    }
}

/// Whether a file name looks like a manifest.
pub fn is_manifest_name(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

/// Parse manifest files into typed objects, their provenance and the problems found.
pub fn parse_manifests(files: &[ManifestFile], rules: &SchemaRules) -> LoadedConfig {
    let mut loaded = LoadedConfig::default();
    // Every object named so far, broken or not: a second definition is an error even when
    // the first was refused (applying both, the later would win).
    let mut seen = BTreeMap::new();
    for file in files {
        parse_file(file, rules, &mut loaded, &mut seen);
    }
    loaded
}

type Seen = BTreeMap<ObjectKey, Origin>;

fn parse_file(
    file: &ManifestFile,
    rules: &SchemaRules,
    loaded: &mut LoadedConfig,
    seen: &mut Seen,
) {
    for (index, document) in serde_yaml::Deserializer::from_str(&file.text).enumerate() {
        let origin = Origin::File {
            path: file.path.clone(),
            document: index + 1,
        };
        match serde_yaml::Value::deserialize(document) {
            Ok(value) => parse_document(value, origin, rules, loaded, seen),
            Err(error) => {
                // The parser cannot resynchronise after a syntax error, so the rest of the
                // file is unknown: one problem, and nothing more from this file.
                loaded
                    .problems
                    .push(Problem::document(origin, error.to_string()));
                break;
            }
        }
    }
}

fn parse_document(
    value: serde_yaml::Value,
    origin: Origin,
    rules: &SchemaRules,
    loaded: &mut LoadedConfig,
    seen: &mut Seen,
) {
    if value.is_null() {
        // An empty document: a leading `---` or a file of comments.
        return;
    }
    let text_field = |name: &str| value.get(name).and_then(|v| v.as_str()).unwrap_or("");
    let (api_version, kind_name) = (text_field("apiVersion"), text_field("kind"));
    let Some(kind) = Kind::from_manifest(api_version, kind_name) else {
        if api_version.split('/').next() == Some(GROUP) {
            // Our group but not a kind we know: a typo, or a manifest for another version.
            loaded.problems.push(Problem::document(
                origin,
                format!("unknown kind {kind_name:?} of apiVersion {api_version:?}"),
            ));
        } else {
            debug!(%origin, api_version, kind = kind_name, "ignoring a manifest of a kind Gridline does not read");
        }
        return;
    };

    let metadata = |name: &str| {
        value
            .get("metadata")
            .and_then(|m| m.get(name))
            .and_then(|v| v.as_str())
    };
    let Some(name) = metadata("name").filter(|n| !n.is_empty()) else {
        loaded.problems.push(Problem {
            object: None,
            field: "metadata.name".into(),
            message: format!("a {kind} needs a name"),
            origin,
        });
        return;
    };
    let key = ObjectKey::new(
        kind,
        metadata("namespace").unwrap_or(DEFAULT_K8S_NAMESPACE),
        name,
    );

    if let Some(first) = seen.get(&key) {
        loaded.problems.push(Problem {
            message: format!("defined again (first in {})", describe(first)),
            object: Some(key),
            field: String::new(),
            origin,
        });
        return;
    }
    seen.insert(key.clone(), origin.clone());

    let problems_before = loaded.problems.len();
    let object_problem = |field: String, message: String| Problem {
        origin: origin.clone(),
        object: Some(key.clone()),
        field,
        message,
    };
    match serde_json::to_value(&value) {
        Ok(json) => {
            for field in rules.fields.unknown(kind, &json) {
                loaded.problems.push(object_problem(
                    field,
                    "unknown field (the API server refuses it; is it misspelt?)".into(),
                ));
            }
            for violation in rules.cel.violations(kind, &json) {
                loaded
                    .problems
                    .push(object_problem(violation.field, violation.message));
            }
        }
        Err(error) => loaded.problems.push(object_problem(
            String::new(),
            format!("not representable as JSON: {error}"),
        )),
    }
    match TypedObject::deserialize_as(kind, value) {
        // A broken object is left out whole: it must not be half-served.
        Ok(object) if loaded.problems.len() == problems_before => {
            object.add_to(&mut loaded.objects);
            loaded.provenance.insert(key, origin);
        }
        Ok(_) => {}
        Err((field, message)) => {
            let message = if kind == Kind::Secret {
                redact_secret_value(&field, message)
            } else {
                message
            };
            loaded.problems.push(object_problem(field, message))
        }
    }
}

/// serde's messages quote the offending value ("invalid type: integer `12345`"); a Secret's
/// values must never reach a log or a terminal, so those messages are replaced.
fn redact_secret_value(field: &str, message: String) -> String {
    if field.starts_with("data.") || field == "data" {
        "must be a map of base64-encoded strings (the value is secret and not shown)".into()
    } else if field.starts_with("stringData.") || field == "stringData" {
        "must be a map of strings (the value is secret and not shown)".into()
    } else {
        message
    }
}

/// One object of any kind Gridline reads.
enum TypedObject {
    Namespace(Namespace),
    Topic(Topic),
    EventSubscription(EventSubscription),
    Client(Client),
    ClientGroup(ClientGroup),
    TopicSpace(TopicSpace),
    PermissionBinding(PermissionBinding),
    Secret(Secret),
}

impl TypedObject {
    /// Deserialize `value` as `kind`, or say which field is wrong.
    fn deserialize_as(kind: Kind, value: serde_yaml::Value) -> Result<Self, (String, String)> {
        Ok(match kind {
            Kind::Namespace => Self::Namespace(typed(value)?),
            Kind::Topic => Self::Topic(typed(value)?),
            Kind::EventSubscription => Self::EventSubscription(typed(value)?),
            Kind::Client => Self::Client(typed(value)?),
            Kind::ClientGroup => Self::ClientGroup(typed(value)?),
            Kind::TopicSpace => Self::TopicSpace(typed(value)?),
            Kind::PermissionBinding => Self::PermissionBinding(typed(value)?),
            Kind::Secret => Self::Secret(typed(value)?),
        })
    }

    fn add_to(self, objects: &mut Objects) {
        match self {
            Self::Namespace(o) => objects.namespaces.push(o),
            Self::Topic(o) => objects.topics.push(o),
            Self::EventSubscription(o) => objects.event_subscriptions.push(o),
            Self::Client(o) => objects.clients.push(o),
            Self::ClientGroup(o) => objects.client_groups.push(o),
            Self::TopicSpace(o) => objects.topic_spaces.push(o),
            Self::PermissionBinding(o) => objects.permission_bindings.push(o),
            Self::Secret(o) => objects.secrets.push(o),
        }
    }
}

/// Deserialize with the path of the failing field (`spec.eventRetentionInDays`), which plain
/// serde errors do not carry.
fn typed<K: DeserializeOwned>(value: serde_yaml::Value) -> Result<K, (String, String)> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        // serde_path_to_error names the document root `.`; the root has no field name.
        let field = if path == "." { String::new() } else { path };
        (field, error.into_inner().to_string())
    })
}

fn describe(origin: &Origin) -> String {
    match origin {
        Origin::File { path, document } => format!("{} document {document}", path.display()),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridline_crds::model::SecretLookup;

    fn file(name: &str, text: &str) -> ManifestFile {
        ManifestFile {
            path: PathBuf::from(name),
            text: text.to_string(),
        }
    }

    fn parse(files: &[ManifestFile]) -> LoadedConfig {
        parse_manifests(files, &SchemaRules::new())
    }

    const NAMESPACE: &str = "apiVersion: gridline.dev/v1alpha1
kind: Namespace
metadata:
  name: ns1
spec: {}
";

    fn topic(name: &str) -> String {
        format!(
            "apiVersion: gridline.dev/v1alpha1
kind: Topic
metadata:
  name: {name}
spec:
  namespaceRef:
    name: ns1
"
        )
    }

    #[test]
    fn every_document_of_a_multi_document_file_is_read() {
        let text = format!(
            "{NAMESPACE}---\n{}---\n{}",
            topic("orders"),
            topic("invoices")
        );
        let loaded = parse(&[file("m/all.yaml", &text)]);
        assert_eq!(loaded.problems, vec![]);
        assert_eq!(loaded.objects.namespaces.len(), 1);
        assert_eq!(loaded.objects.topics.len(), 2);
    }

    #[test]
    fn provenance_records_file_and_document_of_each_object() {
        let text = format!("{NAMESPACE}---\n{}", topic("orders"));
        let loaded = parse(&[file("m/all.yaml", &text)]);
        assert_eq!(
            loaded.provenance[&ObjectKey::new(Kind::Topic, "default", "orders")],
            Origin::File {
                path: "m/all.yaml".into(),
                document: 2
            }
        );
        assert_eq!(
            loaded.provenance[&ObjectKey::new(Kind::Namespace, "default", "ns1")],
            Origin::File {
                path: "m/all.yaml".into(),
                document: 1
            }
        );
    }

    #[test]
    fn the_kubernetes_namespace_of_the_manifest_is_kept() {
        let text = topic("orders").replace("  name: orders", "  name: orders\n  namespace: prod");
        let loaded = parse(&[file("t.yaml", &text)]);
        assert!(
            loaded
                .provenance
                .contains_key(&ObjectKey::new(Kind::Topic, "prod", "orders"))
        );
    }

    #[test]
    fn empty_documents_are_skipped() {
        let text = format!("---\n# just a comment\n---\n{NAMESPACE}---\n");
        let loaded = parse(&[file("a.yaml", &text)]);
        assert_eq!(loaded.problems, vec![]);
        assert_eq!(loaded.objects.namespaces.len(), 1);
    }

    #[test]
    fn a_secret_with_string_data_is_read() {
        let text = "apiVersion: v1
kind: Secret
metadata:
  name: keys
stringData:
  key1: hello
";
        let loaded = parse(&[file("s.yaml", text)]);
        assert_eq!(loaded.problems, vec![]);
        assert_eq!(
            loaded.objects.secret_value("default", "keys", "key1"),
            SecretLookup::Found(b"hello".to_vec())
        );
    }

    #[test]
    fn a_secret_with_base64_data_is_decoded() {
        let text = "apiVersion: v1
kind: Secret
metadata:
  name: keys
data:
  key1: aGVsbG8=
";
        let loaded = parse(&[file("s.yaml", text)]);
        assert_eq!(loaded.problems, vec![]);
        assert_eq!(
            loaded.objects.secret_value("default", "keys", "key1"),
            SecretLookup::Found(b"hello".to_vec())
        );
    }

    #[test]
    fn a_secret_with_bad_base64_names_the_key() {
        let text = "apiVersion: v1
kind: Secret
metadata:
  name: keys
data:
  key1: '***'
";
        let loaded = parse(&[file("s.yaml", text)]);
        assert_eq!(loaded.problems.len(), 1, "{:?}", loaded.problems);
        assert_eq!(loaded.problems[0].field, "data.key1");
        assert!(loaded.objects.secrets.is_empty());
    }

    #[test]
    fn a_bad_secret_value_is_never_quoted() {
        let text = "apiVersion: v1
kind: Secret
metadata:
  name: keys
stringData:
  key1: 1234567
";
        let loaded = parse(&[file("s.yaml", text)]);
        assert_eq!(loaded.problems.len(), 1, "{:?}", loaded.problems);
        assert_eq!(loaded.problems[0].field, "stringData.key1");
        assert!(!loaded.problems[0].to_string().contains("1234567"));
    }

    #[test]
    fn unknown_kinds_are_ignored() {
        let text = format!(
            "apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  a: b
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
---
{}",
            topic("orders")
        );
        let loaded = parse(&[file("mixed.yaml", &text)]);
        assert_eq!(loaded.problems, vec![]);
        assert_eq!(loaded.objects.topics.len(), 1);
    }

    #[test]
    fn an_unknown_kind_of_the_gridline_group_is_a_problem() {
        let text = topic("orders").replace("kind: Topic", "kind: Topc");
        let loaded = parse(&[file("t.yaml", &text)]);
        assert_eq!(loaded.problems.len(), 1);
        assert!(loaded.problems[0].message.contains("Topc"));
    }

    #[test]
    fn a_yaml_syntax_error_names_the_file_and_document_with_line_and_column() {
        let text = format!("{NAMESPACE}---\nkind: Topic\nmetadata: [oops\n");
        let loaded = parse(&[file("m/bad.yaml", &text)]);
        assert_eq!(loaded.problems.len(), 1, "{:?}", loaded.problems);
        let line = loaded.problems[0].to_string();
        assert!(line.starts_with("m/bad.yaml: document 2: "), "{line}");
        assert!(line.contains("line 8"), "{line}");
        assert!(line.contains("column"), "{line}");
        // The good document before the error is still read.
        assert_eq!(loaded.objects.namespaces.len(), 1);
    }

    #[test]
    fn a_deserialization_error_names_the_field_path() {
        let text = topic("orders").replace(
            "  namespaceRef:",
            "  eventRetentionInDays: seven\n  namespaceRef:",
        );
        let loaded = parse(&[file("t.yaml", &text)]);
        assert_eq!(loaded.problems.len(), 1, "{:?}", loaded.problems);
        let problem = &loaded.problems[0];
        assert_eq!(problem.field, "spec.eventRetentionInDays");
        assert_eq!(
            problem.object,
            Some(ObjectKey::new(Kind::Topic, "default", "orders"))
        );
        assert!(problem.message.starts_with("invalid type"), "{problem}");
        assert!(
            problem.to_string().starts_with(
                "t.yaml: Topic default/orders: spec.eventRetentionInDays: invalid type"
            ),
            "{problem}"
        );
        assert!(loaded.objects.topics.is_empty());
        assert!(loaded.provenance.is_empty());
    }

    #[test]
    fn a_missing_required_field_names_its_parent() {
        let text = "apiVersion: gridline.dev/v1alpha1
kind: Topic
metadata:
  name: orders
spec: {}
";
        let loaded = parse(&[file("t.yaml", text)]);
        assert_eq!(loaded.problems.len(), 1, "{:?}", loaded.problems);
        assert_eq!(loaded.problems[0].field, "spec");
        assert!(loaded.problems[0].message.contains("namespaceRef"));
    }

    #[test]
    fn an_unknown_field_is_a_problem() {
        let text = topic("orders").replace(
            "  namespaceRef:",
            "  eventRetentionDays: 3\n  namespaceRef:",
        );
        let loaded = parse(&[file("t.yaml", &text)]);
        assert_eq!(loaded.problems.len(), 1, "{:?}", loaded.problems);
        assert_eq!(loaded.problems[0].field, "spec.eventRetentionDays");
        assert!(loaded.objects.topics.is_empty());
    }

    #[test]
    fn a_cel_rule_violation_leaves_the_object_out() {
        let loaded = parse(&[file("t.yaml", &topic("x"))]);
        assert_eq!(loaded.problems.len(), 1, "{:?}", loaded.problems);
        assert!(loaded.problems[0].message.contains("3-50 characters"));
        assert!(loaded.objects.topics.is_empty());
    }

    #[test]
    fn an_object_without_a_name_is_a_problem() {
        let text = topic("orders").replace("  name: orders\n", "  labels: {}\n");
        let loaded = parse(&[file("t.yaml", &text)]);
        assert_eq!(loaded.problems.len(), 1);
        assert_eq!(loaded.problems[0].field, "metadata.name");
    }

    #[test]
    fn an_object_defined_twice_is_a_problem_on_the_second() {
        let loaded = parse(&[
            file("a.yaml", &topic("orders")),
            file("b.yaml", &topic("orders")),
        ]);
        assert_eq!(loaded.problems.len(), 1);
        assert_eq!(
            loaded.problems[0].to_string(),
            "b.yaml: Topic default/orders: defined again (first in a.yaml document 1)"
        );
        assert_eq!(loaded.objects.topics.len(), 1);
    }

    #[test]
    fn a_second_definition_is_a_problem_even_when_the_first_is_broken() {
        let broken = topic("orders").replace(
            "  namespaceRef:",
            "  eventRetentionInDays: x\n  namespaceRef:",
        );
        let loaded = parse(&[file("a.yaml", &broken), file("b.yaml", &topic("orders"))]);
        assert_eq!(loaded.problems.len(), 2, "{:?}", loaded.problems);
        assert!(loaded.objects.topics.is_empty());
    }

    #[test]
    fn folders_are_read_recursively_skipping_hidden_entries_and_other_files() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("sub/deeper")).unwrap();
        fs::create_dir_all(dir.path().join(".hidden")).unwrap();
        fs::write(dir.path().join("ns.yaml"), NAMESPACE).unwrap();
        fs::write(dir.path().join("sub/deeper/t.yml"), topic("orders")).unwrap();
        fs::write(dir.path().join(".hidden/t.yaml"), topic("ghost")).unwrap();
        fs::write(dir.path().join(".swap.yaml"), topic("ghost")).unwrap();
        fs::write(dir.path().join("README.md"), "# not yaml").unwrap();
        let loaded = load(dir.path());
        assert_eq!(loaded.problems, vec![]);
        assert_eq!(loaded.objects.namespaces.len(), 1);
        assert_eq!(loaded.objects.topics.len(), 1);
        assert_eq!(
            loaded.objects.topics[0].metadata.name.as_deref(),
            Some("orders")
        );
    }

    #[test]
    fn a_single_file_can_be_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("all.yaml");
        fs::write(&path, format!("{NAMESPACE}---\n{}", topic("orders"))).unwrap();
        let loaded = load(&path);
        assert_eq!(loaded.objects.topics.len(), 1);
    }

    #[test]
    fn a_missing_folder_is_a_problem() {
        let loaded = load(Path::new("/nonexistent/gridline/manifests"));
        assert_eq!(loaded.problems.len(), 1);
        assert!(loaded.problems[0].message.starts_with("cannot read folder"));
    }
}
