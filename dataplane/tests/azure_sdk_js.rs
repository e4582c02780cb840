//! The official JavaScript SDK (`@azure/eventgrid-namespaces`, pinned in
//! `tests/sdk-js/package-lock.json`), unchanged, against the data plane's HTTPS listener: send
//! one event and an array, receive, acknowledge, release, reject, renew locks, with an
//! `AzureKeyCredential` and the test CA as the only addition to Node's trust
//! (`NODE_EXTRA_CA_CERTS`), never `allowInsecureConnection`. And what fails: HTTPS without the
//! CA, and plain HTTP, which the SDK refuses to send a key over unless told to.
//!
//! Needs Node.js 20+ and npm; without them the tests fail saying so (CI installs the packages
//! with `npm ci --prefix dataplane/tests/sdk-js`, and the tests run `npm ci` when
//! `node_modules` does not match the lock file).

mod support;

use std::process::{Command, Output};
use support::sdk::{HttpsPlane, KEY, TRUST_VARIABLES, node_with_sdk};

enum Trust {
    /// `NODE_EXTRA_CA_CERTS` names the test CA.
    TestCa,
    /// Node's own roots only.
    Default,
}

/// `node test_sdk.mjs <mode>` against `plane`, with nothing from the environment that changes
/// what Node trusts beyond `trust`.
async fn run_sdk_tests(plane: &HttpsPlane, mode: &str, trust: Trust) -> Output {
    let dir = tokio::task::spawn_blocking(node_with_sdk)
        .await
        .expect("npm task");
    let mut command = Command::new("node");
    command
        .arg("test_sdk.mjs")
        .arg(mode)
        .current_dir(dir)
        .env("GRIDLINE_ENDPOINT", &plane.endpoint)
        .env("GRIDLINE_HTTP_ENDPOINT", plane.http_endpoint())
        .env("GRIDLINE_KEY", KEY)
        .env("GRIDLINE_TOPIC", "orders")
        .env("GRIDLINE_SUBSCRIPTION", "all-orders")
        .env("GRIDLINE_DEAD_LETTER_TOPIC", "dead-letters")
        .env("GRIDLINE_DEAD_LETTER_SUBSCRIPTION", "dead-letter-inbox");
    for variable in TRUST_VARIABLES {
        command.env_remove(variable);
    }
    if let Trust::TestCa = trust {
        command.env("NODE_EXTRA_CA_CERTS", &plane.ca_file);
    }
    tokio::task::spawn_blocking(move || command.output().expect("run node test_sdk.mjs"))
        .await
        .expect("node task")
}

/// Asserts `node` passed every test of `mode`, showing its output and the data plane's logs
/// otherwise.
fn assert_all_passed(output: &Output, plane: &HttpsPlane, mode: &str, tests: usize) {
    let report = format!(
        "{}{}\n--- data plane logs ---\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        plane.dataplane.logs()
    );
    assert!(output.status.success(), "{report}");
    // The closing line, so a script that ran fewer tests than it should cannot pass.
    assert!(
        report.contains(&format!("{mode}: {tests} passed, 0 failed")),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_javascript_sdk_sends_receives_and_settles_over_https_trusting_only_the_test_ca()
 {
    let plane = HttpsPlane::start().await;
    let output = run_sdk_tests(&plane, "operations", Trust::TestCa).await;
    assert_all_passed(&output, &plane, "operations", 7);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_javascript_sdk_refuses_an_untrusted_certificate_and_plain_http_without_the_opt_in() {
    let plane = HttpsPlane::start().await;
    let output = run_sdk_tests(&plane, "refusals", Trust::Default).await;
    assert_all_passed(&output, &plane, "refusals", 4);
}
