//! Where a Namespace's data plane answers: the addresses given in the environment, or a
//! `kubectl port-forward` to its client Service.

use crate::E2e;
use anyhow::{Context, bail};
use std::process::Stdio;
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
                let forward =
                    PortForward::start(&self.k8s_namespace, &service, self.timeout()).await?;
                Endpoints {
                    http: http.unwrap_or(format!("http://127.0.0.1:{}", forward.http_port)),
                    mqtt: mqtt.unwrap_or(format!("127.0.0.1:{}", forward.mqtt_port)),
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

/// A running `kubectl port-forward` to a Service's HTTP and MQTT ports, on local ports it
/// picked. Killed when dropped.
struct PortForward {
    http_port: u16,
    mqtt_port: u16,
    _child: Child,
}

impl PortForward {
    /// Starts the forward, retrying while the Service has no running pod yet.
    async fn start(namespace: &str, service: &str, timeout: Duration) -> anyhow::Result<Self> {
        let deadline = Instant::now() + timeout;
        loop {
            match Self::try_start(namespace, service).await {
                Ok(forward) => return Ok(forward),
                Err(error) if Instant::now() < deadline => {
                    println!("port-forward to {namespace}/{service} not yet: {error:#}");
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn try_start(namespace: &str, service: &str) -> anyhow::Result<Self> {
        let mut child = Command::new("kubectl")
            .args([
                "port-forward",
                "--namespace",
                namespace,
                "--address",
                "127.0.0.1",
            ])
            .arg(format!("service/{service}"))
            // `:PORT` lets kubectl pick a free local port, printed on stdout.
            .arg(format!(":{SERVICE_HTTP_PORT}"))
            .arg(format!(":{SERVICE_MQTT_PORT}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context(
                "cannot run kubectl (needed to port-forward; or set GRIDLINE_E2E_HTTP/MQTT)",
            )?;
        let stdout = child.stdout.take().context("kubectl has no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let (mut http_port, mut mqtt_port) = (None, None);
        let read = async {
            while let Some(line) = lines.next_line().await? {
                // `Forwarding from 127.0.0.1:41234 -> 8080`
                if let Some((local, remote)) = parse_forwarding(&line) {
                    match remote {
                        SERVICE_HTTP_PORT => http_port = Some(local),
                        SERVICE_MQTT_PORT => mqtt_port = Some(local),
                        _ => {}
                    }
                }
                if http_port.is_some() && mqtt_port.is_some() {
                    return anyhow::Ok(());
                }
            }
            bail!("kubectl port-forward ended before forwarding")
        };
        let outcome = tokio::time::timeout(Duration::from_secs(30), read).await;
        if !matches!(outcome, Ok(Ok(()))) {
            let _ = child.start_kill();
            let output = child.wait_with_output().await?;
            bail!(
                "kubectl port-forward service/{service}: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        // kubectl keeps printing a line per connection; drain stdout so it never blocks.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        match (http_port, mqtt_port) {
            (Some(http_port), Some(mqtt_port)) => Ok(Self {
                http_port,
                mqtt_port,
                _child: child,
            }),
            _ => bail!("kubectl port-forward did not report both ports"),
        }
    }
}

fn parse_forwarding(line: &str) -> Option<(u16, u16)> {
    let rest = line.strip_prefix("Forwarding from 127.0.0.1:")?;
    let (local, remote) = rest.split_once(" -> ")?;
    Some((local.trim().parse().ok()?, remote.trim().parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::parse_forwarding;

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
