//! `gridline-dataplane run`: wire a configuration source to the Snapshot and the listeners,
//! and run until told to stop.

use crate::cluster::{ClusterMembership, ClusterOptions};
use crate::config::kubernetes::KubernetesSource;
use crate::config::local::LocalSource;
use crate::config::{ConfigSource, LoadedConfig, NamespaceSelection};
use crate::delivery::{PushManager, PushTuning, StatusWriter, TimeScale};
use crate::descriptors::ConnectionBudget;
use crate::http::listener::{HttpLimits, HttpServer, Listener, ListenerMetrics, TlsSource};
use crate::http::{self, AppState};
use crate::metrics::Metrics;
use crate::mqtt;
use crate::node::Node;
use crate::pod::PodIdentity;
use crate::shutdown::Stopper;
use crate::snapshot::{Applier, ReloadPolicy, SharedSnapshot};
use crate::store::{EventStore, Queues, StoreOptions};
use crate::tls::ServerTls;
use anyhow::{Context, bail};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tracing::{error, info};

/// Where the configuration comes from.
#[derive(Clone, Debug)]
pub enum SourceOptions {
    /// A folder (or file) of manifests, watched.
    Manifests(PathBuf),
    /// A Kubernetes namespace (`None`: the client's default, the pod's own in-cluster).
    Kubernetes { k8s_namespace: Option<String> },
}

/// Everything `run` needs.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub source: SourceOptions,
    pub selection: NamespaceSelection,
    pub data_dir: PathBuf,
    /// Who this process is among the Namespace's pods (`--pod-name`).
    pub pod: PodIdentity,
    pub http_addr: SocketAddr,
    pub mqtt_addr: SocketAddr,
    pub mqtts_addr: SocketAddr,
    /// HTTPS: the Event Grid API and MQTT over WebSockets at `/mqtt`, opened when the
    /// Namespace enables `listeners.https` and has a certificate.
    pub https_addr: SocketAddr,
    /// MQTT connections per MQTT listener (None: 100,000 within the descriptor budget).
    pub max_connections_per_listener: Option<usize>,
    /// Connections per HTTP listener (None: 10,000 within a quarter of the budget).
    pub max_http_connections_per_listener: Option<usize>,
    /// Header-read (and keep-alive idle) and body-read timeouts of the HTTP listeners.
    pub http_header_read_timeout: std::time::Duration,
    pub http_body_read_timeout: std::time::Duration,
    /// Test-only: multiplies push delivery's retry delays (1 in production).
    pub test_time_scale: TimeScale,
    /// Run as one pod of a cluster (`--peer-addr`): membership, and later the peer links.
    pub cluster: Option<ClusterOptions>,
}

