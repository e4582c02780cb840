//! Running a phase of `tests/paho/test_broker.py` (paho-mqtt) against a data plane.

use super::Dataplane;
use super::python::{paho_tests_dir, python_with_paho};
use std::net::SocketAddr;
use std::process::Command;

/// Run `phase` of the paho script with GRIDLINE_MQTT = `mqtt` and `env`; panics naming the
/// failing cases, with the script's output and the data plane's logs.
pub async fn run_phase(
    dataplane: &Dataplane,
    mqtt: SocketAddr,
    phase: &str,
    env: &[(&str, String)],
) {
    let python = tokio::task::spawn_blocking(python_with_paho)
        .await
        .expect("venv task");
    let mut command = Command::new(python);
    command
        .arg(paho_tests_dir().join("test_broker.py"))
        .arg(phase)
        .env("GRIDLINE_MQTT", mqtt.to_string());
    for (name, value) in env {
        command.env(name, value);
    }
    let output = tokio::task::spawn_blocking(move || command.output().expect("run python"))
        .await
        .expect("python task");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let failing: Vec<&str> = stdout
        .lines()
        .filter_map(|line| line.strip_prefix("FAIL "))
        .collect();
    assert!(
        output.status.success() && failing.is_empty(),
        "paho phase `{phase}`: failing cases: {}\n{stdout}{}\n--- data plane logs ---\n{}",
        failing.join(", "),
        String::from_utf8_lossy(&output.stderr),
        dataplane.logs()
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("PASS ")),
        "paho phase `{phase}`: no case ran\n{stdout}"
    );
}
