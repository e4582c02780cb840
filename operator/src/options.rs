//! What the operator was told on its command line, in the shape the builders and controllers
//! read. Kept apart from clap so tests construct it directly.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use std::collections::BTreeMap;

/// Which Kubernetes namespaces the operator watches (`--watch-namespace`).
pub use gridline_kubernetes::WatchScope;

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
