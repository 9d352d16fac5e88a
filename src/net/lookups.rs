//! The lookup services of a cluster backend (docs/scale-out.md): nginx's
//! `auth_http` and Postfix's socketmap. Both run on plain threads with
//! blocking sockets, away from the workers; a lookup is a short request on
//! a fresh connection.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::context::ServerCtx;
use crate::auth::passwd::normalize_user_name;
use crate::auth::AuthResult;
use crate::cluster::auth_http::{self, Verdict};
use crate::cluster::socketmap;

/// Lookups served at once; more wait for a slot.
const MAX_LOOKUPS: usize = 64;

/// Runs `serve_one` for every connection on `addr`, each on its own thread,
/// at most MAX_LOOKUPS at once.
fn serve_lookups(name: &str, addr: SocketAddr, serve_one: Arc<dyn Fn(TcpStream) + Send + Sync>) -> Result<SocketAddr, String> {
    let listener = TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let busy = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name(format!("ringmail-{name}"))
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(s) = conn else {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                };
                while busy.load(Ordering::Acquire) >= MAX_LOOKUPS {
                    std::thread::sleep(Duration::from_millis(1));
                }
                busy.fetch_add(1, Ordering::AcqRel);
                let (mine, serve_one) = (busy.clone(), serve_one.clone());
                let spawned = std::thread::Builder::new().spawn(move || {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
                    let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
                    serve_one(s);
                    mine.fetch_sub(1, Ordering::AcqRel);
                });
                if spawned.is_err() {
                    busy.fetch_sub(1, Ordering::AcqRel);
                }
            }
        })
        .map_err(|e| format!("cannot start {name}: {e}"))?;
    Ok(bound)
}

/// Reads until `parse` says the request is complete (or invalid, or the
/// peer stops).
fn read_request<T>(s: &mut TcpStream, buf: &mut Vec<u8>, parse: impl Fn(&[u8]) -> Option<T>) -> Option<T> {
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(t) = parse(buf) {
            return Some(t);
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// nginx's auth_http endpoint: answers each request on its connection,
/// with the same password checks and failure delays as IMAP logins.
pub fn serve_auth_http(addr: SocketAddr, ctx: Arc<ServerCtx>) -> Result<SocketAddr, String> {
    let Some(cluster) = ctx.cluster.clone() else { return Err("auth_http needs a cluster map ([cluster] file)".into()) };
    let one = move |mut s: TcpStream| {
        let (auth, failures) = (&ctx.auth, &ctx.failures);
        let peer = s.peer_addr().map(|a| a.ip()).ok();
        let mut buf = Vec::new();
        let parsed = read_request(&mut s, &mut buf, |b| match auth_http::parse(b) {
            auth_http::Parsed::Incomplete => None,
            p => Some(p),
        });
        let req = match parsed {
            Some(auth_http::Parsed::Done(r)) => r,
            Some(auth_http::Parsed::Invalid(why)) => {
                tracing::warn!(peer = ?peer, why, "bad auth_http request");
                let _ = s.write_all(b"HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
                return;
            }
            _ => return,
        };
        let client: IpAddr = req.client_ip.or(peer).unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let user = normalize_user_name(&req.user);
        let view = cluster.view();
        let d = auth_http::decide(
            &auth_http::Request { user: user.clone(), ..req.clone() },
            &view.map,
            |u, p| match auth.verify_blocking(u, p) {
                AuthResult::Ok(_) => Verdict::Good,
                AuthResult::Failed => Verdict::Bad,
                AuthResult::Unavailable => Verdict::Unavailable,
            },
            || failures.failed(client, Instant::now()),
            |b| cluster.is_up(b),
        );
        match &d {
            auth_http::Decision::Ok(to) => tracing::info!(user, client = %client, backend = %to, "auth_http: login"),
            auth_http::Decision::Invalid { .. } => tracing::info!(user, client = %client, attempt = req.attempt, "auth_http: login failed"),
            auth_http::Decision::Unavailable { why, .. } => tracing::warn!(user, client = %client, why, "auth_http: temporary failure"),
        }
        let _ = s.write_all(&auth_http::response(&d));
    };
    serve_lookups("auth-http", addr, Arc::new(one))
}

/// The user an address is delivered to, as LMTP's RCPT decides it; None
/// for a domain alone (Postfix also asks for those), a domain not ours, or
/// no such user.
fn user_of(ctx: &ServerCtx, key: &str) -> Option<String> {
    use crate::delivery::smtp::{recipient_user, Dialect};
    if !key.contains('@') {
        return None;
    }
    recipient_user(&*ctx.directory, key, Dialect::Lmtp).ok()
}

/// Postfix's socketmap: the LMTP transport of each recipient's backend.
pub fn serve_socketmap(addr: SocketAddr, ctx: Arc<ServerCtx>) -> Result<SocketAddr, String> {
    let Some(cluster) = ctx.cluster.clone() else { return Err("socketmap needs a cluster map ([cluster] file)".into()) };
    let one = move |mut s: TcpStream| {
        let mut buf = Vec::new();
        loop {
            let parsed = read_request(&mut s, &mut buf, |b| match socketmap::parse(b) {
                socketmap::Parsed::Incomplete => None,
                p => Some(p),
            });
            let (answer, used) = match parsed {
                Some(socketmap::Parsed::Done { map, key, len }) => {
                    let a = if map != "transport" {
                        format!("PERM unknown map {map:?}: ringmail answers the transport map")
                    } else {
                        match user_of(&ctx, &key) {
                            Some(user) => {
                                let view = cluster.view();
                                let home = view.map.home(&user);
                                format!("OK lmtp:inet:{}:{}", bracket(home.lmtp.ip()), home.lmtp.port())
                            }
                            None => "NOTFOUND ".to_string(),
                        }
                    };
                    (a, len)
                }
                Some(socketmap::Parsed::Invalid(why)) => {
                    let _ = s.write_all(&socketmap::answer(&format!("PERM {why}")));
                    return;
                }
                _ => return,
            };
            buf.drain(..used);
            if s.write_all(&socketmap::answer(&answer)).is_err() {
                return;
            }
        }
    };
    serve_lookups("socketmap", addr, Arc::new(one))
}

/// An address as Postfix writes one in a next-hop (`[::1]` for IPv6).
fn bracket(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => format!("[{v6}]"),
        v4 => v4.to_string(),
    }
}
