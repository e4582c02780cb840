//! `gridline-dataplane`: the command line. Everything it runs lives in the library.

use clap::{Args, Parser, Subcommand};
use gridline_dataplane::cluster::link::tls::LOCAL_DIR;
use gridline_dataplane::cluster::options::{PeerAddrError, default_peer_listen};
use gridline_dataplane::cluster::timing::ClusterTiming;
use gridline_dataplane::cluster::{ClusterMembership, ClusterOptions};
use gridline_dataplane::config::NamespaceSelection;
use gridline_dataplane::delivery::TimeScale;
use gridline_dataplane::pod::PodIdentity;
use gridline_dataplane::server::{RunOptions, SourceOptions};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tracing_subscriber::EnvFilter;

/// The Gridline data plane: Event Grid namespaces (MQTT broker, CloudEvents API) on one pod.
#[derive(Parser, Debug)]
#[command(name = "gridline-dataplane", version)]
struct Cli {
    /// Log filter (`info`, `debug`, `gridline_dataplane=debug,kube=warn`, ...). Overrides
    /// RUST_LOG; without either, `info`. Logs go to stderr.
    #[arg(long, global = true)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
// Parsed once at start-up: the size of `Run` costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Serve a Gridline Namespace.
    Run(RunArgs),
    /// Parse, validate and compile a folder of manifests; print every problem. Exits 1 when
    /// there is any.
    Check {
        /// The folder (searched recursively for *.yaml / *.yml) or a single file.
        dir: PathBuf,
    },
}

