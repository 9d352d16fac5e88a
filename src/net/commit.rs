//! Group commit: every connection on a worker that waits for its data to be
//! durable joins the next sync, so N appends that arrive together cost one
//! fdatasync per file instead of N. The syncs run on a helper thread, so
//! the worker keeps serving other connections meanwhile; appends that arrive
//! during a sync form the next batch.
//!
//! A batch that touches several mailboxes has several files to sync. They are
//! synced concurrently by a small pool of threads: the file system merges
//! concurrent syncs into one journal commit (ext4, xfs), so 50 mailboxes cost
//! about one commit instead of 50 in a row.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use crate::config::SyncMode;
use crate::store::MailboxRef;

type SyncJob = (Arc<std::fs::File>, flume::Sender<io::Result<()>>);

/// Threads per worker that run fdatasync; more than the usual number of
/// files in a batch brings nothing, since the file system merges them anyway.
const SYNC_THREADS: usize = 8;

/// A waiter's slot: the result arrives here.
#[derive(Default)]
struct Ticket {
    result: RefCell<Option<io::Result<()>>>,
    waker: Cell<Option<Waker>>,
}

impl Ticket {
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

struct TicketWait(Rc<Ticket>);

impl Future for TicketWait {
    type Output = io::Result<()>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(r) = self.0.result.borrow_mut().take() {
            return Poll::Ready(r);
        }
        self.0.waker.set(Some(cx.waker().clone()));
        Poll::Pending
    }
}

pub struct Committer {
    mode: SyncMode,
    pending: RefCell<Vec<(MailboxRef, Rc<Ticket>)>>,
    running: Cell<bool>,
    jobs: flume::Sender<SyncJob>,
    /// Completed syncs and the files they covered, for metrics.
    pub syncs: Cell<u64>,
}

impl Committer {
    /// Starts the helper threads that perform the syncs.
    pub fn new(mode: SyncMode, name: String) -> Rc<Committer> {
        let (jobs, rx) = flume::unbounded::<SyncJob>();
        for i in 0..SYNC_THREADS {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("{name}.{i}"))
                .spawn(move || {
                    while let Ok((file, done)) = rx.recv() {
                        let _ = done.send(file.sync_data());
                    }
                })
                .expect("spawn sync thread");
        }
        Rc::new(Committer { mode, pending: RefCell::new(Vec::new()), running: Cell::new(false), jobs, syncs: Cell::new(0) })
    }

    /// Waits until everything written to `mb` so far is durable (and visible).
    pub async fn commit(self: &Rc<Self>, mb: MailboxRef) -> io::Result<()> {
        let t = Rc::new(Ticket::default());
        self.pending.borrow_mut().push((mb, t.clone()));
        if !self.running.replace(true) {
            monoio::spawn(self.clone().run());
        }
        TicketWait(t).await
    }

    async fn run(self: Rc<Self>) {
        loop {
            // Let every connection that is ready this turn join the batch.
            crate::signal::yield_now().await;
            let batch: Vec<(MailboxRef, Rc<Ticket>)> = std::mem::take(&mut *self.pending.borrow_mut());
            if batch.is_empty() {
                self.running.set(false);
                return;
            }
            let mut groups: Vec<(MailboxRef, Vec<Rc<Ticket>>)> = Vec::new();
            for (mb, t) in batch {
                match groups.iter_mut().find(|(m, _)| Rc::ptr_eq(m, &mb)) {
                    Some((_, ts)) => ts.push(t),
                    None => groups.push((mb, vec![t])),
                }
            }
            let r = self.sync_groups(&groups).await;
            for (_, tickets) in &groups {
                for t in tickets {
                    t.resolve(&r);
                }
            }
        }
    }

    /// Syncs `files` concurrently on the pool; the first error wins.
    async fn sync_files(&self, files: Vec<Arc<std::fs::File>>) -> io::Result<()> {
        let gone = || io::Error::other("sync thread gone");
        let (tx, rx) = flume::bounded(files.len());
        let n = files.len();
        for f in files {
            self.jobs.send((f, tx.clone())).map_err(|_| gone())?;
        }
        let mut r = Ok(());
        for _ in 0..n {
            if let Err(e) = rx.recv_async().await.unwrap_or_else(|_| Err(gone())) {
                r = r.and(Err(e));
            }
        }
        r
    }

    /// Syncs the dirty files of these mailboxes, then publishes their appends.
    async fn sync_groups(&self, groups: &[(MailboxRef, Vec<Rc<Ticket>>)]) -> io::Result<()> {
        let mut batches = Vec::with_capacity(groups.len());
        let mut handles = Vec::new();
        let mut inline = Vec::new();
        for (mb, _) in groups {
            let b = match mb.borrow_mut().begin_commit() {
                Ok(b) => b,
                Err(e) => return Err(e),
            };
            for f in &b.files {
                match f.sync_handle() {
                    Some(h) => handles.push(h),
                    None => inline.push(f.clone()),
                }
            }
            batches.push(b);
        }
        let mut r: io::Result<()> = Ok(());
        if self.mode == SyncMode::Always {
            for f in &inline {
                if let Err(e) = f.sync() {
                    r = Err(e);
                }
            }
            if r.is_ok() && !handles.is_empty() {
                let started = std::time::Instant::now();
                r = self.sync_files(handles).await;
                let us = started.elapsed().as_micros() as u64;
                crate::metrics::with_worker(|m| m.sync(us, r.is_ok()));
            }
            self.syncs.set(self.syncs.get() + 1);
        }
        for ((mb, _), b) in groups.iter().zip(batches) {
            let mut m = mb.borrow_mut();
            m.end_commit(b, &r);
            if r.is_ok() && m.needs_checkpoint() {
                if let Err(e) = m.checkpoint() {
                    tracing::error!(error = %e, "checkpoint failed");
                }
            }
        }
        r
    }
}
