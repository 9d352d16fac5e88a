//! The network layer: workers, listeners, connections. It moves bytes and
//! connections; the protocol lives in `session`, the mail in `store`.
//!
//! One pinned worker per core, each with its own monoio runtime (io_uring, or
//! epoll where io_uring is unavailable) and its own SO_REUSEPORT listener on
//! every address. Users are sharded across workers by a hash of their name:
//! after login a connection moves to its user's worker, so all of a user's
//! sessions and deliveries share one thread and the store needs no locks.

mod conn;
mod deliver;
pub mod fdlimit;
mod guard;
mod iovec;
mod metrics_http;
mod pool;
mod smtp;
pub mod spool;
pub mod tls;
mod worker;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::auth::limiter::{ConnLimiter, FailureDelay};
use crate::auth::{Authenticator, UserDb};
use crate::config::{Config, Driver};
use crate::proto::Limits;
use crate::session::SessionConfig;

pub use worker::WorkerMsg;

/// The worker a user's mail lives on: FNV-1a of the name, stable across runs.
pub fn shard(user: &str, workers: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in user.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % workers.max(1) as u64) as usize
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerKind {
    Imap,
    /// Implicit TLS (RFC 8314): the handshake comes before the greeting.
    Imaps,
    /// Connections start authenticated as this user (`* PREAUTH`).
    Preauth(String),
    Lmtp,
    Smtp,
}

#[derive(Debug, Clone)]
pub struct Listener {
    pub addr: SocketAddr,
    pub kind: ListenerKind,
}

/// State every worker shares (read-mostly).
pub struct Shared {
    pub config: Config,
    pub session_cfg: Arc<SessionConfig>,
    pub auth: Arc<Authenticator>,
    pub limiter: Arc<ConnLimiter>,
    pub failures: FailureDelay,
    pub directory: Arc<crate::delivery::LocalDirectory>,
    pub smtp_limits: crate::delivery::smtp::Limits,
    pub inboxes: Vec<flume::Sender<WorkerMsg>>,
    pub blocking: monoio::blocking::DefaultThreadPool,
    /// Certificates for implicit TLS and STARTTLS; reloaded on SIGHUP.
    pub tls: Arc<crate::tls::Tls>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Where LMTP/SMTP messages wait between DATA and storing (`<data>/tmp`).
    pub spool_dir: std::path::PathBuf,
    pub spool_budget: Arc<spool::Budget>,
}

impl Shared {
    pub fn workers(&self) -> usize {
        self.inboxes.len()
    }
}

/// A running server.
pub struct Server {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    /// The IMAP addresses actually bound (port 0 resolved), in config order.
    pub imap_addrs: Vec<SocketAddr>,
    pub imaps_addrs: Vec<SocketAddr>,
    /// Where the Prometheus endpoint listens, if enabled.
    pub metrics_addr: Option<SocketAddr>,
    pub preauth_addrs: Vec<SocketAddr>,
    pub lmtp_addrs: Vec<SocketAddr>,
    pub smtp_addrs: Vec<SocketAddr>,
    pub driver: Driver,
}

/// Which driver runs: io_uring if asked for or available, epoll otherwise.
pub fn choose_driver(wanted: Driver) -> Result<Driver, String> {
    let uring = monoio::utils::detect_uring();
    match wanted {
        Driver::Uring if !uring => Err("io_uring is not available on this host (kernel too old, or disabled by seccomp or kernel.io_uring_disabled)".into()),
        Driver::Uring => Ok(Driver::Uring),
        Driver::Epoll => Ok(Driver::Epoll),
        Driver::Auto => Ok(if uring { Driver::Uring } else { Driver::Epoll }),
    }
}

