//! Group commit: the store's one answer to "tell me when this is durable".
//!
//! A caller asks for a [`Ticket`] on a [`Target`] (a mailbox, or a user's
//! list of mailboxes) after changing it; every ticket asked for in the same
//! event-loop turn joins one batch, so N appends that arrive together cost
//! one fdatasync per file instead of N. A batch takes what each target has
//! written so far, runs the syncs through [`Io::run`] (helper threads for
//! the real file system: the worker never blocks on a sync), then publishes
//! what became durable and resolves the tickets. Batches run one after the
//! other; changes made while one runs join the next.
//!
//! After a batch, mailboxes whose change log has grown start a checkpoint
//! (folding the log into a new index, see docs/store-format.md); it runs
//! beside later batches, not in front of them.
//!
//! This module knows no runtime: the network layer hands it a way to spawn
//! a task, and its futures are woken by the sync threads.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use super::exec::Spawner;
use super::io::{Io, Task};
use super::mailbox::durability::CommitBatch;
use super::mailbox::MailboxRef;
use super::manifest::ManifestCell;

/// Something whose changes a ticket waits for.
#[derive(Clone)]
pub enum Target {
    /// A mailbox's messages, flags and expunges (and its user's list of
    /// mailboxes, when that has unsaved changes the mailbox depends on).
    Mailbox(MailboxRef),
    /// A user's list of mailboxes and subscriptions.
    Manifest(Rc<ManifestCell>),
}

