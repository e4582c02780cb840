//! The connection once its CONNECT is accepted: what it holds, and how it ends. The jobs
//! that work on it (`outbound`, `inbound`, `event_loop`, `finish`) add their methods in their
//! own modules; the types of its fields live here, below all of them.

use super::transport::Transport;
use crate::mqtt::authorize::{Authorizer, Listener};
use crate::mqtt::broker::Broker;
use crate::mqtt::codec::{Ack, Codec, Message, OutgoingPublish, QoS, Version};
use crate::mqtt::lifecycle::DisconnectionReason;
use crate::mqtt::limits::{NamespaceLimits, RateLimit};
use crate::mqtt::metrics::MqttMetrics;
use crate::mqtt::outbox::Outbox;
use crate::mqtt::peers::acks::ForwardAcks;
use crate::mqtt::routing::RoutedAcks;
use crate::mqtt::session::{Attachment, Session};
use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::codec::Framed;

/// Packets handled from the read buffer before the connection writes and looks around again
/// (so one busy client cannot hold off its own outbound queue or a take-over for long).
pub(super) const MAX_PACKETS_PER_WAKE: usize = 64;
/// Codec buffers of a new connection (each direction): a CONNECT or SUBSCRIBE fits.
pub(super) const INITIAL_BUFFER_BYTES: usize = 256;
/// Queued outgoing bytes that make a write happen before the connection's turn ends.
pub(super) const WRITE_BATCH_BYTES: usize = 64 * 1024;
/// A connection with nothing to do for this long releases its codec buffers.
pub(super) const IDLE_BUFFER_RELEASE: Duration = Duration::from_secs(1);
/// Bytes waiting to be written at which the connection stops reading: while its client does
/// not read, what it sends still gets answers (PUBACK, PINGRESP), which wait here; beyond this
/// the client waits too (mqtt/README.md "Writes that block").
pub(super) const WRITE_BACKLOG_BYTES: usize = 4 * WRITE_BATCH_BYTES;
/// How long the socket may take none of our bytes before the connection is closed, for a
/// client without a keep-alive (with one: 1.5 times it, as for its silence).
pub const WRITE_STALL_WITHOUT_KEEP_ALIVE: Duration = Duration::from_secs(60);
/// How long a last packet (DISCONNECT) and the close may wait for the socket: a client that
/// does not read must not hold its connection's task.
pub(super) const FINAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// `End::Lost` of a connection whose socket took none of our bytes for too long.
pub const WRITE_STALLED: &str = "write stalled";
/// `End::Lost` of a 3.1.1 connection whose message could not be stored in the routing Topic:
/// 3.1.1 has no negative acknowledgement, so the message is left unacknowledged and the
/// client sends it again when it reconnects.
pub const ROUTING_FAILED: &str = "routing failed";
/// `End::Lost` of a connection whose listener closed (server shutdown, listener turned off).
pub const SHUTTING_DOWN: &str = "server shutting down";
/// Topic aliases a client may use towards us (MQTT 5 CONNACK Topic Alias Maximum).
pub const TOPIC_ALIAS_MAXIMUM: u16 = 10;

pub(super) type Conn<IO> = Framed<IO, Codec>;

pub(super) type TopicAliases = [Option<bytestring::ByteString>; TOPIC_ALIAS_MAXIMUM as usize];

