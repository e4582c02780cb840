//! `gridline-operator run`: serve health and metrics, campaign for the leader Lease, and
//! while leading run the Namespace controller and the status pass.

use crate::controller::status::{self, StatusContext};
use crate::controller::{Stores, children};
use crate::leader;
use crate::metrics::{self, Metrics};
use crate::options::{Options, WatchScope};
use anyhow::Context as _;
use futures::StreamExt;
use gridline_kubernetes::{Dirty, LeaseConfig, LeaseLoop};
use kube::Client;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use tracing::{error, info, warn};

/// Everything `run` needs, from the command line.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub scope: WatchScope,
    pub metrics_addr: SocketAddr,
    pub options: Options,
    /// `None`: lead at once (`--no-leader-election`).
    pub leader_election: Option<LeaderElection>,
}

#[derive(Clone, Debug)]
pub struct LeaderElection {
    /// Default: the client's namespace (the pod's own, in-cluster).
    pub namespace: Option<String>,
    pub lease_name: String,
}

pub async fn run(config: RunConfig) -> anyhow::Result<()> {
    let metrics = Metrics::new();
    // Health first, so that probes answer while the rest starts.
    let listener = tokio::net::TcpListener::bind(config.metrics_addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.metrics_addr))?;
    info!(addr = %listener.local_addr()?, "serving /metrics, /healthz and /readyz");
    let http = tokio::spawn(axum::serve(listener, metrics::router(metrics.clone())).into_future());

    let client = Client::try_default()
        .await
        .context("cannot reach the Kubernetes API (no in-cluster config or kubeconfig)")?;
    let identity = leader::identity();
    let lease = config.leader_election.as_ref().map(|election| {
        let namespace = election
            .namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string());
        LeaseConfig::new(namespace, election.lease_name.clone(), identity.clone())
    });
    // Without an election the sender must outlive the controllers: a dropped sender would
    // read as leadership lost.
    let mut _unelected_leader = None;
    let (election, mut leading) = match &lease {
        Some(lease) => {
            info!(lease = %format!("{}/{}", lease.namespace, lease.name), %identity, "campaigning for the leader Lease");
            let mut lease_loop = LeaseLoop::new(client.clone(), lease.clone());
            let leading = lease_loop.holding();
            (
                Some(tokio::spawn(async move { lease_loop.run().await })),
                leading,
            )
        }
        None => {
            info!("leader election disabled: leading at once");
            let (leading_tx, leading) = watch::channel(true);
            _unelected_leader = Some(leading_tx);
            (None, leading)
        }
    };
    metrics.set_ready();

    tokio::select! {
        _ = leading.wait_for(|l| *l) => {}
        () = shutdown_signal() => return Ok(()),
    }
    metrics.leader.set(1);

    let (stop_tx, stop_rx) = watch::channel(false);
    let children_ctx =
        children::Context::new(client.clone(), config.options.clone(), metrics.clone());
    let scope = config.scope.clone();
    let mut children_task = tokio::spawn(async move {
        let mut stop = stop_rx;
        children::run(children_ctx, &scope, async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await;
    });

    let dirty = Arc::new(Dirty::default());
    let (stores, events) = Stores::watch(&client, &config.scope, dirty.clone());
    let stores = Arc::new(stores);
    let pump = tokio::spawn(events.for_each(|()| async {}));
    let status_ctx = StatusContext::new(client.clone(), metrics.clone(), identity);
    let status_stores = stores.clone();
    let status_task = tokio::spawn(async move {
        if status_stores.wait_until_ready().await.is_err() {
            error!("a watch ended before its first list; the status pass cannot start");
            return;
        }
        info!("stores synced; status pass started");
        status::run(status_ctx, status_stores, dirty).await;
    });

    let result = tokio::select! {
        _ = leading.wait_for(|l| !*l) => {
            metrics.leader.set(0);
            Err(anyhow::anyhow!("lost the leader Lease; exiting so that a fresh candidate takes over"))
        }
        () = shutdown_signal() => {
            info!("shutting down");
            Ok(())
        }
        ended = &mut children_task => Err(anyhow::anyhow!("the Namespace controller stopped: {ended:?}")),
        ended = http => Err(anyhow::anyhow!("the metrics listener stopped: {ended:?}")),
    };
    let _ = stop_tx.send(true);
    status_task.abort();
    pump.abort();
    if let Some(election) = election {
        election.abort();
    }
    if result.is_ok() {
        // Let in-flight reconciles finish, briefly.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), children_task).await;
        if let Some(lease) = lease
            && let Err(error) = LeaseLoop::new(client, lease).release().await
        {
            warn!(%error, "could not release the leader Lease; it will expire");
        }
    }
    result
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
