//! What the operator was told on its command line, in the shape the builders and controllers
//! read. Kept apart from clap so tests construct it directly.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use std::collections::BTreeMap;

/// The field manager of every server-side apply and status write.
pub const FIELD_MANAGER: &str = "gridline-operator";

/// The data-plane image when none is given.
pub const DEFAULT_DATAPLANE_IMAGE: &str = "ghcr.io/gridline-dev/gridline-dataplane:0.1.0";

/// Settings of the children the operator builds for each Namespace.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    pub dataplane_image: String,
    pub dataplane_image_pull_policy: String,
    /// Requests and limits of the data-plane container. The Namespace kind has no field for
    /// them yet, so every Namespace gets these.
    pub dataplane_resources: ResourceRequirements,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            dataplane_image: DEFAULT_DATAPLANE_IMAGE.to_string(),
            dataplane_image_pull_policy: "IfNotPresent".to_string(),
            dataplane_resources: default_resources(),
        }
    }
}

/// Enough for a development Namespace; the memory limit keeps a runaway pod from starving
/// its node, and there is no CPU limit because throttling a broker only adds latency.
fn default_resources() -> ResourceRequirements {
    let quantities = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
            .collect::<BTreeMap<_, _>>()
    };
    ResourceRequirements {
        requests: Some(quantities(&[("cpu", "100m"), ("memory", "256Mi")])),
        limits: Some(quantities(&[("memory", "1Gi")])),
        ..ResourceRequirements::default()
    }
}

/// Which Kubernetes namespaces the operator watches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchScope {
    All,
    Namespaces(Vec<String>),
}

impl WatchScope {
    /// `--watch-namespace` values (possibly comma-separated, from the environment); none: all.
    pub fn from_flags(values: &[String]) -> Self {
        let mut namespaces: Vec<String> = values
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .collect();
        namespaces.sort();
        namespaces.dedup();
        if namespaces.is_empty() {
            WatchScope::All
        } else {
            WatchScope::Namespaces(namespaces)
        }
    }

    /// One `Api` per watched namespace, or one cluster-wide.
    pub fn apis<K>(&self, client: &kube::Client) -> Vec<kube::Api<K>>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match self {
            WatchScope::All => vec![kube::Api::all(client.clone())],
            WatchScope::Namespaces(namespaces) => namespaces
                .iter()
                .map(|ns| kube::Api::namespaced(client.clone(), ns))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_namespaces_split_on_commas_and_none_means_all() {
        assert_eq!(WatchScope::from_flags(&[]), WatchScope::All);
        assert_eq!(WatchScope::from_flags(&[" ".into()]), WatchScope::All);
        assert_eq!(
            WatchScope::from_flags(&["b,a".into(), "c".into(), "a".into()]),
            WatchScope::Namespaces(vec!["a".into(), "b".into(), "c".into()])
        );
    }
}
