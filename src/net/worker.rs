//! One worker: a pinned thread running its own monoio runtime, its own
//! listeners (SO_REUSEPORT), the mail store of the users sharded to it
//! (with its group committer), and the connections currently on it. Other threads reach
//! it only through its inbox.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::net::{TcpListener, TcpStream};

use super::context::{ServerCtx, WorkerCtx, WorkerMsg};
use super::listen::ListenerKind;
use super::{deliver, guard, imap_conn, pop3_conn, smtp_conn};
use crate::config::Driver;
use crate::session::{ConnFacts, Connection};
use crate::signal::Signal;
use crate::store::{RealIo, Store};

/// Threads per worker that run fdatasync; more than the usual number of
/// files in a batch brings nothing, since the file system merges them anyway.
const SYNC_THREADS: usize = 8;

/// Runs a worker thread to completion.
pub fn run(id: usize, server: Arc<ServerCtx>, listeners: Vec<(ListenerKind, std::net::TcpListener)>, inbox: flume::Receiver<WorkerMsg>, driver: Driver) {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if let Err(e) = monoio::utils::bind_to_cpu_set([id % cpus]) {
        tracing::warn!(worker = id, error = ?e, "cannot pin worker to a core");
    }
    let pool = server.blocking.clone();
    crate::metrics::attach_thread(server.metrics.clone(), id);
    let run = async move {
        let settings = crate::store::Settings::configured(&server.config.store);
        // Syncs run on helper threads so this worker never waits for the disk.
        let io = Rc::new(RealIo::with_sync_threads(SYNC_THREADS, &format!("ringmail-sync-{id}")));
        let spawn: crate::store::Spawner = Box::new(|f| {
            monoio::spawn(f);
        });
        let mut store = Store::with_spawner(io, &server.config.data_dir.join("mail"), settings, spawn);
        store.set_quota_source(crate::delivery::quota_source(server.auth.db().clone(), &server.config.quota));
        store.committer().set_observer(Box::new(|us, ok| crate::metrics::with_worker(|m| m.sync(us, ok))));
        let ctx = Rc::new(WorkerCtx::new(id, server, store));
        worker_main(ctx, listeners, inbox).await;
    };
    match driver {
        Driver::Uring => {
            // COOP_TASKRUN: completions are run when the worker enters the
            // kernel anyway instead of interrupting it (monoio's default ring
            // flags measured ~0.7x of epoll here).
            let mut urb = io_uring::IoUring::builder();
            urb.setup_coop_taskrun();
            let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                .enable_timer()
                .with_entries(4096)
                .uring_builder(urb)
                .attach_thread_pool(Box::new(pool))
                .build()
                .expect("io_uring runtime (checked before starting workers)");
            rt.block_on(run);
        }
        _ => {
            let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .enable_timer()
                .with_entries(4096)
                .attach_thread_pool(Box::new(pool))
                .build()
                .expect("epoll runtime");
            rt.block_on(run);
        }
    }
}

async fn worker_main(ctx: Rc<WorkerCtx>, listeners: Vec<(ListenerKind, std::net::TcpListener)>, inbox: flume::Receiver<WorkerMsg>) {
    for (l, std_listener) in listeners {
        match TcpListener::from_std(std_listener) {
            Ok(tl) => {
                monoio::spawn(accept_loop(ctx.clone(), tl, l));
            }
            Err(e) => tracing::error!(error = %e, "cannot use listener"),
        }
    }
    monoio::spawn(housekeeping(ctx.clone()));
    monoio::spawn(sweep_deadlines(ctx.clone()));
    while let Ok(msg) = inbox.recv_async().await {
        match msg {
            WorkerMsg::Adopt(m) => {
                let m = *m;
                match TcpStream::from_std(m.stream) {
                    Ok(stream) => {
                        let conn = Connection::resume(m.snapshot);
                        imap_conn::spawn(&ctx, stream, m.tls, m.guard, conn, false);
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot adopt connection"),
                }
            }
            WorkerMsg::AdoptPop3(m) => {
                let m = *m;
                match TcpStream::from_std(m.stream) {
                    Ok(stream) => pop3_conn::spawn(&ctx, stream, m.tls, m.guard, crate::pop3::Session::resume(m.snapshot), false),
                    Err(e) => tracing::warn!(error = %e, "cannot adopt POP3 connection"),
                }
            }
            WorkerMsg::Deliver(job) => {
                guard::spawn("delivery", deliver::run_job(ctx.clone(), job));
            }
            WorkerMsg::Control(job) => {
                guard::spawn("control", super::control::run_job(ctx.clone(), job));
            }
            WorkerMsg::Shutdown => break,
        }
    }
    ctx.stop();
    // Give sessions a moment to say BYE and flush.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while ctx.connections.get() > 0 && std::time::Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(10)).await;
    }
    ctx.store.close();
}

