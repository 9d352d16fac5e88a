//! Starting and stopping the server: the shared context, the listeners,
//! one worker thread per core, signals (SIGHUP reloads the certificate).

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::cluster::Cluster;
use super::context::{ServerCtx, WorkerMsg};
use super::listen::{bind_group, ListenerKind};
use super::lookups;
use super::{control, fdlimit, metrics_http, spool, worker};
use crate::auth::limiter::{ConnLimiter, FailureDelay};
use crate::auth::{Authenticator, UserDb};
use crate::config::{Config, Driver};
use crate::proto::Limits;
use crate::session::SessionConfig;

/// A running server.
pub struct Server {
    ctx: Arc<ServerCtx>,
    threads: Vec<JoinHandle<()>>,
    /// The control socket's path (removed at shutdown).
    control: Option<std::path::PathBuf>,
    /// nginx's auth_http and Postfix's socketmap endpoints, if served.
    pub auth_http_addr: Option<SocketAddr>,
    pub socketmap_addr: Option<SocketAddr>,
    /// Where the auth socket for Postfix listens (addresses or paths).
    pub sasl_addrs: Vec<String>,
    /// The cluster control port (user moves), if served.
    pub control_port: Option<SocketAddr>,
    /// The IMAP addresses actually bound (port 0 resolved), in config order.
    pub imap_addrs: Vec<SocketAddr>,
    pub imaps_addrs: Vec<SocketAddr>,
    /// Where the Prometheus endpoint listens, if enabled.
    pub metrics_addr: Option<SocketAddr>,
    pub preauth_addrs: Vec<SocketAddr>,
    pub lmtp_addrs: Vec<SocketAddr>,
    pub smtp_addrs: Vec<SocketAddr>,
    pub pop3_addrs: Vec<SocketAddr>,
    pub pop3s_addrs: Vec<SocketAddr>,
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

impl Server {
    pub fn start(config: Config) -> Result<Server, String> {
        let driver = choose_driver(config.driver)?;
        let n = config.worker_count();
        crate::datadir::create_private_dir(&config.data_dir.join("mail")).map_err(|e| format!("cannot create {}: {e}", config.data_dir.display()))?;
        let spool_dir = config.data_dir.join("tmp");
        spool::prepare(&spool_dir).map_err(|e| format!("cannot prepare {}: {e}", spool_dir.display()))?;
        let db = Arc::new(UserDb::open(&config.users_file()).map_err(|e| format!("cannot read {}: {e}", config.users_file().display()))?);
        let directory = Arc::new(directory(&config, db.clone()));
        let auth = Arc::new(Authenticator::new(db, config.limits.auth_cache_ttl));
        let limits = Limits { message_max: config.limits.max_message_size, ..Limits::DEFAULT };
        if config.store.sync == crate::config::SyncMode::Never {
            tracing::warn!(
                "store.sync = \"never\": mail is acknowledged (APPEND OK, LMTP 250) before it is on disk; \
                 a crash or power loss LOSES MAIL clients were told was stored. For benchmarks only."
            );
            eprintln!("ringmail: WARNING: store.sync = \"never\" acknowledges mail before it is on disk; a crash or power loss loses it. Benchmarks only.");
        }
        let certs = Arc::new(crate::certs::Certs::load(&config)?);
        let session_cfg = Arc::new(SessionConfig {
            limits: Arc::new(limits.clamped()),
            pre_auth: Arc::new(Limits::PRE_AUTH),
            max_auth_failures: config.limits.max_auth_failures,
            starttls: true,
            metadata: config.metadata.limits(),
            admin: config.metadata.admin.clone(),
        });

        let mut per_worker: Vec<Vec<(ListenerKind, TcpListener)>> = (0..n).map(|_| Vec::new()).collect();
        let (mut imap_addrs, mut imaps_addrs, mut lmtp_addrs, mut smtp_addrs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut preauth_addrs, mut pop3_addrs, mut pop3s_addrs) = (Vec::new(), Vec::new(), Vec::new());
        let mut groups: Vec<(ListenerKind, Vec<TcpListener>)> = Vec::new();
        let mut bind = |addr: SocketAddr, kind: ListenerKind, bound: &mut Vec<SocketAddr>| -> Result<(), String> {
            let (actual, ls) = bind_group(addr, n).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            bound.push(actual);
            groups.push((kind, ls));
            Ok(())
        };
        for (addrs, kind, bound) in [
            (&config.imap.listen, ListenerKind::Imap, &mut imap_addrs),
            (&config.imap.imaps, ListenerKind::Imaps, &mut imaps_addrs),
            (&config.lmtp.listen, ListenerKind::Lmtp, &mut lmtp_addrs),
            (&config.smtp.listen, ListenerKind::Smtp, &mut smtp_addrs),
            (&config.pop3.listen, ListenerKind::Pop3, &mut pop3_addrs),
            (&config.pop3.pop3s, ListenerKind::Pop3s, &mut pop3s_addrs),
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
        let cluster = match &config.cluster.file {
            Some(path) => {
                let own: Vec<SocketAddr> = imap_addrs.iter().chain(&config.imap.listen).copied().collect();
                let secret = match &config.cluster.secret_file {
                    Some(f) => Some(crate::cluster::control_auth::load_secret(f)?),
                    None => None,
                };
                Some(Cluster::load(path.clone(), config.data_dir.clone(), config.cluster.self_name.clone(), own, secret, metrics.clone())?)
            }
            None => None,
        };
        let (auth_http, socketmap) = (config.cluster.auth_http, config.cluster.socketmap);
        let ctx = Arc::new(ServerCtx {
            cluster,
            failures: FailureDelay::new(config.limits.auth_failure_delay, config.limits.auth_failure_delay_max),
            limiter: ConnLimiter::new(max_connections, config.limits.max_connections_per_ip),
            directory,
            smtp_limits: smtp_limits(&config),
            config,
            session_cfg,
            auth,
            inboxes: senders,
            blocking: monoio::blocking::DefaultThreadPool::new(n.max(2)),
            certs,
            metrics: metrics.clone(),
            spool_dir,
            spool_budget: Arc::new(spool::Budget::new(metrics.spool_memory.clone())),
        });
        let auth_http_addr = match auth_http {
            Some(a) => Some(lookups::serve_auth_http(a, ctx.clone())?),
            None => None,
        };
        let socketmap_addr = match socketmap {
            Some(a) => Some(lookups::serve_socketmap(a, ctx.clone())?),
            None => None,
        };
        if let Some(c) = &ctx.cluster {
            let view = c.view();
            tracing::info!(backend = view.me, backends = view.map.backends().len(), auth_http = ?auth_http_addr, socketmap = ?socketmap_addr, "cluster map loaded");
        }
        let metrics_addr = match config_metrics {
            Some(addr) => Some(metrics_http::serve(addr, metrics).map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?),
            None => None,
        };
        // Without it only imports into a running server are refused.
        let control = control::serve(&ctx.config.data_dir, ctx.clone())
            .map_err(|e| tracing::warn!(error = %e, "no control socket: `ringmail import` needs the server stopped"))
            .ok();
        let mut sasl_addrs = Vec::new();
        for at in &ctx.config.sasl.listen {
            sasl_addrs.push(super::auth_socket::serve(at, ctx.clone())?);
        }
        let control_port = match ctx.cluster.as_ref().map(|c| (c.view(), c.secret().map(<[u8]>::to_vec))) {
            Some((view, secret)) => match (view.map.backend(&view.me).and_then(|b| b.control), secret) {
                (Some(addr), Some(secret)) => Some(control::serve_port(addr, secret, ctx.clone())?),
                (Some(addr), None) => return Err(format!("the cluster map gives this backend a control port ({addr}), which needs [cluster] secret_file")),
                (None, _) => None,
            },
            None => None,
        };
        let mut threads = Vec::with_capacity(n);
        for (i, (listeners, inbox)) in per_worker.into_iter().zip(receivers).enumerate() {
            let ctx = ctx.clone();
            let t = std::thread::Builder::new()
                .name(format!("ringmail-worker-{i}"))
                .spawn(move || worker::run(i, ctx, listeners, inbox, driver))
                .map_err(|e| format!("cannot start worker: {e}"))?;
            threads.push(t);
        }
        tracing::info!(workers = n, driver = ?driver, imap = ?imap_addrs, imaps = ?imaps_addrs, lmtp = ?lmtp_addrs, smtp = ?smtp_addrs, pop3 = ?pop3_addrs, pop3s = ?pop3s_addrs, "ringmail started");
        let certificate = ctx.certs.current();
        tracing::info!(cert = %certificate.cert_path.display(), fingerprint = %certificate.fingerprint, "TLS certificate");
        Ok(Server {
            ctx,
            threads,
            control,
            auth_http_addr,
            socketmap_addr,
            control_port,
            sasl_addrs,
            metrics_addr,
            imap_addrs,
            imaps_addrs,
            preauth_addrs,
            lmtp_addrs,
            smtp_addrs,
            pop3_addrs,
            pop3s_addrs,
            driver,
        })
    }

    /// Stops accepting, sends BYE to every session, waits for the workers.
    pub fn shutdown(self) {
        for to in 0..self.ctx.workers() {
            self.ctx.send(to, WorkerMsg::Shutdown);
        }
        for t in self.threads {
            let _ = t.join();
        }
        if let Some(p) = &self.control {
            let _ = std::fs::remove_file(p);
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
                self.reload_cluster();
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
        let r = self.ctx.certs.reload();
        crate::sdnotify::notify("READY=1");
        match r {
            Ok(c) => tracing::info!(cert = %c.cert_path.display(), fingerprint = %c.fingerprint, "TLS certificate reloaded"),
            Err(e) => tracing::error!(error = %e, "TLS certificate not reloaded; keeping the current one"),
        }
    }

    /// Re-reads the cluster map (SIGHUP). A map that does not load leaves
    /// the old one in place.
    pub fn reload_cluster(&self) {
        if let Some(c) = &self.ctx.cluster {
            match c.reload() {
                Ok(view) => tracing::info!(backends = view.map.backends().len(), backend = view.me, "cluster map reloaded"),
                Err(e) => tracing::error!(error = %e, "cluster map not reloaded; keeping the current one"),
            }
        }
    }

    /// Connections currently open (all workers).
    pub fn connections(&self) -> usize {
        self.ctx.limiter.total()
    }
}

/// The delivery engine's limits from the configuration.
fn smtp_limits(config: &Config) -> crate::delivery::smtp::Limits {
    crate::delivery::smtp::Limits {
        max_message: config.limits.max_message_size,
        max_recipients: config.delivery.max_recipients.max(1),
        max_errors: config.delivery.max_errors.max(1),
        over_quota_temporary: config.quota.temporary,
        ..Default::default()
    }
}

/// The directory of local recipients every worker shares.
fn directory(config: &Config, users: Arc<UserDb>) -> crate::delivery::LocalDirectory {
    crate::delivery::LocalDirectory {
        users,
        domains: config.delivery.local_domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
        hostname: config.delivery.hostname.clone().unwrap_or_else(crate::delivery::system_hostname),
    }
}
