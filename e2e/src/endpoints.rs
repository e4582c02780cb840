//! Where a Namespace's data plane answers: the addresses given in the environment, or a
//! `kubectl port-forward` to its client Service.

use crate::E2e;
use anyhow::{Context, bail};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The data plane's ports behind the client Service `<name>-gridline` (the operator's contract).
const SERVICE_HTTP_PORT: u16 = 8080;
const SERVICE_MQTT_PORT: u16 = 1883;

/// The HTTP base URL and MQTT address of one Namespace's data plane. Holds the port-forward
/// (if any) open while it lives.
pub struct Endpoints {
    /// `http://host:port`, no trailing slash.
    pub http: String,
    /// `host:port`.
    pub mqtt: String,
    _forward: Option<PortForward>,
}

impl E2e {
    /// The endpoints of Gridline Namespace `name`, once its data plane answers `/readyz`.
    pub async fn endpoints(&self, name: &str) -> anyhow::Result<Endpoints> {
        let given_http = crate::endpoint_env("GRIDLINE_E2E_HTTP");
        let given_mqtt = crate::endpoint_env("GRIDLINE_E2E_MQTT");
        let endpoints = match (given_http, given_mqtt) {
            (Some(http), Some(mqtt)) => Endpoints {
                http: http.trim_end_matches('/').to_string(),
                mqtt,
                _forward: None,
            },
            (http, mqtt) => {
                let service = format!("{name}-gridline");
                let forward = PortForward::start(
                    &self.k8s_namespace,
                    &service,
                    &[SERVICE_HTTP_PORT, SERVICE_MQTT_PORT],
                    self.timeout(),
                )
                .await?;
                let [http_port, mqtt_port] = forward.local_ports[..] else {
                    bail!("kubectl port-forward did not report both ports");
                };
                Endpoints {
                    http: http.unwrap_or(format!("http://127.0.0.1:{http_port}")),
                    mqtt: mqtt.unwrap_or(format!("127.0.0.1:{mqtt_port}")),
                    _forward: Some(forward),
                }
            }
        };
        let ready = format!("{}/readyz", endpoints.http);
        let client = reqwest::Client::new();
        self.eventually(
            &format!("the data plane at {} is ready", endpoints.http),
            self.timeout(),
            || async {
                let response = client.get(&ready).send().await?;
                Ok(response.status().is_success().then_some(()))
            },
        )
        .await?;
        Ok(endpoints)
    }
}

/// A running `kubectl port-forward` to some ports of a Service, each on a local port kubectl
/// picked. Killed when dropped.
pub struct PortForward {
    /// The local ports, in the order of the remote ports asked for.
    pub local_ports: Vec<u16>,
    _child: Child,
}

