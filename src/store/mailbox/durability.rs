//! What a mailbox hands to group commit, and its checkpoints.
//!
//! A commit takes every file written since the last one (segments, the
//! log, older logs still unsynced, directories with new names) as sync
//! jobs; when they are done, the appends logged before the commit began
//! become visible and the space of the expunges logged before it may be
//! given back. A failed sync poisons the mailbox: after a failed fsync the
//! kernel may have dropped the pages, so nothing written since can be
//! trusted until the mailbox is opened again from disk.
//!
//! A checkpoint folds the logs into a new index without stopping writes:
//! new records go to a fresh log (`log.<g+1>`) from the moment the
//! snapshot is taken, the index is written and synced off the worker, and
//! only when it is durable are the older logs deleted. See
//! docs/store-format.md for what a crash at each step leaves.

use std::io;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use super::{seg_path, Log, Mailbox, Msg, OldLog, NEW};
use crate::store::index::{self, IndexData, IndexMap, Rec};
use crate::store::io::{File, Job, OpenMode, Task};

/// Sync jobs for one commit, and what the commit covers.
pub struct CommitBatch {
    tasks: Vec<Task>,
    /// Log writes up to this sequence number are covered.
    upto: u64,
    /// The batch could not be put together (a file to sync would not open).
    failed: Option<String>,
}

impl CommitBatch {
    pub(crate) fn take_tasks(&mut self) -> Vec<Task> {
        std::mem::take(&mut self.tasks)
    }

    /// Why the batch fails without running, if it does.
    pub(crate) fn failure(&self) -> Option<io::Error> {
        self.failed.as_ref().map(|e| io::Error::other(e.clone()))
    }
}

/// The messages as a checkpoint found them, for its job to make the
/// index records of, on another thread.
struct Snapshot {
    base: Option<IndexMap>,
    /// Shared with the worker, which matches its messages against them
    /// when the new index is adopted.
    msgs: Arc<Vec<Msg>>,
    appended: Vec<Rec>,
    /// Appends not yet durable, after the messages (their UIDs are higher).
    staged: Arc<Vec<Rec>>,
}

impl Snapshot {
    fn records(&self) -> Vec<Rec> {
        let mut records = Vec::with_capacity(self.msgs.len() + self.staged.len());
        records.extend(self.msgs.iter().map(|m| Rec::new(m.uid, m.location(self.base.as_ref(), &self.appended), m.flags, m.keywords, m.modseq)));
        records.extend(self.staged.iter().copied());
        records
    }
}

/// A checkpoint in progress.
pub struct CheckpointJob {
    task: Option<Task>,
    generation: u64,
    /// Segments emptied by compaction, deleted once the new index is durable.
    compacted: Vec<u32>,
    /// Segments whose cache records were rewritten, looked at for dead
    /// space once the new index is durable.
    rewritten: Vec<u32>,
    /// The messages and staged appends the new index records, in its order.
    taken: Arc<Vec<Msg>>,
    staged: Arc<Vec<Rec>>,
}

impl CheckpointJob {
    pub(crate) fn into_task(mut self) -> (CheckpointJob, Task) {
        let t = self.task.take().expect("task taken once");
        (self, t)
    }
}

impl Mailbox {
    /// Whether anything written is not yet synced.
    pub fn is_dirty(&self) -> bool {
        self.log.dirty
            || !self.dirty_segments.is_empty()
            || !self.staged.is_empty()
            || !self.dirs.is_empty()
            || self.old_logs.iter().any(|l| l.unsynced.is_some())
    }

    pub fn has_staged(&self) -> bool {
        !self.staged.is_empty()
    }