async fn accept_loop(ctx: Rc<WorkerCtx>, listener: TcpListener, kind: ListenerKind) {
    let stop = Signal::new();
    let _reg = ctx.register(&stop);
    loop {
        if ctx.stopping.get() {
            return;
        }
        let accepted = monoio::select! {
            r = listener.accept() => r,
            _ = stop.wait() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                monoio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        if ctx.server.config.proxy.is_trusted(peer.ip()) {
            // The client's address comes first, in a PROXY header.
            let (ctx, kind) = (ctx.clone(), kind.clone());
            guard::spawn("proxy header", async move {
                let mut stream = stream;
                if let Some(client) = super::proxy::client_address(&mut stream, peer.ip()).await {
                    admit(&ctx, stream, &kind, peer.ip(), client);
                }
            });
            continue;
        }
        admit(&ctx, stream, &kind, peer.ip(), peer.ip());
    }
}

/// Starts serving an accepted connection: `peer` is the address it came
/// from (a proxy's, for the cleartext rule: the proxy terminated TLS),
/// `client` the client's (for limits, login penalties and logs).
fn admit(ctx: &Rc<WorkerCtx>, stream: TcpStream, kind: &ListenerKind, peer: std::net::IpAddr, client: std::net::IpAddr) {
    match ctx.server.limiter.try_acquire(client) {
        Ok(guard) => {
            let facts = ConnFacts { tls: false, cleartext_ok: ctx.server.config.cleartext_allowed(peer), compressed: false };
            let conn = match &kind {
                ListenerKind::Imap => Connection::new(ctx.server.session_cfg.clone(), facts),
                ListenerKind::Imaps => {
                    let facts = ConnFacts { tls: true, cleartext_ok: true, compressed: false };
                    guard::spawn("tls handshake", imap_conn::accept_tls(ctx.clone(), stream, guard, Connection::new(ctx.server.session_cfg.clone(), facts)));
                    return;
                }
                ListenerKind::Preauth(user) => Connection::preauthenticated(ctx.server.session_cfg.clone(), facts, user.clone()),
                ListenerKind::Lmtp => {
                    smtp_conn::spawn(ctx, stream, guard, crate::delivery::smtp::Dialect::Lmtp);
                    return;
                }
                ListenerKind::Smtp => {
                    smtp_conn::spawn(ctx, stream, guard, crate::delivery::smtp::Dialect::Smtp);
                    return;
                }
                ListenerKind::Pop3 => {
                    let facts = crate::pop3::Facts { tls: false, cleartext_ok: ctx.server.config.cleartext_allowed(peer), can_stls: true };
                    pop3_conn::spawn(ctx, stream, None, guard, crate::pop3::Session::new(facts), true);
                    return;
                }
                ListenerKind::Pop3s => {
                    guard::spawn("tls handshake", pop3_conn::accept_tls(ctx.clone(), stream, guard));
                    return;
                }
            };
            imap_conn::spawn(ctx, stream, None, guard, conn, true);
        }
        Err(refusal) if matches!(kind, ListenerKind::Lmtp | ListenerKind::Smtp) => {
            monoio::spawn(smtp_conn::refuse(stream, refusal.message()));
        }
        // Over the limits on the implicit-TLS port: a cleartext BYE would
        // be garbage to a client expecting a ServerHello, and a handshake
        // is what the limit saves; just close.
        Err(_) if matches!(kind, ListenerKind::Imaps | ListenerKind::Pop3s) => drop(stream),
        Err(refusal) if *kind == ListenerKind::Pop3 => {
            monoio::spawn(pop3_conn::refuse(stream, refusal.message()));
        }
        Err(refusal) => {
            monoio::spawn(imap_conn::refuse(stream, refusal.message()));
        }
    }
}

/// Fires the signals of connections whose deadline passed. One task for
/// all connections, instead of a timer each (a monoio timer is 640 bytes).
async fn sweep_deadlines(ctx: Rc<WorkerCtx>) {
    let l = &ctx.server.config.limits;
    let tick = (l.login_timeout.min(l.idle_timeout).min(l.idle_keepalive) / 4).clamp(Duration::from_millis(10), Duration::from_millis(250));
    loop {
        monoio::time::sleep(tick).await;
        if ctx.stopping.get() {
            return;
        }
        ctx.expire(Instant::now());
    }
}

/// Once a second: the store's background work (see `Store::housekeep`),
/// and the allocator's deferred purges.
async fn housekeeping(ctx: Rc<WorkerCtx>) {
    loop {
        monoio::time::sleep(Duration::from_secs(1)).await;
        if ctx.stopping.get() {
            return;
        }
        // The allocator returns freed memory to the system only when it is
        // next called on this thread; a worker whose connections all sit in
        // IDLE allocates nothing, so after a burst (a login storm) the freed
        // pages would stay resident. Run those deferred purges now.
        // SAFETY: mi_collect only walks this thread's heap and the arenas.
        unsafe { libmimalloc_sys::mi_collect(false) };
        // A timer, not a bare yield, between compaction slices: parking lets
        // timers and I/O completions run.
        ctx.store.housekeep(|| monoio::time::sleep(Duration::from_millis(1))).await;
    }
}
