//! [`PeerLinks`]: how the services above talk to the other pods.

use super::error::PeerError;
use super::frame::{Frame, Outcome, ServiceId};
use super::sender::LinkSender;
use super::table::{Connected, Table};
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The links to this pod's peers. Cheap to clone.
#[derive(Clone)]
pub struct PeerLinks {
    pub(super) table: Arc<Table>,
}

impl std::fmt::Debug for PeerLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerLinks")
            .field("this", self.table.this())
            .field("connected", &*self.table.connected().borrow())
            .finish()
    }
}

impl PeerLinks {
    /// The link to `pod`, or why there is none.
    fn link(&self, pod: &str) -> Result<Arc<LinkSender>, PeerError> {
        if let Some(link) = self.table.get(pod) {
            return Ok(link);
        }
        let pod: Arc<str> = Arc::from(pod);
        if pod == *self.table.this() {
            return Err(PeerError::ThisPod { pod });
        }
        if self.table.members.borrow().contains(&pod) {
            Err(PeerError::LinkDown { pod })
        } else {
            Err(PeerError::NotMember { pod })
        }
    }

    /// Send a request to `service` on `pod` and wait up to `timeout` (queueing included) for
    /// its answer. Fails at once when the link is down, and as soon as it closes while the
    /// request waits.
    pub async fn request(
        &self,
        pod: &str,
        service: ServiceId,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, PeerError> {
        let link = self.link(pod)?;
        answered(&self.table, &link, link.request(service, body), timeout).await
    }

    /// Send a one-way message to `service` on `pod`, waiting for space in the link's queue.
    /// Messages and requests to one pod arrive in the order they were sent.
    pub async fn send(&self, pod: &str, service: ServiceId, body: Bytes) -> Result<(), PeerError> {
        self.link(pod)?.send(Frame::Message { service, body }).await
    }

    /// [`send`](Self::send) without waiting: `QueueFull` when the link's queue is full.
    pub fn try_send(&self, pod: &str, service: ServiceId, body: Bytes) -> Result<(), PeerError> {
        self.link(pod)?.try_send(Frame::Message { service, body })
    }

    /// [`request`](Self::request), queued at once (keeping its place among what is sent to
    /// `pod` after it) or refused at once (the link is down, or its queue full); the future
    /// waits up to `timeout` for the answer.
    pub fn request_now(
        &self,
        pod: &str,
        service: ServiceId,
        body: Bytes,
        timeout: Duration,
    ) -> Result<impl std::future::Future<Output = Result<Bytes, PeerError>> + use<>, PeerError>
    {
        let link = self.link(pod)?;
        let answer = link.request_now(service, body)?;
        let table = self.table.clone();
        Ok(async move { answered(&table, &link, answer, timeout).await })
    }

    /// The peers whose link is up, each with its link's generation: a peer whose link
    /// dropped and came back has a new one.
    pub fn generations(&self) -> watch::Receiver<super::table::Generations> {
        self.table.generations()
    }

    /// The peers whose link is up (Hellos exchanged), updated as links come and go.
    pub fn connected(&self) -> watch::Receiver<Connected> {
        self.table.connected()
    }

    /// Resolves once the links have stopped: the stop signal fired, every link said Goodbye
    /// and closed, and no dial or handshake is left. Before exiting, a pod awaits this (with a
    /// deadline of its own: a peer that does not read keeps its Goodbye unwritten) so that
    /// peers learn of the stop from a Goodbye rather than from a timeout.
    pub async fn closed(&self) {
        self.table.tasks_ended().await;
    }

    /// This pod's name.
    pub fn this(&self) -> &Arc<str> {
        self.table.this()
    }
}

/// Wait up to `timeout` for a request's answer (counted in `gridline_peer_request_seconds`):
/// its body, or the peer's error, the link's, or the timeout.
async fn answered(
    table: &Table,
    link: &LinkSender,
    answer: impl std::future::Future<Output = Result<super::sender::Answer, PeerError>>,
    timeout: Duration,
) -> Result<Bytes, PeerError> {
    let started = std::time::Instant::now();
    let answer = tokio::time::timeout(timeout, answer).await;
    table
        .metrics
        .request_seconds
        .observe(started.elapsed().as_secs_f64());
    let answer = answer.map_err(|_| PeerError::Timeout {
        pod: link.peer().clone(),
        timeout,
    })??;
    match answer.outcome {
        Outcome::Ok => Ok(answer.body),
        Outcome::Error { code, message } => Err(PeerError::Remote {
            pod: link.peer().clone(),
            code,
            message,
        }),
    }
}