    /// Takes everything written so far as sync jobs (one task per file, so
    /// they run concurrently).
    pub(crate) fn begin_commit(&mut self, sync: bool) -> CommitBatch {
        self.committing = true;
        let mut files: Vec<Rc<dyn File>> = Vec::new();
        let mut failed = None;
        for s in std::mem::take(&mut self.dirty_segments) {
            match &self.writer {
                Some(w) if w.segment == s && w.file.is_some() => files.push(w.file.clone().expect("checked")),
                _ => match self.io.open(&seg_path(&self.dir, s), OpenMode::Existing) {
                    Ok(f) => files.push(f),
                    // Deleted since (compaction, reclamation): nothing to sync.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => failed = Some(e),
                },
            }
        }
        if std::mem::take(&mut self.log.dirty) {
            match self.log_file_for_sync() {
                Ok(Some(f)) => files.push(f),
                Ok(None) => {}
                Err(e) => failed = Some(e),
            }
        }
        for l in &mut self.old_logs {
            if let Some(f) = l.unsynced.take() {
                files.push(f);
            }
        }
        let dirs: Vec<PathBuf> = std::mem::take(&mut self.dirs).into_iter().collect();
        let mut tasks: Vec<Task> = Vec::new();
        if let Some(e) = &failed {
            // The batch fails as a whole: its waiters are told and nothing
            // is published. What it took is no longer known to be synced
            // by anyone, so the mailbox must not take more writes.
            self.poison(&format_args!("cannot open a file to sync: {e}"));
        } else if sync {
            tasks.extend(files.into_iter().map(|f| Task(vec![Job::SyncFile(f)])));
            tasks.extend(dirs.into_iter().map(|d| Task(vec![Job::SyncDir(d)])));
        }
        CommitBatch { tasks, upto: self.seq, failed: failed.map(|e| e.to_string()) }
    }

    /// The log's open handle, opening it if it exists but is closed.
    fn log_file_for_sync(&mut self) -> io::Result<Option<Rc<dyn File>>> {
        if let Some(f) = &self.log.file {
            return Ok(Some(f.clone()));
        }
        if !self.log.created {
            return Ok(None);
        }
        Ok(Some(self.io.open(&self.log.path, OpenMode::Existing)?))
    }

    /// After the batch's jobs ran: publish what became durable, or poison.
    pub(crate) fn end_commit(&mut self, batch: CommitBatch, result: &io::Result<()>) {
        self.committing = false;
        match result {
            Ok(()) if !self.poisoned => {
                let n = self.staged.partition_point(|s| s.seq <= batch.upto);
                self.publish(n);
                self.reclaim.durable(batch.upto);
            }
            Ok(()) => {}
            Err(e) => self.poison(e),
        }
        if !self.is_dirty() {
            // Nothing pending: let go of write handles so idle mailboxes hold no fds.
            self.log.file = None;
            if let Some(w) = &mut self.writer {
                w.file = None;
            }
        }
    }

    /// Syncs everything now, on this thread (tests, command-line tools,
    /// shutdown): a commit with its jobs run inline.
    pub fn commit(&mut self) -> io::Result<()> {
        let mut batch = self.begin_commit(self.settings.sync == crate::config::SyncMode::Always);
        let tasks = batch.take_tasks();
        let results = crate::store::exec::block_on(self.io.run(tasks));
        let r = match batch.failure() {
            Some(e) => Err(e),
            None => results.into_iter().find(|r| r.is_err()).unwrap_or(Ok(())),
        };
        let out = r.as_ref().map(|_| ()).map_err(|e| io::Error::new(e.kind(), e.to_string()));
        if self.poisoned && out.is_ok() {
            self.end_commit(batch, &r);
            return Err(io::Error::other("mailbox is poisoned"));
        }
        self.end_commit(batch, &r);
        out
    }

    // ----- checkpoint ----------------------------------------------------

    /// Whether the log has grown enough to fold it into the index (or
    /// something else, a compaction or a rebuild, waits for a new index).
    ///
    /// A checkpoint rewrites the whole index, so it waits for work in
    /// proportion: `checkpoint_records` records, or an eighth of the
    /// mailbox's messages if more (a STORE's message counts as 1/64 of a
    /// record: replaying it is a step of a walk, not a lookup or a payload
    /// check), or 8 MiB of log. Each change then pays a constant share of
    /// the rewrite, and a replay at open stays within a fraction of the
    /// mailbox.
    pub fn needs_checkpoint(&self) -> bool {
        let work = u64::from(self.log.records) + self.log.weight / 64;
        let due = u64::from(self.settings.checkpoint_records).max(self.msgs.len() as u64 / 8);
        (work >= due || self.log.end >= 8 << 20 || self.reclaim.wants_checkpoint())
            && !self.checkpointing
            && !self.committing
            && !self.poisoned
            && !self.is_frozen()
    }

