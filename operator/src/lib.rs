//! The Gridline operator: runs each Gridline Namespace as a StatefulSet and reports, for every
//! object, whether it is accepted and served. See `README.md` beside this crate for the design.

pub mod children;
pub mod options;
pub mod status;

pub mod backoff;
pub mod controller;
pub mod error;
pub mod metrics;
#[cfg(test)]
mod testing;

// The scripted API server of the reconcile tests (`crate::fixtures::mock_client`).
#[cfg(test)]
use gridline_kubernetes::fixtures;
pub mod leader;
pub mod run;
