//! The peer links as a service's [`PeerTransport`]: one service id, its bodies, its queue.

use super::link::{Inbound, PeerError, PeerLinks, ServiceId};
use super::transport::{InboundQueue, PeerInbound, PeerTransport, TransportError};
use bytes::Bytes;
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// The service ids of the link (frames carry them; a peer without the service answers
/// `NO_SERVICE`).
pub const MQTT_SERVICE: ServiceId = ServiceId(1);
pub const EVENTS_SERVICE: ServiceId = ServiceId(2);

/// Error codes services answer with (below the link's own).
const REFUSED: u16 = 1;

/// One service's view of the links.
pub struct LinkTransport {
    links: PeerLinks,
    service: ServiceId,
}

impl LinkTransport {
    pub fn new(links: PeerLinks, service: ServiceId) -> LinkTransport {
        LinkTransport { links, service }
    }
}

impl PeerTransport for LinkTransport {
    fn send(&self, pod: &str, body: Bytes) -> Result<(), TransportError> {
        self.links
            .try_send(pod, self.service, body)
            .map_err(transport_error)
    }

    fn request(
        &self,
        pod: &str,
        body: Bytes,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Bytes, TransportError>> {
        match self.links.request_now(pod, self.service, body, timeout) {
            Ok(answer) => Box::pin(async move { answer.await.map_err(transport_error) }),
            Err(error) => Box::pin(std::future::ready(Err(transport_error(error)))),
        }
    }

    fn connected(&self) -> Vec<Arc<str>> {
        self.links.connected().borrow().iter().cloned().collect()
    }
}

fn transport_error(error: PeerError) -> TransportError {
    match error {
        PeerError::NotMember { pod } | PeerError::ThisPod { pod } | PeerError::LinkDown { pod } => {
            TransportError::Down(pod.to_string())
        }
        PeerError::QueueFull { pod, .. } => TransportError::Full(pod.to_string()),
        other => TransportError::Failed(other.to_string()),
    }
}

impl InboundQueue for mpsc::Receiver<Inbound> {
    async fn recv(&mut self) -> Option<PeerInbound> {
        let inbound = mpsc::Receiver::recv(self).await?;
        Some(match inbound {
            Inbound::Message { from, body } => PeerInbound {
                from,
                body,
                reply: None,
            },
            Inbound::Request { from, body, reply } => PeerInbound {
                from,
                body,
                reply: Some(Box::new(
                    move |answer: Result<Bytes, String>| match answer {
                        Ok(body) => reply.ok(body),
                        Err(message) => reply.error(REFUSED, message),
                    },
                )),
            },
        })
    }
}
