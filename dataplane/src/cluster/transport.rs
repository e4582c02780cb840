//! What a service (MQTT, events) sees of the peer links: bodies to a pod, in order, and
//! requests answered by it. The links (`cluster::link`) implement it for real; tests join
//! services in memory with channels.

use bytes::Bytes;
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;

/// The link to the other pods, as one service uses it.
pub trait PeerTransport: Send + Sync + 'static {
    /// Queue a one-way body for `pod`, after everything sent to it before; fails at once when
    /// there is no link to it or its queue is full.
    fn send(&self, pod: &str, body: Bytes) -> Result<(), TransportError>;
    /// Queue a request for `pod` now (in order with `send`), and answer with its reply, or
    /// fail once `timeout` passes.
    fn request(
        &self,
        pod: &str,
        body: Bytes,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Bytes, TransportError>>;
    /// The peers a link is up to now.
    fn connected(&self) -> Vec<Arc<str>>;
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// No link to the pod (not a member, or not connected now).
    #[error("no link to {0}")]
    Down(String),
    /// The link's queue is full.
    #[error("the link to {0} is full")]
    Full(String),
    /// Sent, but no good answer: a timeout, the link closed, or the peer refused it.
    #[error("{0}")]
    Failed(String),
}

/// A body a peer sent to a service, and how to answer it when it is a request.
pub struct PeerInbound {
    pub from: Arc<str>,
    pub body: Bytes,
    pub reply: Option<PeerReply>,
}

/// Answers a peer's request: a body, or an error message.
pub type PeerReply = Box<dyn FnOnce(Result<Bytes, String>) + Send>;

/// Where a service reads what peers send it: the link's queue for its service id, or a
/// channel in tests.
pub trait InboundQueue: Send + 'static {
    fn recv(&mut self) -> impl std::future::Future<Output = Option<PeerInbound>> + Send;
}

impl InboundQueue for tokio::sync::mpsc::Receiver<PeerInbound> {
    async fn recv(&mut self) -> Option<PeerInbound> {
        tokio::sync::mpsc::Receiver::recv(self).await
    }
}

/// Services joined in memory, for tests.
#[cfg(test)]
pub mod memory {
    use super::*;
    use futures::future::BoxFuture;
    use std::collections::HashMap;
    use tokio::sync::mpsc;

    /// Pods joined by channels: a pod taken out of `pods` has no link.
    #[derive(Default)]
    pub struct Network {
        pub pods: parking_lot::Mutex<HashMap<String, mpsc::Sender<PeerInbound>>>,
    }

    pub struct MemoryTransport {
        this: Arc<str>,
        network: Arc<Network>,
    }

    impl MemoryTransport {
        pub fn new(this: &str, network: &Arc<Network>) -> MemoryTransport {
            MemoryTransport {
                this: Arc::from(this),
                network: network.clone(),
            }
        }
    }

    impl PeerTransport for MemoryTransport {
        fn send(&self, pod: &str, body: Bytes) -> Result<(), TransportError> {
            let sender = self.network.pods.lock().get(pod).cloned();
            let sender = sender.ok_or_else(|| TransportError::Down(pod.into()))?;
            sender
                .try_send(PeerInbound {
                    from: self.this.clone(),
                    body,
                    reply: None,
                })
                .map_err(|_| TransportError::Full(pod.into()))
        }

        fn request(
            &self,
            pod: &str,
            body: Bytes,
            _timeout: Duration,
        ) -> BoxFuture<'static, Result<Bytes, TransportError>> {
            let (answer, answered) = tokio::sync::oneshot::channel();
            let sender = self.network.pods.lock().get(pod).cloned();
            let queued = sender
                .ok_or_else(|| TransportError::Down(pod.into()))
                .and_then(|s| {
                    s.try_send(PeerInbound {
                        from: self.this.clone(),
                        body,
                        reply: Some(Box::new(move |result| {
                            let _ = answer.send(result);
                        })),
                    })
                    .map_err(|_| TransportError::Full(pod.into()))
                });
            Box::pin(async move {
                queued?;
                match answered.await {
                    Ok(Ok(body)) => Ok(body),
                    Ok(Err(message)) => Err(TransportError::Failed(message)),
                    Err(_) => Err(TransportError::Failed("no answer".into())),
                }
            })
        }

        fn connected(&self) -> Vec<Arc<str>> {
            self.network
                .pods
                .lock()
                .keys()
                .filter(|pod| **pod != *self.this)
                .map(|pod| Arc::from(pod.as_str()))
                .collect()
        }
    }
}
