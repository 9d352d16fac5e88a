//! The server side of TLS handshakes: bounded in time and counted in the
//! metrics. Driving TLS after the handshake is `ringmail_kit::tls`.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use monoio::net::TcpStream;
use ringmail_kit::tls::handshake;
use rustls::{ServerConfig, ServerConnection};

/// The server side of a handshake with `config`, bounded by `limit` (a
/// client that stalls halfway, or sends nothing, is cut off) and counted in
/// the metrics. Plaintext the client sent right after it lands in `early`.
/// None when it failed (logged at debug: clients give up all the time).
pub async fn accept(stream: &mut TcpStream, config: Arc<ServerConfig>, limit: Duration, early: &mut Vec<u8>, peer: IpAddr) -> Option<Box<ServerConnection>> {
    let mut t = Box::new(ServerConnection::new(config).ok()?);
    let r = match monoio::time::timeout(limit, handshake(stream, &mut t, early)).await {
        Ok(r) => r,
        Err(_) => Err(io::ErrorKind::TimedOut.into()),
    };
    count(&r);
    match r {
        Ok(()) => Some(t),
        Err(e) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
    }
}

/// Counts a handshake's outcome in the metrics.
fn count(r: &io::Result<()>) {
    crate::metrics::with_worker(|m| {
        let c = if r.is_ok() { &m.tls_handshakes } else { &m.tls_handshake_failures };
        c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    });
}