#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("source").required(true).args(["manifests", "kubernetes"]))]
struct RunArgs {
    /// Local mode: read the configuration from this folder of manifests (or file), and reload
    /// it when it changes.
    #[arg(long, value_name = "DIR")]
    manifests: Option<PathBuf>,
    /// Read the configuration from the Kubernetes API (in-cluster, or the local kubeconfig).
    #[arg(long, requires = "namespace")]
    kubernetes: bool,
    /// With --kubernetes: the Kubernetes namespace to watch (default: the client's, which is
    /// the pod's own namespace in-cluster).
    #[arg(
        long,
        value_name = "NS",
        requires = "kubernetes",
        env = "GRIDLINE_K8S_NAMESPACE"
    )]
    k8s_namespace: Option<String>,
    /// The Gridline Namespace to serve (`name` or `k8s-namespace/name`). Default: the only
    /// one there is.
    #[arg(long, value_name = "NAME")]
    namespace: Option<String>,
    /// Where the event store keeps its data.
    #[arg(long, value_name = "DIR", default_value = "./.data")]
    data_dir: PathBuf,
    /// This pod's name, a DNS-1123 label (the operator sets POD_NAME from the pod's
    /// `metadata.name`). The owner number in the lock tokens this pod issues comes from it:
    /// the StatefulSet ordinal of `<name>-N`, 0 for `local`, else a hash of the name.
    #[arg(long, value_name = "NAME", env = "POD_NAME", default_value = "local", value_parser = pod_identity)]
    pod_name: PodIdentity,
    /// Address of the HTTP listener (health, metrics, the Event Grid API). Port 0 picks one;
    /// the address is printed as `http listening on ADDR`.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    http_addr: SocketAddr,
    /// Address of the plaintext MQTT listener.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:1883")]
    mqtt_addr: SocketAddr,
    /// Address of the MQTT TLS listener (opened when the Namespace enables `listeners.mqttTls`).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8883")]
    mqtts_addr: SocketAddr,
    /// Address of the HTTPS listener (Event Grid's 443): the Event Grid API, health, metrics
    /// and MQTT over WebSockets (`wss://<addr>/mqtt`), with the Namespace's certificate (or a
    /// custom domain's, by SNI). Opened when the Namespace enables `listeners.https` and has a
    /// certificate; announced as `https listening on ADDR`. `--wss-addr` is an older name.
    #[arg(
        long,
        visible_alias = "wss-addr",
        value_name = "ADDR",
        default_value = "127.0.0.1:8443"
    )]
    https_addr: SocketAddr,
    /// MQTT connections each MQTT listener (TCP, TLS, WebSockets, WSS) holds at most; beyond
    /// it a new socket is closed at once and counted
    /// (`gridline_mqtt_connects_total{listener,result="over_limit"}`). Default: 100,000, or
    /// the open-file limit less 1,024 if that is lower (all listeners together stay under it).
    #[arg(long, value_name = "N", env = "GRIDLINE_MAX_CONNECTIONS_PER_LISTENER", value_parser = clap::value_parser!(u32).range(1..))]
    max_connections_per_listener: Option<u32>,
    /// Connections each HTTP listener (HTTP, HTTPS) holds at most; beyond it a new socket is
    /// closed at once and counted (`gridline_http_connections_refused_total`). Default:
    /// 10,000, or a quarter of the open-file limit less 1,024 if that is lower.
    #[arg(long, value_name = "N", env = "GRIDLINE_MAX_HTTP_CONNECTIONS_PER_LISTENER", value_parser = clap::value_parser!(u32).range(1..))]
    max_http_connections_per_listener: Option<u32>,
    /// Seconds an HTTP client has to send a request's headers, counted from the connection's
    /// start or the end of its previous response (so also how long an idle keep-alive
    /// connection is kept).
    #[arg(long, value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    http_header_read_timeout: u64,
    /// Seconds an HTTP client has to send a request's body, from its headers.
    #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    http_body_read_timeout: u64,
    /// Test-only: multiply push delivery's retry delays by this factor in (0, 1], so that
    /// tests run the whole retry schedule in seconds.
    #[arg(long, hide = true, value_name = "F", env = "GRIDLINE_TEST_TIME_SCALE", value_parser = time_scale)]
    test_time_scale: Option<TimeScale>,
    /// Run as one pod of a cluster: the address other pods dial to reach this one, as
    /// `host:port` (in Kubernetes the pod's name under the peers Service). Port 0: the port
    /// the peer listener is given.
    #[arg(long, value_name = "HOST:PORT", env = "GRIDLINE_PEER_ADDR")]
    peer_addr: Option<String>,
    /// Local mode with --peer-addr: processes sharing this folder form one Namespace (a
    /// lease file per pod under DIR/members; each needs its own --pod-name and --data-dir).
    #[arg(long, value_name = "DIR")]
    cluster_dir: Option<PathBuf>,
    /// Where the peer link listens. Default: the peer address if it is an IP address and
    /// port, else 0.0.0.0 on its port.
    #[arg(long, value_name = "ADDR", requires = "peer_addr")]
    peer_listen: Option<SocketAddr>,
    /// The peer links' mutual-TLS material (`ca.crt`, `tls.crt`, `tls.key`). Default in local
    /// mode: DIR/tls under --cluster-dir, generated there; needed with --kubernetes.
    #[arg(long, value_name = "DIR", env = "GRIDLINE_PEER_TLS_DIR")]
    peer_tls_dir: Option<PathBuf>,
    /// Test-only: the membership lease in milliseconds (renewed every third), so that tests
    /// see a dead pod drop out in seconds.
    #[arg(long, hide = true, value_name = "MS", env = "GRIDLINE_TEST_MEMBER_LEASE_MS", value_parser = clap::value_parser!(u64).range(300..))]
    test_member_lease_ms: Option<u64>,
}

/// Cluster flags that do not fit together.
#[derive(Debug, thiserror::Error)]
enum ClusterFlagError {
    #[error("--cluster-dir needs --peer-addr HOST:PORT (the address the other pods dial)")]
    DirWithoutPeerAddr,
    #[error(
        "--peer-addr with --manifests: local mode needs --cluster-dir (the folder the pods share)"
    )]
    LocalWithoutDir,
    #[error("--cluster-dir is for local mode; with --kubernetes the pods hold Leases")]
    DirWithKubernetes,
    #[error(
        "--peer-addr with --kubernetes needs --peer-tls-dir (GRIDLINE_PEER_TLS_DIR): the peer CA and certificate"
    )]
    KubernetesWithoutTls,
    #[error("--peer-addr: {0}")]
    PeerAddr(#[from] PeerAddrError),
}

fn pod_identity(name: &str) -> Result<PodIdentity, String> {
    PodIdentity::new(name).map_err(|error| error.to_string())
}

fn time_scale(text: &str) -> Result<TimeScale, String> {
    let factor: f64 = text
        .parse()
        .map_err(|_| format!("'{text}' is not a number"))?;
    TimeScale::new(factor)
}

