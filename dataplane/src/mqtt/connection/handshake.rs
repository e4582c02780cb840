//! The handshake: CONNECT within the handshake timeout, authentication, the session, and
//! the CONNACK decided. Its locals (codec, CONNECT, authentication) live in their own future,
//! gone once the connection runs: they must not size every idle task.

use super::established::{
    Conn, Established, INITIAL_BUFFER_BYTES, Pauses, SentCounts, TOPIC_ALIAS_MAXIMUM, TokenSession,
    WRITE_BATCH_BYTES,
};
use super::transport::Transport;
use crate::log_limit::truncated;
use crate::mqtt::authenticate::{Authenticated, Method};
use crate::mqtt::authorize::{Authorizer, Listener};
use crate::mqtt::broker::{Attached, Broker, Elsewhere};
use crate::mqtt::codec::{Codec, CodecError, ConnAck, Connect, Packet, Version};
use crate::mqtt::limits::{NamespaceLimits, RateLimit};
use crate::mqtt::outbox::Outbox;
use crate::mqtt::reason::ReasonCode;
use crate::mqtt::session::MAX_INFLIGHT_OUTGOING;
use futures::{SinkExt, StreamExt};
use std::num::NonZeroU16;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_util::codec::Framed;
use tracing::{debug, info};

/// A CONNECT accepted: the connection, and the CONNACK it starts with (boxed: the loop that
/// sends it must not carry it while it waits).
pub(super) struct Accepted<IO> {
    pub(super) connection: Established<IO>,
    pub(super) connack: Box<ConnAck>,
}

/// CONNECT within the handshake timeout, authentication and the session: an `Accepted`
/// connection, or None once the client was refused (CONNACK with the reason) or gave up.
pub(super) async fn handshake<IO: AsyncRead + AsyncWrite + Unpin>(
    io: IO,
    broker: &Arc<Broker>,
    transport: Transport,
) -> Option<Accepted<IO>> {
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
    // Decided without waiting, so that what the decision needs (the CONNECT, who it is) is
    // gone before a refusal is written: only the codec waits with it.
    let mut next = decide(framed, broker, connect, transport);
    // Matched in place (`ref mut`): moving the codec out would give it a second slot in this
    // future.
    match next {
        Next::Accepted(accepted) => Some(*accepted),
        Next::Claim(admitted) => admitted.await,
        Next::Refuse((ref mut framed, code)) => {
            refuse_connect(framed, code, broker, listener).await;
            None
        }
    }
}

/// Authenticate a CONNECT and, alone, attach its session; clustered, the claim to wait for.
/// Decided without waiting, so that what the decision needs (the CONNECT, who it is) is gone
/// before a refusal is written: only the codec waits with it.
fn decide<'a, IO: AsyncRead + AsyncWrite + Unpin + 'a>(
    framed: Conn<IO>,
    broker: &'a Arc<Broker>,
    connect: Box<Connect>,
    transport: Transport,
) -> Next<IO, impl std::future::Future<Output = Option<Accepted<IO>>> + 'a> {
    match authenticate(framed, broker, &connect, &transport) {
        Ok((framed, authenticated, limits)) => {
            // Clustered: the other pods hand over the client id's session and count the
            // authentication name's sessions first. Boxed, with what it holds while it waits:
            // the future of every connection stays the size of one that never waits here.
            if broker.peers.is_some() && !connect.client_id.is_empty() {
                Next::Claim(Box::pin(admit_claimed(
                    framed,
                    broker,
                    connect,
                    authenticated,
                    transport,
                    limits,
                )))
            } else {
                match admit(
                    framed,
                    broker,
                    connect,
                    authenticated,
                    transport,
                    limits,
                    Claimed::default(),
                ) {
                    Ok(accepted) => Next::Accepted(Box::new(accepted)),
                    Err(refused) => Next::Refuse(refused),
                }
            }
        }
        Err(refused) => Next::Refuse(refused),
    }
}

