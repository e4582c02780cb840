//! One client connection: CONNECT within the handshake timeout, then packets in, queued
//! messages out and keep-alive, until the client leaves, misbehaves or is taken over.

use super::authenticate::Authenticated;
use super::authorize::{Authorizer, Listener};
use super::broker::{Attached, Broker, NewSubscription, split};
use super::codec::{
    Ack, Codec, CodecError, ConnAck, Connect, Disconnect, Message, OutgoingPublish, Packet,
    Publish, QoS, SubAck, Version, encode_publish,
};
use super::lifecycle::DisconnectionReason;
use super::limits::{NamespaceLimits, RateLimit};
use super::outbox::Outbox;
use super::reason::{ReasonCode, is_failure};
use super::routing::{RouteTicket, RoutedAcks};
use super::session::{Attachment, Delivery, Expired, MAX_INFLIGHT_OUTGOING, Outbound, Session};
use super::tls::PeerCertificates;
use crate::log_limit::truncated;
use futures::{FutureExt, SinkExt, StreamExt};
use gridline_crds::model::topic::validate_topic_name;
use std::collections::VecDeque;
use std::num::{NonZeroU16, NonZeroU32};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_util::codec::Framed;
use tracing::{debug, info};

/// Packets handled from the read buffer before the connection writes and looks around again
/// (so one busy client cannot hold off its own outbound queue or a take-over for long).
const MAX_PACKETS_PER_WAKE: usize = 64;
/// Codec buffers of a new connection (each direction): a CONNECT or SUBSCRIBE fits.
const INITIAL_BUFFER_BYTES: usize = 256;
/// Queued outgoing bytes that make a write happen before the connection's turn ends.
const WRITE_BATCH_BYTES: usize = 64 * 1024;
/// A connection with nothing to do for this long releases its codec buffers.
const IDLE_BUFFER_RELEASE: Duration = Duration::from_secs(1);
/// Bytes waiting to be written at which the connection stops reading: while its client does
/// not read, what it sends still gets answers (PUBACK, PINGRESP), which wait here; beyond this
/// the client waits too (mqtt/README.md "Writes that block").
const WRITE_BACKLOG_BYTES: usize = 4 * WRITE_BATCH_BYTES;
/// How long the socket may take none of our bytes before the connection is closed, for a
/// client without a keep-alive (with one: 1.5 times it, as for its silence).
pub const WRITE_STALL_WITHOUT_KEEP_ALIVE: Duration = Duration::from_secs(60);
/// How long a last packet (DISCONNECT) and the close may wait for the socket: a client that
/// does not read must not hold its connection's task.
const FINAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// `End::Lost` of a connection whose socket took none of our bytes for too long.
pub const WRITE_STALLED: &str = "write stalled";
/// `End::Lost` of a 3.1.1 connection whose message could not be stored in the routing Topic:
/// 3.1.1 has no negative acknowledgement, so the message is left unacknowledged and the
/// client sends it again when it reconnects.
pub const ROUTING_FAILED: &str = "routing failed";

/// How the connection ended, for the will and the logs.
enum End {
    /// DISCONNECT: the will is discarded unless the reason asks for it.
    Disconnected {
        publish_will: bool,
    },
    /// Everything else publishes the will.
    Lost(&'static str),
    TakenOver,
}

impl End {
    /// Event Grid's name for this end, in the `MQTTClientSessionDisconnected` event. A new
    /// `End::Lost` reason belongs here too (anything unlisted counts as the client's error).
    fn disconnection_reason(&self) -> DisconnectionReason {
        match self {
            End::Disconnected { .. } => DisconnectionReason::ClientInitiatedDisconnect,
            End::TakenOver => DisconnectionReason::SessionTakenOver,
            End::Lost("connection closed" | "write failed" | "keep-alive timeout") => {
                DisconnectionReason::ConnectionLost
            }
            End::Lost(
                "client disabled"
                | "certificate revoked"
                | "token expired"
                | "re-authentication failed",
            ) => DisconnectionReason::ClientAuthenticationError,
            End::Lost("receive maximum exceeded") => DisconnectionReason::QuotaExceeded,
            // Its messages pile up: Event Grid's name for a client that does not take them.
            End::Lost(WRITE_STALLED) => DisconnectionReason::SessionOverflow,
            End::Lost(ROUTING_FAILED) => DisconnectionReason::ServerError,
            End::Lost(SHUTTING_DOWN) => DisconnectionReason::ServerInitiatedDisconnect,
            End::Lost(_) => DisconnectionReason::ClientError,
        }
    }
}

type Conn<IO> = Framed<IO, Codec>;

/// `End::Lost` of a connection whose listener closed (server shutdown, listener turned off).
pub const SHUTTING_DOWN: &str = "server shutting down";

/// Topic aliases a client may use towards us (MQTT 5 CONNACK Topic Alias Maximum).
pub const TOPIC_ALIAS_MAXIMUM: u16 = 10;

type TopicAliases = [Option<bytestring::ByteString>; TOPIC_ALIAS_MAXIMUM as usize];

/// What carries the connection's bytes.
#[derive(Clone, Debug)]
pub enum Transport {
    Plaintext,
    /// After the TLS handshake; the client's certificate chain (leaf first), empty when it
    /// sent none. Kept for certificate authentication (issue 6).
    Tls {
        client_certificates: PeerCertificates,
    },
    /// MQTT over WebSockets; over TLS (the WSS listener) with the client's certificate chain
    /// as for `Tls`, else none.
    WebSocket {
        client_certificates: PeerCertificates,
        /// Carried by TLS (the WSS listener), not `ws://` on the HTTP listener.
        tls: bool,
    },
}

impl Transport {
    /// The client's certificate chain (leaf first); empty when none was presented.
    fn client_certificates(&self) -> &[rustls_pki_types::CertificateDer<'static>] {
        match self {
            Transport::Tls {
                client_certificates,
            }
            | Transport::WebSocket {
                client_certificates,
                ..
            } => client_certificates,
            Transport::Plaintext => &[],
        }
    }

