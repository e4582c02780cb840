//! One established link (TLS done, Hellos exchanged): a writer task that drains the link's
//! queue into one buffer and writes it once per batch, and a reader that reads in large
//! chunks, decodes frames in place and hands them to the services in order.
//!
//! Liveness: the writer pings when it has sent nothing for `ping_interval()`; the reader
//! closes the link when it has received nothing for `peer_timeout`. Both read the timing from
//! its watch, so a retuned Namespace applies to links already up.

use super::frame::{Frame, FrameError, Goodbye, GoodbyeReason, NO_SERVICE, Outcome, ServiceId};
use super::inbound::{Inbound, Reply};
use super::metrics::{Failure, PeerCounters};
use super::sender::{Answer, LinkSender, Outgoing};
use crate::cluster::timing::ClusterTiming;
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::debug;

/// How much the reader asks the socket for at once.
const READ_CHUNK: usize = 64 * 1024;

/// A batch is written once it holds this many bytes, even if more frames wait.
const MAX_BATCH_BYTES: usize = 256 * 1024;

/// Frames taken off the queue at a time.
const MAX_BATCH_FRAMES: usize = 1024;

/// Bodies shorter than this are copied out of the read buffer: a service may keep a body for
/// long (a message queued for an offline session), and a slice would keep the whole 64 KiB
/// read chunk it came from alive. Longer bodies stay slices (they pin at most 8 times their
/// size) and are not copied.
const COPY_BODIES_BELOW: usize = 8 * 1024;

/// How long a closing link waits for its Goodbye to be written.
const GOODBYE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// The services' inbound queues, by service number.
pub type Services = Arc<HashMap<ServiceId, mpsc::Sender<Inbound>>>;

/// How a link ended.
#[derive(Debug)]
pub enum Closed {
    /// This pod closed it with a Goodbye (shutdown, peer left the set, replaced).
    Local(GoodbyeReason),
    /// The peer said Goodbye.
    Goodbye(Goodbye),
    /// The peer closed the connection without a Goodbye.
    Eof,
    Timeout(std::time::Duration),
    Io(std::io::Error),
    Protocol(String),
}

impl Closed {
    /// The failure it counts as, if it is one.
    pub fn failure(&self) -> Option<Failure> {
        match self {
            Closed::Local(_) => None,
            Closed::Goodbye(goodbye) => match goodbye.reason {
                GoodbyeReason::Protocol => Some(Failure::Protocol),
                _ => None,
            },
            Closed::Eof | Closed::Io(_) => Some(Failure::Io),
            Closed::Timeout(_) => Some(Failure::Timeout),
            Closed::Protocol(_) => Some(Failure::Protocol),
        }
    }
}

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Closed::Local(reason) => write!(f, "closed by this pod ({reason})"),
            Closed::Goodbye(goodbye) => write!(
                f,
                "the peer said goodbye ({}): {}",
                goodbye.reason,
                crate::log_limit::truncated(&goodbye.message)
            ),
            Closed::Eof => f.write_str("the peer closed the connection without a goodbye"),
            Closed::Timeout(after) => write!(f, "nothing received for {after:?}"),
            Closed::Io(error) => write!(f, "socket error: {error}"),
            Closed::Protocol(problem) => write!(f, "protocol error: {problem}"),
        }
    }
}

/// What a link needs besides its socket.
pub struct LinkContext {
    pub services: Services,
    pub timing: watch::Receiver<ClusterTiming>,
    pub counters: PeerCounters,
}

/// Run the link until it ends. `leftover` holds bytes read past the Hello. The sender is
/// marked closed before this returns, so no request waits on a dead link.
pub async fn run<S>(
    stream: S,
    leftover: BytesMut,
    link: Arc<LinkSender>,
    queue: mpsc::UnboundedReceiver<Outgoing>,
    context: LinkContext,
) -> Closed
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read_half, write_half) = tokio::io::split(stream);
    let mut writer = tokio::spawn(write_loop(
        write_half,
        queue,
        context.timing.clone(),
        context.counters.clone(),
    ));
    let reader = read_loop(read_half, leftover, &link, &context);
    let closed = tokio::select! {
        closed = reader => {
            if let Closed::Protocol(problem) = &closed {
                // Tell the peer why before closing; a stuck writer is not waited for long.
                link.close_with(Goodbye {
                    reason: GoodbyeReason::Protocol,
                    message: problem.clone(),
                });
                let _ = tokio::time::timeout(GOODBYE_GRACE, &mut writer).await;
            }
            writer.abort();
            closed
        }
        written = &mut writer => match written {
            Ok(closed) => closed,
            Err(error) => Closed::Io(std::io::Error::other(error.to_string())),
        },
    };
    link.closed();
    closed
}

