//! This server as one backend of a cluster (docs/scale-out.md): the cluster
//! map (re-read on SIGHUP), which backend is this one, whether each backend
//! answers (checked every few seconds), and the two lookup services the
//! engines in front ask: nginx's `auth_http` and Postfix's socketmap. Both
//! run on plain threads with blocking sockets, away from the workers; a
//! lookup is a short request on a fresh connection.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::context::ServerCtx;
use crate::auth::passwd::normalize_user_name;
use crate::auth::AuthResult;
use crate::cluster::auth_http::{self, Verdict};
use crate::cluster::{socketmap, Backend, ClusterMap};

/// How often every backend's IMAP port is tried, and for how long.
const HEALTH_EVERY: Duration = Duration::from_secs(2);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
/// Lookups served at once; more wait for a slot.
const MAX_LOOKUPS: usize = 64;

pub struct Cluster {
    path: PathBuf,
    map: RwLock<Arc<ClusterMap>>,
    /// This backend's name in the map.
    me: RwLock<String>,
    configured_self: Option<String>,
    own_imap: Vec<SocketAddr>,
    /// Backend name to whether its IMAP port answered the last check.
    up: Mutex<HashMap<String, bool>>,
    metrics: Arc<crate::metrics::Metrics>,
}

/// The backend whose IMAP address is one of `own` (a wildcard listener
/// matches any address on its port).
fn find_self(map: &ClusterMap, configured: Option<&str>, own: &[SocketAddr]) -> Result<String, String> {
    if let Some(name) = configured {
        return map.backend(name).map(|b| b.name.clone()).ok_or_else(|| format!("[cluster] self = {name:?} is not in the cluster map"));
    }
    let mine = |b: &Backend| own.iter().any(|a| a.port() == b.imap.port() && (a.ip() == b.imap.ip() || a.ip().is_unspecified()));
    let found: Vec<&Backend> = map.backends().iter().filter(|b| mine(b)).collect();
    match found.as_slice() {
        [b] => Ok(b.name.clone()),
        [] => Err("no backend of the cluster map has an IMAP address this server listens on; set [cluster] self".into()),
        _ => Err("several backends of the cluster map match this server's IMAP addresses; set [cluster] self".into()),
    }
}

impl Cluster {
    pub fn load(
        path: PathBuf,
        configured_self: Option<String>,
        own_imap: Vec<SocketAddr>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<Arc<Cluster>, String> {
        let map = ClusterMap::load(&path)?;
        let me = find_self(&map, configured_self.as_deref(), &own_imap)?;
        let c = Arc::new(Cluster {
            path,
            map: RwLock::new(Arc::new(map)),
            me: RwLock::new(me),
            configured_self,
            own_imap,
            up: Mutex::new(HashMap::new()),
            metrics,
        });
        let weak = Arc::downgrade(&c);
        std::thread::Builder::new()
            .name("ringmail-health".into())
            .spawn(move || {
                while let Some(c) = weak.upgrade() {
                    c.check_health();
                    drop(c);
                    std::thread::sleep(HEALTH_EVERY);
                }
            })
            .map_err(|e| format!("cannot start the health checks: {e}"))?;
        Ok(c)
    }

    /// SIGHUP: the map again. A map that does not load leaves the old one.
    pub fn reload(&self) -> Result<usize, String> {
        let map = ClusterMap::load(&self.path)?;
        let me = find_self(&map, self.configured_self.as_deref(), &self.own_imap)?;
        let n = map.backends().len();
        *self.map.write().expect("cluster lock") = Arc::new(map);
        *self.me.write().expect("cluster lock") = me;
        Ok(n)
    }

    pub fn map(&self) -> Arc<ClusterMap> {
        self.map.read().expect("cluster lock").clone()
    }

    pub fn me(&self) -> String {
        self.me.read().expect("cluster lock").clone()
    }

    /// The backend `user` lives on, unless that is this one.
    pub fn elsewhere(&self, user: &str) -> Option<Backend> {
        let map = self.map();
        let home = map.home(user);
        (home.name != *self.me.read().expect("cluster lock")).then(|| home.clone())
    }

    /// Whether `b` answered the last check (this backend always does; one
    /// not checked yet counts as up).
    pub fn is_up(&self, b: &Backend) -> bool {
        b.name == self.me() || self.up.lock().expect("health lock").get(&b.name).copied().unwrap_or(true)
    }

    fn check_health(&self) {
        let map = self.map();
        let me = self.me();
        for b in map.backends().iter().filter(|b| b.name != me) {
            let ok = TcpStream::connect_timeout(&b.imap, HEALTH_TIMEOUT).is_ok();
            let was = self.up.lock().expect("health lock").insert(b.name.clone(), ok);
            if was != Some(ok) {
                if ok {
                    tracing::info!(backend = b.name, addr = %b.imap, "backend is up");
                } else {
                    tracing::warn!(backend = b.name, addr = %b.imap, "backend does not answer; its users get a temporary error");
                }
            }
        }
        let health = map.backends().iter().map(|b| (b.name.clone(), b.name == me, self.is_up(b))).collect();
        *self.metrics.cluster.lock().expect("metrics lock") = health;
    }
}

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
        let map = cluster.map();
        let d = auth_http::decide(
            &auth_http::Request { user: user.clone(), ..req.clone() },
            &map,
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
/// for a domain alone, a domain not ours, or no such user.
fn user_of(ctx: &ServerCtx, key: &str) -> Option<String> {
    use crate::delivery::smtp::{Dialect, Directory};
    let (local, domain) = key.rsplit_once('@')?;
    if local.is_empty() || !ctx.directory.is_local_domain(domain, Dialect::Lmtp) {
        return None;
    }
    let user = normalize_user_name(local);
    ctx.directory.user_exists(&user).then_some(user)
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
                                let m = cluster.map();
                                let home = m.home(&user);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_backend_is_found_by_its_listening_address() {
        let map = ClusterMap::parse(
            "[[backend]]\nname=\"b1\"\nimap=\"10.0.0.1:143\"\nlmtp=\"10.0.0.1:24\"\n[[backend]]\nname=\"b2\"\nimap=\"10.0.0.2:143\"\nlmtp=\"10.0.0.2:24\"\n",
        )
        .unwrap();
        assert_eq!(find_self(&map, None, &["10.0.0.2:143".parse().unwrap()]).unwrap(), "b2");
        assert!(find_self(&map, None, &["0.0.0.0:143".parse().unwrap()]).is_err(), "ambiguous");
        assert_eq!(find_self(&map, Some("b1"), &["0.0.0.0:143".parse().unwrap()]).unwrap(), "b1");
        assert!(find_self(&map, Some("b9"), &[]).is_err());
        assert!(find_self(&map, None, &["127.0.0.1:1143".parse().unwrap()]).is_err());
    }
}
