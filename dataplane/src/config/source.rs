//! The choice between the configuration sources: above `local` and `kubernetes`, which it runs.

use super::kubernetes;
use super::loaded::LoadedConfig;
use super::local;
use tokio::sync::mpsc;

/// A source of configuration. An enum rather than a trait object: there are two, both known
/// here, and the caller only ever runs one.
pub enum ConfigSource {
    /// A folder of manifests, watched for changes.
    Local(local::LocalSource),
    /// The Gridline objects and Secrets of one Kubernetes namespace.
    Kubernetes(kubernetes::KubernetesSource),
}

impl ConfigSource {
    /// Send a [`LoadedConfig`] now and after every change, until the receiver is dropped.
    /// The first one sent is the start-up configuration.
    pub async fn run(self, updates: mpsc::Sender<LoadedConfig>) -> anyhow::Result<()> {
        match self {
            ConfigSource::Local(source) => source.run(updates).await,
            ConfigSource::Kubernetes(source) => source.run(updates).await,
        }
    }
}
