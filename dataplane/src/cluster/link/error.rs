//! What the link layer's callers can get wrong or run into.

use super::tls::LinkTlsError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Why a request or message to a peer did not get through (or its answer back).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    #[error("{pod} is not in this pod's member set")]
    NotMember { pod: Arc<str> },
    #[error("{pod} is this pod: it has no link to itself")]
    ThisPod { pod: Arc<str> },
    #[error("no link to {pod} is up now")]
    LinkDown { pod: Arc<str> },
    #[error("{pod} did not answer within {timeout:?}")]
    Timeout { pod: Arc<str>, timeout: Duration },
    #[error("{pod} answered error {code}: {message}")]
    Remote {
        pod: Arc<str>,
        code: u16,
        message: String,
    },
    #[error("the link to {pod} closed before {pod} answered")]
    LinkClosed { pod: Arc<str> },
    #[error("the send queue to {pod} is full ({capacity} frames)")]
    QueueFull { pod: Arc<str>, capacity: usize },
    #[error("a body of {size} bytes makes a frame over the link limit of {max} bytes")]
    TooLarge {
        pod: Arc<str>,
        size: usize,
        max: u32,
    },
}

impl PeerError {
    /// The pod the failed call was for.
    pub fn pod(&self) -> &Arc<str> {
        match self {
            PeerError::NotMember { pod }
            | PeerError::ThisPod { pod }
            | PeerError::LinkDown { pod }
            | PeerError::Timeout { pod, .. }
            | PeerError::Remote { pod, .. }
            | PeerError::LinkClosed { pod }
            | PeerError::QueueFull { pod, .. }
            | PeerError::TooLarge { pod, .. } => pod,
        }
    }
}

/// Why the links could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot listen for peer links on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot register the peer link metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Tls(#[from] LinkTlsError),
}
