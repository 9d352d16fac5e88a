//! Listening sockets: what each listener serves, and binding one
//! SO_REUSEPORT socket per worker on every configured address.

use std::net::{SocketAddr, TcpListener};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerKind {
    Imap,
    /// Implicit TLS (RFC 8314): the handshake comes before the greeting.
    Imaps,
    /// Connections start authenticated as this user (`* PREAUTH`).
    Preauth(String),
    Lmtp,
    Smtp,
    Pop3,
    /// POP3 over implicit TLS (RFC 8314).
    Pop3s,
}

/// Binds `n` SO_REUSEPORT sockets to `addr` (the first resolves port 0).
///
/// SO_REUSEPORT would also let a second server process (same user) bind
/// the same port and silently receive part of its connections, so the
/// address is first probed with a plain bind, which fails if anyone listens.
pub fn bind_group(addr: SocketAddr, n: usize) -> std::io::Result<(SocketAddr, Vec<TcpListener>)> {
    if addr.port() != 0 {
        let probe = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
        probe.set_reuse_address(true)?;
        if addr.is_ipv6() {
            probe.set_only_v6(true)?;
        }
        probe.bind(&addr.into())?;
    }
    let mut out = Vec::with_capacity(n);
    let mut actual = addr;
    for _ in 0..n {
        let s = socket2::Socket::new(socket2::Domain::for_address(actual), socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
        s.set_reuse_address(true)?;
        s.set_reuse_port(true)?;
        s.set_nonblocking(true)?;
        if actual.is_ipv6() {
            s.set_only_v6(true)?;
        }
        s.bind(&actual.into())?;
        s.listen(4096)?;
        let l: TcpListener = s.into();
        actual = l.local_addr()?;
        out.push(l);
    }
    Ok((actual, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_in_use_is_refused_even_with_reuseport() {
        let (addr, _mine) = bind_group("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let err = bind_group(addr, 2).map(|_| ()).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    }
}
