//! The Gridline data plane. Configuration flows one way: a source (a folder of manifests or a
//! Kubernetes namespace) → `gridline_crds::model::compile` → the [`snapshot::SharedSnapshot`]
//! every subsystem reads.
//!
//! The binary (`main.rs`) only parses the command line; everything else lives here so
//! integration tests and benchmarks can use the pieces.

pub mod auth;
pub mod check;
pub mod cloudevents;
pub mod cluster;
pub mod config;
pub mod delivery;
pub mod descriptors;
pub mod http;
pub mod listen;
pub mod log_limit;
pub mod metrics;
pub mod mqtt;
pub mod node;
pub mod pod;
pub mod server;
pub mod shutdown;
pub mod snapshot;
pub mod store;
pub mod tls;