    /// Starts a checkpoint: switches new records to a new log, snapshots
    /// the messages (staged appends included), and returns the job that
    /// syncs what the snapshot refers to and writes the index. None when a
    /// commit or another checkpoint is under way (a commit's files are in
    /// flight and the index must not get ahead of them).
    pub(crate) fn begin_checkpoint(&mut self, sync: bool) -> Option<CheckpointJob> {
        if self.checkpointing || self.committing || self.poisoned || self.is_frozen() {
            return None;
        }
        let generation = self.log.generation + 1;
        // Files the snapshot refers to that may not be durable yet. They
        // stay dirty: the next commit syncs them again for its own waiters.
        let mut jobs: Vec<Job> = Vec::new();
        if sync {
            for &s in &self.dirty_segments {
                match self.io.open(&seg_path(&self.dir, s), OpenMode::Existing) {
                    Ok(f) => jobs.push(Job::SyncFile(f)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        tracing::warn!(dir = %self.dir.display(), error = %e, "checkpoint postponed");
                        return None;
                    }
                }
            }
            jobs.extend(self.dirs.iter().cloned().map(Job::SyncDir));
        }
        // New records go to the next log from now on; the old one is synced
        // by the next commit if it has unsynced records, and deleted once the
        // index covering it is durable.
        let old = std::mem::replace(&mut self.log, Log::fresh(&self.dir, generation));
        let unsynced = if old.dirty { old.file.clone().or_else(|| self.io.open(&old.path, OpenMode::Existing).ok()) } else { None };
        if old.created {
            self.old_logs.push(OldLog { path: old.path, generation: old.generation, unsynced });
        }
        // What the worker copies is the messages' mutable part (a memcpy);
        // the job reads the rest from the index it shares and makes the
        // records, off the worker.
        let (taken, staged) = (Arc::new(self.msgs.clone()), Arc::new(self.staged.iter().map(|s| s.rec).collect::<Vec<_>>()));
        let snapshot = Snapshot { base: self.base.clone(), msgs: taken.clone(), appended: self.appended.clone(), staged: staged.clone() };
        let mut data = IndexData {
            uidvalidity: self.uidvalidity,
            uidnext: self.uidnext,
            highest_modseq: self.highest_modseq,
            generation,
            next_segment: self.next_segment,
            keywords: self.keywords.clone(),
            records: Vec::new(),
        };
        let content = Box::new(move || {
            data.records = snapshot.records();
            index::encode(&data)
        });
        jobs.push(Job::Replace { path: self.dir.join("index"), content, sync });
        self.checkpointing = true;
        let (compacted, rewritten) = self.reclaim.take_compacted();
        Some(CheckpointJob { task: Some(Task(jobs)), generation, compacted, rewritten, taken, staged })
    }

