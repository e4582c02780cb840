//! The Kubernetes runtime code the Gridline operator and data plane share: the reflectors
//! that keep the Gridline objects and Secrets the model compiles, the change notification
//! they raise, and the Lease loop. See `README.md` beside this crate for the design.

pub mod changes;
pub mod lease;
pub mod reflectors;
pub mod scope;

#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
#[cfg(test)]
mod testing;

pub use changes::Dirty;
pub use lease::{LeaseConfig, LeaseError, LeaseLoop};
pub use reflectors::{ReflectorOptions, Reflectors, StoreState};
pub use scope::WatchScope;
