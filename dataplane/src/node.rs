//! This pod as one of its Namespace's pods (DESIGN §5): it binds the peer link, joins the
//! member set, links to the others, and runs the services that make the pods act as one over
//! those links (MQTT forwarding and sessions, events across partitions). `server.rs` joins
//! before it serves anything and leaves first when it stops.

use crate::cluster::link::tls::LOCAL_DIR;
use crate::cluster::link::{LinkOptions, LinkTls, PeerLinks};
use crate::cluster::link_transport::{EVENTS_SERVICE, LinkTransport, MQTT_SERVICE};
use crate::cluster::members::MembersWatch;
use crate::cluster::membership::{
    KubernetesTarget, Membership, MembershipBackend, MembershipOptions,
};
use crate::cluster::options::peer_port;
use crate::cluster::timing::ClusterTiming;
use crate::cluster::{ClusterMembership, ClusterOptions};
use crate::config::ConfigSource;
use crate::delivery::PushManager;
use crate::mqtt::broker::Broker;
use crate::mqtt::peers::Peers;
use crate::pod::PodIdentity;
use crate::shutdown::{StopSignal, Stopper};
use crate::store::peers::Partitions;
use crate::store::{EventStore, peer_service};
use anyhow::{Context, bail};
use gridline_crds::model::Snapshot;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tracing::info;

/// How long a stopping pod waits for its Goodbyes to reach its peers.
const GOODBYE_GRACE: Duration = Duration::from_secs(2);

/// This pod in its cluster.
pub struct Node {
    /// The links, membership and peer services stop with this, after the drain (the rest of
    /// the pod stops first).
    stopper: Stopper,
    membership: Membership,
    links: PeerLinks,
    /// MQTT across pods, for the broker.
    pub mqtt: Arc<Peers>,
    /// The other pods' partitions, for the queues.
    pub partitions: Arc<Partitions>,
    timing: Arc<watch::Sender<ClusterTiming>>,
    fixed_timing: bool,
    /// Services' queues, taken when they start.
    mqtt_inbound: Option<mpsc::Receiver<crate::cluster::link::Inbound>>,
    events_inbound: Option<mpsc::Receiver<crate::cluster::link::Inbound>>,
}

impl Node {
    /// Bind the peer listener, claim this pod's membership, and start linking to the others.
    pub async fn join(
        cluster: &ClusterOptions,
        pod: &PodIdentity,
        source: &ConfigSource,
        registry: &prometheus::Registry,
    ) -> anyhow::Result<Node> {
        let (stopper, stop) = Stopper::new();
        let (backend, identity) = match (&cluster.membership, source) {
            (ClusterMembership::Directory(dir), _) => (
                MembershipBackend::LocalDirectory(dir.clone()),
                format!("local:{}", dir.display()),
            ),
            (ClusterMembership::Kubernetes { namespace }, ConfigSource::Kubernetes(source)) => (
                MembershipBackend::Kubernetes(KubernetesTarget {
                    client: source.client(),
                    k8s_namespace: source.k8s_namespace().to_string(),
                    namespace: namespace.clone(),
                }),
                format!("{}/{namespace}", source.k8s_namespace()),
            ),
            (ClusterMembership::Kubernetes { .. }, _) => {
                bail!("membership through Leases needs --kubernetes")
            }
        };
        let tls = match &cluster.membership {
            // Local mode makes its own material, once, unless told where it is.
            ClusterMembership::Directory(dir) if cluster.peer_tls_dir == dir.join(LOCAL_DIR) => {
                LinkTls::ensure_local(dir)
            }
            _ => LinkTls::from_dir(&cluster.peer_tls_dir),
        }
        .with_context(|| {
            format!(
                "cannot load the peer links' TLS material from {}",
                cluster.peer_tls_dir.display()
            )
        })?;
        let mut builder =
            PeerLinks::builder(LinkOptions::new(pod.clone(), identity, tls, registry));
        let mqtt_inbound = builder.service(MQTT_SERVICE);
        let events_inbound = builder.service(EVENTS_SERVICE);
        let bound = builder
            .bind(cluster.peer_listen)
            .await
            .context("cannot open the peer listener")?;
        let peer_addr = advertised(&cluster.peer_addr, bound.local_addr().port())?;
        info!(listen = %bound.local_addr(), advertised = %peer_addr, "peer link listening");
        let (timing, timing_rx) = watch::channel(cluster.timing);
        // The links say which peers they reach, for the membership lease (and the operator's
        // Ready); the links start after membership, so a bridge carries it.
        let (connected_tx, connected_rx) = watch::channel(BTreeSet::new());
        let membership = Membership::start(
            MembershipOptions {
                pod: pod.clone(),
                peer_addr,
                timing: timing_rx.clone(),
                connected_peers: connected_rx,
                stop: stop.clone(),
                backend,
            },
            registry,
        )
        .await
        .context("cannot join the cluster")?;
        tokio::spawn(log_member_changes(membership.members()));
        let links = bound.start(membership.members(), timing_rx, stop.clone());
        tokio::spawn(bridge_connected(links.connected(), connected_tx, stop));
        let mqtt = Arc::new(
            Peers::new(
                Arc::from(pod.name()),
                Arc::new(LinkTransport::new(links.clone(), MQTT_SERVICE)),
                registry,
            )
            .context("cannot register the MQTT peer metrics")?,
        );
        let partitions = Arc::new(Partitions::new(Arc::new(LinkTransport::new(
            links.clone(),
            EVENTS_SERVICE,
        ))));
        Ok(Node {
            stopper,
            membership,
            links,
            mqtt,
            partitions,
            timing: Arc::new(timing),
            fixed_timing: cluster.fixed_timing,
            mqtt_inbound: Some(mqtt_inbound),
            events_inbound: Some(events_inbound),
        })
    }

