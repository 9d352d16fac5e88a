//! Dovecot's authentication protocol for Postfix (`smtpd_sasl_type =
//! dovecot`, `smtpd_sasl_path = inet:HOST:PORT` or a UNIX socket): users
//! send mail through Postfix with the password they read mail with. The
//! protocol is `auth::dovecot_protocol`; here are the listeners, on plain
//! threads with blocking sockets (a Postfix smtpd process keeps one
//! connection for its life), the password checks and the failure delays.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, TcpListener};
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::context::ServerCtx;
use crate::auth::dovecot_protocol::{self, Action, Connection, MAX_LINE};
use crate::auth::AuthResult;

/// Connections served at once (a Postfix smtpd process keeps one; Postfix
/// runs 100 by default); more are closed at once.
const MAX_CONNECTIONS: u32 = 512;

/// Where the service listens: `HOST:PORT`, or the path of a UNIX socket.
pub fn serve(at: &str, ctx: Arc<ServerCtx>) -> Result<String, String> {
    let cookie: String = (0..16).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
    let conns = Arc::new(AtomicU32::new(1));
    if let Ok(addr) = at.parse::<std::net::SocketAddr>() {
        let l = TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr} (auth socket): {e}"))?;
        let bound = l.local_addr().map_err(|e| e.to_string())?.to_string();
        spawn_accepting(move || l.accept().map(|(s, peer)| (Box::new(s) as Box<dyn Stream>, Some(peer.ip()))), ctx, cookie, conns)?;
        return Ok(bound);
    }
    let path = std::path::Path::new(at);
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path).map_err(|e| format!("cannot listen on {at} (auth socket): {e}"))?;
    {
        // Postfix's smtpd runs as postfix: the socket is for whoever may
        // reach its directory (Postfix's private/, typically).
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).map_err(|e| format!("{at}: {e}"))?;
    }
    spawn_accepting(move || l.accept().map(|(s, _)| (Box::new(s) as Box<dyn Stream>, None)), ctx, cookie, conns)?;
    Ok(at.to_string())
}

trait Stream: std::io::Read + std::io::Write + Send {
    fn try_clone_box(&self) -> std::io::Result<Box<dyn Stream>>;
}

impl Stream for std::net::TcpStream {
    fn try_clone_box(&self) -> std::io::Result<Box<dyn Stream>> {
        Ok(Box::new(self.try_clone()?))
    }
}

impl Stream for std::os::unix::net::UnixStream {
    fn try_clone_box(&self) -> std::io::Result<Box<dyn Stream>> {
        Ok(Box::new(self.try_clone()?))
    }
}

type Accepted = std::io::Result<(Box<dyn Stream>, Option<IpAddr>)>;

fn spawn_accepting(accept: impl Fn() -> Accepted + Send + 'static, ctx: Arc<ServerCtx>, cookie: String, conns: Arc<AtomicU32>) -> Result<(), String> {
    let open = Arc::new(AtomicU32::new(0));
    std::thread::Builder::new()
        .name("ringmail-auth-socket".into())
        .spawn(move || loop {
            let Ok((stream, peer)) = accept() else {
                std::thread::sleep(std::time::Duration::from_millis(100));
                continue;
            };
            if open.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                open.fetch_sub(1, Ordering::AcqRel);
                tracing::warn!(peer = ?peer, "auth socket: too many connections; one closed");
                continue;
            }
            let (ctx, cookie, n, mine) = (ctx.clone(), cookie.clone(), conns.fetch_add(1, Ordering::Relaxed), open.clone());
            let spawned = std::thread::Builder::new().name("ringmail-auth".into()).spawn(move || {
                serve_connection(stream, peer, &ctx, &cookie, n);
                mine.fetch_sub(1, Ordering::AcqRel);
            });
            if spawned.is_err() {
                open.fetch_sub(1, Ordering::AcqRel);
                tracing::warn!("auth socket: cannot start a thread");
            }
        })
        .map(|_| ())
        .map_err(|e| format!("cannot start the auth socket: {e}"))
}

fn serve_connection(mut out: Box<dyn Stream>, peer: Option<IpAddr>, ctx: &ServerCtx, cookie: &str, n: u32) {
    let Ok(input) = out.try_clone_box() else { return };
    let mut input = BufReader::new(input);
    if out.write_all(dovecot_protocol::handshake(std::process::id(), n, cookie).as_bytes()).is_err() {
        return;
    }
    let mut conn = Connection::default();
    let cleartext_ok = |client: Option<IpAddr>| client.or(peer).is_some_and(|ip| ctx.config.cleartext_allowed(ip));
    let mut line = Vec::new();
    loop {
        line.clear();
        match std::io::Read::take(&mut input, MAX_LINE as u64 + 1).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if !line.ends_with(b"\n") => {
                tracing::warn!(peer = ?peer, "auth socket: line too long");
                return;
            }
            Ok(_) => {}
        }
        line.pop();
        let reply = match conn.line(&line, &cleartext_ok) {
            Action::Reply(r) => r,
            Action::Close(why) => {
                tracing::warn!(peer = ?peer, why, "auth socket: closing a connection");
                return;
            }
            Action::Check(check) => {
                let result = ctx.auth.verify_blocking(&check.user, &check.password);
                match &result {
                    AuthResult::Ok(user) => tracing::info!(user, client = ?check.client, "auth socket: authenticated"),
                    AuthResult::Failed => {
                        tracing::info!(user = check.user, client = ?check.client, "auth socket: authentication failed");
                        if let (true, Some(ip)) = (check.penalty, check.client.or(peer)) {
                            std::thread::sleep(ctx.failures.failed(ip, Instant::now()));
                        }
                    }
                    AuthResult::Unavailable => tracing::warn!(user = check.user, "auth socket: the user database is unavailable"),
                }
                conn.checked(&check, &result)
            }
        };
        if !reply.is_empty() && out.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}
