//! What the network layer's tasks share: [`ServerCtx`] (every worker, read
//! mostly), [`WorkerCtx`] (one worker's store, buffers and task registry),
//! the messages workers send each other, and [`ServerCtx::home`], the one
//! place that decides which worker owns a user.
//!
//! A leaf of `net`: the runtime (`worker`), the connections and the
//! delivery code all use it; it uses none of them.

use std::cell::{Cell, RefCell};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use monoio::net::TcpStream;
use slab::Slab;

use super::pool::Pool;
use super::spool::{Body, Budget};
use crate::auth::limiter::{ConnGuard, ConnLimiter, FailureDelay};
use crate::auth::Authenticator;
use crate::config::Config;
use crate::delivery::smtp::DeliveryError;
use crate::session::{SessionConfig, Snapshot};
use crate::signal::Signal;
use crate::store::Store;

/// State every worker shares (read-mostly).
pub struct ServerCtx {
    pub config: Config,
    pub session_cfg: Arc<SessionConfig>,
    pub auth: Arc<Authenticator>,
    pub limiter: Arc<ConnLimiter>,
    pub failures: FailureDelay,
    pub directory: Arc<crate::delivery::LocalDirectory>,
    pub smtp_limits: crate::delivery::smtp::Limits,
    /// Each worker's inbox, by worker number.
    pub inboxes: Vec<flume::Sender<WorkerMsg>>,
    pub blocking: monoio::blocking::DefaultThreadPool,
    /// Certificates for implicit TLS and STARTTLS; reloaded on SIGHUP.
    pub certs: Arc<crate::certs::Certs>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Where LMTP/SMTP messages wait between DATA and storing (`<data>/tmp`).
    pub spool_dir: std::path::PathBuf,
    pub spool_budget: Arc<Budget>,
    /// The cluster this server is a backend of, if any.
    pub cluster: Option<Arc<super::cluster::Cluster>>,
}

impl ServerCtx {
    pub fn workers(&self) -> usize {
        self.inboxes.len()
    }

    /// The worker a user's mail lives on. All of a user's sessions and
    /// deliveries run there, so the store needs no locks.
    pub fn home(&self, user: &str) -> usize {
        shard(user, self.workers())
    }

    /// Runs a control request (import, move) on the worker that owns
    /// `user`, from a blocking thread, and waits for its answer.
    pub fn on_worker(&self, user: &str, request: crate::migrate::wire::Request, data: Vec<Vec<u8>>) -> Result<crate::migrate::wire::Answer, String> {
        let (tx, rx) = flume::bounded(1);
        if !self.send(self.home(user), WorkerMsg::Control(Box::new(ControlJob { request, data, reply: tx }))) {
            return Err("the server is shutting down".into());
        }
        rx.recv().unwrap_or_else(|_| Err("the server is shutting down".into()))
    }

    /// Sends `msg` to worker `to`; false if it is gone (shutting down).
    pub fn send(&self, to: usize, msg: WorkerMsg) -> bool {
        self.inboxes[to].send(msg).is_ok()
    }
}

/// FNV-1a of the name, stable across runs and releases.
fn shard(user: &str, workers: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in user.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % workers.max(1) as u64) as usize
}

/// What other threads send a worker.
pub enum WorkerMsg {
    /// A connection whose user lives here, moving in after login.
    Adopt(Box<Migrant>),
    /// A POP3 connection whose user lives here, moving in after login.
    AdoptPop3(Box<Pop3Migrant>),
    /// A delivered message for a user who lives here.
    Deliver(Box<DeliveryJob>),
    /// An operation of an import or a move on a user who lives here (the
    /// control socket and port).
    Control(Box<ControlJob>),
    /// Stop accepting, say BYE to everyone, exit.
    Shutdown,
}

/// One `ringmail import` or `ringmail user move` operation, with an
/// Append's message bytes.
pub struct ControlJob {
    pub request: crate::migrate::wire::Request,
    pub data: Vec<Vec<u8>>,
    pub reply: flume::Sender<Result<crate::migrate::wire::Answer, String>>,
}

/// A logged-in IMAP connection on its way to its user's worker.
pub struct Migrant {
    pub stream: std::net::TcpStream,
    pub tls: Option<Box<rustls::ServerConnection>>,
    pub guard: ConnGuard,
    pub snapshot: Snapshot,
}

/// A logged-in POP3 connection on its way to its user's worker.
pub struct Pop3Migrant {
    pub stream: std::net::TcpStream,
    pub tls: Option<Box<rustls::ServerConnection>>,
    pub guard: ConnGuard,
    pub snapshot: crate::pop3::Snapshot,
}

/// One delivered copy for a user on another worker.
pub struct DeliveryJob {
    pub user: String,
    pub mailbox: Option<String>,
    /// Trace headers for this recipient, written before `data`.
    pub prefix: Vec<u8>,
    pub data: Arc<Body>,
    pub reply: flume::Sender<Result<(), DeliveryError>>,
}

