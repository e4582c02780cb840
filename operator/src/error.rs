//! The operator's errors, each naming the object and the step that failed. The kube error
//! is boxed: it is large, and these travel through every reconcile's `Result`.

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
            Error::Status { .. } => "status",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