/// After authentication: a refusal to write, or a claim to wait for (boxed).
enum Next<IO, Claiming> {
    Accepted(Box<Accepted<IO>>),
    Refuse((Conn<IO>, ReasonCode)),
    Claim(std::pin::Pin<Box<Claiming>>),
}

/// Longest a CONNACK waits for the other pods to hear of a moved session's subscriptions.
const INTEREST_SETTLE_LIMIT: Duration = Duration::from_secs(5);

/// What the other pods said of a CONNECT's client id.
#[derive(Default)]
struct Claimed {
    elsewhere: Elsewhere,
    /// The session's last lifecycle sequence number on another pod.
    floor: u64,
    /// A session was handed over and adopted here.
    adopted: bool,
}

/// [`admit`] after the other pods answered the client id's claim.
async fn admit_claimed<IO: AsyncRead + AsyncWrite + Unpin>(
    framed: Conn<IO>,
    broker: &Arc<Broker>,
    connect: Box<Connect>,
    authenticated: Authenticated,
    transport: Transport,
    limits: NamespaceLimits,
) -> Option<Accepted<IO>> {
    let listener = transport.listener();
    let claimed = claim(broker, &connect, &authenticated).await;
    let adopted = claimed.adopted;
    let admitted = admit(
        framed,
        broker,
        connect,
        authenticated,
        transport,
        limits,
        claimed,
    );
    match admitted {
        Ok(accepted) => {
            // The session's subscriptions moved here: the other pods learn so before the
            // CONNACK, so that what they publish next reaches it here.
            if adopted {
                broker.interest_settled(INTEREST_SETTLE_LIMIT).await;
            }
            Some(accepted)
        }
        Err((mut framed, code)) => {
            refuse_connect(&mut framed, code, broker, listener).await;
            None
        }
    }
}

/// Claim the CONNECT's client id from the other pods; adopt the session one hands over.
async fn claim(broker: &Arc<Broker>, connect: &Connect, authenticated: &Authenticated) -> Claimed {
    let Some(peers) = &broker.peers else {
        return Claimed::default();
    };
    let answers = peers
        .claim(
            &connect.client_id,
            &authenticated.authentication_name,
            connect.clean_start,
        )
        .await;
    let mut claimed = Claimed::default();
    let mut session: Option<crate::mqtt::persist::StoredSession> = None;
    for answer in answers {
        claimed.elsewhere.connected_for_name += answer.connected_for_name as usize;
        claimed.elsewhere.took_over_connected |= answer.was_connected;
        claimed.floor = claimed.floor.max(answer.last_sequence);
        // Two pods holding one client id (only after a split): the one seen last wins.
        if let Some(handed) = answer.session
            && session
                .as_ref()
                .is_none_or(|kept| kept.expires_at <= handed.expires_at)
        {
            session = Some(handed);
        }
    }
    if let Some(session) = session {
        broker.adopt(session, claimed.floor);
        claimed.adopted = true;
    }
    claimed
}

/// Authenticate a CONNECT: who it is and the Namespace's limits, or the codec back with the
/// reason code that refuses the client.
#[allow(clippy::type_complexity)]
fn authenticate<IO: AsyncRead + AsyncWrite + Unpin>(
    framed: Conn<IO>,
    broker: &Arc<Broker>,
    connect: &Connect,
    transport: &Transport,
) -> Result<(Conn<IO>, Authenticated, NamespaceLimits), (Conn<IO>, ReasonCode)> {
    let listener = transport.listener();
    let snapshot = broker.snapshot.load();
    let authenticated = match broker.authenticator.authenticate(
        &snapshot,
        connect,
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
            return Err((framed, refusal.code));
        }
    };
    let limits = NamespaceLimits::of(&snapshot);
    Ok((framed, authenticated, limits))
}

