//! systemd's readiness protocol (sd_notify(3)): a datagram to the socket
//! named by `$NOTIFY_SOCKET`, so a `Type=notify` unit is "started" only once
//! the listeners are bound. Without the variable (not under systemd), a no-op.
//! A dozen lines instead of a crate.

use std::os::unix::net::UnixDatagram;

/// Sends `state` (e.g. `READY=1`, `STOPPING=1`); errors are ignored, as
/// sd_notify's are by convention.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let Ok(sock) = UnixDatagram::unbound() else { return };
    let bytes = path.as_encoded_bytes();
    let _ = match bytes.strip_prefix(b"@") {
        // An abstract socket: '@' stands for the leading NUL.
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            match std::os::unix::net::SocketAddr::from_abstract_name(name) {
                Ok(addr) => sock.send_to_addr(state.as_bytes(), &addr),
                Err(e) => Err(e),
            }
        }
        None => sock.send_to(state.as_bytes(), &path),
    };
}
