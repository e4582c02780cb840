//! `gridline-dataplane check DIR`: exit 0 on a good folder; otherwise one line per problem
//! naming file, object and field, a summary, and exit 1.

mod support;

use std::path::Path;
use support::*;

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn a_good_folder_passes() {
    let workspace = Workspace::new();
    workspace.write("ns.yaml", &namespace("ns1"));
    workspace.write(
        "topics/a.yaml",
        &documents(&[topic("orders", "ns1", 7), topic("invoices", "ns1", 1)]),
    );
    let output = run_check(&workspace.manifests());
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains("configuration ok (2 files, 3 objects, 1 Namespace)"),
        "{text}"
    );
}

#[test]
fn the_example_deployment_passes() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples");
    let output = run_check(&examples);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
}

#[test]
fn a_wrongly_typed_field_names_file_object_and_field_path() {
    let workspace = Workspace::new();
    workspace.write("ns.yaml", &namespace("ns1"));
    let file = workspace.write(
        "topics.yaml",
        &documents(&[
            topic("orders", "ns1", 7),
            // A string where the type holds a number: only text can say it.
            manifests::deliberately_invalid(
                &topic("invoices", "ns1", 7),
                "eventRetentionInDays: 7",
                "eventRetentionInDays: seven",
            ),
        ]),
    );
    let output = run_check(&workspace.manifests());
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    let expected = format!(
        "{}: Topic default/invoices: spec.eventRetentionInDays: invalid type",
        file.display()
    );
    assert!(
        text.lines().next().unwrap().starts_with(&expected),
        "{text}"
    );
    assert!(text.lines().last().unwrap().contains("1 problem"), "{text}");
}

#[test]
fn a_yaml_syntax_error_names_file_document_line_and_column() {
    let workspace = Workspace::new();
    let file = workspace.write(
        "all.yaml",
        &format!(
            "{}---\nkind: Topic\nmetadata: [unclosed\n",
            documents(&[namespace("ns1")])
        ),
    );
    let output = run_check(&workspace.manifests());
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with(&format!("{}: document 2: ", file.display())),
        "{text}"
    );
    assert!(first.contains("line") && first.contains("column"), "{text}");
}

#[test]
fn a_cel_rule_violation_is_reported() {
    let workspace = Workspace::new();
    workspace.write("ns.yaml", &namespace("ns1"));
    let file = workspace.write("t.yaml", &topic("x", "ns1", 7));
    let output = run_check(&workspace.manifests());
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("{}: Topic default/x: ", file.display())),
        "{text}"
    );
    assert!(text.contains("3-50 characters"), "{text}");
}

#[test]
fn an_out_of_range_field_found_by_compile_names_its_file() {
    let workspace = Workspace::new();
    workspace.write("ns.yaml", &namespace("ns1"));
    let file = workspace.write("topics.yaml", &topic("orders", "ns1", 30));
    let output = run_check(&workspace.manifests());
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    let expected = format!(
        "{}: Topic default/orders: spec.eventRetentionInDays: ",
        file.display()
    );
    assert!(text.contains(&expected), "{text}");
}

#[test]
fn an_object_of_a_missing_namespace_is_reported_at_its_file() {
    let workspace = Workspace::new();
    workspace.write("ns.yaml", &namespace("ns1"));
    let file = workspace.write("topics.yaml", &topic("orders", "nope", 7));
    let output = run_check(&workspace.manifests());
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "{}: Topic default/orders: spec.namespaceRef",
            file.display()
        )),
        "{text}"
    );
}

#[test]
fn a_misspelt_field_is_reported_as_unknown() {
    let workspace = Workspace::new();
    workspace.write("ns.yaml", &namespace("ns1"));
    let file = workspace.write(
        "topics.yaml",
        // A field the type does not have: only text can say it.
        &manifests::deliberately_invalid(
            &topic("orders", "ns1", 7),
            "eventRetentionInDays",
            "eventRetentionDays",
        ),
    );
    let output = run_check(&workspace.manifests());
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    let expected = format!(
        "{}: Topic default/orders: spec.eventRetentionDays: unknown field",
        file.display()
    );
    assert!(text.starts_with(&expected), "{text}");
}

#[test]
fn a_bad_topic_template_names_its_file_object_and_template() {
    let workspace = Workspace::new();
    workspace.write("ns.yaml", &namespace("ns1"));
    let file = workspace.write(
        "spaces.yaml",
        "apiVersion: gridline.dev/v1alpha1\nkind: TopicSpace\nmetadata: {name: telemetry}\nspec:\n  namespaceRef: {name: ns1}\n  topicTemplates: ['devices/x${client.authenticationName}/#']\n",
    );
    let output = run_check(&workspace.manifests());
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    let expected = format!(
        "{}: TopicSpace default/telemetry: spec.topicTemplates[0]: ",
        file.display()
    );
    assert!(text.contains(&expected), "{text}");
}

#[test]
fn a_bad_client_group_query_names_its_file_object_and_field() {
    let workspace = Workspace::new();
    workspace.write("ns.yaml", &namespace("ns1"));
    let file = workspace.write(
        "groups.yaml",
        "apiVersion: gridline.dev/v1alpha1\nkind: ClientGroup\nmetadata: {name: sensors}\nspec:\n  namespaceRef: {name: ns1}\n  query: \"attributes.type == 'sensor'\"\n",
    );
    let output = run_check(&workspace.manifests());
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    let expected = format!(
        "{}: ClientGroup default/sensors: spec.query: ",
        file.display()
    );
    assert!(text.contains(&expected), "{text}");
}

#[test]
fn a_dangling_permission_binding_names_the_missing_client_group() {
    let workspace = Workspace::new();
    workspace.write("ns.yaml", &namespace("ns1"));
    let file = workspace.write(
        "bindings.yaml",
        "apiVersion: gridline.dev/v1alpha1\nkind: TopicSpace\nmetadata: {name: everything}\nspec: {namespaceRef: {name: ns1}, topicTemplates: ['#']}\n---\napiVersion: gridline.dev/v1alpha1\nkind: PermissionBinding\nmetadata: {name: ghosts-publish}\nspec: {namespaceRef: {name: ns1}, clientGroupName: ghosts, topicSpaceName: everything, permission: Publisher}\n",
    );
    let output = run_check(&workspace.manifests());
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    let expected = format!(
        "{}: PermissionBinding default/ghosts-publish: spec.clientGroupName: ClientGroup 'ghosts' not found",
        file.display()
    );
    assert!(text.contains(&expected), "{text}");
}