/// Attach an authenticated CONNECT's session: the accepted connection, or the codec back
/// with the reason code that refuses the client.
fn admit<IO: AsyncRead + AsyncWrite + Unpin>(
    framed: Conn<IO>,
    broker: &Arc<Broker>,
    connect: Box<Connect>,
    authenticated: Authenticated,
    transport: Transport,
    limits: NamespaceLimits,
    claimed: Claimed,
) -> Result<Accepted<IO>, (Conn<IO>, ReasonCode)> {
    let listener = transport.listener();
    let attached = match attach(
        broker,
        &connect,
        &authenticated.authentication_name,
        limits,
        claimed.elsewhere,
    ) {
        Ok(attached) => {
            if claimed.floor > 0 {
                let mut state = attached.0.session.state.lock();
                state.sequence_floor = state.sequence_floor.max(claimed.floor);
            }
            attached
        }
        Err(code) => {
            if claimed.adopted {
                broker.discard_adopted(&connect.client_id);
            }
            if let Some(suppressed) = broker.refusal_log.allow("sessions_per_authentication_name") {
                let username = truncated(connect.username.as_deref().unwrap_or(""));
                info!(%username, reason = code.as_u8(), suppressed, "CONNECT refused: sessions per authentication name");
            }
            return Err((framed, code));
        }
    };
    broker.metrics.connect(listener, "accepted");
    broker.metrics.connection_opened(listener);
    let accepted = establish(
        framed,
        broker.clone(),
        *connect,
        authenticated,
        transport,
        attached,
        limits,
    );
    let connection = &accepted.connection;
    broker.session_connected(
        connection.authorizer.authentication_name(),
        &connection.session.client_id,
        connection.attachment.connection_id,
        connection.session.state.lock().sequence_floor,
    );
    Ok(accepted)
}

/// The connection of an accepted CONNECT, with the CONNACK that tells the client so.
pub(super) fn establish<IO>(
    framed: Conn<IO>,
    broker: Arc<Broker>,
    connect: Connect,
    authenticated: Authenticated,
    transport: Transport,
    (attached, assigned): (Attached, Option<String>),
    limits: NamespaceLimits,
) -> Accepted<IO> {
    let Authenticated {
        authentication_name,
        authentication_method,
        token_expiry,
        method,
    } = authenticated;
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
    // MQTT 5 §4.12: a successful CONNACK repeats the CONNECT's Authentication Method.
    ack.authentication_method = authentication_method.clone();
    let deadline = token_expiry.map(|t| Instant::now() + t.remaining);
    let token = (authentication_method.is_some() || deadline.is_some()).then(|| {
        Box::new(TokenSession {
            method: authentication_method,
            deadline,
        })
    });
    let authorizer = Authorizer::new(broker.snapshot.clone(), authentication_name);
    let client_certificate = !transport.client_certificates().is_empty();
    info!(client = %client_id, authentication_name = authorizer.authentication_name(), version = ?connect.version, listener = ?transport.listener(), client_certificate, present, "connected");
    let connection = Established {
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
        transport,
        limits,
        topic_aliases: None,
        rate: RateLimit::new(limits.messages_per_second),
        pauses: Pauses::default(),
        unwritten_since: None,
        unflushed: false,
        resends: None,
        held: None,
        timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
        checks: broker.connection_checks.subscribe(),
        token,
        certificate_authenticated: method == Method::X509,
        outbox: Outbox::default(),
        sent: SentCounts::default(),
        acks: Vec::new(),
        broker,
    };
    Accepted {
        connection,
        connack: Box::new(ack),
    }
}

/// The session for `connect` (the client id, or one assigned for an empty one).
pub(super) fn attach(
    broker: &Broker,
    connect: &Connect,
    authentication_name: &str,
    limits: NamespaceLimits,
    elsewhere: Elsewhere,
) -> Result<(Attached, Option<String>), ReasonCode> {
    let (client_id, assigned) = if connect.client_id.is_empty() {
        let id = format!("gridline-{}", random_suffix());
        (id.clone(), Some(id))
    } else {
        (connect.client_id.clone(), None)
    };
    let attached = broker.attach_claimed(
        &client_id,
        authentication_name,
        connect.clean_start,
        limits.sessions_per_name,
        elsewhere,
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

fn random_suffix() -> String {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
