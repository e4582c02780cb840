//! Setting the links up: options, the services' inbound queues, the bound listener, then
//! the running [`PeerLinks`].

use super::connection::Services;
use super::error::LinkError;
use super::frame::{DEFAULT_MAX_FRAME, ServiceId};
use super::hello::hello_of;
use super::inbound::Inbound;
use super::manager::{self, Manager};
use super::metrics::LinkMetrics;
use super::peers::PeerLinks;
use super::table::Table;
use super::tls::LinkTls;
use crate::cluster::members::MembersWatch;
use crate::cluster::timing::ClusterTiming;
use crate::log_limit::LogLimiters;
use crate::pod::PodIdentity;
use crate::shutdown::StopSignal;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

/// Frames a link queues for sending before `send` waits and `try_send` fails.
pub const DEFAULT_SEND_QUEUE: usize = 8192;

/// Frames a service's inbound queue holds before the links feeding it stop reading.
pub const DEFAULT_INBOUND_QUEUE: usize = 8192;

/// What the links are made with.
#[derive(Clone, Debug)]
pub struct LinkOptions {
    /// This pod.
    pub pod: PodIdentity,
    /// The Gridline Namespace's identity (`<kubernetes namespace>/<name>`, say): a Hello
    /// naming another one is refused, so two Namespaces whose certificates share a CA never
    /// link.
    pub namespace: String,
    pub tls: LinkTls,
    /// The largest frame sent or accepted, length prefix excluded ([`DEFAULT_MAX_FRAME`]).
    pub max_frame: u32,
    /// Frames queued per link ([`DEFAULT_SEND_QUEUE`]).
    pub send_queue: usize,
    /// Frames queued per service ([`DEFAULT_INBOUND_QUEUE`]).
    pub inbound_queue: usize,
    /// Where the `gridline_peer_*` metrics are registered.
    pub registry: prometheus::Registry,
}

impl LinkOptions {
    /// Options with the default sizes.
    pub fn new(
        pod: PodIdentity,
        namespace: impl Into<String>,
        tls: LinkTls,
        registry: &prometheus::Registry,
    ) -> LinkOptions {
        LinkOptions {
            pod,
            namespace: namespace.into(),
            tls,
            max_frame: DEFAULT_MAX_FRAME,
            send_queue: DEFAULT_SEND_QUEUE,
            inbound_queue: DEFAULT_INBOUND_QUEUE,
            registry: registry.clone(),
        }
    }
}

/// Collects the services before the links start.
pub struct LinksBuilder {
    options: LinkOptions,
    services: HashMap<ServiceId, mpsc::Sender<Inbound>>,
}

impl PeerLinks {
    pub fn builder(options: LinkOptions) -> LinksBuilder {
        LinksBuilder {
            options,
            services: HashMap::new(),
        }
    }
}

impl LinksBuilder {
    /// The inbound queue of service `id`: the requests and messages peers send it, in the
    /// order each peer sent them. A full queue stops the reading of the links feeding it.
    ///
    /// # Panics
    /// When `id` was registered already (a programming error at start-up).
    pub fn service(&mut self, id: ServiceId) -> mpsc::Receiver<Inbound> {
        let (sender, receiver) = mpsc::channel(self.options.inbound_queue.max(1));
        let previous = self.services.insert(id, sender);
        assert!(previous.is_none(), "{id} registered twice");
        receiver
    }

    /// Register the metrics and bind the listener now (so that port 0 gives the real port
    /// before the member lease announces it).
    pub async fn bind(self, listen: SocketAddr) -> Result<BoundLinks, LinkError> {
        let metrics = LinkMetrics::register(&self.options.registry)?;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| LinkError::Bind {
                addr: listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| LinkError::Bind {
            addr: listen,
            source,
        })?;
        Ok(BoundLinks {
            options: self.options,
            services: Arc::new(self.services),
            listener,
            local_addr,
            metrics,
        })
    }
}

/// The links, listening but not yet running.
pub struct BoundLinks {
    options: LinkOptions,
    services: Services,
    listener: TcpListener,
    local_addr: SocketAddr,
    metrics: LinkMetrics,
}

impl BoundLinks {
    /// Where peers reach this pod (the bound address; port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Start accepting and dialling. `members` says whom to link with, `timing` how fast to
    /// give up on a silent peer; `stop` closes every link with a Goodbye.
    pub fn start(
        self,
        members: MembersWatch,
        timing: watch::Receiver<ClusterTiming>,
        stop: StopSignal,
    ) -> PeerLinks {
        let this: Arc<str> = Arc::from(self.options.pod.name());
        let table = Arc::new(Table::new(this, members.clone(), self.metrics));
        let manager = Arc::new(Manager {
            table: table.clone(),
            tls: self.options.tls,
            hello: hello_of(&self.options.pod, &self.options.namespace),
            services: self.services,
            timing,
            send_queue: self.options.send_queue.max(1),
            max_frame: self.options.max_frame,
            limiters: LogLimiters::new(manager::WARN_INTERVAL),
        });
        let task = table.task();
        let run = manager::run(manager, self.listener, members, stop);
        tokio::spawn(async move {
            run.await;
            drop(task);
        });
        PeerLinks { table }
    }
}