impl RunArgs {
    /// The cluster this process joins, if any, from the cluster flags.
    fn cluster(&self) -> Result<Option<ClusterOptions>, ClusterFlagError> {
        let Some(peer_addr) = self.peer_addr.clone() else {
            return match self.cluster_dir {
                Some(_) => Err(ClusterFlagError::DirWithoutPeerAddr),
                None => Ok(None),
            };
        };
        let peer_listen = match self.peer_listen {
            Some(listen) => listen,
            None => default_peer_listen(&peer_addr)?,
        };
        let (membership, peer_tls_dir) = match (self.kubernetes, &self.cluster_dir) {
            (true, Some(_)) => return Err(ClusterFlagError::DirWithKubernetes),
            (false, None) => return Err(ClusterFlagError::LocalWithoutDir),
            (false, Some(dir)) => (
                ClusterMembership::Directory(dir.clone()),
                self.peer_tls_dir
                    .clone()
                    .unwrap_or_else(|| dir.join(LOCAL_DIR)),
            ),
            (true, None) => {
                let tls = self
                    .peer_tls_dir
                    .clone()
                    .ok_or(ClusterFlagError::KubernetesWithoutTls)?;
                // `--namespace` is required with --kubernetes; `k8s-namespace/name` names
                // the same Namespace, and the Lease label holds the name.
                let namespace = self.namespace.clone().unwrap_or_default();
                let namespace = match namespace.split_once('/') {
                    Some((_, name)) => name.to_string(),
                    None => namespace,
                };
                (ClusterMembership::Kubernetes { namespace }, tls)
            }
        };
        let mut timing = ClusterTiming::default();
        if let Some(millis) = self.test_member_lease_ms {
            timing.member_lease = Duration::from_millis(millis);
        }
        Ok(Some(ClusterOptions {
            peer_addr,
            peer_listen,
            peer_tls_dir,
            membership,
            timing,
            fixed_timing: self.test_member_lease_ms.is_some(),
        }))
    }

