//! One worker: a pinned thread running its own monoio runtime, its own
//! listeners (SO_REUSEPORT), the mail store of the users sharded to it
//! (with its group committer), and the connections currently on it. Other threads reach
//! it only through its inbox.

use std::cell::{Cell, RefCell};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::net::{TcpListener, TcpStream};
use slab::Slab;

use super::pool::Pool;
use super::{conn, Listener, ListenerKind, Shared};
use crate::auth::limiter::ConnGuard;
use crate::config::Driver;
use crate::session::{ConnFacts, Connection, Snapshot};
use crate::signal::Signal;
use crate::store::{RealIo, Store};

/// Threads per worker that run fdatasync; more than the usual number of
/// files in a batch brings nothing, since the file system merges them anyway.
const SYNC_THREADS: usize = 8;

/// What other threads send a worker.
pub enum WorkerMsg {
    /// A connection whose user lives here, moving in after login.
    Adopt(Box<Migrant>),
    /// A delivered message for a user who lives here.
    Deliver(Box<super::deliver::DeliveryJob>),
    /// Stop accepting, say BYE to everyone, exit.
    Shutdown,
}

pub struct Migrant {
    pub stream: std::net::TcpStream,
    pub tls: Option<Box<rustls::ServerConnection>>,
    pub guard: ConnGuard,
    pub snapshot: Snapshot,
}

/// The state of one worker, shared by its tasks.
pub struct WorkerCtx {
    pub id: usize,
    pub shared: Arc<Shared>,
    pub store: Store,
    pub pool: Pool,
    /// Every connection and accept loop: its wake-up signal and deadline
    /// (for shutdown and for timeouts, which one sweeper checks for all).
    entries: RefCell<Slab<Rc<Entry>>>,
    pub connections: Cell<usize>,
    pub stopping: Cell<bool>,
    /// Password verifications running on the blocking pool, by user name;
    /// the receiver disconnects when the verification ends (see conn.rs).
    pub verifying: RefCell<std::collections::HashMap<String, flume::Receiver<()>>>,
}

/// A task's place in the worker's registry.
pub struct Entry {
    signal: Rc<Signal>,
    deadline: Cell<Option<Instant>>,
    expired: Cell<bool>,
}

/// Keeps an entry registered while a task runs.
pub struct Registration {
    ctx: Rc<WorkerCtx>,
    key: usize,
    entry: Rc<Entry>,
}

impl Registration {
    /// Fires the task's signal at `at` (within one sweep tick), unless re-armed.
    pub fn arm(&self, at: Instant) {
        self.entry.deadline.set(Some(at));
        self.entry.expired.set(false);
    }

    /// Whether the deadline passed (and forgets that it did).
    pub fn take_expired(&self) -> bool {
        self.entry.expired.replace(false)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.ctx.entries.borrow_mut().remove(self.key);
    }
}

impl WorkerCtx {
    pub fn register(self: &Rc<Self>, s: &Rc<Signal>) -> Registration {
        let entry = Rc::new(Entry { signal: s.clone(), deadline: Cell::new(None), expired: Cell::new(false) });
        let key = self.entries.borrow_mut().insert(entry.clone());
        Registration { ctx: self.clone(), key, entry }
    }

    pub fn now() -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
    }

    fn stop(&self) {
        self.stopping.set(true);
        for (_, e) in self.entries.borrow().iter() {
            e.signal.fire();
        }
    }
}

