//! One client connection, one task: CONNECT within the handshake timeout, then packets in,
//! queued messages out and keep-alive, until the client leaves, misbehaves or is taken over.
//!
//! Split by job, each module below the ones that use it: `transport` (what carries the
//! bytes) and `established` (the accepted connection's fields and how it ends) at the
//! bottom; `outbound` (writes, resends, held acknowledgements, the batch's hand-over) on
//! them; `inbound` (packet handlers) on `outbound`; `event_loop` (the `select!`, timers,
//! pauses, Snapshot changes) on both; `handshake` (CONNECT to an `Accepted` connection and
//! its CONNACK) and `finish` (the end) beside it. This entry point strings them together.

mod established;
mod event_loop;
mod finish;
mod handshake;
mod inbound;
mod outbound;
mod transport;

pub use established::{
    ROUTING_FAILED, SHUTTING_DOWN, TOPIC_ALIAS_MAXIMUM, WRITE_STALL_WITHOUT_KEEP_ALIVE,
    WRITE_STALLED,
};
pub use transport::Transport;

use crate::mqtt::broker::Broker;
use handshake::{Accepted, handshake};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

/// Serve one connection to its end. Never panics on what the client sends.
pub async fn handle<IO: AsyncRead + AsyncWrite + Unpin>(
    io: IO,
    broker: Arc<Broker>,
    transport: Transport,
) {
    // The handshake's locals (codec, CONNECT, authentication) live in their own future, which
    // is gone once the connection runs: they must not size every idle task.
    let Some(Accepted {
        mut connection,
        connack,
    }) = handshake(io, &broker, transport).await
    else {
        return;
    };
    let end = connection.run(connack).await;
    broker
        .metrics
        .connection_closed(connection.transport.listener());
    // Boxed, like packet handling in `run`: needed once, it must not size every idle task.
    Box::pin(connection.finish(end)).await;
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod auth_tests;