    fn listener(&self) -> Listener {
        match self {
            Transport::Plaintext => Listener::Plaintext,
            Transport::Tls { .. } => Listener::Tls,
            Transport::WebSocket { tls: false, .. } => Listener::WebSocket,
            Transport::WebSocket { tls: true, .. } => Listener::SecureWebSocket,
        }
    }
}

/// Serve one connection to its end. Never panics on what the client sends.
pub async fn handle<IO: AsyncRead + AsyncWrite + Unpin>(
    io: IO,
    broker: Arc<Broker>,
    transport: Transport,
) {
    // The handshake's locals (codec, CONNECT, authentication) live in their own future, which
    // is gone once the connection runs: they must not size every idle task.
    let Some(mut connection) = handshake(io, &broker, transport).await else {
        return;
    };
    let end = connection.run().await;
    broker
        .metrics
        .connection_closed(connection.transport.listener());
    // Boxed, like packet handling in `run`: needed once, it must not size every idle task.
    Box::pin(connection.finish(end)).await;
}

async fn handshake<IO: AsyncRead + AsyncWrite + Unpin>(
    io: IO,
    broker: &Arc<Broker>,
    transport: Transport,
) -> Option<Connection<IO>> {
    let listener = transport.listener();
    // Small buffers to start with: most connections are idle devices, and the codec's
    // default 8 KiB for each direction would be most of their memory. Busy connections grow
    // theirs by doubling; writes go out in batches of up to `WRITE_BATCH_BYTES`.
    let mut framed = Framed::with_capacity(
        io,
        Codec::server(broker.limits.max_packet_bytes),
        INITIAL_BUFFER_BYTES,
    );
    framed.set_backpressure_boundary(WRITE_BATCH_BYTES);
    let first = tokio::time::timeout(broker.limits.handshake_timeout, framed.next()).await;
    let connect = match first {
        Ok(Some(Ok(Packet::Connect(connect)))) => connect,
        Ok(Some(Err(error))) => {
            debug!(%error, "bad first packet");
            if let CodecError::InvalidClientId | CodecError::UnsupportedProtocol = error {
                refuse_connect(&mut framed, error.reason(), broker, listener).await;
            }
            return None;
        }
        Err(_) => {
            debug!("no CONNECT within the handshake timeout");
            return None;
        }
        _ => return None,
    };
    let snapshot = broker.snapshot.load();
    let authenticated = match broker.authenticator.authenticate(
        &snapshot,
        &connect,
        listener,
        transport.client_certificates(),
        std::time::SystemTime::now(),
    ) {
        Ok(authenticated) => {
            broker.metrics.auth.success(authenticated.method);
            authenticated
        }
        Err(refusal) => {
            broker.metrics.auth.failure(refusal.method, refusal.failure);
            if let Some(suppressed) = broker.refusal_log.allow(refusal.failure.reason()) {
                let username = truncated(connect.username.as_deref().unwrap_or(""));
                info!(%username, ?listener, method = refusal.method.label(), reason = refusal.failure.reason(), code = %format_args!("0x{:02X}", refusal.code.as_u8()), suppressed, "CONNECT refused: {}", refusal.failure);
            }
            refuse_connect(&mut framed, refusal.code, broker, listener).await;
            return None;
        }
    };
    let Authenticated {
        authentication_name,
        authentication_method,
        token_expiry,
        method,
    } = authenticated;
    let limits = NamespaceLimits::of(&snapshot);
    drop(snapshot);
    let attached = match attach(broker, &connect, &authentication_name, limits) {
        Ok(attached) => attached,
        Err(code) => {
            if let Some(suppressed) = broker.refusal_log.allow("sessions_per_authentication_name") {
                let username = truncated(connect.username.as_deref().unwrap_or(""));
                info!(%username, reason = code.as_u8(), suppressed, "CONNECT refused: sessions per authentication name");
            }
            refuse_connect(&mut framed, code, broker, listener).await;
            return None;
        }
    };
    broker.metrics.connect(listener, "accepted");
    broker.metrics.connection_opened(listener);
    let mut connection = Connection::start(
        framed,
        broker.clone(),
        *connect,
        authentication_name,
        transport,
        attached,
        limits,
    );
    if let Some(ack) = connection.connack.as_mut() {
        ack.authentication_method = authentication_method.clone();
    }
    let deadline = token_expiry.map(|t| Instant::now() + t.remaining);
    if authentication_method.is_some() || deadline.is_some() {
        connection.token = Some(Box::new(TokenSession {
            method: authentication_method,
            deadline,
        }));
    }
    connection.certificate_authenticated = method == super::authenticate::Method::X509;
    broker.session_connected(
        connection.authorizer.authentication_name(),
        &connection.session.client_id,
        connection.attachment.connection_id,
    );
    Some(connection)
}

/// The session for `connect` (the client id, or one assigned for an empty one).
fn attach(
    broker: &Broker,
    connect: &Connect,
    authentication_name: &str,
    limits: NamespaceLimits,
) -> Result<(Attached, Option<String>), ReasonCode> {
    let (client_id, assigned) = if connect.client_id.is_empty() {
        let id = format!("gridline-{}", random_suffix());
        (id.clone(), Some(id))
    } else {
        (connect.client_id.clone(), None)
    };
    let attached = broker.attach(
        &client_id,
        authentication_name,
        connect.clean_start,
        limits.sessions_per_name,
    )?;
    Ok((attached, assigned))
}

async fn refuse_connect<IO: AsyncRead + AsyncWrite + Unpin>(
    framed: &mut Conn<IO>,
    code: ReasonCode,
    broker: &Broker,
    listener: Listener,
) {
    broker
        .metrics
        .connect(listener, &format!("0x{:02x}", code.as_u8()));
    let _ = framed.send(Packet::ConnAck(ConnAck::refusal(code))).await;
}

struct Connection<IO> {
    framed: Conn<IO>,
    broker: Arc<Broker>,
    version: Version,
    session: Arc<Session>,
    attachment: Attachment,
    authorizer: Authorizer,
    will: Option<Box<Message>>,
    /// MQTT 5 Will Delay Interval (seconds; 0 for 3.1.1).
    will_delay: u32,
    keep_alive: Option<Duration>,
    /// Outgoing QoS 1/2 messages the client accepts in flight (its receive maximum).
    client_receive_maximum: usize,
    client_max_packet: Option<NonZeroU32>,
    connack: Option<Box<ConnAck>>,
    transport: Transport,
    limits: NamespaceLimits,
    /// Inbound topic aliases (MQTT 5), 1..=TOPIC_ALIAS_MAXIMUM at index alias - 1; allocated
    /// when the client sets its first one (most never do).
    topic_aliases: Option<Box<TopicAliases>>,
    rate: RateLimit,
    /// While over the message rate: reading resumes then.
    paused_until: Option<Instant>,
    /// Flow control: while a subscriber this connection published to is behind, reading
    /// stops until it drains or the deadline passes (see the README's "Flow control").
    paused_on: Option<(Vec<Arc<Session>>, Instant)>,
    /// Since when the bytes in the write buffer have waited without the socket taking any
    /// (None while it is empty): the write-stall deadline counts from here.
    unwritten_since: Option<Instant>,
    /// The last flush left something unflushed below the write buffer (TLS).
    unflushed: bool,
    /// Packet ids of messages in flight when the session was resumed, to be sent again (in
    /// sending order) as the socket takes them; None once done.
    resends: Option<Box<Resends>>,
    /// QoS 1/2 acknowledgements waiting, in order, for routed messages to be stored.
    held: Option<Box<HeldAcks>>,
    /// The one timer of the connection (see `run`); allocated once.
    timer: Pin<Box<tokio::time::Sleep>>,
    /// The Snapshot changed or listeners are closing (`Broker::connection_checks`).
    checks: tokio::sync::watch::Receiver<u64>,
    /// JWT sessions (boxed: most connections are not one).
    token: Option<Box<TokenSession>>,
    /// Authenticated by its client certificate: re-checked when the Snapshot changes.
    certificate_authenticated: bool,
    /// What the current batch of packets fans out, handed to its sessions after the batch.
    outbox: Outbox,
    /// Messages written since the metrics were last told.
    sent: SentCounts,
    /// Acknowledgements of outgoing messages read and not applied yet (`apply_acks`).
    acks: Vec<Acknowledged>,
}

/// An acknowledgement of an outgoing QoS 1/2 message, by packet id.
#[derive(Clone, Copy, Debug)]
enum Acknowledged {
    /// PUBACK (QoS 1).
    Ack(u16),
    /// PUBREC (QoS 2), with whether the client refused the message (reason code ≥ 0x80).
    Received(u16, bool),
    /// PUBCOMP (QoS 2).
    Completed(u16),
}

/// Apply acknowledgements to the session; a PUBREC that calls for a PUBREL gets one, written
/// into `buffer` (0x62, length 2, the packet id: the same four bytes in 3.1.1 and in MQTT 5,
/// where a remaining length of 2 means reason 0x00 and no properties).
fn apply_acks(
    state: &mut super::session::SessionState,
    acks: &mut Vec<Acknowledged>,
    buffer: &mut bytes::BytesMut,
) {
    for ack in acks.drain(..) {
        match ack {
            Acknowledged::Ack(id) => {
                state.on_puback(id);
            }
            Acknowledged::Received(id, refused) => {
                if state.on_pubrec(id, refused) {
                    let [high, low] = id.to_be_bytes();
                    buffer.extend_from_slice(&[0x62, 0x02, high, low]);
                }
            }
            Acknowledged::Completed(id) => {
                state.on_pubcomp(id);
            }
        }
    }
}

/// Until `subscriber` is under its resume mark (flow control; see `Connection::pause_for`).
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

/// Write out the write buffer (and flush below it). While the socket takes nothing,
/// `unwritten_since` keeps the time it last took something (the write-stall deadline counts
/// from there); None once everything is written.
fn poll_write<IO: AsyncRead + AsyncWrite + Unpin>(
    framed: &mut Conn<IO>,
    cx: &mut Context<'_>,
    unwritten_since: &mut Option<Instant>,
    unflushed: &mut bool,
) -> Poll<Result<(), End>> {
    let before = framed.write_buffer().len();
    match futures::Sink::<Packet>::poll_flush(Pin::new(&mut *framed), cx) {
        Poll::Ready(Ok(())) => {
            *unwritten_since = None;
            *unflushed = false;
            Poll::Ready(Ok(()))
        }
        Poll::Ready(Err(_)) => Poll::Ready(Err(End::Lost("write failed"))),
        Poll::Pending => {
            *unflushed = true;
            if unwritten_since.is_none() || framed.write_buffer().len() < before {
                *unwritten_since = Some(Instant::now());
            }
            Poll::Pending
        }
    }
}

/// Packet ids of messages in flight when a session was resumed, still to be sent again.
struct Resends(VecDeque<u16>);

/// What a JWT session keeps.
struct TokenSession {
    /// The CONNECT's Authentication Method, which AUTH must repeat.
    method: Option<String>,
    /// When the token (the last re-authentication's) expires.
    deadline: Option<Instant>,
}

/// What [`Connection::fill_write_buffer`] did.
struct Filled {
    /// It stopped at a write's worth: write, then fill again.
    more: bool,
    /// Messages taken off the session's queue (flow control's progress).
    taken: usize,
}

/// QoS 1/2 acknowledgements of this connection held back, in the order their PUBLISH came,
/// while one of them waits for its routed message to be stored (acknowledgements go out in
/// order, MQTT §4.6). Allocated at the first routed message.
struct HeldAcks {
    routed: Arc<RoutedAcks>,
    /// The routing sequence number of this connection's last routed message.
    last_routed: u64,
    waiting: VecDeque<HeldAck>,
}

struct HeldAck {
    qos: QoS,
    ack: Ack,
    /// The routed message it waits for.
    routed: Option<u64>,
}

/// The PUBLISH packet of a delivery, to be encoded straight from the shared message.
fn outgoing<'a>(
    delivery: &'a Delivery,
    packet_id: Option<NonZeroU16>,
    dup: bool,
    subscription_ids: &'a [NonZeroU32],
    message_expiry_interval: Option<NonZeroU32>,
) -> OutgoingPublish<'a> {
    OutgoingPublish {
        message: &delivery.message,
        qos: delivery.qos,
        retain: delivery.retain,
        dup,
        packet_id,
        subscription_ids,
        message_expiry_interval,
    }
}

