//! Peer links: one multiplexed, mutually authenticated TLS connection between each pair of
//! pods of a Namespace, carrying requests, responses and one-way messages for the services
//! above (MQTT forwarding, event routing). README.md has the protocol byte by byte and the
//! design.

mod builder;
mod connection;
mod error;
pub mod frame;
mod handshake;
mod hello;
mod inbound;
mod manager;
mod metrics;
mod peers;
mod sender;
mod table;
pub mod tls;

pub use builder::{
    BoundLinks, DEFAULT_INBOUND_QUEUE, DEFAULT_SEND_QUEUE, LinkOptions, LinksBuilder,
};
pub use error::{LinkError, PeerError};
pub use frame::{
    DEFAULT_MAX_FRAME, FIRST_LINK_ERROR_CODE, NO_SERVICE, PROTOCOL_VERSIONS, RESPONSE_TOO_LARGE,
    ServiceId, UNANSWERED,
};
pub use inbound::{Inbound, Reply};
pub use peers::PeerLinks;
pub use table::{Connected, Generations};
pub use tls::{
    LinkTls, LinkTlsError, PEER_CERTIFICATE_NAME, PeerMaterial, issue_peer_leaf,
    issue_peer_material,
};

#[cfg(test)]
mod tests;
