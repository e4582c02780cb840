//! CONNECT with client-certificate authentication, end to end: the real binary (release
//! build) with its TLS listener and a client CA registered, and a load tool on tokio that
//! opens TLS connections presenting client certificates, sends an MQTT 3.1.1 CONNECT, waits
//! for the CONNACK, sends DISCONNECT and waits for the broker to close. Every handshake is a
//! full one (client-side TLS resumption off), so each connection pays the certificate
//! exchange, the CertificateVerify signature and the chain verification at CONNECT. The
//! load tool shares the machine's cores with the broker; to cost it as little as possible it
//! does not verify the broker's certificate (the broker's work is what is measured), and the
//! broker's own CPU time per connection is read from `/proc` so that the figure does not
//! depend on what else runs on the machine.
//!
//! `cargo bench -p gridline-dataplane --bench mqtt_connect -- [--connections N]
//! [--concurrency N] [--seconds N] [--tls13-only] [--fresh-certificates]`
//! (defaults: 20,000 connections, 64 at a time, at most 60 s). Sources rotate over
//! 127.0.0.1-127.0.0.64 so that closed connections waiting in TIME_WAIT never exhaust the
//! ephemeral ports of one address. Prints connections/s and CONNACK latency percentiles.
//! By default connections cycle over 50 certificates, as devices reconnect with theirs (the
//! broker remembers verified chains); `--fresh-certificates` gives every connection a
//! certificate of its own, so every chain is verified.

mod support;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, ServerName};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::Process;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Clients (`bench-<n>`); connections cycle over them.
const IDENTITIES: usize = 50;
const SOURCE_ADDRESSES: u8 = 64;

struct Options {
    connections: u64,
    concurrency: usize,
    seconds: u64,
    tls13_only: bool,
    fresh_certificates: bool,
}

fn options() -> Options {
    let mut options = Options {
        connections: 20_000,
        concurrency: 64,
        seconds: 60,
        tls13_only: false,
        fresh_certificates: false,
    };
    let mut args = support::Args::from_env();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--connections" => options.connections = args.number(&arg),
            "--concurrency" => options.concurrency = args.number(&arg),
            "--seconds" => options.seconds = args.number(&arg),
            "--tls13-only" => options.tls13_only = true,
            "--fresh-certificates" => options.fresh_certificates = true,
            other => panic!("unknown option {other}"),
        }
    }
    options
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA")
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