/// Encode one PUBLISH into the write buffer. A message larger than the client accepts (its
/// MQTT 5 Maximum Packet Size) is dropped, as MQTT 5 says, and counted: `Ok(false)`.
fn encode_delivery(
    version: Version,
    client_max_packet: Option<NonZeroU32>,
    publish: &OutgoingPublish<'_>,
    buffer: &mut bytes::BytesMut,
    broker: &Broker,
) -> Result<bool, End> {
    match encode_publish(version, publish, client_max_packet, buffer) {
        Ok(()) => Ok(true),
        Err(CodecError::TooLarge { .. }) => {
            broker.metrics.drop_message("too_large_for_client");
            Ok(false)
        }
        Err(_) => Err(End::Lost("write failed")),
    }
}

/// Outgoing message counts, added to the metrics once per write instead of per message: a
/// Prometheus counter is one atomic shared by every connection, and fan-out to a hundred
/// subscribers made it the most contended cache line of the process.
#[derive(Default)]
struct SentCounts {
    by_qos: [u64; 3],
    bytes: u64,
}

impl SentCounts {
    fn count(&mut self, publish: &OutgoingPublish<'_>) {
        self.by_qos[publish.qos as usize] += 1;
        self.bytes += publish.message.payload.len() as u64;
    }

    fn publish(&mut self, metrics: &super::metrics::MqttMetrics, listener: Listener) {
        if self.bytes == 0 && self.by_qos == [0; 3] {
            return;
        }
        metrics.messages_out(std::mem::take(&mut self.by_qos));
        metrics.bytes_out(listener, std::mem::take(&mut self.bytes));
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Connection<IO> {
    fn start(
        framed: Conn<IO>,
        broker: Arc<Broker>,
        connect: Connect,
        authentication_name: String,
        transport: Transport,
        (attached, assigned): (Attached, Option<String>),
        limits: NamespaceLimits,
    ) -> Self {
        let Attached {
            session,
            present,
            attachment,
        } = attached;
        let client_id = session.client_id.clone();
        let max_expiry = limits.max_session_expiry_secs;
        let expiry = connect.session_expiry_interval.min(max_expiry);
        session.state.lock().expiry_interval = expiry;
        let broker_limits = broker.limits;
        let granted_keep_alive = match connect.keep_alive {
            0 => broker_limits.max_keep_alive_secs,
            asked => asked.min(broker_limits.max_keep_alive_secs),
        };
        let mut ack = ConnAck::with(ReasonCode::Success, present);
        if connect.version == Version::V5 {
            ack.receive_maximum =
                NonZeroU16::new(broker_limits.receive_maximum).unwrap_or(NonZeroU16::MIN);
            ack.maximum_packet_size = Some(broker_limits.max_packet_bytes);
            ack.assigned_client_id = assigned;
            ack.topic_alias_maximum = TOPIC_ALIAS_MAXIMUM;
            if granted_keep_alive != connect.keep_alive {
                ack.server_keep_alive = Some(granted_keep_alive);
            }
            if expiry != connect.session_expiry_interval {
                ack.session_expiry_interval = Some(expiry);
            }
        }
        // 3.1.1 cannot be told a different keep-alive: it keeps its own (0: none).
        let keep_alive = match connect.version {
            Version::V5 => granted_keep_alive,
            Version::V311 => connect.keep_alive,
        };
        let authorizer = Authorizer::new(broker.snapshot.clone(), authentication_name);
        let client_certificate = !transport.client_certificates().is_empty();
        info!(client = %client_id, authentication_name = authorizer.authentication_name(), version = ?connect.version, listener = ?transport.listener(), client_certificate, present, "connected");
        Self {
            framed,
            version: connect.version,
            session,
            attachment,
            authorizer,
            will_delay: connect
                .will
                .as_ref()
                .and_then(|w| w.delay_interval)
                .unwrap_or(0),
            will: connect.will.map(|w| Box::new(w.message)),
            keep_alive: (keep_alive > 0).then(|| Duration::from_secs(u64::from(keep_alive))),
            client_receive_maximum: connect
                .receive_maximum
                .map_or(MAX_INFLIGHT_OUTGOING, |n| usize::from(n.get()))
                .min(MAX_INFLIGHT_OUTGOING),
            client_max_packet: connect.maximum_packet_size,
            connack: Some(Box::new(ack)),
            transport,
            limits,
            topic_aliases: None,
            rate: RateLimit::new(limits.messages_per_second),
            paused_until: None,
            paused_on: None,
            unwritten_since: None,
            unflushed: false,
            resends: None,
            held: None,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            checks: broker.connection_checks.subscribe(),
            token: None,
            certificate_authenticated: false,
            outbox: Outbox::default(),
            sent: SentCounts::default(),
            acks: Vec::new(),
            broker,
        }
    }

    /// Queue a packet for the socket; it is written with the rest of the turn's output
    /// ([`Self::flush`]). Never waits: a client that does not read must not stop this
    /// connection from reading and keeping its timers (mqtt/README.md "Writes that block").
    fn send(&mut self, packet: Packet) -> Result<(), End> {
        // The four-byte success acknowledgements, the same in 3.1.1 and MQTT 5 (a remaining
        // length of 2 is reason 0x00 without properties): one per QoS 1 message received.
        let short = match &packet {
            Packet::PubAck(ack)
                if ack.reason == ReasonCode::Success && ack.reason_string.is_none() =>
            {
                Some((0x40, ack.packet_id))
            }
            Packet::PubRec(ack)
                if ack.reason == ReasonCode::Success && ack.reason_string.is_none() =>
            {
                Some((0x50, ack.packet_id))
            }
            Packet::PubComp(ack)
                if ack.reason == ReasonCode::Success && ack.reason_string.is_none() =>
            {
                Some((0x70, ack.packet_id))
            }
            _ => None,
        };
        if let Some((kind, packet_id)) = short {
            let [high, low] = packet_id.get().to_be_bytes();
            self.framed
                .write_buffer_mut()
                .extend_from_slice(&[kind, 0x02, high, low]);
            return Ok(());
        }
        let mut buffer = std::mem::take(self.framed.write_buffer_mut());
        let encoded =
            tokio_util::codec::Encoder::encode(self.framed.codec_mut(), packet, &mut buffer);
        *self.framed.write_buffer_mut() = buffer;
        encoded.map_err(|_| End::Lost("write failed"))
    }

    /// Bytes wait to be written (in the write buffer, or below it in TLS).
    fn write_pending(&self) -> bool {
        !self.framed.write_buffer().is_empty() || self.unflushed
    }

    /// The socket is this far behind: stop reading until it takes some.
    fn write_backlogged(&self) -> bool {
        self.framed.write_buffer().len() >= WRITE_BACKLOG_BYTES
    }

    /// Hand over the batch's deliveries, then write what the socket takes now, without
    /// waiting for the rest (the loop's `Io` branch goes on with it).
    async fn try_write(&mut self) -> Result<(), End> {
        // Subscribers must not wait for this client's socket.
        self.deliver_outbox();
        self.sent
            .publish(&self.broker.metrics, self.transport.listener());
        if !self.write_pending() {
            return Ok(());
        }
        let Self {
            framed,
            unwritten_since,
            unflushed,
            ..
        } = self;
        let written = std::future::poll_fn(|cx| {
            Poll::Ready(poll_write(framed, cx, unwritten_since, unflushed))
        })
        .await;
        match written {
            Poll::Ready(result) => result,
            Poll::Pending => Ok(()),
        }
    }

    /// Write everything queued, waiting at most `limit` for the socket (a last DISCONNECT).
    async fn write_within(&mut self, limit: Duration) {
        self.deliver_outbox();
        self.sent
            .publish(&self.broker.metrics, self.transport.listener());
        let Self {
            framed,
            unwritten_since,
            unflushed,
            ..
        } = self;
        let flushed = std::future::poll_fn(|cx| poll_write(framed, cx, unwritten_since, unflushed));
        let _ = tokio::time::timeout(limit, flushed).await;
    }

    /// How long the socket may take none of our bytes: 1.5 keep-alives, as for silence.
    fn write_stall_timeout(&self) -> Duration {
        self.keep_alive
            .map_or(WRITE_STALL_WITHOUT_KEEP_ALIVE, |k| k + k / 2)
    }

    async fn run(&mut self) -> End {
        if let Some(max) = self.client_max_packet {
            self.framed.codec_mut().set_max_outgoing(max.get());
        }
        let connack = *self.connack.take().expect("run once");
        if let Err(end) = self.send(Packet::ConnAck(connack)) {
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
            let paused_until = self.paused_until;
            let flow_paused = self.paused_on.is_some();
            // Reading stops while over the message rate, while a subscriber we published to
            // is behind, while the socket is far behind, and while the client has its
            // receive maximum of acknowledgements waiting for routing.
            let reading = paused_until.is_none()
                && !flow_paused
                && !self.write_backlogged()
                && !self.held_acks_full();
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
                paused_until,
                self.paused_on.as_ref().map(|(_, at)| *at),
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
                .paused_on
                .as_ref()
                .and_then(|(sessions, _)| sessions.first().cloned())
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
                    if let Some((sessions, _)) = &mut self.paused_on {
                        sessions.retain(|s| s.is_congested());
                        if sessions.is_empty() {
                            self.paused_on = None;
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
                        if passed(self.paused_until) {
                            self.paused_until = None;
                        }
                        // The subscribers may still be behind, but a publisher waits no
                        // longer than this (two clients publishing to each other). One that
                        // took nothing off its queue for as long is stuck: publishers stop
                        // waiting for it at all.
                        if passed(self.paused_on.as_ref().map(|(_, at)| *at))
                            && let Some((sessions, _)) = self.paused_on.take()
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

    /// Handle the packets that already sit in the read buffer (a pipelining client sends
    /// many per read), so that their answers leave in one write. Stops at a pause.
    async fn on_buffered_packets(&mut self) -> Result<(), End> {
        for _ in 0..MAX_PACKETS_PER_WAKE {
            if self.paused_until.is_some()
                || self.paused_on.is_some()
                || self.write_backlogged()
                || self.held_acks_full()
            {
                break;
            }
            let Some(read) = self.framed.next().now_or_never() else {
                break;
            };
            match read {
                Some(Ok(packet)) => self.on_packet(packet).await?,
                Some(Err(error)) => {
                    debug!(%error, client = %self.session.client_id, "closing on a bad packet");
                    self.disconnect(error.reason()).await;
                    return Err(End::Lost("malformed packet"));
                }
                None => return Err(End::Lost("connection closed")),
            }
        }
        Ok(())
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

    /// Hand the batch's fanned-out deliveries to their sessions (see `outbox`).
    fn deliver_outbox(&mut self) {
        if self.outbox.is_empty() {
            return;
        }
        let congested = self
            .outbox
            .deliver(self.broker.limits.queue, &self.broker.metrics);
        self.pause_for(congested);
    }

    /// Flow control after a publish: pause reading while one of the sessions it went to is
    /// behind. Never on our own session, which only this task drains.
    fn pause_for(&mut self, mut congested: Vec<Arc<Session>>) {
        congested.retain(|s| !Arc::ptr_eq(s, &self.session));
        if congested.is_empty() {
            return;
        }
        self.broker
            .metrics
            .limited
            .with_label_values(&["subscriber_behind"])
            .inc();
        // Until the first of them has taken nothing for a whole pause (then it is stalled,
        // and the others are looked at again if this publisher pauses on them again): a
        // subscriber that stopped taking messages holds its publishers back for one pause,
        // counted from when it stopped.
        let patience = self.broker.limits.max_publisher_pause;
        let ends = congested
            .iter()
            .map(|s| s.patience_ends(patience))
            .min()
            .unwrap_or_else(|| Instant::now() + patience);
        match &mut self.paused_on {
            Some((sessions, deadline)) => {
                sessions.extend(congested);
                *deadline = (*deadline).min(ends);
            }
            None => self.paused_on = Some((congested, ends)),
        }
    }

    /// JWT sessions: when the token expires.
    fn token_deadline(&self) -> Option<Instant> {
        self.token.as_ref().and_then(|token| token.deadline)
    }

    /// MQTT: the server closes after 1.5 keep-alive intervals without a packet.
    fn next_deadline(&self) -> Option<Instant> {
        self.keep_alive.map(|k| Instant::now() + k + k / 2)
    }

    /// A server DISCONNECT (MQTT 5 only; 3.1.1 just closes), written within
    /// `FINAL_WRITE_TIMEOUT`: the connection ends either way.
    async fn disconnect(&mut self, code: ReasonCode) {
        if self.version == Version::V5 {
            let _ = self.send(Packet::Disconnect(Disconnect::from_server(code)));
        }
        self.write_within(FINAL_WRITE_TIMEOUT).await;
    }

    /// A resumed session: what was in flight goes again, in sending order, before anything
    /// queued, as the socket takes it (`fill_write_buffer`).
    fn resend_inflight(&mut self) {
        let state = self.session.state.lock();
        if !state.inflight.is_empty() {
            let ids = state.inflight.iter().map(|(id, _)| id).collect();
            self.resends = Some(Box::new(Resends(ids)));
        }
    }

    /// Apply the acknowledgements read, release those of ours that routing let go, then
    /// write queued messages while the client's receive maximum allows and the socket takes
    /// them without waiting.
    async fn flush(&mut self) -> Result<(), End> {
        let mut taken = 0;
        let written = async {
            self.release_held_acks()?;
            // While the socket has not taken the last write, filling waits for it: the
            // acknowledgements read meanwhile are applied together then, under one lock,
            // instead of one lock per read turn against the publishers' enqueues (unless they
            // pile up, as from a client that acknowledges but does not read).
            if self.write_pending() && self.acks.len() < MAX_PACKETS_PER_WAKE {
                return self.try_write().await;
            }
            loop {
                let filled = self.fill_write_buffer()?;
                taken += filled.taken;
                self.try_write().await?;
                if !filled.more || self.write_pending() {
                    return Ok(());
                }
            }
        }
        .await;
        // Publishers paused on us may go on once we are under the resume mark.
        self.session.after_drain(self.broker.limits.queue, taken);
        written
    }

    /// Under one hold of the session lock: apply the acknowledgements read since the last
    /// turn, then encode messages to resend and queued messages into the write buffer while
    /// the client's window allows, until there are none or a write's worth is buffered
    /// (`more`: write, then come back). One lock per turn instead of one per message and one
    /// per acknowledgement.
    fn fill_write_buffer(&mut self) -> Result<Filled, End> {
        let Self {
            session,
            framed,
            sent,
            acks,
            broker,
            version,
            client_max_packet,
            client_receive_maximum,
            resends,
            ..
        } = self;
        let buffer = framed.write_buffer_mut();
        let mut filled = Filled {
            more: false,
            taken: 0,
        };
        if buffer.len() >= WRITE_BATCH_BYTES && acks.is_empty() {
            // The socket is behind: nothing to add, and no lock to take.
            return Ok(filled);
        }
        let mut state = session.state.lock();
        apply_acks(&mut state, acks, buffer);
        let mut now = None;
        if let Some(Resends(ids)) = resends.as_deref_mut() {
            while buffer.len() < WRITE_BATCH_BYTES {
                let Some(id) = ids.pop_front() else {
                    break;
                };
                let Some(packet_id) = NonZeroU16::new(id) else {
                    continue;
                };
                match state.inflight.get(id) {
                    Some(
                        Outbound::AwaitingPubAck(delivery) | Outbound::AwaitingPubRec(delivery),
                    ) => {
                        // Already on its way: resent even when its expiry has passed meanwhile.
                        let now = *now.get_or_insert_with(Instant::now);
                        let expiry = delivery.expiry_left(now).unwrap_or(Some(NonZeroU32::MIN));
                        let publish = outgoing(delivery, Some(packet_id), true, &[], expiry);
                        if encode_delivery(*version, *client_max_packet, &publish, buffer, broker)?
                        {
                            sent.count(&publish);
                        }
                    }
                    Some(Outbound::AwaitingPubComp) => {
                        let [high, low] = id.to_be_bytes();
                        buffer.extend_from_slice(&[0x62, 0x02, high, low]);
                    }
                    // Acknowledged meanwhile.
                    None => {}
                }
            }
            if !ids.is_empty() {
                filled.more = true;
                return Ok(filled);
            }
            *resends = None;
        }
        while buffer.len() < WRITE_BATCH_BYTES {
            if state.inflight.len() >= *client_receive_maximum {
                return Ok(filled);
            }
            let Some(queued) = state.queue.pop_front() else {
                return Ok(filled);
            };
            filled.taken += 1;
            let delivery = &queued.delivery;
            let expiry = match delivery.expires_at {
                None => None,
                Some(_) => match delivery.expiry_left(*now.get_or_insert_with(Instant::now)) {
                    Ok(left) => left,
                    Err(Expired) => {
                        broker.metrics.drop_message("expired");
                        continue;
                    }
                },
            };
            let packet_id = match delivery.qos {
                QoS::AtMostOnce => None,
                _ => {
                    let Some(id) = state.next_packet_id() else {
                        state.queue.push_front(queued);
                        filled.taken -= 1;
                        return Ok(filled);
                    };
                    Some(id)
                }
            };
            let publish = outgoing(delivery, packet_id, false, &queued.subscription_ids, expiry);
            let written = encode_delivery(*version, *client_max_packet, &publish, buffer, broker)?;
            if !written {
                continue;
            }
            sent.count(&publish);
            if let Some(id) = packet_id {
                let delivery = queued.delivery;
                let outbound = match delivery.qos {
                    QoS::AtLeastOnce => Outbound::AwaitingPubAck(delivery),
                    _ => Outbound::AwaitingPubRec(delivery),
                };
                state.inflight.push(id.get(), outbound);
            }
        }
        filled.more = true;
        Ok(filled)
    }

    /// The client has our receive maximum of acknowledgements waiting for routing: it may
    /// have no more messages in flight (MQTT 5 clients stop by themselves; 3.1.1 clients,
    /// which have no receive maximum, are stopped by reading no further).
    fn held_acks_full(&self) -> bool {
        self.held.as_ref().is_some_and(|held| {
            held.waiting.len() >= usize::from(self.broker.limits.receive_maximum)
        })
    }

    /// A ticket for the next routed message of this connection: its acknowledgement waits
    /// until the routing task has stored it.
    fn route_ticket(&mut self) -> RouteTicket {
        let session = &self.session;
        let held = self.held.get_or_insert_with(|| {
            Box::new(HeldAcks {
                routed: Arc::new(RoutedAcks::new(session.clone())),
                last_routed: 0,
                waiting: VecDeque::new(),
            })
        });
        held.last_routed += 1;
        RouteTicket {
            acks: held.routed.clone(),
            seq: held.last_routed,
        }
    }

    /// Acknowledge a QoS 1 (PUBACK) or QoS 2 (PUBREC) PUBLISH: at once, unless it waits for
    /// its routed copy to be stored (`routed`) or acknowledgements before it wait.
    fn acknowledge(&mut self, qos: QoS, ack: Ack, routed: Option<u64>) -> Result<(), End> {
        match &mut self.held {
            Some(held) if routed.is_some() || !held.waiting.is_empty() => {
                held.waiting.push_back(HeldAck { qos, ack, routed });
                Ok(())
            }
            _ => self.send(acknowledgement(qos, ack)),
        }
    }

    /// Send the held acknowledgements whose routed messages are stored, in order. A message
    /// the routing Topic could not take is refused (MQTT 5: the store's reason code in PUBACK
    /// / PUBREC; 3.1.1 cannot say so: the connection closes and the client sends it again).
    fn release_held_acks(&mut self) -> Result<(), End> {
        let Some(mut held) = self.held.take() else {
            return Ok(());
        };
        let finished = held.routed.finished();
        let mut released = Ok(());
        while let Some(front) = held.waiting.front() {
            if front.routed.is_some_and(|seq| seq > finished) {
                break;
            }
            let Some(HeldAck {
                qos,
                mut ack,
                routed,
            }) = held.waiting.pop_front()
            else {
                break;
            };
            if let Some(code) = routed.and_then(|seq| held.routed.failure(seq)) {
                if qos == QoS::ExactlyOnce {
                    // The exchange ends here: a resend is a new message, routed again.
                    self.session.state.lock().on_pubrel(ack.packet_id.get());
                }
                if self.version == Version::V311 {
                    released = Err(End::Lost(ROUTING_FAILED));
                    break;
                }
                ack.reason = code.as_u8();
            }
            if let Err(end) = self.send(acknowledgement(qos, ack)) {
                released = Err(end);
                break;
            }
        }
        self.held = Some(held);
        released
    }

    async fn on_packet(&mut self, packet: Packet) -> Result<(), End> {
        match packet {
            Packet::Publish(publish) => self.on_publish(*publish).await,
            // Applied with the next turn's sending, under the same lock (`apply_acks`).
            Packet::PubAck(ack) => {
                self.acks.push(Acknowledged::Ack(ack.packet_id.get()));
                Ok(())
            }
            Packet::PubRec(ack) => {
                let refused = is_failure(ack.reason);
                self.acks
                    .push(Acknowledged::Received(ack.packet_id.get(), refused));
                Ok(())
            }
            Packet::PubRel(ack) => {
                let known = self.session.state.lock().on_pubrel(ack.packet_id.get());
                let code = if !known && self.version == Version::V5 {
                    ReasonCode::PacketIdentifierNotFound
                } else {
                    ReasonCode::Success
                };
                let reply = Ack::with(code, ack.packet_id);
                self.send(Packet::PubComp(reply))
            }
            Packet::PubComp(ack) => {
                self.acks.push(Acknowledged::Completed(ack.packet_id.get()));
                Ok(())
            }
            Packet::Subscribe(subscribe) => self.on_subscribe(subscribe).await,
            Packet::Unsubscribe { packet_id, filters } => {
                let reasons = filters
                    .iter()
                    .map(|raw| {
                        if self.broker.unsubscribe(&self.session, raw) {
                            ReasonCode::Success.as_u8()
                        } else {
                            ReasonCode::NoSubscriptionExisted.as_u8()
                        }
                    })
                    .collect();
                self.send(Packet::UnsubAck(SubAck {
                    packet_id,
                    reasons,
                    reason_string: None,
                }))
            }
            Packet::PingReq => self.send(Packet::PingResp),
            Packet::Disconnect(disconnect) => {
                if let Some(expiry) = disconnect.session_expiry_interval {
                    let mut state = self.session.state.lock();
                    // A session that was to end with the connection cannot be extended now.
                    if state.expiry_interval != 0 {
                        state.expiry_interval = expiry.min(state.expiry_interval.max(expiry));
                    }
                }
                Err(End::Disconnected {
                    publish_will: disconnect.reason == ReasonCode::DisconnectWithWill,
                })
            }
            Packet::Auth {
                reason: code,
                method,
                data,
            } => self.on_auth(code, method, data).await,
            // A second CONNECT, or a packet only a server sends.
            _ => {
                self.disconnect(ReasonCode::ProtocolError).await;
                Err(End::Lost("protocol error"))
            }
        }
    }

    /// MQTT 5 §4.12.1 re-authentication: AUTH 0x19 with the CONNECT's method and a new
    /// token; success is answered with AUTH 0x00 and moves the session's expiry to the new
    /// token's. AUTH on a session that did not authenticate with a method, another method or
    /// another reason code is a protocol error (0x82); a token that fails ends the session
    /// (DISCONNECT 0x87).
    async fn on_auth(
        &mut self,
        code: u8,
        method: Option<String>,
        data: Option<bytes::Bytes>,
    ) -> Result<(), End> {
        let expected = self.token.as_ref().and_then(|token| token.method.clone());
        if expected.is_none() || method != expected || code != ReasonCode::ReAuthenticate {
            self.disconnect(ReasonCode::ProtocolError).await;
            return Err(End::Lost("unexpected AUTH"));
        }
        let snapshot = self.broker.snapshot.load();
        let outcome = self.broker.authenticator.reauthenticate(
            &snapshot,
            self.authorizer.authentication_name(),
            data.as_deref(),
            std::time::SystemTime::now(),
        );
        drop(snapshot);
        let auth = &self.broker.metrics.auth;
        match outcome {
            Ok(expiry) => {
                auth.success(super::authenticate::Method::Jwt);
                if let Some(token) = self.token.as_mut() {
                    token.deadline = Some(Instant::now() + expiry.remaining);
                }
                debug!(client = %self.session.client_id, expires_at = expiry.expires_at, "re-authenticated");
                self.send(Packet::Auth {
                    reason: ReasonCode::Success.as_u8(),
                    method: expected,
                    data: None,
                })
            }
            Err(failure) => {
                auth.failure(super::authenticate::Method::Jwt, failure);
                info!(client = %self.session.client_id, reason = failure.reason(), "re-authentication refused: {failure}");
                self.disconnect(ReasonCode::NotAuthorized).await;
                Err(End::Lost("re-authentication failed"))
            }
        }
    }

    async fn on_publish(&mut self, mut publish: Publish) -> Result<(), End> {
        if let Some(until) = self.rate.take() {
            self.paused_until = Some(until);
            self.broker
                .metrics
                .limited
                .with_label_values(&["messages_per_second"])
                .inc();
        }
        let metrics = &self.broker.metrics;
        let qos = publish.message.qos;
        metrics.message_in(qos);
        metrics.bytes_in(
            self.transport.listener(),
            publish.message.payload.len() as u64,
        );
        if let Some(alias) = publish.topic_alias {
            if alias.get() > TOPIC_ALIAS_MAXIMUM || self.version == Version::V311 {
                self.disconnect(ReasonCode::TopicAliasInvalid).await;
                return Err(End::Lost("topic alias over the maximum"));
            }
            if publish.message.topic.is_empty() {
                let index = usize::from(alias.get()) - 1;
                match self
                    .topic_aliases
                    .as_ref()
                    .and_then(|aliases| aliases[index].as_ref())
                {
                    Some(topic) => publish.message.topic = topic.clone(),
                    // MQTT 5 §3.3.4: an alias with no mapping is a protocol error.
                    None => {
                        self.disconnect(ReasonCode::ProtocolError).await;
                        return Err(End::Lost("unknown topic alias"));
                    }
                }
            } else if validate_topic_name(&publish.message.topic).is_ok() {
                let index = usize::from(alias.get()) - 1;
                self.topic_aliases.get_or_insert_with(Default::default)[index] =
                    Some(publish.message.topic.clone());
            }
            publish.topic_alias = None;
        }
        if validate_topic_name(&publish.message.topic).is_err() {
            self.disconnect(ReasonCode::TopicNameInvalid).await;
            return Err(End::Lost("invalid topic name"));
        }
        if publish.message.payload.len() > self.broker.limits.max_payload_bytes {
            self.disconnect(ReasonCode::PacketTooLarge).await;
            return Err(End::Lost("message too large"));
        }
        let Some(packet_id) = publish
            .packet_id
            .filter(|_| qos != QoS::AtMostOnce)
            .or(None)
        else {
            // QoS 0.
            if self
                .authorizer
                .current()
                .can_publish(&publish.message.topic)
            {
                // Best effort: dropped (and counted) when the routing queue is full.
                if self.broker.routes(&publish.message) {
                    self.broker.route(
                        &publish.message,
                        self.authorizer.authentication_name(),
                        None,
                    );
                }
                let published = self.broker.publish_batched(
                    publish.message,
                    &self.session.client_id,
                    &mut self.outbox,
                );
                self.pause_for(published.congested);
            } else {
                self.broker.metrics.drop_message("not_authorized");
            }
            return Ok(());
        };
        if qos == QoS::ExactlyOnce {
            let (new, count) = {
                let mut state = self.session.state.lock();
                let new = state.on_incoming_qos2(packet_id.get());
                (new, state.incoming_qos2.len())
            };
            if count > usize::from(self.broker.limits.receive_maximum) {
                self.disconnect(ReasonCode::ReceiveMaximumExceeded).await;
                return Err(End::Lost("receive maximum exceeded"));
            }
            if !new {
                return self.acknowledge(qos, ok_ack(packet_id), None);
            }
        }
        let allowed = self
            .authorizer
            .current()
            .can_publish(&publish.message.topic);
        let mut ack = ok_ack(packet_id);
        let mut routed = None;
        if allowed {
            // Acknowledged once the routed copy is stored (mqtt/README.md "Routing").
            if self.broker.routes(&publish.message) {
                let ticket = self.route_ticket();
                routed = Some(ticket.seq);
                self.broker.route(
                    &publish.message,
                    self.authorizer.authentication_name(),
                    Some(ticket),
                );
            }
            let published = self.broker.publish_batched(
                publish.message,
                &self.session.client_id,
                &mut self.outbox,
            );
            self.pause_for(published.congested);
        } else {
            self.broker.metrics.drop_message("not_authorized");
            if let Some(suppressed) = self.broker.refusal_log.allow("publish_not_authorized") {
                info!(client = %truncated(&self.session.client_id), topic = %truncated(&publish.message.topic), suppressed, "PUBLISH not authorized");
            }
            // 3.1.1 has no way to say no: the message is dropped, the flow completes.
            if self.version == Version::V5 {
                ack.reason = ReasonCode::NotAuthorized.as_u8();
                if qos == QoS::ExactlyOnce {
                    self.session.state.lock().on_pubrel(packet_id.get());
                }
            }
        }
        self.acknowledge(qos, ack, routed)
    }

    async fn on_subscribe(&mut self, subscribe: super::codec::Subscribe) -> Result<(), End> {
        let mut reasons = Vec::with_capacity(subscribe.filters.len());
        let mut retained = Vec::new();
        for (raw, options) in subscribe.filters {
            let (group, filter) = match split(&raw) {
                Ok(Some(parts)) => parts,
                _ => {
                    reasons.push(ReasonCode::TopicFilterInvalid.as_u8());
                    continue;
                }
            };
            if !self.authorizer.current().can_subscribe(&filter) {
                if let Some(suppressed) = self.broker.refusal_log.allow("subscribe_not_authorized")
                {
                    info!(client = %truncated(&self.session.client_id), filter = %truncated(&raw), suppressed, "SUBSCRIBE not authorized");
                }
                reasons.push(ReasonCode::NotAuthorized.as_u8());
                continue;
            }
            let over_limit = {
                let state = self.session.state.lock();
                !state.subscriptions.contains(&raw)
                    && state.subscriptions.len() >= self.limits.subscriptions_per_connection
            };
            if over_limit {
                info!(client = %self.session.client_id, filter = %raw, "SUBSCRIBE over maximumSubscriptionsPerConnection");
                self.broker
                    .metrics
                    .limited
                    .with_label_values(&["subscriptions_per_connection"])
                    .inc();
                reasons.push(ReasonCode::QuotaExceeded.as_u8());
                continue;
            }
            let (_, messages) = self.broker.subscribe(
                &self.session,
                NewSubscription {
                    raw,
                    share_group: group,
                    filter,
                    options,
                    subscription_id: subscribe.subscription_id,
                },
            );
            retained.extend(messages);
            reasons.push(options.qos.granted().as_u8());
        }
        self.send(Packet::SubAck(SubAck {
            packet_id: subscribe.packet_id,
            reasons,
            reason_string: None,
        }))?;
        let ids: Vec<NonZeroU32> = subscribe.subscription_id.into_iter().collect();
        for message in retained {
            self.session.enqueue_with(
                Delivery::of(message),
                ids.clone(),
                self.broker.limits.queue,
                &self.broker.metrics,
            );
        }
        Ok(())
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

    async fn finish(mut self, end: End) {
        // Acknowledgements read but not applied still count: those messages were delivered.
        if !self.acks.is_empty() {
            let mut state = self.session.state.lock();
            apply_acks(&mut state, &mut self.acks, &mut bytes::BytesMut::new());
        }
        // Nobody drains this session now: publishers paused on it must not wait for us.
        self.session.release_publishers();
        let disconnection = end.disconnection_reason();
        self.broker.metrics.disconnection(disconnection.as_str());
        self.broker.session_disconnected(
            self.authorizer.authentication_name(),
            &self.session.client_id,
            self.attachment.connection_id,
            disconnection,
        );
        let why = match &end {
            End::Disconnected { .. } => "disconnected",
            End::Lost(why) => why,
            End::TakenOver => "taken over",
        };
        info!(client = %self.session.client_id, why, listener = ?self.transport.listener(), "connection ended");
        let publish_will = match end {
            End::Disconnected { publish_will } => publish_will,
            End::Lost(_) | End::TakenOver => true,
        };
        if let Some(will) = self.will.take()
            && publish_will
        {
            let will: Message = *will;
            let delay = self.will_delay;
            let client_id = &self.session.client_id;
            let owner = self.authorizer.authentication_name().to_string();
            if let End::TakenOver = end {
                // MQTT 5 §3.1.4: the will of a connection taken over is published as usual —
                // at once when its delay is 0 or the take-over ends the session (clean start,
                // another identity); a delayed will is discarded, as the new connection
                // resumed the session before the delay passed.
                if delay == 0 || self.attachment.session_ended() {
                    self.broker.publish_will(will, &owner, client_id);
                }
            } else {
                // §3.1.3.2.2: after the delay, or when the session ends if that is sooner.
                let expiry = self.session.state.lock().expiry_interval;
                if delay == 0 || expiry == 0 {
                    self.broker.publish_will(will, &owner, client_id);
                } else {
                    let after = Duration::from_secs(u64::from(delay.min(expiry)));
                    self.broker.publish_will_later(
                        &self.session,
                        self.attachment.connection_id,
                        will,
                        after,
                    );
                }
            }
        }
        // A socket that takes nothing would hold the close (and this task) for ever.
        if !matches!(end, End::Lost(WRITE_STALLED)) {
            let _ = tokio::time::timeout(FINAL_WRITE_TIMEOUT, self.framed.close()).await;
        }
        self.broker
            .detach(&self.session, self.attachment.connection_id);
    }
}

/// The acknowledgement of a received PUBLISH: PUBACK for QoS 1, PUBREC for QoS 2.
fn acknowledgement(qos: QoS, ack: Ack) -> Packet {
    match qos {
        QoS::ExactlyOnce => Packet::PubRec(ack),
        _ => Packet::PubAck(ack),
    }
}

fn ok_ack(packet_id: NonZeroU16) -> Ack {
    Ack::with(ReasonCode::Success, packet_id)
}

fn random_suffix() -> String {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::broker::Limits;
    use crate::mqtt::codec::reason;
    use crate::mqtt::metrics::MqttMetrics;
    use crate::snapshot::SharedSnapshot;
    use gridline_crds::model::Snapshot;

    /// Idle connections are most of a broker's memory (mqtt/README.md "Idle connections"):
    /// tokio allocates each connection's task as its future plus about 100 bytes, in steps of
    /// 128. What the future holds while the connection waits must stay small; a field or a
    /// select! branch that grows it shows up here first.
    #[tokio::test]
    async fn a_plaintext_connection_task_stays_within_its_memory_budget() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let metrics = MqttMetrics::register(&prometheus::Registry::new()).unwrap();
        let broker = Arc::new(Broker::new(
            SharedSnapshot::new(),
            metrics,
            Limits::default(),
        ));
        let future = handle(server, broker, Transport::Plaintext);
        let size = std::mem::size_of_val(&future);
        println!("connection future: {size} bytes");
        assert!(size <= 1_472, "an idle connection's future is {size} bytes");
    }

    #[test]
    fn acknowledgements_are_applied_in_one_go_and_a_pubrec_gets_its_pubrel() {
        let mut state = crate::mqtt::session::SessionState::default();
        let message = |qos| {
            Delivery::of(Message {
                topic: "t".into(),
                payload: bytes::Bytes::from_static(b"x"),
                qos,
                retain: false,
                properties: Default::default(),
            })
        };
        state
            .inflight
            .push(4, Outbound::AwaitingPubAck(message(QoS::AtLeastOnce)));
        state
            .inflight
            .push(5, Outbound::AwaitingPubRec(message(QoS::ExactlyOnce)));
        state
            .inflight
            .push(6, Outbound::AwaitingPubRec(message(QoS::ExactlyOnce)));
        let mut acks = vec![
            Acknowledged::Ack(4),
            Acknowledged::Received(5, false),
            Acknowledged::Received(6, true),
        ];
        let mut buffer = bytes::BytesMut::new();
        apply_acks(&mut state, &mut acks, &mut buffer);
        assert!(acks.is_empty());
        assert_eq!(&buffer[..], &[0x62, 0x02, 0x00, 0x05], "PUBREL for 5 only");
        let left: Vec<(u16, &Outbound)> = state.inflight.iter().collect();
        assert_eq!(left, vec![(5, &Outbound::AwaitingPubComp)]);
        let (packets, error) = crate::mqtt::codec::decode_stream(Some(Version::V5), 1024, &buffer);
        assert!(error.is_none());
        assert!(
            matches!(&packets[..], [Packet::PubRel(ack)] if ack.packet_id.get() == 5 && ack.reason == 0)
        );
    }

    fn connect(keep_alive: u16) -> Connect {
        Connect {
            version: Version::V5,
            client_id: "c1".into(),
            clean_start: true,
            keep_alive,
            username: Some("c1".into()),
            password: None,
            session_expiry_interval: 0,
            receive_maximum: None,
            maximum_packet_size: None,
            topic_alias_maximum: 0,
            authentication_method: None,
            authentication_data: None,
            will: None,
        }
    }

    /// A connection past the authentication step, and the client's end of the pipe.
    fn connected(keep_alive: u16) -> (Conn<tokio::io::DuplexStream>, tokio::task::JoinHandle<()>) {
        connected_with(keep_alive, NamespaceLimits::of(&Snapshot::default()))
    }

    fn connected_with(
        keep_alive: u16,
        limits: NamespaceLimits,
    ) -> (Conn<tokio::io::DuplexStream>, tokio::task::JoinHandle<()>) {
        let metrics = MqttMetrics::register(&prometheus::Registry::new()).unwrap();
        let broker = Arc::new(Broker::new(
            SharedSnapshot::new(),
            metrics,
            Limits::default(),
        ));
        let (client, server) = tokio::io::duplex(64 * 1024);
        let server = Framed::new(server, Codec::new(Version::V5, 1 << 20));
        let task = tokio::spawn(async move {
            let connect = connect(keep_alive);
            let attached = attach(&broker, &connect, "c1", limits).unwrap();
            let mut connection = Connection::start(
                server,
                broker,
                connect,
                "c1".into(),
                Transport::Plaintext,
                attached,
                limits,
            );
            let end = connection.run().await;
            connection.finish(end).await;
        });
        (Framed::new(client, Codec::new(Version::V5, 1 << 20)), task)
    }

    /// A connection whose client's end of the pipe holds only `pipe_bytes` unread, with its
    /// session and broker, so that messages can be queued to it as the router would.
    fn connected_through(
        keep_alive: u16,
        pipe_bytes: usize,
    ) -> (
        Conn<tokio::io::DuplexStream>,
        tokio::task::JoinHandle<()>,
        Arc<Session>,
        Arc<Broker>,
    ) {
        connected_through_as(Version::V5, keep_alive, pipe_bytes)
    }

    fn connected_through_as(
        version: Version,
        keep_alive: u16,
        pipe_bytes: usize,
    ) -> (
        Conn<tokio::io::DuplexStream>,
        tokio::task::JoinHandle<()>,
        Arc<Session>,
        Arc<Broker>,
    ) {
        let metrics = MqttMetrics::register(&prometheus::Registry::new()).unwrap();
        let broker = Arc::new(Broker::new(
            SharedSnapshot::new(),
            metrics,
            Limits::default(),
        ));
        let limits = NamespaceLimits::of(&Snapshot::default());
        let (client, server) = tokio::io::duplex(pipe_bytes);
        let server = Framed::new(server, Codec::new(version, 1 << 20));
        let connect = Connect {
            version,
            ..connect(keep_alive)
        };
        let attached = attach(&broker, &connect, "c1", limits).unwrap();
        let session = attached.0.session.clone();
        let task = tokio::spawn({
            let broker = broker.clone();
            async move {
                let mut connection = Connection::start(
                    server,
                    broker,
                    connect,
                    "c1".into(),
                    Transport::Plaintext,
                    attached,
                    limits,
                );
                let end = connection.run().await;
                connection.finish(end).await;
            }
        });
        let client = Framed::new(client, Codec::new(version, 1 << 20));
        (client, task, session, broker)
    }

    /// Queue `count` QoS 0 messages of 1 KiB for `session`, as the router would.
    fn queue_messages(session: &Session, broker: &Broker, count: usize) {
        for _ in 0..count {
            session.enqueue(
                Message {
                    topic: "t".into(),
                    payload: bytes::Bytes::from(vec![b'x'; 1024]),
                    qos: QoS::AtMostOnce,
                    retain: false,
                    properties: Default::default(),
                },
                broker.limits.queue,
                &broker.metrics,
            );
        }
    }

    fn disconnections(broker: &Broker, reason: &str) -> u64 {
        broker
            .metrics
            .disconnections
            .with_label_values(&[reason])
            .get()
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_reads_nothing_is_closed_after_one_and_a_half_keep_alives_though_it_pings()
     {
        let (mut client, task, session, broker) = connected_through(10, 4096);
        assert!(matches!(client.next().await, Some(Ok(Packet::ConnAck(_)))));
        // More than the pipe holds: the connection's writes stop being taken at once.
        queue_messages(&session, &broker, 200);
        tokio::time::sleep(Duration::from_millis(10)).await;
        for _ in 0..2 {
            tokio::time::sleep(Duration::from_secs(5)).await;
            client.send(Packet::PingReq).await.unwrap();
        }
        // 14 s into the stall: its pings are read, so no keep-alive timeout.
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(!task.is_finished(), "closed before the write deadline");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(task.is_finished(), "still open 16 s into the stall");
        task.await.unwrap();
        assert_eq!(disconnections(&broker, "SessionOverflow"), 1);
        assert_eq!(
            disconnections(&broker, "ConnectionLost"),
            0,
            "not a keep-alive timeout"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_whose_socket_drains_slowly_stays_connected_while_it_pings() {
        use tokio::io::AsyncReadExt;
        let (mut client, task, session, broker) = connected_through(10, 4096);
        assert!(matches!(client.next().await, Some(Ok(Packet::ConnAck(_)))));
        queue_messages(&session, &broker, 200);
        let mut sip = [0u8; 512];
        for _ in 0..12 {
            tokio::time::sleep(Duration::from_secs(5)).await;
            // Raw bytes: what the socket takes is progress, whatever they are.
            let read = client.get_mut().read(&mut sip).await.unwrap();
            assert!(read > 0);
            client.send(Packet::PingReq).await.unwrap();
        }
        assert!(!task.is_finished(), "closed after 60 s of slow progress");
        assert_eq!(disconnections(&broker, "SessionOverflow"), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_reading_and_pinging_is_closed_within_one_and_a_half_keep_alives() {
        let (mut client, task, session, broker) = connected_through(10, 4096);
        assert!(matches!(client.next().await, Some(Ok(Packet::ConnAck(_)))));
        let start = Instant::now();
        queue_messages(&session, &broker, 200);
        task.await.unwrap();
        let elapsed = start.elapsed().as_secs();
        assert_eq!(elapsed, 15, "closed {elapsed} s after it went quiet");
        drop(client);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_keep_alive_a_client_that_reads_nothing_is_closed_after_sixty_seconds() {
        // 3.1.1 keeps a keep-alive of 0 (MQTT 5 is granted the maximum instead).
        let (mut client, task, session, broker) = connected_through_as(Version::V311, 0, 4096);
        assert!(matches!(client.next().await, Some(Ok(Packet::ConnAck(_)))));
        let start = Instant::now();
        queue_messages(&session, &broker, 200);
        task.await.unwrap();
        assert_eq!(start.elapsed(), WRITE_STALL_WITHOUT_KEEP_ALIVE);
        assert_eq!(disconnections(&broker, "SessionOverflow"), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_is_disconnected_after_one_and_a_half_keep_alives() {
        let (mut client, task) = connected(10);
        assert!(matches!(client.next().await, Some(Ok(Packet::ConnAck(a))) if a.reason == 0));
        let start = Instant::now();
        let packet = client.next().await;
        assert!(
            matches!(packet, Some(Ok(Packet::Disconnect(ref d))) if d.reason == reason::KEEP_ALIVE_TIMEOUT),
            "{packet:?}"
        );
        assert_eq!(start.elapsed().as_secs(), 15);
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn pings_keep_a_connection_alive() {
        let (mut client, _task) = connected(10);
        client.next().await.unwrap().unwrap();
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(12)).await;
            client.send(Packet::PingReq).await.unwrap();
            assert!(matches!(client.next().await, Some(Ok(Packet::PingResp))));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_keep_alive_over_the_limit_is_lowered_in_connack() {
        let (mut client, _task) = connected(u16::MAX);
        let Some(Ok(Packet::ConnAck(ack))) = client.next().await else {
            panic!()
        };
        assert_eq!(ack.server_keep_alive, Some(1160));
    }

    fn publish(topic: &str, alias: Option<u16>, packet_id: u16) -> Packet {
        Packet::Publish(Box::new(Publish {
            dup: false,
            packet_id: NonZeroU16::new(packet_id),
            topic_alias: alias.and_then(NonZeroU16::new),
            subscription_ids: Vec::new(),
            message: Message {
                topic: topic.into(),
                payload: bytes::Bytes::from_static(b"x"),
                qos: if packet_id == 0 {
                    QoS::AtMostOnce
                } else {
                    QoS::AtLeastOnce
                },
                retain: false,
                properties: Default::default(),
            },
        }))
    }

    #[tokio::test(start_paused = true)]
    async fn connack_grants_topic_aliases_and_announces_subscription_identifiers() {
        let (mut client, _task) = connected(60);
        let Some(Ok(Packet::ConnAck(ack))) = client.next().await else {
            panic!()
        };
        assert_eq!(ack.topic_alias_maximum, TOPIC_ALIAS_MAXIMUM);
    }

    #[tokio::test(start_paused = true)]
    async fn a_topic_alias_over_the_maximum_is_disconnected_with_0x94() {
        let (mut client, task) = connected(60);
        client.next().await.unwrap().unwrap();
        client
            .send(publish("lab/a", Some(TOPIC_ALIAS_MAXIMUM + 1), 1))
            .await
            .unwrap();
        let packet = client.next().await;
        assert!(
            matches!(packet, Some(Ok(Packet::Disconnect(ref d))) if d.reason == reason::TOPIC_ALIAS_INVALID),
            "{packet:?}"
        );
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn an_alias_never_set_is_a_protocol_error_and_a_set_one_is_resolved() {
        let (mut client, task) = connected(60);
        client.next().await.unwrap().unwrap();
        client.send(publish("lab/a", Some(3), 1)).await.unwrap();
        assert!(matches!(client.next().await, Some(Ok(Packet::PubAck(_)))));
        client.send(publish("", Some(3), 2)).await.unwrap();
        let ack = client.next().await;
        assert!(
            matches!(ack, Some(Ok(Packet::PubAck(ref a))) if a.packet_id.get() == 2),
            "the alias resolves: {ack:?}"
        );
        client.send(publish("", Some(4), 3)).await.unwrap();
        let packet = client.next().await;
        assert!(
            matches!(packet, Some(Ok(Packet::Disconnect(ref d))) if d.reason == reason::PROTOCOL_ERROR),
            "{packet:?}"
        );
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn over_the_message_rate_reading_pauses_until_the_bucket_refills() {
        let mut limits = NamespaceLimits::of(&Snapshot::default());
        limits.messages_per_second = 5;
        let (mut client, _task) = connected_with(60, limits);
        client.next().await.unwrap().unwrap();
        let start = Instant::now();
        for id in 1..=20u16 {
            client.send(publish("lab/a", None, id)).await.unwrap();
        }
        for _ in 1..=20u16 {
            assert!(matches!(client.next().await, Some(Ok(Packet::PubAck(_)))));
        }
        // A burst of 5 tokens (the 6th message is read, then reading pauses), then one
        // message every 0.2 s: the 20th is read 14 × 0.2 s in.
        let elapsed = start.elapsed().as_secs_f64();
        assert!((2.7..3.0).contains(&elapsed), "{elapsed}");
    }
}

#[cfg(test)]
mod auth_tests;