    /// The member set.
    pub fn members(&self) -> MembersWatch {
        self.membership.members()
    }

    /// Serve the peers: MQTT through `broker` (which was made with [`Node::mqtt`]), events
    /// from `store`; share push delivery's limits with the members. They run until the node
    /// leaves, through the drain.
    pub fn serve(&mut self, broker: Arc<Broker>, store: EventStore, push: PushManager) {
        let stop = self.stopper.signal();
        if let Some(inbound) = self.mqtt_inbound.take() {
            tokio::spawn(crate::mqtt::peer_service::serve_inbound(
                broker.clone(),
                inbound,
                stop.clone(),
            ));
            tokio::spawn(crate::mqtt::peer_service::tell_peers(
                broker,
                self.links.generations(),
                stop.clone(),
            ));
        }
        if let Some(inbound) = self.events_inbound.take() {
            tokio::spawn(peer_service::serve(store, inbound, stop.clone()));
        }
        tokio::spawn(share_push_limits(self.members(), push, stop));
    }

    /// Whether this pod writes the status the pods share (the first member by name), as it
    /// changes.
    pub fn writer(&self) -> watch::Receiver<bool> {
        let mut members = self.members();
        let (writer, writing) = watch::channel(is_writer(&members));
        tokio::spawn(async move {
            while members.changed().await.is_ok() {
                let now = is_writer(&members);
                writer.send_if_modified(|was| std::mem::replace(was, now) != now);
            }
        });
        writing
    }

    /// What to do with each applied Snapshot: follow the Namespace's `spec.cluster` timing
    /// (unless the command line fixed it).
    pub fn timing_follower(&self) -> impl Fn(Arc<Snapshot>) + Send + Sync + 'static {
        let timing = self.timing.clone();
        let fixed = self.fixed_timing;
        move |snapshot: Arc<Snapshot>| {
            if fixed {
                return;
            }
            if let Some(namespace) = &snapshot.namespace {
                let wanted = ClusterTiming {
                    member_lease: namespace.cluster.member_lease,
                    peer_timeout: namespace.cluster.peer_timeout,
                };
                timing.send_if_modified(|current| std::mem::replace(current, wanted) != wanted);
            }
        }
    }

    /// The pod is stopping and its clients are gone: hand its persistent sessions to the
    /// peers (they keep them until their clients come back, through any pod), write what is
    /// left, leave the member set (peers drop this pod now rather than after its lease), and
    /// give the links a moment to say Goodbye.
    pub async fn drain(self, broker: &Broker) {
        let handed = crate::mqtt::peer_service::hand_off_sessions(broker).await;
        if handed > 0 {
            info!(sessions = handed, "sessions handed to the other pods");
            if let Some(dir) = &broker.data_dir {
                let state = broker.stored_state();
                if let Err(error) = crate::mqtt::persist::write_now(dir, &state) {
                    tracing::warn!(%error, "cannot write the MQTT state after the hand-off");
                }
            }
        }
        self.membership.leave().await;
        self.stopper.stop();
        let _ = tokio::time::timeout(GOODBYE_GRACE, self.links.closed()).await;
    }
}

fn is_writer(members: &MembersWatch) -> bool {
    let set = members.borrow();
    set.iter()
        .next()
        .is_some_and(|first| first.name() == set.this_name().as_ref())
}

/// `peer_addr` with port 0 replaced by the port the listener was given.
fn advertised(peer_addr: &str, bound_port: u16) -> anyhow::Result<String> {
    if peer_port(peer_addr)? != 0 {
        return Ok(peer_addr.to_string());
    }
    let (host, _) = peer_addr
        .rsplit_once(':')
        .context("a peer address is host:port")?;
    Ok(format!("{host}:{bound_port}"))
}

async fn bridge_connected(
    mut connected: watch::Receiver<crate::cluster::link::Connected>,
    into: watch::Sender<BTreeSet<Arc<str>>>,
    stop: StopSignal,
) {
    loop {
        let now: BTreeSet<Arc<str>> = connected.borrow_and_update().iter().cloned().collect();
        into.send_replace(now);
        tokio::select! {
            changed = connected.changed() => if changed.is_err() { return },
            _ = stop.stopped() => return,
        }
    }
}

async fn share_push_limits(mut members: MembersWatch, push: PushManager, stop: StopSignal) {
    loop {
        push.set_pods(members.borrow_and_update().len());
        tokio::select! {
            changed = members.changed() => if changed.is_err() { return },
            _ = stop.stopped() => return,
        }
    }
}

async fn log_member_changes(mut members: MembersWatch) {
    loop {
        let names: Vec<String> = members
            .borrow_and_update()
            .iter()
            .map(|m| m.name().to_string())
            .collect();
        info!(members = ?names, count = names.len(), "cluster members changed");
        if members.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_0_is_advertised_as_the_port_the_listener_got() {
        assert_eq!(advertised("127.0.0.1:0", 7443).unwrap(), "127.0.0.1:7443");
        assert_eq!(
            advertised("pod-0.peers.ns.svc:7443", 9).unwrap(),
            "pod-0.peers.ns.svc:7443"
        );
    }
}