/// Runs a worker thread to completion.
pub fn run(id: usize, shared: Arc<Shared>, listeners: Vec<(Listener, std::net::TcpListener)>, inbox: flume::Receiver<WorkerMsg>, driver: Driver) {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if let Err(e) = monoio::utils::bind_to_cpu_set([id % cpus]) {
        tracing::warn!(worker = id, error = ?e, "cannot pin worker to a core");
    }
    let pool = shared.blocking.clone();
    crate::metrics::attach_thread(shared.metrics.clone(), id);
    let run = async move {
        let settings = crate::store::Settings { segment_size: shared.config.store.segment_size, sync: shared.config.store.sync, ..Default::default() };
        // Syncs run on helper threads so this worker never waits for the disk.
        let io = Rc::new(RealIo::with_sync_threads(SYNC_THREADS, &format!("ringmail-sync-{id}")));
        let spawn: crate::store::Spawner = Box::new(|f| {
            monoio::spawn(f);
        });
        let store = Store::with_spawner(io, &shared.config.data_dir.join("mail"), settings, spawn);
        store.committer().set_observer(Box::new(|us, ok| crate::metrics::with_worker(|m| m.sync(us, ok))));
        let ctx = Rc::new(WorkerCtx {
            id,
            shared,
            store,
            pool: Pool::default(),
            entries: RefCell::new(Slab::new()),
            connections: Cell::new(0),
            stopping: Cell::new(false),
            verifying: RefCell::default(),
        });
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

async fn worker_main(ctx: Rc<WorkerCtx>, listeners: Vec<(Listener, std::net::TcpListener)>, inbox: flume::Receiver<WorkerMsg>) {
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
                        conn::spawn(&ctx, stream, m.tls, m.guard, conn, false);
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot adopt connection"),
                }
            }
            WorkerMsg::Deliver(job) => {
                super::guard::spawn("delivery", super::deliver::run_job(ctx.clone(), job));
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

async fn accept_loop(ctx: Rc<WorkerCtx>, listener: TcpListener, l: Listener) {
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
        match ctx.shared.limiter.try_acquire(peer.ip()) {
            Ok(guard) => {
                let facts = ConnFacts { tls: false, cleartext_ok: ctx.shared.config.cleartext_allowed(peer.ip()) };
                let conn = match &l.kind {
                    ListenerKind::Imap => Connection::new(ctx.shared.session_cfg.clone(), facts),
                    ListenerKind::Imaps => {
                        let facts = ConnFacts { tls: true, cleartext_ok: true };
                        super::guard::spawn(
                            "tls handshake",
                            conn::accept_tls(ctx.clone(), stream, guard, Connection::new(ctx.shared.session_cfg.clone(), facts)),
                        );
                        continue;
                    }
                    ListenerKind::Preauth(user) => Connection::preauthenticated(ctx.shared.session_cfg.clone(), facts, user.clone()),
                    ListenerKind::Lmtp => {
                        super::smtp::spawn(&ctx, stream, guard, crate::delivery::smtp::Dialect::Lmtp);
                        continue;
                    }
                    ListenerKind::Smtp => {
                        super::smtp::spawn(&ctx, stream, guard, crate::delivery::smtp::Dialect::Smtp);
                        continue;
                    }
                };
                conn::spawn(&ctx, stream, None, guard, conn, true);
            }
            Err(refusal) if matches!(l.kind, ListenerKind::Lmtp | ListenerKind::Smtp) => {
                monoio::spawn(super::smtp::refuse(stream, refusal.message()));
            }
            // Over the limits on the implicit-TLS port: a cleartext BYE would
            // be garbage to a client expecting a ServerHello, and a handshake
            // is what the limit saves; just close.
            Err(_) if l.kind == ListenerKind::Imaps => drop(stream),
            Err(refusal) => {
                monoio::spawn(conn::refuse(stream, refusal.message()));
            }
        }
    }
}

/// Fires the signals of connections whose deadline passed. One task for
/// all connections, instead of a timer each (a monoio timer is 640 bytes).
async fn sweep_deadlines(ctx: Rc<WorkerCtx>) {
    let l = &ctx.shared.config.limits;
    let tick = (l.login_timeout.min(l.idle_timeout).min(l.idle_keepalive) / 4).clamp(Duration::from_millis(10), Duration::from_millis(250));
    loop {
        monoio::time::sleep(tick).await;
        if ctx.stopping.get() {
            return;
        }
        let now = Instant::now();
        for (_, e) in ctx.entries.borrow().iter() {
            if e.deadline.get().is_some_and(|d| d <= now) {
                e.deadline.set(None);
                e.expired.set(true);
                e.signal.fire();
            }
        }
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

/// Duplicates a monoio socket into a std one that another worker can own.
pub fn detach(stream: &TcpStream) -> std::io::Result<std::net::TcpStream> {
    // SAFETY: the descriptor belongs to `stream`, which is alive for the whole
    // borrow; it is only duplicated here, never closed.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(stream.as_raw_fd()) };
    Ok(std::net::TcpStream::from(fd.try_clone_to_owned()?))
}