    /// The checkpoint's job finished. On success the new index replaces
    /// the old one in memory. The tasks returned, to run off the worker,
    /// let go of the old index and delete the logs it covers and the
    /// segments compaction emptied (freeing a file's blocks, like unmapping
    /// a large one, takes milliseconds); one that fails leaves its file
    /// for the next open to delete.
    #[must_use = "the old index and files are let go of by running the tasks"]
    pub(crate) fn end_checkpoint(&mut self, job: CheckpointJob, result: io::Result<()>) -> Vec<Task> {
        self.checkpointing = false;
        if let Err(e) = result {
            // The old index and every log are still there: nothing is lost,
            // the next checkpoint tries again. Compacted segments wait for it.
            tracing::error!(dir = %self.dir.display(), error = %e, "checkpoint failed");
            self.reclaim.compacted_again(job.compacted, job.rewritten);
            return Vec::new();
        }
        let ix = match self.io.open(&self.dir.join("index"), OpenMode::Existing).and_then(|f| {
            // SAFETY: the index was just written whole and renamed into
            // place; no one writes it again.
            unsafe { f.map_shared() }
        }) {
            // In memory (tests) the bytes may sit unaligned: then checked whole.
            Ok(map) => IndexMap::open_written(map.clone(), job.generation).or_else(|| IndexMap::open(map)),
            Err(e) => {
                tracing::error!(dir = %self.dir.display(), error = %e, "cannot map the new index");
                None
            }
        };
        let Some(ix) = ix else {
            self.poison(&"the index just written does not validate");
            return Vec::new();
        };
        let old = self.adopt_index(ix, &job.taken, &job.staged);
        // Each file is closed here (its handle dropped) and removed after,
        // so the blocks are freed by the removal, off the worker.
        let mut tasks = vec![Task(vec![Job::Release(Box::new((old, job.taken, job.staged)))])];
        for l in std::mem::take(&mut self.old_logs) {
            if l.generation < job.generation {
                tasks.push(Task(vec![Job::Remove(l.path)]));
            } else {
                self.old_logs.push(l);
            }
        }
        self.reclaim.rewrite_durable(job.rewritten);
        for s in job.compacted {
            self.reclaim.released(s);
            self.segments.borrow_mut().remove(&s);
            tasks.push(Task(vec![Job::Remove(seg_path(&self.dir, s))]));
        }
        tasks
    }

    /// Runs what `end_checkpoint` handed out and warns of files left.
    pub(crate) async fn let_go(io: Rc<dyn crate::store::io::Io>, dir: std::path::PathBuf, tasks: Vec<Task>) {
        for r in io.run(tasks).await {
            if let Err(e) = r {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a folded log or an emptied segment (removed at next open)");
            }
        }
    }

    /// Points messages at their records in a new index where those are
    /// current; the rest stay in `appended` (changed since the snapshot).
    /// The index holds `taken`, then `staged`, in that order: a message
    /// whose place is what it was then is at its position there. Only the
    /// lists in memory are walked; the new index is not read.
    fn adopt_index(&mut self, ix: IndexMap, taken: &[Msg], staged: &[Rec]) -> Option<IndexMap> {
        let mut appended = Vec::new();
        let mut j = 0;
        for i in 0..self.msgs.len() {
            let m = self.msgs[i];
            while j < taken.len() && taken[j].uid < m.uid {
                j += 1;
            }
            let at = if taken.get(j).is_some_and(|t| t.uid == m.uid) {
                (taken[j].loc == m.loc).then_some(j)
            } else {
                // Published since: at its place among the staged, if it is still there.
                let k = staged.partition_point(|r| r.uid < m.uid);
                staged.get(k).filter(|r| r.uid == m.uid && r.location() == self.location(&m)).map(|_| taken.len() + k)
            };
            self.msgs[i].loc = match at {
                Some(at) => at as u32,
                None => {
                    let rec = if m.loc & NEW != 0 {
                        self.appended[(m.loc & !NEW) as usize]
                    } else {
                        Rec::new(m.uid, self.location(&m), m.flags, m.keywords, m.modseq)
                    };
                    appended.push(rec);
                    (appended.len() - 1) as u32 | NEW
                }
            };
        }
        self.appended = appended;
        self.base.replace(ix)
    }

    /// A checkpoint now, on this thread (tests, command-line tools,
    /// shutdown). Commits first so the checkpoint is not refused.
    pub fn checkpoint(&mut self) -> io::Result<()> {
        self.commit()?;
        let sync = self.settings.sync == crate::config::SyncMode::Always;
        let Some(job) = self.begin_checkpoint(sync) else { return Ok(()) };
        let (job, task) = job.into_task();
        let r = crate::store::exec::block_on(self.io.run(vec![task])).pop().unwrap_or(Ok(()));
        let out = r.as_ref().map(|_| ()).map_err(|e| io::Error::new(e.kind(), e.to_string()));
        let tasks = self.end_checkpoint(job, r);
        crate::store::exec::block_on(Self::let_go(self.io.clone(), self.dir.clone(), tasks));
        // The new log's name and the old log's last records: made durable too.
        self.commit()?;
        out
    }
}