/// Binds `n` SO_REUSEPORT sockets to `addr` (the first resolves port 0).
///
/// SO_REUSEPORT would also let a second server process (same user) bind
/// the same port and silently receive part of its connections, so the
/// address is first probed with a plain bind, which fails if anyone listens.
fn bind_group(addr: SocketAddr, n: usize) -> std::io::Result<(SocketAddr, Vec<TcpListener>)> {
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

impl Server {
    pub fn start(config: Config) -> Result<Server, String> {
        let driver = choose_driver(config.driver)?;
        let n = config.worker_count();
        crate::datadir::create_private_dir(&config.data_dir.join("mail")).map_err(|e| format!("cannot create {}: {e}", config.data_dir.display()))?;
        let spool_dir = config.data_dir.join("tmp");
        spool::prepare(&spool_dir).map_err(|e| format!("cannot prepare {}: {e}", spool_dir.display()))?;
        let db = Arc::new(UserDb::open(&config.users_file()).map_err(|e| format!("cannot read {}: {e}", config.users_file().display()))?);
        let directory = Arc::new(smtp::directory(&config, db.clone()));
        let auth = Arc::new(Authenticator::new(db, config.limits.auth_cache_ttl));
        let limits = Limits { message_max: config.limits.max_message_size, ..Limits::DEFAULT };
        if config.store.sync == crate::config::SyncMode::Never {
            tracing::warn!(
                "store.sync = \"never\": mail is acknowledged (APPEND OK, LMTP 250) before it is on disk; \
                 a crash or power loss LOSES MAIL clients were told was stored. For benchmarks only."
            );
            eprintln!("ringmail: WARNING: store.sync = \"never\" acknowledges mail before it is on disk; a crash or power loss loses it. Benchmarks only.");
        }
        let tls = Arc::new(crate::tls::Tls::load(&config)?);
        let session_cfg = Arc::new(SessionConfig {
            limits: Arc::new(limits.clamped()),
            pre_auth: Arc::new(Limits::PRE_AUTH),
            max_auth_failures: config.limits.max_auth_failures,
            starttls: true,
        });

        let mut per_worker: Vec<Vec<(Listener, TcpListener)>> = (0..n).map(|_| Vec::new()).collect();
        let (mut imap_addrs, mut imaps_addrs, mut lmtp_addrs, mut smtp_addrs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut preauth_addrs = Vec::new();
        let mut groups: Vec<(Listener, Vec<TcpListener>)> = Vec::new();
        let mut bind = |addr: SocketAddr, kind: ListenerKind, bound: &mut Vec<SocketAddr>| -> Result<(), String> {
            let (actual, ls) = bind_group(addr, n).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            bound.push(actual);
            groups.push((Listener { addr: actual, kind }, ls));
            Ok(())
        };
        for (addrs, kind, bound) in [
            (&config.imap.listen, ListenerKind::Imap, &mut imap_addrs),
            (&config.imap.imaps, ListenerKind::Imaps, &mut imaps_addrs),
            (&config.lmtp.listen, ListenerKind::Lmtp, &mut lmtp_addrs),
            (&config.smtp.listen, ListenerKind::Smtp, &mut smtp_addrs),
        ] {
            for addr in addrs {
                bind(*addr, kind.clone(), bound)?;
            }
        }
        for p in &config.imap.preauth {
            bind(p.listen, ListenerKind::Preauth(p.user.clone()), &mut preauth_addrs)?;
        }
        for (l, ls) in groups {
            for (i, sock) in ls.into_iter().enumerate() {
                per_worker[i].push((l.clone(), sock));
            }
        }

        let (senders, receivers): (Vec<_>, Vec<_>) = (0..n).map(|_| flume::unbounded()).unzip();
        let metrics = crate::metrics::Metrics::with_data_dir(n, &format!("{driver:?}"), Some(config.data_dir.clone()));
        let config_metrics = config.metrics.listen;
        let max_connections = match fdlimit::raise_nofile() {
            Ok((soft, _)) => {
                let cap = fdlimit::connection_cap(config.limits.max_connections, soft);
                if cap < config.limits.max_connections {
                    tracing::warn!(
                        configured = config.limits.max_connections,
                        cap,
                        open_files = soft,
                        "limits.max_connections lowered to fit the open-files limit (raise LimitNOFILE to serve more)"
                    );
                }
                cap
            }
            Err(_) => config.limits.max_connections,
        };
        let shared = Arc::new(Shared {
            failures: FailureDelay::new(config.limits.auth_failure_delay, config.limits.auth_failure_delay_max),
            limiter: ConnLimiter::new(max_connections, config.limits.max_connections_per_ip),
            directory,
            smtp_limits: smtp::limits(&config),
            config,
            session_cfg,
            auth,
            inboxes: senders,
            blocking: monoio::blocking::DefaultThreadPool::new(n.max(2)),
            tls,
            metrics: metrics.clone(),
            spool_dir,
            spool_budget: Arc::new(spool::Budget::new(metrics.spool_memory.clone())),
        });
        let metrics_addr = match config_metrics {
            Some(addr) => Some(metrics_http::serve(addr, metrics).map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?),
            None => None,
        };
        let mut threads = Vec::with_capacity(n);
        for (i, (listeners, inbox)) in per_worker.into_iter().zip(receivers).enumerate() {
            let shared = shared.clone();
            let t = std::thread::Builder::new()
                .name(format!("ringmail-worker-{i}"))
                .spawn(move || worker::run(i, shared, listeners, inbox, driver))
                .map_err(|e| format!("cannot start worker: {e}"))?;
            threads.push(t);
        }
        tracing::info!(workers = n, driver = ?driver, imap = ?imap_addrs, imaps = ?imaps_addrs, lmtp = ?lmtp_addrs, smtp = ?smtp_addrs, "ringmail started");
        let certificate = shared.tls.current();
        tracing::info!(cert = %certificate.cert_path.display(), fingerprint = %certificate.fingerprint, "TLS certificate");
        Ok(Server { shared, threads, metrics_addr, imap_addrs, imaps_addrs, preauth_addrs, lmtp_addrs, smtp_addrs, driver })
    }

    /// Stops accepting, sends BYE to every session, waits for the workers.
    pub fn shutdown(self) {
        for tx in &self.shared.inboxes {
            let _ = tx.send(WorkerMsg::Shutdown);
        }
        for t in self.threads {
            let _ = t.join();
        }
    }

    /// Runs until SIGINT or SIGTERM, then shuts down.
    pub fn run_until_signal(self) {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot install signal handlers");
                return self.shutdown();
            }
        };
        // Ready once the listeners are bound and the signals are handled.
        crate::sdnotify::notify("READY=1");
        for sig in signals.forever() {
            if sig == SIGHUP {
                self.reload_tls();
                continue;
            }
            tracing::info!(signal = sig, "shutting down");
            break;
        }
        crate::sdnotify::notify("STOPPING=1");
        self.shutdown();
    }

    /// Re-reads the TLS certificate and key (SIGHUP). New connections get
    /// the new ones; a certificate that does not load leaves the old one.
    pub fn reload_tls(&self) {
        crate::sdnotify::notify("RELOADING=1");
        let r = self.shared.tls.reload();
        crate::sdnotify::notify("READY=1");
        match r {
            Ok(c) => tracing::info!(cert = %c.cert_path.display(), fingerprint = %c.fingerprint, "TLS certificate reloaded"),
            Err(e) => tracing::error!(error = %e, "TLS certificate not reloaded; keeping the current one"),
        }
    }

    /// Connections currently open (all workers).
    pub fn connections(&self) -> usize {
        self.shared.limiter.total()
    }
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

    #[test]
    fn shards_are_stable_and_spread() {
        assert_eq!(shard("joe", 1), 0);
        assert_eq!(shard("joe", 4), shard("joe", 4));
        let hits: std::collections::HashSet<usize> = (0..100).map(|i| shard(&format!("user{i}"), 4)).collect();
        assert_eq!(hits.len(), 4);
    }
}
