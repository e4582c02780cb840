//! Opening a listening socket the way every listener does: bound, then announced on stdout as
//! `<scheme> listening on <addr>` (with port 0 nobody else knows the address; tests and
//! benches parse these lines, so their shape is fixed).

use std::io::Write;
use std::net::SocketAddr;
use tokio::net::TcpListener;

/// Bind `addr` and announce it; the listener and the address it got.
pub async fn bind_announced(
    scheme: &str,
    addr: SocketAddr,
) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let socket = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} ({scheme}): {e}"))?;
    let local = socket.local_addr()?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{scheme} listening on {local}")?;
        stdout.flush()?;
    }
    tracing::info!(addr = %local, scheme, "listening");
    Ok((socket, local))
}
