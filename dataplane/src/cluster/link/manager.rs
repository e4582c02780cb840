//! The task that keeps one link per peer: it accepts links from peers whose names sort lower,
//! dials those whose names sort higher (one dialer task each, reconnecting with backoff),
//! follows the member set (dialling newcomers, closing links to pods that left), and closes
//! everything with a Goodbye when the stop signal fires.

use super::connection::{self, LinkContext, Services};
use super::frame::{Goodbye, GoodbyeReason, Hello};
use super::handshake::{self, HandshakeError, Linked};
use super::hello::{Role, dials};
use super::sender::LinkSender;
use super::table::Table;
use super::tls::LinkTls;
use crate::cluster::members::{Member, MemberSet, MembersWatch};
use crate::cluster::timing::ClusterTiming;
use crate::log_limit::LogLimiters;
use crate::shutdown::StopSignal;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

/// The first reconnection delay, doubled after each failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The shortest time a handshake (TCP, TLS, Hellos) is given; otherwise the peer timeout.
const MIN_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(1);

/// One warning per reason this often, at most: a port scanner must not fill the log.
pub const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// What the manager's tasks share.
pub struct Manager {
    pub table: Arc<Table>,
    pub tls: LinkTls,
    /// The Hello this pod sends.
    pub hello: Hello,
    pub services: Services,
    pub timing: watch::Receiver<ClusterTiming>,
    pub send_queue: usize,
    pub max_frame: u32,
    pub limiters: LogLimiters,
}

/// A dialer task and what it dials.
struct Dialer {
    addr: String,
    cancel: CancellationToken,
}

impl Manager {
    fn handshake_timeout(&self) -> Duration {
        self.timing.borrow().peer_timeout.max(MIN_HANDSHAKE_TIMEOUT)
    }

    /// Count a failed handshake and log it (rate-limited per reason).
    fn failed(&self, addr: &str, peer: Option<&str>, error: &HandshakeError) {
        let failure = error.failure();
        self.table.metrics.failed(failure);
        if matches!(error, HandshakeError::Connect(_)) {
            // A peer that is starting or gone refuses connections; its lease decides.
            debug!(%addr, peer, %error, "cannot reach peer");
            return;
        }
        if let Some(suppressed) = self.limiters.allow(failure.label()) {
            warn!(%addr, peer, reason = failure.label(), suppressed, %error, "peer link refused");
        }
    }

    async fn accepted(self: Arc<Self>, socket: TcpStream, addr: SocketAddr, stop: StopSignal) {
        let handshake = async {
            let stream = handshake::accept_tls(socket, &self.tls).await?;
            handshake::exchange_hellos(
                stream,
                &self.hello,
                Role::Acceptor,
                None,
                &self.table.members,
            )
            .await
        };
        let timeout = self.handshake_timeout();
        let linked = tokio::time::timeout(timeout, handshake)
            .await
            .unwrap_or(Err(HandshakeError::Timeout(timeout)));
        match linked {
            Ok(linked) => self.run_link(linked, addr.to_string(), None, &stop).await,
            Err(error) => self.failed(&addr.to_string(), None, &error),
        }
    }

