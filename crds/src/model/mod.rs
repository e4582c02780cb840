//! The compiled model: every object of one Gridline Namespace, validated and resolved into an
//! immutable [`Snapshot`], plus an [`ObjectError`] for each problem. The operator and the data
//! plane both call [`compile`], so they never disagree about what an object means.

mod compile;
pub mod duration;
pub mod error;
pub mod filter;
pub mod objects;
pub mod query;
pub mod snapshot;
pub mod topic;

pub use compile::{NamespaceId, compile, compile_all};
pub use error::FieldProblem;
pub use objects::{DEFAULT_K8S_NAMESPACE, Kind, ObjectError, ObjectKey, Objects, SecretLookup};
pub use snapshot::*;
