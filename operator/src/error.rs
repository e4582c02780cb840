//! The operator's errors, each naming the object and the step that failed. The kube error
//! is boxed: it is large, and these travel through every reconcile's `Result`.

use crate::children::peer_tls::PeerTlsError;
use gridline_crds::model::ObjectKey;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Namespace {name} has no Kubernetes namespace in its metadata")]
    NoK8sNamespace { name: String },

    #[error("applying {kind} {namespace}/{name}: {source}")]
    Apply {
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },

    /// A read, create or delete the reconcile makes besides its applies (the peer TLS
    /// Secrets, the member Leases, the pods they name).
    #[error("{verb} {kind} {namespace}/{name}: {source}")]
    Request {
        verb: &'static str,
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },

    #[error("peer TLS of Namespace {namespace}/{name}: {source}")]
    PeerTls {
        namespace: String,
        name: String,
        #[source]
        source: PeerTlsError,
    },

    #[error("writing the status of {object}: {source}")]
    Status {
        object: ObjectKey,
        #[source]
        source: Box<kube::Error>,
    },
}

impl Error {
    /// A short, bounded label for the `error` dimension of metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::NoK8sNamespace { .. } => "no_k8s_namespace",
            Error::Apply { .. } => "apply",
            Error::Request { .. } => "request",
            Error::PeerTls { .. } => "peer_tls",
            Error::Status { .. } => "status",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
