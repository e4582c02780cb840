//! Running a phase of `tests/paho/test_broker.py` (paho-mqtt) against a data plane.

use super::Dataplane;
use super::python::{paho_tests_dir, python_with_paho};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// The script run by `python` for `phase`, GRIDLINE_MQTT = `mqtt`, and `env`.
fn command(python: PathBuf, mqtt: SocketAddr, phase: &str, env: &[(&str, String)]) -> Command {
    let mut command = Command::new(python);
    command
        .arg(paho_tests_dir().join("test_broker.py"))
        .arg(phase)
        .env("GRIDLINE_MQTT", mqtt.to_string());
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

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
    let mut command = command(python, mqtt, phase, env);
    let output = tokio::task::spawn_blocking(move || command.output().expect("run python"))
        .await
        .expect("python task");
    report(
        dataplane,
        phase,
        &String::from_utf8_lossy(&output.stdout),
        &output,
    );
}

/// Run `phase`, and once the script prints `line`, call `then` (which may stop the data
/// plane); panics like [`run_phase`]. Blocking.
pub fn run_phase_with(
    dataplane: &mut Dataplane,
    mqtt: SocketAddr,
    phase: &str,
    line: &str,
    then: impl FnOnce(&mut Dataplane),
) {
    let mut child = command(python_with_paho(), mqtt, phase, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut seen = String::new();
    let mut reached = false;
    let mut text = String::new();
    while stdout.read_line(&mut text).unwrap_or(0) > 0 {
        seen.push_str(&text);
        if text.trim_end() == line {
            reached = true;
            break;
        }
        text.clear();
    }
    if reached {
        then(dataplane);
    }
    let _ = stdout.read_to_string(&mut seen);
    let output = child.wait_with_output().expect("python output");
    assert!(
        reached,
        "paho phase `{phase}` never printed {line}:\n{seen}"
    );
    report(dataplane, phase, &seen, &output);
}

fn report(dataplane: &Dataplane, phase: &str, stdout: &str, output: &Output) {
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

/// What `tests/paho/connect_auth.py` printed for one authenticated CONNECT: the CONNACK's
/// reason code as paho-mqtt read it, or None (and the output) when it got none.
pub fn connect_auth(args: &[&str]) -> Result<u8, String> {
    let output = Command::new(python_with_paho())
        .arg(paho_tests_dir().join("connect_auth.py"))
        .args(args)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("CONNACK 0x"))
        .and_then(|code| u8::from_str_radix(code.trim(), 16).ok())
        .ok_or_else(|| format!("{stdout}\n{}", String::from_utf8_lossy(&output.stderr)))
}
