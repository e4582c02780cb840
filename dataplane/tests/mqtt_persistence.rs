//! Persistent sessions and retained messages across a broker restart (the process killed
//! and started again on the same data dir).

mod support;

use std::time::Duration;
use support::Workspace;
use support::mqtt::{access, finish, namespace, publish, subscribe};

/// Longer than the persister's interval: what was published is on disk.
const WRITTEN: Duration = Duration::from_millis(800);

fn workspace() -> Workspace {
    let workspace = Workspace::new();
    workspace.write("namespace.yaml", &namespace("dev"));
    workspace.write("access.yaml", &access("dev"));
    workspace
}

#[test]
fn a_persistent_subscriber_gets_the_qos1_messages_published_while_the_broker_restarted() {
    for (version, extra) in [("mqttv311", &[][..]), ("mqttv5", &["-x", "3600"][..])] {
        let workspace = workspace();
        let id = format!("keeper-{version}");
        let persistent = |more: &[&'static str]| {
            let mut args = vec!["-c", "-i", id.as_str(), "-q", "1", "-t", "lab/keep"];
            args.extend_from_slice(extra);
            args.extend_from_slice(more);
            args.into_iter().map(str::to_string).collect::<Vec<_>>()
        };
        let dataplane = workspace.start(&[]);
        let addr = dataplane.mqtt_addr();
        // Subscribe, then leave at once (-E): the session stays.
        let args = persistent(&["-E"]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (_, stderr) = finish(subscribe(addr, version, "dashboard", &args));
        assert!(stderr.is_empty(), "{version}: {stderr}");
        for n in ["one", "two"] {
            let out = publish(
                addr,
                version,
                "sensor-1",
                &["-t", "lab/keep", "-m", n, "-q", "1"],
            );
            assert!(out.status.success(), "{out:?}");
        }
        std::thread::sleep(WRITTEN);
        drop(dataplane); // SIGKILL

        let dataplane = workspace.start(&[]);
        let addr = dataplane.mqtt_addr();
        let args = persistent(&["-C", "2", "-W", "5"]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (stdout, stderr) = finish(subscribe(addr, version, "dashboard", &args));
        assert_eq!(
            stdout,
            "lab/keep one\nlab/keep two\n",
            "{version}: {stderr}\n{}",
            dataplane.logs()
        );
    }
}

#[test]
fn a_clean_session_is_not_kept_across_a_restart() {
    let workspace = workspace();
    let dataplane = workspace.start(&[]);
    let addr = dataplane.mqtt_addr();
    finish(subscribe(
        addr,
        "mqttv311",
        "dashboard",
        &["-i", "fleeting", "-q", "1", "-t", "lab/keep", "-E"],
    ));
    publish(
        addr,
        "mqttv311",
        "sensor-1",
        &["-t", "lab/keep", "-m", "x", "-q", "1"],
    );
    std::thread::sleep(WRITTEN);
    drop(dataplane);
    let dataplane = workspace.start(&[]);
    let addr = dataplane.mqtt_addr();
    let (stdout, _) = finish(subscribe(
        addr,
        "mqttv311",
        "dashboard",
        &[
            "-c",
            "-i",
            "fleeting",
            "-q",
            "1",
            "-t",
            "lab/other",
            "-W",
            "1",
        ],
    ));
    assert_eq!(stdout, "");
}

#[test]
fn retained_messages_survive_a_restart() {
    let workspace = workspace();
    let dataplane = workspace.start(&[]);
    let addr = dataplane.mqtt_addr();
    let out = publish(
        addr,
        "mqttv5",
        "sensor-1",
        &["-t", "lab/state", "-m", "on", "-r", "-q", "1"],
    );
    assert!(out.status.success());
    std::thread::sleep(WRITTEN);
    drop(dataplane);
    let dataplane = workspace.start(&[]);
    let addr = dataplane.mqtt_addr();
    let (stdout, _) = finish(subscribe(
        addr,
        "mqttv311",
        "dashboard",
        &["-t", "lab/#", "-C", "1", "-W", "3"],
    ));
    assert_eq!(stdout.trim(), "lab/state on");
}