impl Target {
    fn same(&self, other: &Target) -> bool {
        match (self, other) {
            (Target::Mailbox(a), Target::Mailbox(b)) => Rc::ptr_eq(a, b),
            (Target::Manifest(a), Target::Manifest(b)) => Rc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// Where a ticket's answer arrives.
#[derive(Default)]
struct Slot {
    result: RefCell<Option<io::Result<()>>>,
    waker: Cell<Option<Waker>>,
}

impl Slot {
    fn resolve(&self, r: &io::Result<()>) {
        *self.result.borrow_mut() = Some(match r {
            Ok(()) => Ok(()),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        });
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

/// A promise that what was written to a target before it was taken is
/// durable (Ok) or could not be made durable (Err). Await it, or poll
/// [`Ticket::result`].
#[derive(Clone)]
pub struct Ticket(Rc<Slot>);

impl Ticket {
    /// A ticket that is already answered.
    pub fn ready(r: io::Result<()>) -> Ticket {
        let t = Ticket(Rc::default());
        t.0.resolve(&r);
        t
    }

    /// The answer, once there is one.
    pub fn result(&self) -> Option<io::Result<()>> {
        self.0.result.borrow().as_ref().map(copy_result)
    }

    pub fn is_ready(&self) -> bool {
        self.0.result.borrow().is_some()
    }
}

impl Future for Ticket {
    type Output = io::Result<()>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(r) = self.result() {
            return Poll::Ready(r);
        }
        self.0.waker.set(Some(cx.waker().clone()));
        Poll::Pending
    }
}

/// Reports each batch's sync time in microseconds and whether it worked.
pub type SyncObserver = Box<dyn Fn(u64, bool)>;

pub struct Committer {
    io: Rc<dyn Io>,
    /// false with `store.sync = never`: nothing is synced (benchmarks only).
    sync: bool,
    spawn: Spawner,
    pending: RefCell<Vec<(Target, Ticket)>>,
    running: Cell<bool>,
    observer: RefCell<Option<SyncObserver>>,
    /// Batches that ran syncs.
    pub syncs: Cell<u64>,
}

/// One target's part of a batch.
enum Unit {
    Mailbox { mb: MailboxRef, batch: CommitBatch, manifest: Option<usize> },
    Manifest { m: Rc<ManifestCell>, version: u64 },
}

impl Committer {
    pub fn new(io: Rc<dyn Io>, sync: bool, spawn: Spawner) -> Rc<Committer> {
        Rc::new(Committer { io, sync, spawn, pending: RefCell::new(Vec::new()), running: Cell::new(false), observer: RefCell::new(None), syncs: Cell::new(0) })
    }

    pub fn set_observer(&self, o: SyncObserver) {
        *self.observer.borrow_mut() = Some(o);
    }

    pub fn syncs_enabled(&self) -> bool {
        self.sync
    }

    /// A ticket for everything written to `target` so far.
    pub fn durable(self: &Rc<Self>, target: Target) -> Ticket {
        let t = Ticket(Rc::default());
        self.pending.borrow_mut().push((target, t.clone()));
        if !self.running.replace(true) {
            (self.spawn)(Box::pin(self.clone().run()));
        }
        t
    }

    async fn run(self: Rc<Self>) {
        loop {
            // Let every connection that is ready this turn join the batch.
            crate::signal::yield_now().await;
            let batch: Vec<(Target, Ticket)> = std::mem::take(&mut *self.pending.borrow_mut());
            if batch.is_empty() {
                self.running.set(false);
                return;
            }
            let mut groups: Vec<(Target, Vec<Ticket>)> = Vec::new();
            for (target, t) in batch {
                match groups.iter_mut().find(|(g, _)| g.same(&target)) {
                    Some((_, ts)) => ts.push(t),
                    None => groups.push((target, vec![t])),
                }
            }
            let results = self.commit_groups(groups.iter().map(|(t, _)| t.clone()).collect()).await;
            for ((_, tickets), r) in groups.iter().zip(&results) {
                for t in tickets {
                    t.0.resolve(r);
                }
            }
            self.start_checkpoints(&groups);
        }
    }

    /// Makes the targets durable; one result per target.
    async fn commit_groups(&self, targets: Vec<Target>) -> Vec<io::Result<()>> {
        let mut units: Vec<Unit> = Vec::new();
        let mut tasks: Vec<Task> = Vec::new();
        // Which tasks belong to which unit.
        let mut owners: Vec<usize> = Vec::new();
        let add_manifest = |m: &Rc<ManifestCell>, units: &mut Vec<Unit>, tasks: &mut Vec<Task>, owners: &mut Vec<usize>| -> Option<usize> {
            if let Some(i) = units.iter().position(|u| matches!(u, Unit::Manifest { m: x, .. } if Rc::ptr_eq(x, m))) {
                return Some(i);
            }
            let (task, version) = m.begin_commit(self.sync)?;
            units.push(Unit::Manifest { m: m.clone(), version });
            tasks.push(task);
            owners.push(units.len() - 1);
            Some(units.len() - 1)
        };
        for t in &targets {
            match t {
                Target::Manifest(m) => {
                    add_manifest(m, &mut units, &mut tasks, &mut owners);
                }
                Target::Mailbox(mb) => {
                    let owner = mb.borrow().owner().cloned();
                    let manifest = owner.and_then(|m| add_manifest(&m, &mut units, &mut tasks, &mut owners));
                    let mut batch = mb.borrow_mut().begin_commit(self.sync);
                    let index = units.len();
                    for task in batch.take_tasks() {
                        tasks.push(task);
                        owners.push(index);
                    }
                    units.push(Unit::Mailbox { mb: mb.clone(), batch, manifest });
                }
            }
        }
        let started = std::time::Instant::now();
        let any = !tasks.is_empty();
        let results = self.io.run(tasks).await;
        // Each unit fails with the first failure among its tasks.
        let mut unit_results: Vec<io::Result<()>> = units
            .iter()
            .map(|u| match u {
                Unit::Mailbox { batch, .. } => batch.failure().map_or(Ok(()), Err),
                Unit::Manifest { .. } => Ok(()),
            })
            .collect();
        for (r, &owner) in results.into_iter().zip(&owners) {
            if let Err(e) = r {
                if unit_results[owner].is_ok() {
                    unit_results[owner] = Err(e);
                }
            }
        }
        if any {
            self.syncs.set(self.syncs.get() + 1);
            let ok = unit_results.iter().all(|r| r.is_ok());
            if let Some(o) = &*self.observer.borrow() {
                o(started.elapsed().as_micros() as u64, ok);
            }
        }
        // A mailbox is durable only if the list of mailboxes it depends on is.
        let mut finals: Vec<io::Result<()>> = Vec::with_capacity(units.len());
        for (i, u) in units.iter().enumerate() {
            let own = copy_result(&unit_results[i]);
            finals.push(match u {
                Unit::Mailbox { manifest: Some(m), .. } => own.and(copy_result(&unit_results[*m])),
                _ => own,
            });
        }
        // Manifests first: a mailbox's end may look at its owner.
        for (u, r) in units.iter().zip(&finals) {
            if let Unit::Manifest { m, version } = u {
                m.end_commit(*version, r);
            }
        }
        let mut by_target: Vec<io::Result<()>> = Vec::with_capacity(targets.len());
        let mut units = units.into_iter().zip(finals).collect::<Vec<_>>();
        for t in &targets {
            let r = match t {
                Target::Mailbox(mb) => {
                    let i = units.iter().position(|(u, _)| matches!(u, Unit::Mailbox { mb: x, .. } if Rc::ptr_eq(x, mb))).expect("one unit per mailbox");
                    let (u, r) = units.remove(i);
                    let Unit::Mailbox { batch, .. } = u else { unreachable!("matched above") };
                    mb.borrow_mut().end_commit(batch, &r);
                    r
                }
                Target::Manifest(m) => match units.iter().find(|(u, _)| matches!(u, Unit::Manifest { m: x, .. } if Rc::ptr_eq(x, m))) {
                    Some((_, r)) => copy_result(r),
                    // Nothing unsaved: already durable.
                    None => Ok(()),
                },
            };
            by_target.push(r);
        }
        by_target
    }

    /// Starts checkpoints of mailboxes in these groups that need one.
    fn start_checkpoints(&self, groups: &[(Target, Vec<Ticket>)]) {
        for (t, _) in groups {
            if let Target::Mailbox(mb) = t {
                self.checkpoint_if_needed(mb);
            }
        }
    }

    /// Starts folding the mailbox's log into a new index, off the worker,
    /// if the log has grown (or compaction waits for it).
    pub fn checkpoint_if_needed(&self, mb: &MailboxRef) {
        let job = {
            let mut m = mb.borrow_mut();
            if !m.needs_checkpoint() {
                return;
            }
            m.begin_checkpoint(self.sync)
        };
        let Some(job) = job else { return };
        let io = self.io.clone();
        let mb = mb.clone();
        (self.spawn)(Box::pin(async move {
            let (job, task) = job.into_task();
            let r = io.run(vec![task]).await.pop().unwrap_or(Ok(()));
            let (tasks, dir) = {
                let mut m = mb.borrow_mut();
                (m.end_checkpoint(job, r), m.dir().to_path_buf())
            };
            super::mailbox::Mailbox::let_go(io, dir, tasks).await;
        }));
    }
}

fn copy_result(r: &io::Result<()>) -> io::Result<()> {
    match r {
        Ok(()) => Ok(()),
        Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
    }
}
