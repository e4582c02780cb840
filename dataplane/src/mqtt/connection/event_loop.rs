//! The connection's loop: one `select!` over its socket (the rest of a write and the next
//! read in one future), its session's wake-up, the flow-control wait, one timer (keep-alive,
//! write stall, pauses, token expiry, idle buffers), Snapshot changes and closing listeners,
//! and take-over (mqtt/README.md "Writes that block", "Idle connections").

use super::established::{
    Conn, End, Established, IDLE_BUFFER_RELEASE, SHUTTING_DOWN, SubscriberPause, WRITE_STALLED,
};
use super::outbound::poll_write;
use crate::mqtt::broker::split;
use crate::mqtt::codec::{CodecError, ConnAck, Packet};
use crate::mqtt::reason::ReasonCode;
use crate::mqtt::session::Session;
use futures::StreamExt;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tracing::{debug, info};

impl<IO: AsyncRead + AsyncWrite + Unpin> Established<IO> {
    /// Serve the connection until it ends: first the CONNACK the handshake decided on (boxed:
    /// it must not size the idle task) and the resends of a resumed session, then the loop.
    pub(super) async fn run(&mut self, connack: Box<ConnAck>) -> End {
        if let Some(max) = self.client_max_packet {
            self.framed.codec_mut().set_max_outgoing(max.get());
        }
        if let Err(end) = self.send(Packet::ConnAck(*connack)) {
            return end;
        }
        self.resend_inflight();
        let kicked = self.attachment.kicked.clone();
        let session = self.session.clone();
        let listener = self.transport.listener();
        let mut deadline = self.next_deadline();
        // One timer for every deadline (a `Sleep` each would make every idle connection's
        // task larger). It is armed for the earliest deadline and re-armed only when an
        // earlier one comes up: deadlines that move later (the keep-alive after every packet)
        // leave it alone, and when it fires early the loop finds nothing due and arms it
        // again. Resetting a `Sleep` takes the timer driver's lock, which a busy connection
        // would otherwise do on every turn.
        let mut armed: Option<Instant> = None;
        // Listeners that closed before this connection began to wait (later ones bump
        // `checks`).
        let closing = self.broker.closing.borrow().covers(listener);
        if closing {
            self.disconnect(ReasonCode::ServerShuttingDown).await;
            return End::Lost(SHUTTING_DOWN);
        }
        loop {
            if let Err(end) = self.flush().await {
                return end;
            }
            let reading = self.reading();
            if !reading {
                // The client is not silent: we are not reading. Its keep-alive counts again
                // from when we do.
                deadline = self.next_deadline();
            }
            let write_deadline = self
                .unwritten_since
                .map(|since| since + self.write_stall_timeout());
            let holds_buffers = self.framed.read_buffer().capacity() > 0
                || self.framed.write_buffer().capacity() > 0;
            // While the codec holds buffers: when the connection was last busy.
            let busy_at = holds_buffers.then(Instant::now);
            let earliest = [
                deadline,
                write_deadline,
                self.pauses.rate,
                self.pauses.subscribers.as_ref().map(|pause| pause.ends),
                self.token_deadline(),
                busy_at.map(|at| at + IDLE_BUFFER_RELEASE),
            ]
            .into_iter()
            .flatten()
            .min();
            if let Some(at) = earliest
                && armed.is_none_or(|armed| at < armed)
            {
                self.timer.as_mut().reset(at);
                armed = Some(at);
            }
            // Flow control: woken when the first session we wait for has drained. Boxed, and
            // only while paused: every idle connection's task would carry it.
            let drained = self
                .pauses
                .subscribers
                .as_ref()
                .and_then(|pause| pause.sessions.first().cloned())
                .map(|subscriber| Box::pin(drained(subscriber)));
            let drained = async move {
                match drained {
                    Some(drained) => drained.await,
                    None => std::future::pending().await,
                }
            };
            let writing = self.write_pending();
            let Self {
                framed,
                unwritten_since,
                unflushed,
                ..
            } = self;
            // Reads and the rest of a write in one future: both need the socket.
            let io = std::future::poll_fn(|cx| {
                poll_io(framed, cx, reading, writing, unwritten_since, unflushed)
            });
            let outcome = tokio::select! {
                io = io => match io {
                    Io::Written => Ok(()),
                    Io::Failed(end) => Err(end),
                    Io::Read(Some(Ok(packet))) => {
                        deadline = self.next_deadline();
                        // Boxed: handling packets is the largest state of this loop, and
                        // keeping it inline would make every idle connection's task carry
                        // it (one allocation per wake-up, not per packet).
                        let handled = Box::pin(async {
                            self.on_packet(packet).await?;
                            self.on_buffered_packets().await
                        })
                        .await;
                        // Also when the connection ends: what it published is queued.
                        self.deliver_outbox();
                        handled
                    }
                    Io::Read(Some(Err(error))) => {
                        debug!(%error, client = %self.session.client_id, "closing on a bad packet");
                        let code = error.reason();
                        self.disconnect(code).await;
                        Err(End::Lost("malformed packet"))
                    }
                    Io::Read(None) => Err(End::Lost("connection closed")),
                },
                () = session.wake.notified() => Ok(()),
                () = drained => {
                    if let Some(pause) = &mut self.pauses.subscribers {
                        pause.sessions.retain(|s| s.is_congested());
                        if pause.sessions.is_empty() {
                            self.pauses.subscribers = None;
                        }
                    }
                    Ok(())
                }
                () = &mut self.timer, if armed.is_some() => {
                    armed = None;
                    let now = Instant::now();
                    let passed = |at: Option<Instant>| at.is_some_and(|at| at <= now);
                    if passed(write_deadline) {
                        // A DISCONNECT would wait behind what the socket does not take.
                        info!(client = %self.session.client_id, stalled_for = ?self.write_stall_timeout(), "the client takes none of its messages: closing");
                        Err(End::Lost(WRITE_STALLED))
                    } else if passed(deadline) {
                        self.disconnect(ReasonCode::KeepAliveTimeout).await;
                        Err(End::Lost("keep-alive timeout"))
                    } else if passed(self.token_deadline()) {
                        info!(client = %self.session.client_id, authentication_name = self.authorizer.authentication_name(), "token expired without re-authentication: disconnecting");
                        self.disconnect(ReasonCode::MaximumConnectTime).await;
                        Err(End::Lost("token expired"))
                    } else {
                        if passed(self.pauses.rate) {
                            self.pauses.rate = None;
                        }
                        // The subscribers may still be behind, but a publisher waits no
                        // longer than this (two clients publishing to each other). One that
                        // took nothing off its queue for as long is stuck: publishers stop
                        // waiting for it at all.
                        if passed(self.pauses.subscribers.as_ref().map(|pause| pause.ends))
                            && let Some(SubscriberPause { sessions, .. }) =
                                self.pauses.subscribers.take()
                        {
                            let patience = self.broker.limits.max_publisher_pause;
                            for subscriber in sessions {
                                if subscriber.stall_if_idle_for(patience) {
                                    info!(client = %self.session.client_id, subscriber = %subscriber.client_id, "a subscriber took nothing during a whole pause: publishers stop waiting for it");
                                    self.broker
                                        .metrics
                                        .limited
                                        .with_label_values(&["subscriber_stalled"])
                                        .inc();
                                }
                            }
                        }
                        if passed(busy_at.map(|at| at + IDLE_BUFFER_RELEASE)) {
                            self.release_buffers();
                        }
                        Ok(())
                    }
                }
                Ok(()) = self.checks.changed() => {
                    self.checks.mark_unchanged();
                    let closing = self.broker.closing.borrow().covers(listener);
                    if closing {
                        self.disconnect(ReasonCode::ServerShuttingDown).await;
                        Err(End::Lost(SHUTTING_DOWN))
                    } else {
                        self.on_snapshot_change().await
                    }
                }
                () = kicked.notified() => {
                    self.disconnect(ReasonCode::SessionTakenOver).await;
                    Err(End::TakenOver)
                }
            };
            if let Err(end) = outcome {
                return end;
            }
        }
    }