/// Run the data plane until SIGINT or SIGTERM, or until a part of it fails.
pub async fn run(options: RunOptions) -> anyhow::Result<()> {
    if let SourceOptions::Manifests(path) = &options.source
        && !path.exists()
    {
        bail!("manifests {}: no such file or folder", path.display());
    }
    std::fs::create_dir_all(&options.data_dir)
        .with_context(|| format!("cannot create data dir {}", options.data_dir.display()))?;
    info!(data_dir = %options.data_dir.display(), "data dir ready");
    info!(pod = %options.pod, owner = options.pod.owner(), "pod identity");

    let budget = ConnectionBudget::from_process_limit();
    let mqtt_cap = capped(
        "MQTT",
        options.max_connections_per_listener,
        budget.mqtt_listener_cap(DEFAULT_MQTT_CONNECTIONS),
        budget.total(),
    );
    let http_cap = capped(
        "HTTP",
        options.max_http_connections_per_listener,
        budget.http_listener_cap(DEFAULT_HTTP_CONNECTIONS),
        budget.total(),
    );
    info!(
        mqtt_per_listener = mqtt_cap,
        http_per_listener = http_cap,
        "connection caps"
    );
    let metrics = Arc::new(Metrics::new().context("cannot register metrics")?);
    let snapshot = SharedSnapshot::new();
    // Recovered before anything is served: a publish is acknowledged only once durable, so
    // the store must be whole before the listener opens.
    let store = EventStore::open_as(
        StoreOptions {
            data_dir: options.data_dir.clone(),
            metrics: metrics.clone(),
        },
        &options.pod,
    )
    .await
    .context("cannot open the event store")?;
    info!("event store open");
    let push = PushManager::start(
        store.clone(),
        metrics.registry(),
        PushTuning {
            time_scale: options.test_time_scale,
            ..PushTuning::default()
        },
    )?;

    let (stop_tx, stop_rx) = Stopper::new();
    let (source, policy) = match &options.source {
        SourceOptions::Manifests(path) => {
            info!(manifests = %path.display(), "local mode");
            let mut local = LocalSource::new(path).ignoring(&options.data_dir);
            if let Some(ClusterMembership::Directory(dir)) =
                options.cluster.as_ref().map(|c| &c.membership)
            {
                // Lease renewals are not configuration changes.
                local = local.ignoring(dir);
            }
            (ConfigSource::Local(local), ReloadPolicy::AllOrNothing)
        }
        SourceOptions::Kubernetes { k8s_namespace } => {
            let source = KubernetesSource::connect(k8s_namespace.clone()).await?;
            (ConfigSource::Kubernetes(source), ReloadPolicy::ServeValid)
        }
    };
    // After the store (a pod serves only once whole) and before the listeners: a pod name
    // that another live process holds is refused before anything opens.
    let mut node = match &options.cluster {
        Some(cluster) => {
            Some(Node::join(cluster, &options.pod, &source, metrics.registry()).await?)
        }
        None => None,
    };
    if let ConfigSource::Kubernetes(source) = &source {
        // Push subscriptions' delivery conditions go into their status (in local mode they
        // are only served at /status/eventsubscriptions); among several pods, one writes.
        let mut writer = StatusWriter::new(
            source.client(),
            source.k8s_namespace(),
            push.status(),
            options.pod.name().to_string(),
        );
        if let Some(node) = &node {
            writer = writer.only_while(node.writer());
        }
        tokio::spawn(writer.run(stop_rx.clone()));
    }
    let queues = match &node {
        Some(node) => Queues::clustered(store.clone(), &options.pod, node.partitions.clone()),
        None => Queues::local(store.clone()),
    };

    let listener = TcpListener::bind(options.http_addr)
        .await
        .with_context(|| format!("cannot listen on {}", options.http_addr))?;
    let http_addr = listener.local_addr()?;
    announce_http(http_addr)?;
    let listener_metrics =
        ListenerMetrics::register(metrics.registry()).context("cannot register HTTP metrics")?;

    let state = AppState::new(snapshot.clone(), metrics.clone(), queues)
        .context("cannot register the API metrics")?
        .with_shutdown(stop_rx.clone())
        .with_push_status(push.status());
    // The broker exists before the listeners: the HTTP listener carries MQTT over WebSockets.
    let broker = mqtt::broker(
        snapshot.clone(),
        metrics.registry(),
        &options.data_dir,
        Some(store.clone()),
        mqtt_cap,
        &options.pod,
        node.as_ref().map(|node| node.mqtt.clone()),
    )
    .context("cannot register the MQTT metrics")?;
    if let Some(node) = &mut node {
        node.serve(broker.clone(), store.clone(), push.clone());
    }
    // WebSockets on the HTTP listeners are bounded, and ended at shutdown, with the others.
    let websockets = mqtt::WebSocketConnections {
        plaintext: mqtt::Connections::new(mqtt_cap, mqtt::authorize::Listener::WebSocket)
            .within(Some(budget.clone())),
        tls: mqtt::Connections::new(mqtt_cap, mqtt::authorize::Listener::SecureWebSocket)
            .within(Some(budget.clone())),
    };
    let router =
        http::router(state).merge(mqtt::websocket::routes(broker.clone(), websockets.clone()));
    // One TLS configuration for every TLS listener: a rotated certificate reaches all of them.
    let tls = Arc::new(ServerTls::default());
    let http_limits = HttpLimits {
        max_connections: http_cap,
        header_read_timeout: options.http_header_read_timeout,
        body_read_timeout: options.http_body_read_timeout,
        ..HttpLimits::default()
    };
    let plain_http = HttpServer {
        router: router.clone(),
        listener: Listener::Http,
        limits: http_limits,
        metrics: listener_metrics.clone(),
        tls: None,
        budget: Some(budget.clone()),
    };
    let https = HttpServer {
        router,
        listener: Listener::Https,
        limits: http_limits,
        metrics: listener_metrics,
        tls: Some(TlsSource {
            tls: tls.clone(),
            snapshot: snapshot.clone(),
        }),
        budget: Some(budget.clone()),
    };
    // Ticks at every applied Snapshot, for the HTTPS listener to follow the Namespace.
    let (applied_tx, applied) = watch::channel(0u64);
    let mut http_task = tokio::spawn(plain_http.serve(listener, stop_rx.clone()));
    let mut https_task = tokio::spawn(http::listener::follow_https(
        https,
        options.https_addr,
        applied,
        stop_rx.clone(),
    ));
    let mqtt_addrs = mqtt::Addrs {
        plaintext: options.mqtt_addr,
        tls: options.mqtts_addr,
    };
    let mut mqtt_task = tokio::spawn(mqtt::run_local(
        broker.clone(),
        mqtt_addrs,
        tls,
        websockets,
        Some(budget),
        stop_rx.clone(),
    ));

    // A small bound: a source blocks rather than queue loads nobody will look at (each load
    // supersedes the one before).
    let (updates_tx, updates) = mpsc::channel(1);
    let mut source_task = tokio::spawn(source.run(updates_tx));
    // The store learns of every Snapshot (the first included) before requests can name it.
    let applier = Applier::new(snapshot, metrics, options.selection.clone(), policy)
        .on_apply({
            let store = store.clone();
            move |snapshot| store.apply_snapshot(snapshot)
        })
        // After the store: dispatchers read the subscriptions it serves.
        .on_apply({
            let push = push.clone();
            move |snapshot| push.apply_snapshot(snapshot)
        })
        .on_apply(move |_| applied_tx.send_modify(|n| *n += 1));
    let applier = match &node {
        Some(node) => applier.on_apply(node.timing_follower()),
        None => applier,
    };
    let mut apply_task = tokio::spawn(apply_updates(applier, updates));

    let result = tokio::select! {
        signal = shutdown_signal() => {
            info!(signal, "shutting down");
            Ok(())
        }
        ended = &mut apply_task => flatten(ended, "applying configuration"),
        ended = &mut source_task => match flatten(ended, "the configuration source") {
            Ok(()) => Err(anyhow::anyhow!("the configuration source stopped")),
            Err(error) => Err(error),
        },
        ended = &mut mqtt_task => match flatten(ended, "the MQTT listener") {
            Ok(()) => Err(anyhow::anyhow!("the MQTT listener stopped")),
            Err(error) => Err(error),
        },
        ended = &mut https_task => match flatten(ended, "the HTTPS listener") {
            Ok(()) => Err(anyhow::anyhow!("the HTTPS listener stopped")),
            Err(error) => Err(error),
        },
        ended = &mut http_task => match ended {
            Ok(()) => Err(anyhow::anyhow!("the HTTP listener stopped")),
            Err(error) => Err(anyhow::Error::new(error).context("the HTTP listener panicked")),
        },
    };

    // The source and applier hold no in-flight work worth finishing; HTTP finishes the
    // requests it has (long polls end at once, empty), then the store flushes and closes.
    source_task.abort();
    apply_task.abort();
    stop_tx.stop();
    // First, so that peers drop this pod at once rather than after its lease.

    // Told to stop, the broker ends its connections (MQTT 5: DISCONNECT 0x8B), then the
    // persister writes the final state; give it a moment.
    if !mqtt_task.is_finished()
        && tokio::time::timeout(std::time::Duration::from_secs(5), &mut mqtt_task)
            .await
            .is_err()
    {
        mqtt_task.abort();
    }
    // Its clients gone, this pod hands its sessions to the others, then leaves the cluster.
    if let Some(node) = node {
        node.drain(&broker).await;
    }
    if !http_task.is_finished() {
        let _ = http_task.await;
    }
    if !https_task.is_finished() {
        let _ = https_task.await;
    }
    // Requests in flight get a grace period; settlements are written before the store closes.
    push.stop().await;
    store.close().await;
    info!("event store closed");
    result
}

