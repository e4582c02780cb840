//! Shared by the MQTT benches: start the real data plane (release build) on a manifests
//! folder, and a raw-TCP MQTT client with hand-written frames, so the load tool costs the
//! machine as little as possible. Each bench uses a part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `gridline-dataplane run` on `manifests`, killed when dropped.
pub struct Dataplane {
    child: Child,
    pub mqtt: SocketAddr,
}

impl Dataplane {
    /// Start it and wait (up to `timeout`) for its `mqtt listening on` line, printed once the
    /// configuration is served.
    pub fn start(manifests: &Path, data_dir: &Path, timeout: Duration) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gridline-dataplane"))
            .arg("run")
            .arg("--manifests")
            .arg(manifests)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--http-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0"])
            .args(["--mqtts-addr", "127.0.0.1:0"])
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the data plane");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("mqtt listening on ") {
                    let _ = tx.send(addr.parse::<SocketAddr>().expect("mqtt address"));
                }
            }
        });
        let mqtt = rx
            .recv_timeout(timeout)
            .expect("no `mqtt listening on` line in time");
        Self { child, mqtt }
    }

    /// Resident memory of the process, MiB.
    pub fn rss_mib(&self) -> f64 {
        rss_mib(self.child.id())
    }
}

/// Resident memory of process `pid`, MiB (0 when it cannot be read).
pub fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// MQTT frames, by hand (3.1.1 unless a version is given)

pub fn remaining_length(out: &mut Vec<u8>, mut len: usize) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
}

pub fn string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// CONNECT, clean start, with a username; `version` 4 (3.1.1) or 5.
pub fn connect(version: u8, client_id: &str, username: &str, keep_alive: u16) -> Vec<u8> {
    let mut body = Vec::new();
    string(&mut body, "MQTT");
    body.push(version);
    body.push(0b1000_0010); // username, clean start
    body.extend_from_slice(&keep_alive.to_be_bytes());
    if version == 5 {
        body.push(0); // no properties
    }
    string(&mut body, client_id);
    string(&mut body, username);
    let mut frame = vec![0x10];
    remaining_length(&mut frame, body.len());
    frame.extend_from_slice(&body);
    frame
}

pub fn subscribe(version: u8, filter: &str, qos: u8) -> Vec<u8> {
    let mut body = 1u16.to_be_bytes().to_vec();
    if version == 5 {
        body.push(0);
    }
    string(&mut body, filter);
    body.push(qos);
    let mut frame = vec![0x82];
    remaining_length(&mut frame, body.len());
    frame.extend_from_slice(&body);
    frame
}

/// A 3.1.1 QoS 0 PUBLISH of `payload` on `topic`.
pub fn publish_qos0(out: &mut Vec<u8>, topic: &str, payload: &[u8]) {
    out.push(0x30);
    remaining_length(out, 2 + topic.len() + payload.len());
    string(out, topic);
    out.extend_from_slice(payload);
}

/// One complete packet at the front of `buf`: (first byte, body start, total length).
pub fn frame(buf: &[u8]) -> Option<(u8, usize, usize)> {
    let mut len = 0usize;
    let mut shift = 0;
    for i in 1..5 {
        let byte = *buf.get(i)?;
        len |= ((byte & 0x7f) as usize) << shift;
        shift += 7;
        if byte & 0x80 == 0 {
            let start = i + 1;
            return (buf.len() >= start + len).then_some((buf[0], start, start + len));
        }
    }
    panic!("malformed remaining length from the broker");
}

/// Read packets until one of type `kind` arrives; its body.
pub async fn expect(
    stream: &mut TcpStream,
    kind: u8,
    buf: &mut Vec<u8>,
) -> anyhow::Result<Vec<u8>> {
    loop {
        if let Some((first, start, end)) = frame(buf) {
            let body = buf[start..end].to_vec();
            buf.drain(..end);
            if first >> 4 == kind {
                return Ok(body);
            }
            continue;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A 3.1.1 session: CONNECT as `username`, then SUBSCRIBE to `filter` when given.
pub async fn session(
    addr: SocketAddr,
    client_id: &str,
    username: &str,
    filter: Option<(&str, u8)>,
) -> anyhow::Result<TcpStream> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut buf = Vec::new();
    stream
        .write_all(&connect(4, client_id, username, 1000))
        .await?;
    let connack = expect(&mut stream, 2, &mut buf).await?;
    anyhow::ensure!(
        connack.get(1) == Some(&0),
        "CONNACK refused for {username}: {:#04x}",
        connack.get(1).copied().unwrap_or(0xff)
    );
    if let Some((filter, qos)) = filter {
        stream.write_all(&subscribe(4, filter, qos)).await?;
        let suback = expect(&mut stream, 9, &mut buf).await?;
        let granted = suback.last().copied().unwrap_or(0x80);
        anyhow::ensure!(
            granted < 0x80,
            "SUBACK refused for {filter}: {granted:#04x}"
        );
    }
    Ok(stream)
}

/// Count the PUBLISH packets arriving on `stream` until `until`; how many.
pub async fn count_publishes(mut stream: TcpStream, until: Instant) -> u64 {
    let mut buf = vec![0u8; 256 * 1024];
    let mut filled = 0;
    let mut count = 0;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return count;
        }
        let n = match tokio::time::timeout(left, stream.read(&mut buf[filled..])).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return count,
            Ok(Ok(n)) => n,
        };
        filled += n;
        let mut at = 0;
        while let Some((first, _, end)) = frame(&buf[at..filled]) {
            if first >> 4 == 3 {
                count += 1;
            }
            at += end;
        }
        buf.copy_within(at..filled, 0);
        filled -= at;
    }
}