/// How the connection ended, for the will and the logs.
pub(super) enum End {
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
    pub(super) fn disconnection_reason(&self) -> DisconnectionReason {
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

/// A connection whose CONNECT was accepted, from its CONNACK to its end. Made only by the
/// handshake (`handshake::establish`), complete from then on. The optional fields are either
/// states that come and go (pauses, a pending write) or rare parts boxed so that an idle
/// connection does not carry them (mqtt/README.md "Idle connections").
pub(super) struct Established<IO> {
    pub(super) framed: Conn<IO>,
    pub(super) broker: Arc<Broker>,
    pub(super) version: Version,
    pub(super) session: Arc<Session>,
    pub(super) attachment: Attachment,
    pub(super) authorizer: Authorizer,
    pub(super) will: Option<Box<Message>>,
    /// MQTT 5 Will Delay Interval (seconds; 0 for 3.1.1).
    pub(super) will_delay: u32,
    pub(super) keep_alive: Option<Duration>,
    /// Outgoing QoS 1/2 messages the client accepts in flight (its receive maximum).
    pub(super) client_receive_maximum: usize,
    pub(super) client_max_packet: Option<NonZeroU32>,
    pub(super) transport: Transport,
    pub(super) limits: NamespaceLimits,
    /// Inbound topic aliases (MQTT 5), 1..=TOPIC_ALIAS_MAXIMUM at index alias - 1; allocated
    /// when the client sets its first one (most never do).
    pub(super) topic_aliases: Option<Box<TopicAliases>>,
    pub(super) rate: RateLimit,
    /// What stops reading besides the socket: the message rate, subscribers behind.
    pub(super) pauses: Pauses,
    /// Since when the bytes in the write buffer have waited without the socket taking any
    /// (None while it is empty): the write-stall deadline counts from here.
    pub(super) unwritten_since: Option<Instant>,
    /// The last flush left something unflushed below the write buffer (TLS).
    pub(super) unflushed: bool,
    /// Packet ids of messages in flight when the session was resumed, to be sent again (in
    /// sending order) as the socket takes them; None once done.
    pub(super) resends: Option<Box<Resends>>,
    /// QoS 1/2 acknowledgements waiting, in order, for routed messages to be stored.
    pub(super) held: Option<Box<HeldAcks>>,
    /// The one timer of the connection (see `event_loop`); allocated once.
    pub(super) timer: Pin<Box<tokio::time::Sleep>>,
    /// The Snapshot changed or listeners are closing (`Broker::connection_checks`).
    pub(super) checks: tokio::sync::watch::Receiver<u64>,
    /// JWT sessions (boxed: most connections are not one).
    pub(super) token: Option<Box<TokenSession>>,
    /// Authenticated by its client certificate: re-checked when the Snapshot changes.
    pub(super) certificate_authenticated: bool,
    /// What the current batch of packets fans out, handed to its sessions after the batch.
    pub(super) outbox: Outbox,
    /// Messages written since the metrics were last told.
    pub(super) sent: SentCounts,
    /// Acknowledgements of outgoing messages read and not applied yet (`apply_acks`).
    pub(super) acks: Vec<Acknowledged>,
}

/// What stops a connection from reading besides its socket; both may hold at once.
#[derive(Default)]
pub(super) struct Pauses {
    /// Over the message rate: reading resumes then.
    pub(super) rate: Option<Instant>,
    /// Flow control: while a subscriber this connection published to is behind, reading
    /// stops until it drains or its patience ends (see the README's "Flow control").
    pub(super) subscribers: Option<SubscriberPause>,
}

impl Pauses {
    pub(super) fn any(&self) -> bool {
        self.rate.is_some() || self.subscribers.is_some()
    }
}

/// Reading paused on subscribers that are behind.
pub(super) struct SubscriberPause {
    /// The sessions still behind (the first is waited on).
    pub(super) sessions: Vec<Arc<Session>>,
    /// When the pause ends whatever they do: the earliest `patience_ends` of the sessions.
    pub(super) ends: Instant,
}

/// An acknowledgement of an outgoing QoS 1/2 message, by packet id.
#[derive(Clone, Copy, Debug)]
pub(super) enum Acknowledged {
    /// PUBACK (QoS 1).
    Ack(u16),
    /// PUBREC (QoS 2), with whether the client refused the message (reason code ≥ 0x80).
    Received(u16, bool),
    /// PUBCOMP (QoS 2).
    Completed(u16),
}

/// Packet ids of messages in flight when a session was resumed, still to be sent again.
pub(super) struct Resends(pub(super) VecDeque<u16>);

/// What a JWT session keeps.
pub(super) struct TokenSession {
    /// The CONNECT's Authentication Method, which AUTH must repeat.
    pub(super) method: Option<String>,
    /// When the token (the last re-authentication's) expires.
    pub(super) deadline: Option<Instant>,
}

/// QoS 1/2 acknowledgements of this connection held back, in the order their PUBLISH came,
/// while one of them waits for its routed message to be stored or for the pods it was
/// forwarded to (acknowledgements go out in order, MQTT §4.6). Allocated at the first routed
/// or forwarded message.
pub(super) struct HeldAcks {
    pub(super) routed: Arc<RoutedAcks>,
    /// Messages forwarded to other pods, whose acknowledgements wait for those pods.
    pub(super) forwarded: Arc<ForwardAcks>,
    /// The routing sequence number of this connection's last routed message.
    pub(super) last_routed: u64,
    pub(super) waiting: VecDeque<HeldAck>,
}

pub(super) struct HeldAck {
    pub(super) qos: QoS,
    pub(super) ack: Ack,
    /// The routed message it waits for.
    pub(super) routed: Option<u64>,
    /// The forwarded message it waits for.
    pub(super) forwarded: Option<u64>,
}

/// Outgoing message counts, added to the metrics once per write instead of per message: a
/// Prometheus counter is one atomic shared by every connection, and fan-out to a hundred
/// subscribers made it the most contended cache line of the process.
#[derive(Default)]
pub(super) struct SentCounts {
    by_qos: [u64; 3],
    bytes: u64,
}

impl SentCounts {
    pub(super) fn count(&mut self, publish: &OutgoingPublish<'_>) {
        self.by_qos[publish.qos as usize] += 1;
        self.bytes += publish.message.payload.len() as u64;
    }

    pub(super) fn publish(&mut self, metrics: &MqttMetrics, listener: Listener) {
        if self.bytes == 0 && self.by_qos == [0; 3] {
            return;
        }
        metrics.messages_out(std::mem::take(&mut self.by_qos));
        metrics.bytes_out(listener, std::mem::take(&mut self.bytes));
    }
}

impl<IO> Established<IO> {
    /// Bytes wait to be written (in the write buffer, or below it in TLS).
    pub(super) fn write_pending(&self) -> bool {
        !self.framed.write_buffer().is_empty() || self.unflushed
    }

    /// The socket is this far behind: stop reading until it takes some.
    pub(super) fn write_backlogged(&self) -> bool {
        self.framed.write_buffer().len() >= WRITE_BACKLOG_BYTES
    }

    /// The client has our receive maximum of acknowledgements waiting for routing: it may
    /// have no more messages in flight (MQTT 5 clients stop by themselves; 3.1.1 clients,
    /// which have no receive maximum, are stopped by reading no further).
    pub(super) fn held_acks_full(&self) -> bool {
        self.held.as_ref().is_some_and(|held| {
            held.waiting.len() >= usize::from(self.broker.limits.receive_maximum)
        })
    }

    /// Whether the connection reads its socket now. It stops while over the message rate,
    /// while a subscriber it published to is behind, while the socket is far behind, and
    /// while the client has its receive maximum of acknowledgements waiting for routing.
    pub(super) fn reading(&self) -> bool {
        !self.pauses.any() && !self.write_backlogged() && !self.held_acks_full()
    }

    /// How long the socket may take none of our bytes: 1.5 keep-alives, as for silence.
    pub(super) fn write_stall_timeout(&self) -> Duration {
        self.keep_alive
            .map_or(WRITE_STALL_WITHOUT_KEEP_ALIVE, |k| k + k / 2)
    }

    /// JWT sessions: when the token expires.
    pub(super) fn token_deadline(&self) -> Option<Instant> {
        self.token.as_ref().and_then(|token| token.deadline)
    }

    /// MQTT: the server closes after 1.5 keep-alive intervals without a packet.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.keep_alive.map(|k| Instant::now() + k + k / 2)
    }
}
