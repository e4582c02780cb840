//! The official Python SDK (`azure-eventgrid`), unchanged, against a local data plane:
//! publish a single event and a batch, receive, acknowledge, release (with and without
//! delay), reject (to dead-letter), renew locks, and the failures it must see; over plain
//! HTTP, and over HTTPS trusting only the test CA (and refused without it).

mod support;

use std::path::Path;
use std::process::{Command, Output};
use support::python::{python_with_sdk, sdk_tests_dir};
use support::sdk::{HttpsPlane, KEY, SECOND_KEY, TRUST_VARIABLES, Transport, manifests};
use support::*;

/// Run `script` of `tests/sdk` with the SDK's python, pointed at `endpoint`; `ca_file` is
/// passed as `GRIDLINE_CA`. Nothing else adds trust: the variables through which the
/// environment could are removed.
async fn run_sdk_tests(script: &str, endpoint: String, ca_file: Option<&Path>) -> Output {
    let python = tokio::task::spawn_blocking(python_with_sdk)
        .await
        .expect("venv task");
    let mut command = Command::new(python);
    command
        .arg(sdk_tests_dir().join(script))
        .env("GRIDLINE_ENDPOINT", endpoint)
        .env("GRIDLINE_KEY", KEY)
        .env("GRIDLINE_SECOND_KEY", SECOND_KEY);
    for variable in TRUST_VARIABLES {
        command.env_remove(variable);
    }
    if let Some(ca_file) = ca_file {
        command.env("GRIDLINE_CA", ca_file);
    }
    tokio::task::spawn_blocking(move || command.output().expect("run the SDK tests"))
        .await
        .expect("sdk test task")
}

fn report(output: &Output, dataplane: &Dataplane) -> String {
    format!(
        "{}{}\n--- data plane logs ---\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        dataplane.logs()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_python_sdk_publishes_receives_and_settles_unchanged() {
    let workspace = Workspace::new();
    workspace.write("sdk.yaml", &manifests(Transport::Http));
    let dataplane = workspace.start(&[]);
    dataplane.wait_ready().await;

    let output = run_sdk_tests("test_sdk.py", format!("http://{}", dataplane.addr), None).await;
    let report = report(&output, &dataplane);
    assert!(output.status.success(), "{report}");
    assert!(report.contains("OK"), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_python_sdk_works_over_https_trusting_only_the_test_ca_and_fails_without_it() {
    let plane = HttpsPlane::start().await;

    let output = run_sdk_tests(
        "test_sdk_https.py",
        plane.endpoint.clone(),
        Some(&plane.ca_file),
    )
    .await;
    let report = report(&output, &plane.dataplane);
    assert!(output.status.success(), "{report}");
    assert!(report.contains("OK"), "{report}");
    // The suite refuses to run over http://, and the untrusted-certificate test must have run.
    let passed = |test: &str| {
        report
            .lines()
            .any(|line| line.starts_with(&format!("{test} (")) && line.ends_with("... ok"))
    };
    assert!(
        passed("test_the_endpoint_is_https_and_a_ca_is_given"),
        "{report}"
    );
    assert!(
        passed("test_without_the_test_ca_the_certificate_is_refused"),
        "{report}"
    );
}