    /// Give the codec's read and write buffers back to the allocator while they are empty:
    /// the codec starts each at 8 KiB, which would be most of an idle connection's memory
    /// (mqtt/README.md "Idle connections"). They grow again by doubling when traffic comes.
    fn release_buffers(&mut self) {
        if self.framed.read_buffer().is_empty() {
            *self.framed.read_buffer_mut() = bytes::BytesMut::new();
        }
        if self.framed.write_buffer().is_empty() {
            *self.framed.write_buffer_mut() = bytes::BytesMut::new();
        }
        self.outbox.release();
        if self.acks.is_empty() {
            self.acks = Vec::new();
        }
    }

    /// The served Snapshot changed: a Client disabled or deleted is disconnected (MQTT 5:
    /// DISCONNECT 0x87; 3.1.1: closed), and subscriptions no longer authorized are dropped.
    async fn on_snapshot_change(&mut self) -> Result<(), End> {
        let snapshot = self.broker.snapshot.load();
        let enabled = snapshot
            .client_by_authentication_name(self.authorizer.authentication_name())
            .is_some_and(|c| c.enabled);
        if !enabled {
            drop(snapshot);
            info!(client = %self.session.client_id, authentication_name = self.authorizer.authentication_name(), "client disabled or deleted: disconnecting");
            self.disconnect(ReasonCode::NotAuthorized).await;
            return Err(End::Lost("client disabled"));
        }
        if self.certificate_authenticated {
            let rechecked = self.broker.authenticator.recheck_certificate(
                &snapshot,
                self.authorizer.authentication_name(),
                self.transport.client_certificates(),
                std::time::SystemTime::now(),
            );
            if let Err(failure) = rechecked {
                drop(snapshot);
                info!(client = %self.session.client_id, authentication_name = self.authorizer.authentication_name(), reason = failure.reason(), "certificate no longer accepted: disconnecting");
                self.disconnect(ReasonCode::NotAuthorized).await;
                return Err(End::Lost("certificate revoked"));
            }
        }
        drop(snapshot);
        let filters: Vec<String> = self.session.state.lock().subscriptions.filters();
        let permissions = self.authorizer.current();
        let revoked: Vec<String> = filters
            .into_iter()
            .filter(|raw| match split(raw) {
                Ok(Some((_, filter))) => !permissions.can_subscribe(&filter),
                _ => true,
            })
            .collect();
        for raw in revoked {
            info!(client = %self.session.client_id, filter = %raw, "subscription no longer authorized: dropped");
            self.broker.unsubscribe(&self.session, &raw);
        }
        Ok(())
    }
}

