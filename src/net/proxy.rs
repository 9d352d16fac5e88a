//! Reading a PROXY protocol header (`cluster::proxy_header`) off a
//! connection from a trusted proxy, before anything else happens on it:
//! exactly the header's bytes, so the client's own first bytes (a TLS
//! ClientHello, an LMTP greeting's answer) stay in the socket for whoever
//! reads next.

use std::net::IpAddr;
use std::time::Duration;

use monoio::io::AsyncReadRentExt;
use monoio::net::TcpStream;

use crate::cluster::proxy_header::{self, Header};

/// A proxy sends its header at once; one that does not is dropped.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

async fn read_n(stream: &mut TcpStream, buf: &mut Vec<u8>, n: usize) -> Option<()> {
    let (r, chunk) = stream.read_exact(vec![0u8; n]).await;
    r.ok()?;
    buf.extend_from_slice(&chunk);
    Some(())
}

async fn read_header(stream: &mut TcpStream) -> Result<Option<std::net::SocketAddr>, &'static str> {
    let mut buf = Vec::with_capacity(108);
    // Both versions are at least 15 bytes long; 8 tell them apart.
    read_n(stream, &mut buf, 8).await.ok_or("connection closed")?;
    loop {
        match proxy_header::parse(&buf) {
            Header::Done { source, .. } => return Ok(source),
            Header::Invalid(why) => return Err(why),
            Header::Incomplete => {
                // Version 2 says its length after 16 bytes; version 1 ends
                // at its CRLF, so it is read a byte at a time past the first 8.
                let want = if buf[0] == b'\r' {
                    if buf.len() < 16 {
                        16 - buf.len()
                    } else {
                        16 + u16::from_be_bytes([buf[14], buf[15]]) as usize - buf.len()
                    }
                } else {
                    1
                };
                read_n(stream, &mut buf, want).await.ok_or("connection closed")?;
            }
        }
    }
}

/// The client's address from the header at the start of `stream` (the
/// proxy's own when the header names none); None if the header is missing,
/// wrong or late, and the connection should be closed.
pub async fn client_address(stream: &mut TcpStream, proxy: IpAddr) -> Option<IpAddr> {
    let r = monoio::select! {
        r = read_header(stream) => r,
        _ = monoio::time::sleep(HEADER_TIMEOUT) => Err("no PROXY header in time"),
    };
    match r {
        Ok(source) => Some(source.map_or(proxy, |s| s.ip())),
        Err(why) => {
            tracing::warn!(proxy = %proxy, why, "connection from a trusted proxy without a valid PROXY header; closed");
            None
        }
    }
}
