//! Several pods acting as one Namespace (DESIGN §5): who the members are (`members`,
//! `membership`), the links between them (`link`), and the timing both obey (`timing`).
//!
//! Everything above this module (the MQTT broker, the store's queues) reads the member set as a
//! watch channel and talks to peers through [`link::PeerLinks`]; nothing here knows MQTT or
//! events.

pub mod link;
pub mod link_transport;
pub mod members;
pub mod membership;
pub mod options;
pub mod timing;
pub mod transport;

pub use options::{ClusterMembership, ClusterOptions};
