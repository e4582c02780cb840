//! Where the data plane's configuration comes from, and what a source hands on.
//!
//! A source (a folder of manifests in local mode, or a Kubernetes namespace) produces a stream
//! of [`LoadedConfig`] values: every object it holds, typed, plus where each came from and the
//! problems found before compiling. What happens next — choosing the Gridline Namespace,
//! `compile`, swapping the Snapshot — is the same for every source (see [`crate::snapshot`]).

pub mod cel;
pub mod debounce;
pub mod fields;
pub mod kubernetes;
pub mod loaded;
pub mod local;
pub mod manifests;
pub mod select;
pub mod source;

pub use loaded::{LoadedConfig, Origin, Problem, Provenance};
pub use select::NamespaceSelection;
pub use source::ConfigSource;