    /// Dial `member` until cancelled, reconnecting with backoff whenever the link fails or
    /// ends.
    async fn dial(self: Arc<Self>, member: Member, cancel: CancellationToken, stop: StopSignal) {
        let name = member.name().to_string();
        let addr = member.peer_addr;
        let mut backoff = Backoff::default();
        loop {
            let handshake = async {
                let stream = handshake::connect_tls(&addr, &self.tls).await?;
                handshake::exchange_hellos(
                    stream,
                    &self.hello,
                    Role::Dialer,
                    Some(&name),
                    &self.table.members,
                )
                .await
            };
            let timeout = self.handshake_timeout();
            let linked = tokio::select! {
                () = cancel.cancelled() => return,
                linked = tokio::time::timeout(timeout, handshake) => {
                    linked.unwrap_or(Err(HandshakeError::Timeout(timeout)))
                }
            };
            match linked {
                Ok(linked) => {
                    backoff = Backoff::default();
                    self.run_link(linked, addr.clone(), Some(&cancel), &stop)
                        .await;
                }
                Err(error) => self.failed(&addr, Some(&name), &error),
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    }

    /// Run a link whose Hellos were exchanged until it ends. A dialled link also ends when
    /// its dialer is cancelled (the peer left the set or moved).
    async fn run_link(
        &self,
        linked: Linked,
        addr: String,
        cancel: Option<&CancellationToken>,
        stop: &StopSignal,
    ) {
        let Linked {
            stream,
            peer,
            version,
            leftover,
        } = linked;
        let name: Arc<str> = Arc::from(peer.pod.as_str());
        let span = info_span!("peer_link", peer = %name, %addr);
        let (link, queue) = LinkSender::new(name.clone(), self.send_queue, self.max_frame);
        let counters = self.table.metrics.peer(&name);
        self.table.install(&link);
        counters.up.set(1);
        // What changed while the Hellos were exchanged: the stop, the member set (the
        // manager closes links of pods that left only among those installed), the dialer.
        if stop.is_stopped() {
            link.close_with(shutdown_goodbye());
        } else if !self.table.members.borrow().contains(&name)
            || cancel.is_some_and(CancellationToken::is_cancelled)
        {
            link.close_with(left_goodbye(&name));
        }
        let context = LinkContext {
            services: self.services.clone(),
            timing: self.timing.clone(),
            counters: counters.clone(),
        };
        span.in_scope(|| info!(version, "peer link up"));
        let run = connection::run(stream, leftover, link.clone(), queue, context);
        tokio::pin!(run);
        let closed = async {
            let never = CancellationToken::new();
            let cancel = cancel.unwrap_or(&never);
            tokio::select! {
                closed = &mut run => return closed,
                () = cancel.cancelled() => link.close_with(left_goodbye(&name)),
            }
            run.await
        }
        .instrument(span.clone())
        .await;
        if self.table.remove(&link) {
            counters.up.set(0);
        }
        let _entered = span.enter();
        match closed.failure() {
            Some(failure) => {
                self.table.metrics.failed(failure);
                warn!(reason = failure.label(), "peer link down: {closed}");
            }
            None => info!("peer link down: {closed}"),
        }
    }

    /// Dial the members this pod dials, stop dialling those gone or moved, and close links
    /// to pods no longer in the set.
    fn follow(
        self: &Arc<Self>,
        set: &MemberSet,
        dialers: &mut HashMap<Arc<str>, Dialer>,
        stop: &StopSignal,
    ) {
        dialers.retain(|name, dialer| {
            let keep = set
                .get(name)
                .is_some_and(|member| member.peer_addr == dialer.addr);
            if !keep {
                dialer.cancel.cancel();
            }
            keep
        });
        self.table
            .close_where(|peer| set.contains(peer), left_goodbye);
        let this = self.table.this();
        for member in set.peers() {
            let name = member.name();
            if dials(this, name) && !dialers.contains_key(name) {
                let cancel = CancellationToken::new();
                dialers.insert(
                    Arc::from(name),
                    Dialer {
                        addr: member.peer_addr.clone(),
                        cancel: cancel.clone(),
                    },
                );
                let span = info_span!("peer_dial", peer = %name, addr = %member.peer_addr);
                let task = self.table.task();
                let dial = self.clone().dial(member.clone(), cancel, stop.clone());
                tokio::spawn(
                    async move {
                        dial.await;
                        drop(task);
                    }
                    .instrument(span),
                );
            }
        }
    }
}

fn shutdown_goodbye() -> Goodbye {
    Goodbye {
        reason: GoodbyeReason::Shutdown,
        message: "the pod is stopping".into(),
    }
}

fn left_goodbye(peer: &str) -> Goodbye {
    Goodbye {
        reason: GoodbyeReason::NotMember,
        message: format!("{peer} left this pod's member set (or moved)"),
    }
}

/// Accept links and follow the member set until `stop`; then close every link.
pub async fn run(
    manager: Arc<Manager>,
    listener: TcpListener,
    mut members: MembersWatch,
    stop: StopSignal,
) {
    let task = manager.table.task();
    let accept = accept_loop(manager.clone(), listener, stop.clone());
    let accepting = tokio::spawn(async move {
        accept.await;
        drop(task);
    });
    let mut dialers = HashMap::new();
    let mut following = true;
    loop {
        if following {
            let set = members.borrow_and_update().clone();
            manager.follow(&set, &mut dialers, &stop);
        }
        tokio::select! {
            () = stop.stopped() => break,
            changed = members.changed(), if following => {
                // A closed channel keeps its last set: follow it no further.
                following = changed.is_ok();
            }
        }
    }
    accepting.abort();
    for dialer in dialers.values() {
        dialer.cancel.cancel();
    }
    manager.table.close_where(|_| false, |_| shutdown_goodbye());
}

async fn accept_loop(manager: Arc<Manager>, listener: TcpListener, stop: StopSignal) {
    loop {
        let accepted = tokio::select! {
            () = stop.stopped() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((socket, addr)) => {
                let span = info_span!("peer_accept", %addr);
                let task = manager.table.task();
                let accepted = manager.clone().accepted(socket, addr, stop.clone());
                tokio::spawn(
                    async move {
                        accepted.await;
                        drop(task);
                    }
                    .instrument(span),
                );
            }
            Err(error) => {
                // Out of descriptors, typically: wait instead of spinning.
                if let Some(suppressed) = manager.limiters.allow("accept") {
                    warn!(%error, suppressed, "cannot accept peer links");
                }
                tokio::time::sleep(MIN_BACKOFF).await;
            }
        }
    }
}

/// Exponential backoff with jitter: each delay is drawn between half and all of a ceiling
/// that doubles from [`MIN_BACKOFF`] to [`MAX_BACKOFF`], so pods restarted together do not
/// dial in step.
#[derive(Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    fn next_delay(&mut self) -> Duration {
        let ceiling = MIN_BACKOFF
            .saturating_mul(1 << self.failures.min(16))
            .min(MAX_BACKOFF);
        self.failures += 1;
        let mut random = [0u8; 4];
        let fraction = match getrandom::fill(&mut random) {
            Ok(()) => u32::from_le_bytes(random) as f64 / u32::MAX as f64,
            Err(_) => 1.0,
        };
        ceiling.mul_f64(0.5 + fraction / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_100_ms_to_5_s_with_jitter() {
        let mut backoff = Backoff::default();
        let delays: Vec<Duration> = (0..10).map(|_| backoff.next_delay()).collect();
        for (attempt, delay) in delays.iter().enumerate() {
            let ceiling = (MIN_BACKOFF * (1 << attempt)).min(MAX_BACKOFF);
            assert!(
                *delay >= ceiling / 2 && *delay <= ceiling,
                "attempt {attempt}: {delay:?} outside {:?}..={ceiling:?}",
                ceiling / 2
            );
        }
        assert!(delays[9] >= MAX_BACKOFF / 2);
    }
}