async fn write_loop<W>(
    mut socket: W,
    mut queue: mpsc::UnboundedReceiver<Outgoing>,
    timing: watch::Receiver<ClusterTiming>,
    counters: PeerCounters,
) -> Closed
where
    W: AsyncWrite + Unpin,
{
    let mut batch = Vec::with_capacity(MAX_BATCH_FRAMES);
    let mut buffer = BytesMut::with_capacity(MAX_BATCH_BYTES);
    let mut pings = 0u64;
    let idle = tokio::time::sleep(timing.borrow().ping_interval());
    tokio::pin!(idle);
    loop {
        tokio::select! {
            taken = queue.recv_many(&mut batch, MAX_BATCH_FRAMES) => {
                if taken == 0 {
                    // Every sender is gone: the link was dropped without a Goodbye.
                    return Closed::Local(GoodbyeReason::Shutdown);
                }
            }
            () = &mut idle => {
                pings += 1;
                batch.push(Outgoing::Frame(Frame::Ping(pings), None));
            }
        }
        let mut closing = None;
        let mut frames = 0;
        'drain: loop {
            for outgoing in batch.drain(..) {
                match outgoing {
                    Outgoing::Frame(frame, permit) => {
                        frame.encode(&mut buffer);
                        frames += 1;
                        drop(permit);
                    }
                    Outgoing::Close(goodbye) => {
                        let reason = goodbye.reason;
                        Frame::Goodbye(goodbye).encode(&mut buffer);
                        frames += 1;
                        closing = Some(reason);
                        break 'drain;
                    }
                }
            }
            if buffer.len() >= MAX_BATCH_BYTES || queue.is_empty() {
                break;
            }
            queue.recv_many(&mut batch, MAX_BATCH_FRAMES).await;
        }
        batch.clear();
        if let Err(error) = socket.write_all(&buffer).await {
            return Closed::Io(error);
        }
        if let Err(error) = socket.flush().await {
            return Closed::Io(error);
        }
        counters.frames_out.inc_by(frames);
        counters.bytes_out.inc_by(buffer.len() as u64);
        buffer.clear();
        if buffer.capacity() > 4 * MAX_BATCH_BYTES {
            // A huge frame passed: do not keep its memory for the link's lifetime.
            buffer = BytesMut::with_capacity(MAX_BATCH_BYTES);
        }
        if let Some(reason) = closing {
            let _ = socket.shutdown().await;
            return Closed::Local(reason);
        }
        idle.as_mut()
            .reset(Instant::now() + timing.borrow().ping_interval());
    }
}

async fn read_loop<R>(
    mut socket: R,
    mut buffer: BytesMut,
    link: &Arc<LinkSender>,
    context: &LinkContext,
) -> Closed
where
    R: AsyncRead + Unpin,
{
    let mut timing = context.timing.clone();
    let mut last_received = Instant::now();
    loop {
        loop {
            match Frame::decode(&mut buffer, link.max_frame()) {
                Ok(Some(frame)) => {
                    context.counters.frames_in.inc();
                    if let Some(closed) = dispatch(frame, link, &context.services).await {
                        return closed;
                    }
                }
                Ok(None) => break,
                Err(error) => return protocol_error(&error),
            }
        }
        buffer.reserve(READ_CHUNK);
        let timeout = timing.borrow_and_update().peer_timeout;
        tokio::select! {
            biased;
            read = socket.read_buf(&mut buffer) => match read {
                Ok(0) => return Closed::Eof,
                Ok(read) => {
                    last_received = Instant::now();
                    context.counters.bytes_in.inc_by(read as u64);
                }
                Err(error) => return Closed::Io(error),
            },
            () = tokio::time::sleep_until(last_received + timeout) => {
                return Closed::Timeout(timeout);
            }
            // A retuned timeout applies at once.
            Ok(()) = timing.changed() => {}
        }
    }
}

fn protocol_error(error: &FrameError) -> Closed {
    Closed::Protocol(error.to_string())
}

/// `body` in memory of its own if it is small (see [`COPY_BODIES_BELOW`]).
fn detach(body: Bytes) -> Bytes {
    if body.len() < COPY_BODIES_BELOW {
        Bytes::copy_from_slice(&body)
    } else {
        body
    }
}

/// Handle one frame; `Some` when it ends the link.
async fn dispatch(frame: Frame, link: &Arc<LinkSender>, services: &Services) -> Option<Closed> {
    match frame {
        Frame::Request { id, service, body } => match services.get(&service) {
            Some(queue) => {
                let inbound = Inbound::Request {
                    from: link.peer().clone(),
                    body: detach(body),
                    reply: Reply::new(id, link.clone()),
                };
                // A stopped service drops the request, and its Reply answers UNANSWERED.
                let _ = queue.send(inbound).await;
            }
            None => link.respond(Frame::Response {
                id,
                outcome: Outcome::Error {
                    code: NO_SERVICE,
                    message: format!("the pod asked runs no {service}"),
                },
                body: Bytes::new(),
            }),
        },
        Frame::Message { service, body } => match services.get(&service) {
            Some(queue) => {
                let _ = queue
                    .send(Inbound::Message {
                        from: link.peer().clone(),
                        body: detach(body),
                    })
                    .await;
            }
            None => debug!(%service, "message for a service this pod does not run dropped"),
        },
        Frame::Response { id, outcome, body } => link.answer(
            id,
            Answer {
                outcome,
                body: detach(body),
            },
        ),
        Frame::Ping(token) => link.respond(Frame::Pong(token)),
        Frame::Pong(_) => {}
        Frame::Goodbye(goodbye) => return Some(Closed::Goodbye(goodbye)),
        Frame::Hello(_) => {
            return Some(Closed::Protocol(
                "a Hello on a link whose Hellos were exchanged".into(),
            ));
        }
    }
    None
}
