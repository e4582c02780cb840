//! How `run` joins this process to a cluster (`--peer-addr`, `--cluster-dir`,
//! `--peer-listen`, `--peer-tls-dir`), checked before anything starts.

use crate::cluster::timing::ClusterTiming;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

/// Clustering, as `run` was told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterOptions {
    /// The address other pods dial, `host:port` (`--peer-addr`). Port 0 means: the port the
    /// peer listener is given.
    pub peer_addr: String,
    /// Where the peer link listens (`--peer-listen`; default [`default_peer_listen`]).
    pub peer_listen: SocketAddr,
    /// The peer links' mutual-TLS material: `ca.crt`, `tls.crt`, `tls.key`
    /// (`--peer-tls-dir`; in local mode `<cluster-dir>/tls` unless given).
    pub peer_tls_dir: PathBuf,
    pub membership: ClusterMembership,
    /// The timing to start with (local mode and tests; the Namespace may retune it).
    pub timing: ClusterTiming,
    /// Keep `timing` whatever the Namespace says (a test's short lease).
    pub fixed_timing: bool,
}

/// Where membership leases are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterMembership {
    /// Processes of one machine sharing this folder (`--cluster-dir`).
    Directory(PathBuf),
    /// A Lease per pod in the Kubernetes namespace watched, labelled with the Gridline
    /// Namespace `namespace`.
    Kubernetes { namespace: String },
}

/// Why a peer address was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeerAddrError {
    #[error("peer address {0:?} is not host:port")]
    NotHostPort(String),
    #[error("peer address {addr:?}: {port:?} is not a port number")]
    BadPort { addr: String, port: String },
}

/// The port of a `host:port` peer address (`[v6]:port` too).
pub fn peer_port(peer_addr: &str) -> Result<u16, PeerAddrError> {
    if let Ok(socket) = peer_addr.parse::<SocketAddr>() {
        return Ok(socket.port());
    }
    let (_, port) = peer_addr
        .rsplit_once(':')
        .filter(|(host, _)| !host.is_empty() && !host.contains(':'))
        .ok_or_else(|| PeerAddrError::NotHostPort(peer_addr.to_string()))?;
    port.parse().map_err(|_| PeerAddrError::BadPort {
        addr: peer_addr.to_string(),
        port: port.to_string(),
    })
}

/// Where to listen when `--peer-listen` is not given: the peer address itself when it is an
/// IP socket address, else every interface on its port (a DNS name is how others reach us,
/// not something to bind).
pub fn default_peer_listen(peer_addr: &str) -> Result<SocketAddr, PeerAddrError> {
    if let Ok(socket) = peer_addr.parse::<SocketAddr>() {
        return Ok(socket);
    }
    Ok(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        peer_port(peer_addr)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listen_address_defaults_to_the_peer_address_or_all_interfaces_on_its_port() {
        assert_eq!(
            default_peer_listen("127.0.0.1:7001").unwrap(),
            "127.0.0.1:7001".parse().unwrap()
        );
        assert_eq!(
            default_peer_listen("[::1]:7001").unwrap(),
            "[::1]:7001".parse().unwrap()
        );
        assert_eq!(
            default_peer_listen("orders-0.orders-peers.shop.svc:7946").unwrap(),
            "0.0.0.0:7946".parse().unwrap()
        );
        assert_eq!(
            default_peer_listen("orders-0"),
            Err(PeerAddrError::NotHostPort("orders-0".into()))
        );
        assert!(matches!(
            default_peer_listen("orders-0:http"),
            Err(PeerAddrError::BadPort { .. })
        ));
        assert!(default_peer_listen(":7001").is_err());
    }
}