/// Until `subscriber` is under its resume mark (flow control; see `Established::pause_for`).
async fn drained(subscriber: Arc<Session>) {
    let drained = subscriber.drained.notified();
    tokio::pin!(drained);
    drained.as_mut().enable();
    if subscriber.is_congested() {
        drained.await;
    }
}

/// What the socket did, for the connection's loop.
enum Io {
    /// Everything queued was written.
    Written,
    Failed(End),
    Read(Option<Result<Packet, CodecError>>),
}

/// One look at the socket for the loop: the rest of a write first (`writing`), then a read
/// (`reading`), each registering for its wake-up. A write the socket does not take does not
/// hold the read back, so PINGREQ, acknowledgements and DISCONNECT keep coming in while the
/// client does not read.
fn poll_io<IO: AsyncRead + AsyncWrite + Unpin>(
    framed: &mut Conn<IO>,
    cx: &mut Context<'_>,
    reading: bool,
    writing: bool,
    unwritten_since: &mut Option<Instant>,
    unflushed: &mut bool,
) -> Poll<Io> {
    if writing {
        match poll_write(framed, cx, unwritten_since, unflushed) {
            Poll::Ready(Ok(())) => return Poll::Ready(Io::Written),
            Poll::Ready(Err(end)) => return Poll::Ready(Io::Failed(end)),
            Poll::Pending => {}
        }
    }
    if reading && let Poll::Ready(read) = framed.poll_next_unpin(cx) {
        return Poll::Ready(Io::Read(read));
    }
    Poll::Pending
}