/// The state of one worker, shared by its tasks.
pub struct WorkerCtx {
    pub id: usize,
    pub server: Arc<ServerCtx>,
    pub store: Store,
    pub pool: Pool,
    /// Every connection and accept loop: its wake-up signal and deadline
    /// (for shutdown and for timeouts, which one sweeper checks for all).
    entries: RefCell<Slab<Rc<Entry>>>,
    pub connections: Cell<usize>,
    pub stopping: Cell<bool>,
    /// Password verifications running on the blocking pool, by user name;
    /// the receiver disconnects when the verification ends (see imap_conn.rs).
    pub verifying: RefCell<std::collections::HashMap<String, flume::Receiver<()>>>,
    /// Users with a POP3 session here (RFC 1939 4: one at a time).
    pub pop3_locks: RefCell<std::collections::HashSet<String>>,
    /// Users held here for a move to another backend (see relocate.rs).
    pub holds: RefCell<std::collections::HashMap<String, Hold>>,
}

/// A user held on this worker for a move to another backend (relocate.rs).
pub struct Hold {
    /// The move's id.
    pub id: u64,
    /// The move was committed: the hold never ends (the user lives elsewhere).
    pub pinned: bool,
}

/// A task's place in the worker's registry.
struct Entry {
    signal: Rc<Signal>,
    deadline: Cell<Option<Instant>>,
    expired: Cell<bool>,
    /// A connection: counted in `WorkerCtx::connections` while registered.
    connection: bool,
}

/// Keeps an entry registered while a task runs.
pub struct Registration {
    ctx: Rc<WorkerCtx>,
    key: usize,
    entry: Rc<Entry>,
}

impl Registration {
    pub fn ctx(&self) -> &Rc<WorkerCtx> {
        &self.ctx
    }

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
        if self.entry.connection {
            self.ctx.connections.set(self.ctx.connections.get() - 1);
        }
    }
}

impl WorkerCtx {
    pub fn new(id: usize, server: Arc<ServerCtx>, store: Store) -> WorkerCtx {
        WorkerCtx {
            id,
            server,
            store,
            pool: Pool::default(),
            entries: RefCell::new(Slab::new()),
            connections: Cell::new(0),
            stopping: Cell::new(false),
            verifying: RefCell::default(),
            holds: RefCell::default(),
            pop3_locks: RefCell::default(),
        }
    }

    /// Registers a task (an accept loop) for shutdown and deadlines.
    pub fn register(self: &Rc<Self>, s: &Rc<Signal>) -> Registration {
        self.add(s, false)
    }

    /// Registers a connection: as a task, and counted in `connections`
    /// until the registration drops (however the connection ends, a panic
    /// included), so shutdown knows when every connection said goodbye.
    pub fn register_connection(self: &Rc<Self>, s: &Rc<Signal>) -> Registration {
        self.connections.set(self.connections.get() + 1);
        self.add(s, true)
    }

    fn add(self: &Rc<Self>, s: &Rc<Signal>, connection: bool) -> Registration {
        let entry = Rc::new(Entry { signal: s.clone(), deadline: Cell::new(None), expired: Cell::new(false), connection });
        let key = self.entries.borrow_mut().insert(entry.clone());
        Registration { ctx: self.clone(), key, entry }
    }

    /// Whether `user`'s mail lives on this worker.
    pub fn is_home_of(&self, user: &str) -> bool {
        self.server.home(user) == self.id
    }

    /// Wall-clock seconds for the sans-io layers, which read no clock.
    pub fn now() -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
    }

    /// Marks the worker stopping and wakes every registered task.
    pub fn stop(&self) {
        self.stopping.set(true);
        for (_, e) in self.entries.borrow().iter() {
            e.signal.fire();
        }
    }

    /// Wakes every connection (a user held for a move: theirs say BYE).
    pub fn wake_connections(&self) {
        for (_, e) in self.entries.borrow().iter().filter(|(_, e)| e.connection) {
            e.signal.fire();
        }
    }

    /// Fires the signals of tasks whose deadline passed by `now`.
    pub fn expire(&self, now: Instant) {
        for (_, e) in self.entries.borrow().iter() {
            if e.deadline.get().is_some_and(|d| d <= now) {
                e.deadline.set(None);
                e.expired.set(true);
                e.signal.fire();
            }
        }
    }
}

/// Duplicates a monoio socket into a std one that another worker can own.
pub fn detach(stream: &TcpStream) -> std::io::Result<std::net::TcpStream> {
    // SAFETY: the descriptor belongs to `stream`, which is alive for the whole
    // borrow; it is only duplicated here, never closed.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(stream.as_raw_fd()) };
    Ok(std::net::TcpStream::from(fd.try_clone_to_owned()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_stable_and_spread() {
        assert_eq!(shard("joe", 1), 0);
        assert_eq!(shard("joe", 4), shard("joe", 4));
        let hits: std::collections::HashSet<usize> = (0..100).map(|i| shard(&format!("user{i}"), 4)).collect();
        assert_eq!(hits.len(), 4);
    }
}