impl PortForward {
    /// Forwards `remote_ports` of Service `service`, retrying while it has no running pod.
    pub async fn start(
        namespace: &str,
        service: &str,
        remote_ports: &[u16],
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let deadline = Instant::now() + timeout;
        loop {
            match Self::try_start("kubectl", namespace, service, remote_ports).await {
                Ok(forward) => return Ok(forward),
                Err(error) if Instant::now() < deadline => {
                    println!("port-forward to {namespace}/{service} not yet: {error:#}");
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn try_start(
        kubectl: &str,
        namespace: &str,
        service: &str,
        remote_ports: &[u16],
    ) -> anyhow::Result<Self> {
        let mut child = Command::new(kubectl)
            .args([
                "port-forward",
                "--namespace",
                namespace,
                "--address",
                "127.0.0.1",
            ])
            .arg(format!("service/{service}"))
            // `:PORT` lets kubectl pick a free local port, printed on stdout.
            .args(remote_ports.iter().map(|port| format!(":{port}")))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context(
                "cannot run kubectl (needed to port-forward; or set GRIDLINE_E2E_HTTP/MQTT)",
            )?;
        // kubectl prints a line per connection (stdout) and per failed one (stderr) for as
        // long as it runs: both are drained so that it never blocks on a full pipe, and the
        // last complaints are kept for the error message.
        let complaints = Arc::new(Mutex::new(Vec::<String>::new()));
        if let Some(stderr) = child.stderr.take() {
            let complaints = complaints.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Ok(mut kept) = complaints.lock() {
                        kept.push(line);
                        let excess = kept.len().saturating_sub(10);
                        kept.drain(..excess);
                    }
                }
            });
        }
        let stdout = child.stdout.take().context("kubectl has no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut local_ports: Vec<Option<u16>> = vec![None; remote_ports.len()];
        let read = async {
            while let Some(line) = lines.next_line().await? {
                // `Forwarding from 127.0.0.1:41234 -> 8080`
                if let Some((local, remote)) = parse_forwarding(&line)
                    && let Some(index) = remote_ports.iter().position(|p| *p == remote)
                {
                    local_ports[index] = Some(local);
                }
                if local_ports.iter().all(Option::is_some) {
                    return anyhow::Ok(());
                }
            }
            bail!("kubectl port-forward ended before forwarding")
        };
        let outcome = tokio::time::timeout(Duration::from_secs(30), read).await;
        if !matches!(outcome, Ok(Ok(()))) {
            let _ = child.start_kill();
            let _ = child.wait().await;
            // Give the stderr reader a moment to take kubectl's last words.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let said = complaints.lock().map(|k| k.join(" / ")).unwrap_or_default();
            bail!("kubectl port-forward service/{service}: {said}");
        }
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            local_ports: local_ports.into_iter().flatten().collect(),
            _child: child,
        })
    }
}

fn parse_forwarding(line: &str) -> Option<(u16, u16)> {
    let rest = line.strip_prefix("Forwarding from 127.0.0.1:")?;
    let (local, remote) = rest.split_once(" -> ")?;
    Some((local.trim().parse().ok()?, remote.trim().parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::{PortForward, parse_forwarding};
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    /// A stand-in for kubectl: a shell script with `body`, in a fresh temporary folder.
    /// Held by each test that writes a script and runs it: a test forking while another has
    /// the script open for writing would make that exec fail with "Text file busy" (ETXTBSY;
    /// the forked child holds the write descriptor until its own exec).
    static SCRIPTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    fn fake_kubectl(name: &str, body: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gridline-e2e-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("kubectl");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    #[tokio::test]
    async fn the_local_ports_come_back_in_the_order_of_the_remote_ports() {
        let _serial = SCRIPTS.lock().await;
        // kubectl prints the IPv6 forward too, and in the order it likes.
        let kubectl = fake_kubectl(
            "forwarding",
            "echo 'Forwarding from 127.0.0.1:41883 -> 1883'\n\
             echo 'Forwarding from [::1]:41883 -> 1883'\n\
             echo 'Forwarding from 127.0.0.1:48080 -> 8080'\n\
             exec sleep 30",
        );
        let forward = PortForward::try_start(
            kubectl.to_str().expect("utf-8 path"),
            "ns",
            "dev-gridline",
            &[8080, 1883],
        )
        .await
        .expect("forwarding");
        assert_eq!(forward.local_ports, [48080, 41883]);
    }

    #[tokio::test]
    async fn a_forward_that_fails_reports_what_kubectl_said() {
        let _serial = SCRIPTS.lock().await;
        let kubectl = fake_kubectl(
            "failing",
            "echo 'error: unable to forward port because pod is not running' >&2\nexit 1",
        );
        let error = PortForward::try_start(
            kubectl.to_str().expect("utf-8 path"),
            "ns",
            "dev-gridline",
            &[8080, 1883],
        )
        .await
        .err()
        .expect("kubectl failed");
        assert!(
            format!("{error:#}").contains("pod is not running"),
            "{error:#}"
        );
    }

    #[test]
    fn kubectl_forwarding_lines_give_the_local_and_remote_ports() {
        assert_eq!(
            parse_forwarding("Forwarding from 127.0.0.1:41234 -> 8080"),
            Some((41234, 8080))
        );
        assert_eq!(
            parse_forwarding("Forwarding from [::1]:41234 -> 8080"),
            None
        );
        assert_eq!(parse_forwarding("Handling connection for 41234"), None);
    }
}