    fn into_options(self) -> Result<RunOptions, ClusterFlagError> {
        let cluster = self.cluster()?;
        let source = match self.manifests {
            Some(path) => SourceOptions::Manifests(path),
            None => SourceOptions::Kubernetes {
                k8s_namespace: self.k8s_namespace,
            },
        };
        Ok(RunOptions {
            source,
            selection: NamespaceSelection::from_option(self.namespace),
            data_dir: self.data_dir,
            pod: self.pod_name,
            http_addr: self.http_addr,
            mqtt_addr: self.mqtt_addr,
            mqtts_addr: self.mqtts_addr,
            https_addr: self.https_addr,
            max_connections_per_listener: self.max_connections_per_listener.map(|n| n as usize),
            max_http_connections_per_listener: self
                .max_http_connections_per_listener
                .map(|n| n as usize),
            http_header_read_timeout: Duration::from_secs(self.http_header_read_timeout),
            http_body_read_timeout: Duration::from_secs(self.http_body_read_timeout),
            test_time_scale: self.test_time_scale.unwrap_or_default(),
            cluster,
        })
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_level.as_deref());
    match cli.command {
        Command::Check { dir } => {
            let report = gridline_dataplane::check::check(&dir);
            print!("{report}");
            if report.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Run(args) => {
            let options = match args.into_options() {
                Ok(options) => options,
                Err(error) => {
                    use clap::CommandFactory;
                    Cli::command()
                        .error(clap::error::ErrorKind::ArgumentConflict, error)
                        .exit();
                }
            };
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(error) => {
                    tracing::error!(%error, "cannot start the async runtime");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(gridline_dataplane::server::run(options)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!("{error:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_logging(level: Option<&str>) {
    let filter = match level {
        Some(level) => EnvFilter::new(level),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in files and log collectors.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(extra: &[&str]) -> Result<RunArgs, clap::Error> {
        parse(&["--manifests", "m"], extra)
    }

    fn parse(source: &[&str], extra: &[&str]) -> Result<RunArgs, clap::Error> {
        let args = ["gridline-dataplane", "run"];
        let cli = Cli::try_parse_from(args.iter().chain(source).chain(extra))?;
        match cli.command {
            Command::Run(args) => Ok(args),
            Command::Check { .. } => unreachable!("parsed a run command"),
        }
    }

    fn cluster(source: &[&str], extra: &[&str]) -> Result<Option<ClusterOptions>, String> {
        parse(source, extra)
            .map_err(|e| e.to_string())?
            .cluster()
            .map_err(|e| e.to_string())
    }

    const KUBERNETES: [&str; 3] = ["--kubernetes", "--namespace", "shop/orders"];

    #[test]
    fn without_peer_addr_there_is_no_cluster() {
        assert_eq!(cluster(&["--manifests", "m"], &[]), Ok(None));
    }

    #[test]
    fn a_cluster_dir_and_a_peer_addr_make_a_local_cluster() {
        let options = cluster(
            &["--manifests", "m"],
            &["--cluster-dir", "/c", "--peer-addr", "127.0.0.1:7001"],
        )
        .unwrap()
        .unwrap();
        assert_eq!(options.peer_addr, "127.0.0.1:7001");
        assert_eq!(options.peer_listen, "127.0.0.1:7001".parse().unwrap());
        assert_eq!(options.peer_tls_dir, PathBuf::from("/c/peer-tls"));
        assert_eq!(
            options.membership,
            ClusterMembership::Directory(PathBuf::from("/c"))
        );
        assert_eq!(options.timing, ClusterTiming::default());
    }

    #[test]
    fn listen_address_tls_dir_and_test_lease_can_be_given() {
        let options = cluster(
            &["--manifests", "m"],
            &[
                "--cluster-dir",
                "/c",
                "--peer-addr",
                "pod-0.local:7001",
                "--peer-listen",
                "127.0.0.1:7101",
                "--peer-tls-dir",
                "/tls",
                "--test-member-lease-ms",
                "1500",
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(options.peer_listen, "127.0.0.1:7101".parse().unwrap());
        assert_eq!(options.peer_tls_dir, PathBuf::from("/tls"));
        assert_eq!(options.timing.member_lease, Duration::from_millis(1500));
        let default_listen = cluster(
            &["--manifests", "m"],
            &["--cluster-dir", "/c", "--peer-addr", "pod-0.local:7001"],
        )
        .unwrap()
        .unwrap();
        assert_eq!(default_listen.peer_listen, "0.0.0.0:7001".parse().unwrap());
    }

    #[test]
    fn a_cluster_dir_without_a_peer_addr_is_refused() {
        let error = cluster(&["--manifests", "m"], &["--cluster-dir", "/c"]).unwrap_err();
        assert!(error.contains("--cluster-dir needs --peer-addr"), "{error}");
    }

    #[test]
    fn a_peer_addr_in_local_mode_without_a_cluster_dir_is_refused() {
        let error = cluster(&["--manifests", "m"], &["--peer-addr", "127.0.0.1:7001"]).unwrap_err();
        assert!(error.contains("local mode needs --cluster-dir"), "{error}");
    }

    #[test]
    fn a_peer_addr_that_is_not_host_port_is_refused() {
        let error = cluster(
            &["--manifests", "m"],
            &["--cluster-dir", "/c", "--peer-addr", "pod-0"],
        )
        .unwrap_err();
        assert!(error.contains("not host:port"), "{error}");
    }

    #[test]
    fn with_kubernetes_the_pods_hold_leases_labelled_with_the_namespace_name() {
        let options = cluster(
            &KUBERNETES,
            &[
                "--peer-addr",
                "orders-0.peers:7946",
                "--peer-tls-dir",
                "/tls",
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            options.membership,
            ClusterMembership::Kubernetes {
                namespace: "orders".into()
            }
        );
        assert_eq!(options.peer_listen, "0.0.0.0:7946".parse().unwrap());
        let error = cluster(&KUBERNETES, &["--peer-addr", "orders-0.peers:7946"]).unwrap_err();
        assert!(error.contains("--peer-tls-dir"), "{error}");
        let error = cluster(
            &KUBERNETES,
            &[
                "--peer-addr",
                "orders-0.peers:7946",
                "--peer-tls-dir",
                "/tls",
                "--cluster-dir",
                "/c",
            ],
        )
        .unwrap_err();
        assert!(error.contains("--cluster-dir is for local mode"), "{error}");
    }

    #[test]
    fn peer_listen_without_peer_addr_is_refused_by_the_parser() {
        assert!(run_args(&["--peer-listen", "127.0.0.1:7001"]).is_err());
    }

    #[test]
    fn pod_name_sets_the_pod_identity() {
        let args = run_args(&["--pod-name", "orders-gridline-2"]).unwrap();
        assert_eq!(args.pod_name.name(), "orders-gridline-2");
        assert_eq!(args.pod_name.owner(), 2);
    }

    #[test]
    fn a_pod_name_that_is_not_a_dns_label_is_refused_with_the_reason() {
        let error = run_args(&["--pod-name", "Orders_0"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("--pod-name"), "{error}");
        assert!(error.contains("DNS-1123 label"), "{error}");
    }
}