/// The Namespace (TLS listener, client CA, no development identity), its Secrets, a topic
/// space and the `IDENTITIES` Clients `bench-<n>` (subject CN scheme).
fn manifests(server_chain: &str, server_key: &str, client_ca: &str) -> String {
    let mut yaml = format!(
        "apiVersion: gridline.dev/v1alpha1
kind: Namespace
metadata: {{name: bench}}
spec:
  tls: {{secretName: broker-tls}}
  caCertificates:
    - {{name: bench-ca, secretName: bench-ca}}
  topicSpacesConfiguration:
    state: Enabled
    maximumClientSessionsPerAuthenticationName: 100
  listeners:
    mqttTls: {{enabled: true, port: 8883}}
    https: {{enabled: false, port: 443}}
    http: {{port: 8080}}
---
apiVersion: v1
kind: Secret
metadata: {{name: broker-tls}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{}  tls.key: |
{}---
apiVersion: v1
kind: Secret
metadata: {{name: bench-ca}}
stringData:
  ca.crt: |
{}",
        indent(server_chain),
        indent(server_key),
        indent(client_ca)
    );
    for n in 0..IDENTITIES {
        yaml.push_str(&format!(
            "---\napiVersion: gridline.dev/v1alpha1\nkind: Client\nmetadata: {{name: bench-{n}}}\nspec: {{namespaceRef: {{name: bench}}}}\n"
        ));
    }
    yaml
}

/// A raw MQTT 3.1.1 CONNECT (clean session, keep-alive 60) as `user` with `client_id`.
fn connect_packet(user: &str, client_id: &str) -> Vec<u8> {
    let mut body = b"\x00\x04MQTT\x04\x82\x00\x3c".to_vec();
    for field in [client_id, user] {
        body.extend_from_slice(&(field.len() as u16).to_be_bytes());
        body.extend_from_slice(field.as_bytes());
    }
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend_from_slice(&body);
    packet
}

struct Client {
    name: String,
    config: Arc<rustls::ClientConfig>,
}

/// The load tool's side of the server check: none (see the module comment), except that the
/// handshake signature is still verified, as a real client's would be.
#[derive(Debug)]
struct TrustTheBroker(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for TrustTheBroker {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// User plus system CPU time of process `pid` (Linux `/proc`), if readable.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = u64::try_from(per_second).ok().filter(|t| *t > 0)?;
    Some(Duration::from_secs_f64(ticks as f64 / per_second as f64))
}

/// One connection: TCP from `source`, TLS with the client's certificate, CONNECT, CONNACK,
/// DISCONNECT, the broker's close. The CONNACK latency from the first SYN, or why it failed.
async fn one(
    addr: SocketAddr,
    source: IpAddr,
    client: &Client,
    client_id: &str,
) -> Result<Duration, String> {
    let started = Instant::now();
    let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket
        .bind(SocketAddr::new(source, 0))
        .map_err(|e| e.to_string())?;
    let tcp = socket.connect(addr).await.map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let connector = tokio_rustls::TlsConnector::from(client.config.clone());
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tls.write_all(&connect_packet(&client.name, client_id))
        .await
        .map_err(|e| e.to_string())?;
    let mut connack = [0u8; 4];
    tls.read_exact(&mut connack)
        .await
        .map_err(|e| format!("no CONNACK: {e}"))?;
    let latency = started.elapsed();
    if connack != [0x20, 2, 0, 0] {
        return Err(format!("refused: {connack:?}"));
    }
    tls.write_all(&[0xE0, 0x00])
        .await
        .map_err(|e| e.to_string())?;
    // The broker closes after DISCONNECT: wait for it, so the TIME_WAIT is its.
    let mut rest = [0u8; 64];
    while let Ok(n) = tls.read(&mut rest).await {
        if n == 0 {
            break;
        }
    }
    Ok(latency)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn main() {
    let options = options();
    // The broker's certificate, and a client CA with one certificate per Client.
    let server_ca = ca("bench server CA");
    let server_key = KeyPair::generate().expect("key");
    let mut server_params =
        CertificateParams::new(vec!["localhost".to_string()]).expect("server params");
    server_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let server = server_params
        .signed_by(&server_key, &server_ca)
        .expect("server certificate");
    let client_ca = ca("bench client CA");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let trust = Arc::new(TrustTheBroker(provider.clone()));
    let versions: &[&rustls::SupportedProtocolVersion] = if options.tls13_only {
        &[&rustls::version::TLS13]
    } else {
        rustls::DEFAULT_VERSIONS
    };
    let certificates = if options.fresh_certificates {
        usize::try_from(options.connections).unwrap_or(usize::MAX)
    } else {
        IDENTITIES
    };
    let clients: Vec<Client> = (0..certificates)
        .map(|n| {
            let name = format!("bench-{}", n % IDENTITIES);
            let key = KeyPair::generate().expect("key");
            let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
            params.distinguished_name.push(DnType::CommonName, &name);
            let certificate = params
                .signed_by(&key, &client_ca)
                .expect("client certificate");
            let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(versions)
                .expect("versions")
                .dangerous()
                .with_custom_certificate_verifier(trust.clone())
                .with_client_auth_cert(
                    vec![certificate.der().clone()],
                    PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).expect("key"),
                )
                .expect("client config");
            config.resumption = rustls::client::Resumption::disabled();
            Client {
                name,
                config: Arc::new(config),
            }
        })
        .collect();

    let mut dataplane = Process::spawn_on(
        &manifests(&server.pem(), &server_key.serialize_pem(), &client_ca.pem()),
        "error",
        &["--mqtts-addr", "127.0.0.1:0"],
    );
    let addr = dataplane.announced("mqtts", Duration::from_secs(60));

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "# mqtt_connect: {cores} cores, {} connections, {} at a time, at most {} s, {}, {} client certificates (ECDSA P-256) for {IDENTITIES} Clients, resumption off",
        options.connections,
        options.concurrency,
        options.seconds,
        if options.tls13_only {
            "TLS 1.3"
        } else {
            "TLS 1.3 preferred"
        },
        clients.len()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let clients = Arc::new(clients);
    let next = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(options.seconds);
    let broker_pid = dataplane.pid();
    let cpu_before = cpu_time(broker_pid);
    let started = Instant::now();
    let latencies = runtime.block_on(async {
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..options.concurrency {
            let clients = clients.clone();
            let next = next.clone();
            let failures = failures.clone();
            let total = options.connections;
            workers.spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= total || Instant::now() >= deadline {
                        return latencies;
                    }
                    let client = &clients[n as usize % clients.len()];
                    let source = IpAddr::V4(Ipv4Addr::new(
                        127,
                        0,
                        0,
                        1 + (n % u64::from(SOURCE_ADDRESSES)) as u8,
                    ));
                    match one(addr, source, client, &format!("c{n}")).await {
                        Ok(latency) => latencies.push(latency),
                        Err(error) => {
                            if failures.fetch_add(1, Ordering::Relaxed) < 5 {
                                eprintln!("connection {n}: {error}");
                            }
                        }
                    }
                }
            });
        }
        let mut all = Vec::new();
        while let Some(done) = workers.join_next().await {
            all.extend(done.expect("worker"));
        }
        all
    });
    let elapsed = started.elapsed();
    let broker_cpu = cpu_before
        .zip(cpu_time(broker_pid))
        .map(|(before, after)| after.saturating_sub(before));
    drop(dataplane);
    let mut latencies = latencies;
    latencies.sort();
    let completed = latencies.len();
    println!(
        "connections: {completed} accepted, {} failed in {:.2} s",
        failures.load(Ordering::Relaxed),
        elapsed.as_secs_f64()
    );
    println!(
        "connections/s: {:.0}",
        completed as f64 / elapsed.as_secs_f64()
    );
    if let Some(cpu) = broker_cpu.filter(|_| completed > 0) {
        let per_connection = cpu / u32::try_from(completed).unwrap_or(u32::MAX);
        println!(
            "broker CPU: {:.2} s, {:.0} µs per connection ({:.0} connections/s per core of broker time)",
            cpu.as_secs_f64(),
            per_connection.as_secs_f64() * 1e6,
            1.0 / per_connection.as_secs_f64().max(1e-9)
        );
    }
    println!(
        "CONNACK latency (TCP connect to CONNACK): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&latencies, 0.50).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        percentile(&latencies, 1.0).as_secs_f64() * 1000.0
    );
}
