//! The Kubernetes runtime code the Gridline operator and data plane share: the reflectors
//! that keep the Gridline objects and Secrets the model compiles, the change notification
//! they raise, the Lease loop, and the member Leases of a Namespace's pods. See `README.md` beside this crate for the design.

pub mod changes;
pub mod lease;
pub mod member_liveness;
pub mod members;
pub mod reflectors;
pub mod scope;

#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
#[cfg(test)]
mod testing;

pub use changes::Dirty;
pub use lease::{LeaseConfig, LeaseError, LeaseLoop};
pub use member_liveness::PeerLeases;
pub use members::{MemberLease, MemberLeaseConfig, MemberRecord, Renewal};
pub use reflectors::{ReflectorOptions, Reflectors, StoreState};
pub use scope::WatchScope;
