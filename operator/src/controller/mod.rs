//! The controllers: one applies each Namespace's children, the other writes every object's
//! status from the compiled model.

pub mod children;
pub mod member_leases;
pub mod peer_tls;
pub mod status;
pub mod stores;

pub use stores::Stores;
