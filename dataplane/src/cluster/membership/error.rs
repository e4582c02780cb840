//! Why membership could not start, or a renewal failed.

use std::path::PathBuf;
use std::time::Duration;

/// Why membership could not start, or a renewal failed.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error(
        "pod name {pod:?} is in use: lease file {} is held by process {pid}, which is alive \
         (give this process another --pod-name, or stop that one)",
        file.display()
    )]
    PodNameInUse {
        pod: String,
        pid: u32,
        file: PathBuf,
    },
    #[error(
        "lease file {} was taken over by process {pid}: another process runs as pod {pod:?}",
        file.display()
    )]
    TakenOver {
        pod: String,
        pid: u32,
        file: PathBuf,
    },
    #[error("cluster directory {}: {source}", path.display())]
    Directory {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("lease file {}: {source}", path.display())]
    LeaseFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Kubernetes(#[from] gridline_kubernetes::LeaseError),
    #[error("the membership lease was not written within {0:?}")]
    Timeout(Duration),
    #[error("a membership task failed: {0}")]
    Task(String),
    #[error("cannot register the membership metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}
