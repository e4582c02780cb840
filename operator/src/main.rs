//! `gridline-operator`: the command line. Everything it runs lives in the library.

use clap::{Args, Parser, Subcommand};
use gridline_operator::options::{DEFAULT_DATAPLANE_IMAGE, Options, WatchScope};
use gridline_operator::run::{LeaderElection, RunConfig};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

/// The Gridline operator: runs each Gridline Namespace as a StatefulSet and reports every
/// object's Accepted and Ready conditions.
#[derive(Parser, Debug)]
#[command(name = "gridline-operator", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the controllers, in-cluster or against the current KUBECONFIG context.
    Run(RunArgs),
}

#[derive(Args, Debug)]
struct RunArgs {
    /// A Kubernetes namespace to watch (repeatable, or comma-separated in the environment).
    /// None: every namespace.
    #[arg(
        long = "watch-namespace",
        value_name = "NS",
        env = "GRIDLINE_WATCH_NAMESPACES",
        value_delimiter = ','
    )]
    watch_namespaces: Vec<String>,
    /// Address of the HTTP listener serving GET /metrics, /healthz and /readyz.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Log filter (`info`, `debug`, `gridline_operator=debug,kube=warn`, ...). Logs go to stderr.
    #[arg(long, value_name = "FILTER", env = "RUST_LOG", default_value = "info")]
    log_level: String,
    /// The data-plane image the StatefulSets run.
    #[arg(long, value_name = "IMAGE", env = "GRIDLINE_DATAPLANE_IMAGE", default_value = DEFAULT_DATAPLANE_IMAGE)]
    dataplane_image: String,
    /// The data-plane image's pull policy.
    #[arg(long, value_name = "POLICY", default_value = "IfNotPresent",
          value_parser = ["Always", "IfNotPresent", "Never"])]
    dataplane_image_pull_policy: String,
    /// Namespace of the leader Lease (default: the client's namespace, the pod's own in-cluster).
    #[arg(long, value_name = "NS", env = "POD_NAMESPACE")]
    leader_election_namespace: Option<String>,
    /// Name of the leader Lease.
    #[arg(long, value_name = "NAME", default_value = "gridline-operator")]
    lease_name: String,
    /// Lead at once without a Lease (local runs with a single replica).
    #[arg(long)]
    no_leader_election: bool,
}

impl RunArgs {
    fn into_config(self) -> RunConfig {
        RunConfig {
            scope: WatchScope::from_flags(&self.watch_namespaces),
            metrics_addr: self.metrics_addr,
            options: Options {
                dataplane_image: self.dataplane_image,
                dataplane_image_pull_policy: self.dataplane_image_pull_policy,
                ..Options::default()
            },
            leader_election: (!self.no_leader_election).then_some(LeaderElection {
                namespace: self.leader_election_namespace,
                lease_name: self.lease_name,
            }),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Command::Run(args) = cli.command;
    init_logging(&args.log_level);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(gridline_operator::run::run(args.into_config())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|error| {
        eprintln!("invalid --log-level '{filter}' ({error}); using 'info'");
        EnvFilter::new("info")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> RunArgs {
        let mut argv = vec!["gridline-operator", "run"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).expect("valid arguments").command {
            Command::Run(args) => args,
        }
    }

    #[test]
    fn defaults_follow_the_contract() {
        let config = parse(&[]).into_config();
        assert_eq!(config.scope, WatchScope::All);
        assert_eq!(config.metrics_addr, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(config.options.dataplane_image, DEFAULT_DATAPLANE_IMAGE);
        assert_eq!(config.options.dataplane_image_pull_policy, "IfNotPresent");
        let election = config.leader_election.expect("leader election on");
        assert_eq!(election.lease_name, "gridline-operator");
    }

    #[test]
    fn watch_namespaces_repeat_and_leader_election_can_be_off() {
        let config = parse(&[
            "--watch-namespace",
            "b",
            "--watch-namespace",
            "a,c",
            "--no-leader-election",
            "--dataplane-image-pull-policy",
            "Always",
        ])
        .into_config();
        assert_eq!(
            config.scope,
            WatchScope::Namespaces(vec!["a".into(), "b".into(), "c".into()])
        );
        assert!(config.leader_election.is_none());
        assert_eq!(config.options.dataplane_image_pull_policy, "Always");
    }

    #[test]
    fn an_unknown_pull_policy_is_refused() {
        let argv = [
            "gridline-operator",
            "run",
            "--dataplane-image-pull-policy",
            "Sometimes",
        ];
        assert!(Cli::try_parse_from(argv).is_err());
    }
}