/// Tell whoever started us where HTTP listens (with port 0, nobody else knows). Tests parse
/// this line, so it goes to stdout in exactly this shape, flushed at once.
fn announce_http(addr: SocketAddr) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "http listening on {addr}")?;
    stdout.flush()?;
    info!(%addr, "http listening");
    Ok(())
}

async fn apply_updates(
    mut applier: Applier,
    mut updates: mpsc::Receiver<LoadedConfig>,
) -> anyhow::Result<()> {
    while let Some(loaded) = updates.recv().await {
        // Compiling is CPU work on an in-memory set; it takes milliseconds, so it stays on
        // this task rather than paying a hand-off per load.
        applier.apply(loaded)?;
    }
    Ok(())
}

fn flatten(
    ended: Result<anyhow::Result<()>, tokio::task::JoinError>,
    what: &str,
) -> anyhow::Result<()> {
    match ended {
        Ok(result) => result.with_context(|| format!("{what} failed")),
        Err(error) => Err(anyhow::Error::new(error).context(format!("{what} panicked"))),
    }
}

/// MQTT connections per listener unless told otherwise.
const DEFAULT_MQTT_CONNECTIONS: usize = 100_000;
/// HTTP connections per listener unless told otherwise.
const DEFAULT_HTTP_CONNECTIONS: usize = 10_000;

/// The cap of one listener: the configured one (no larger than the whole connection
/// budget, with a warning if it was), else `default`.
fn capped(what: &str, configured: Option<usize>, default: usize, budget: usize) -> usize {
    match configured {
        Some(configured) if configured > budget => {
            tracing::warn!(
                configured,
                budget,
                "{what} connections per listener exceed what the open-file limit allows: capped"
            );
            budget
        }
        Some(configured) => configured,
        None => default,
    }
}

/// Resolves on SIGINT or SIGTERM (what Kubernetes sends before killing a pod).
async fn shutdown_signal() -> &'static str {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => "SIGINT",
        () = terminate => "SIGTERM",
    }
}
