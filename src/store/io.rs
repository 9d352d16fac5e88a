//! The store's only way to touch the file system, so crash tests can
//! replace it.
//!
//! [`RealIo`] is the operating system. [`MemIo`] is an in-memory file system
//! that remembers, for every file, what was written and what was synced; it
//! can fail the N-th write or sync, fill up like a full disk (short writes,
//! then `ENOSPC`), and [`MemIo::crash`] produces the file system a power loss
//! would leave: synced bytes, plus any subset of unsynced writes (whole, torn,
//! or missing), and only the names whose directory was synced.
//!
//! Everything that waits for the disk (fdatasync, fsync of a directory,
//! replacing a file by rename) is a [`Job`], run by [`Io::run`]: on a pool
//! of helper threads for the real file system, so a worker thread never
//! blocks on a sync, and inline for the in-memory one.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

/// A read-only view of a whole file; shared with outgoing responses.
pub type Mapping = Rc<dyn AsRef<[u8]>>;

/// A mapping that other threads may read too: an index, which a
/// checkpoint job on a helper thread reads from.
pub type SharedMapping = Arc<dyn AsRef<[u8]> + Send + Sync>;

#[allow(clippy::len_without_is_empty)]
pub trait File {
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `off`. On error a prefix may have been written.
    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<()>;
    fn len(&self) -> io::Result<u64>;
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes written data durable (fdatasync).
    fn sync(&self) -> io::Result<()>;
    /// Maps the whole file. `live` mappings see later writes within their
    /// length; other mappings are snapshots and must be taken again.
    ///
    /// # Safety
    ///
    /// The mapping's bytes are read without copying, by anyone holding it
    /// (responses being sent included). While it lives, the file must not
    /// be truncated below its mapped length, nor any region of it that a
    /// reader may hold rewritten: only never-referenced space may be
    /// written, and a hole punched only where no reader looks. The store
    /// keeps this by being the only writer (one server per data directory,
    /// `ringmail.lock`), writing records once into reserved space, deleting
    /// segments only once nothing refers to them (an unlinked file stays
    /// mapped), and punching holes only into dead records no response holds
    /// (docs/store-format.md, store/mailbox/reclaim.rs). In-memory files
    /// copy, so the rule costs them nothing.
    unsafe fn map(&self) -> io::Result<(Mapping, bool)>;
    /// `map` for a file about to be read whole: its pages are mapped at
    /// once (one call, not a page fault per few pages).
    ///
    /// # Safety
    ///
    /// As for `map`.
    unsafe fn map_to_read(&self) -> io::Result<Mapping> {
        // SAFETY: the caller's contract, passed on.
        unsafe { self.map() }.map(|(m, _)| m)
    }
    /// `map` for reading from other threads too. The default copies the
    /// file's bytes (files in memory, tests).
    ///
    /// # Safety
    ///
    /// As for `map`.
    unsafe fn map_shared(&self) -> io::Result<SharedMapping> {
        // SAFETY: the caller's contract, passed on.
        let (m, _) = unsafe { self.map() }?;
        Ok(Arc::new((*m).as_ref().to_vec()))
    }
    /// A handle another thread can sync, when there is one (real files).
    fn sync_handle(&self) -> Option<Arc<std::fs::File>>;
    /// Gives the blocks under `off..off + len` back to the file system; the
    /// range reads as zeros afterwards and the file keeps its size. Only
    /// whole blocks are freed. Unsupported file systems answer `Unsupported`.
    fn punch_hole(&self, off: u64, len: u64) -> io::Result<()>;
    /// Reserves blocks for `off..off + len` without changing the file's
    /// size, so later writes there cannot fail for lack of space. Best
    /// effort: unsupported file systems answer `Unsupported`.
    fn preallocate(&self, off: u64, len: u64) -> io::Result<()>;
}

impl dyn File {
    pub fn read_exact_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let n = self.read_at(&mut buf[done..], off + done as u64)?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short read"));
            }
            done += n;
        }
        Ok(())
    }

    pub fn read_all(&self) -> io::Result<Vec<u8>> {
        let len = self.len()? as usize;
        let mut v = vec![0; len];
        self.read_exact_at(&mut v, 0)?;
        Ok(v)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Read and write; the file must exist.
    Existing,
    /// Read and write; created if missing.
    Create,
    /// Read and write; truncated or created.
    Truncate,
}

/// One piece of work that waits for the disk.
pub enum Job {
    /// fdatasync of a file.
    SyncFile(Rc<dyn File>),
    /// fsync of a directory: makes the names created, renamed or removed in
    /// it durable.
    SyncDir(PathBuf),
    /// Drops a value off the worker: an index mapping a checkpoint replaced
    /// (unmapping a large file takes milliseconds).
    Release(Box<dyn Send>),
    /// Removes a file (one already gone is not an error): a folded log or
    /// an emptied segment, whose blocks the file system frees meanwhile.
    Remove(PathBuf),
    /// Replaces `path` atomically: writes `<path>.tmp`, syncs it (when
    /// `sync`), renames it over `path` and syncs the directory (when
    /// `sync`). The content is produced by the thread that runs the job, so
    /// a big index is serialized off the worker.
    Replace { path: PathBuf, content: Box<dyn FnOnce() -> Vec<u8> + Send>, sync: bool },
}

/// Jobs run in order; the first failure ends the task.
#[derive(Default)]
pub struct Task(pub Vec<Job>);

/// The results of [`Io::run`], one per task, in order.
pub type Running = Pin<Box<dyn Future<Output = Vec<io::Result<()>>>>>;

pub trait Io {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Rc<dyn File>>;
    fn exists(&self, path: &Path) -> bool;
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Names of the entries of a directory.
    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// The bytes the file system holds for a file, holes left out, when it
    /// can tell (real files: their blocks); None otherwise.
    fn allocated(&self, _path: &Path) -> Option<u64> {
        None
    }
    /// Makes the directory's entries durable (created, renamed, removed names).
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Runs tasks concurrently with each other (jobs within a task in
    /// order); the future resolves with each task's result.
    fn run(&self, tasks: Vec<Task>) -> Running;
    /// The time, in seconds since the Unix epoch, that stored messages are
    /// stamped with as their save date (RFC 8514). The wall clock, but for
    /// [`MemIo`], whose time stands still so tests are repeatable.
    fn now(&self) -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
    }
    /// A new secret key (URLAUTH, RFC 4467): random, but for [`MemIo`],
    /// whose keys follow from a counter so tests are repeatable.
    fn new_key(&self) -> [u8; 32] {
        rand::random()
    }
}

/// Runs tasks on the calling thread.
fn run_inline(io: &dyn Io, tasks: Vec<Task>) -> Vec<io::Result<()>> {
    tasks
        .into_iter()
        .map(|Task(jobs)| {
            for job in jobs {
                match job {
                    Job::SyncFile(f) => f.sync()?,
                    Job::SyncDir(p) => io.sync_dir(&p)?,
                    Job::Replace { path, content, sync } => replace(io, &path, &content(), sync)?,
                    Job::Release(value) => drop(value),
                    Job::Remove(path) => not_found_is_ok(io.remove_file(&path))?,
                }
            }
            Ok(())
        })
        .collect()
}

/// Writes a file atomically: `<path>.tmp`, sync, rename, sync the directory.
pub fn write_atomic(io: &dyn Io, path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace(io, path, bytes, true)
}

fn replace(io: &dyn Io, path: &Path, bytes: &[u8], sync: bool) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let f = io.open(&tmp, OpenMode::Truncate)?;
    f.write_at(bytes, 0)?;
    if sync {
        f.sync()?;
    }
    io.rename(&tmp, path)?;
    if sync {
        io.sync_dir(path.parent().unwrap_or(Path::new(".")))?;
    }
    Ok(())
}

/// Reads a whole file, None when it does not exist.
pub fn read_optional(io: &dyn Io, path: &Path) -> io::Result<Option<Vec<u8>>> {
    if !io.exists(path) {
        return Ok(None);
    }
    match io.open(path, OpenMode::Existing) {
        Ok(f) => f.read_all().map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether an error means the disk (or the user's disk quota) is full.
pub fn is_full(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded) || matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

// ---------------------------------------------------------------------------

/// The operating system's file system. Syncs run on a pool of helper
/// threads ([`RealIo::with_sync_threads`]) or, for command-line tools, on
/// the calling thread ([`RealIo::inline`]).
pub struct RealIo {
    pool: Option<flume::Sender<ThreadTask>>,
}

/// A task in a form another thread can run.
struct ThreadTask {
    jobs: Vec<ThreadJob>,
    done: flume::Sender<(usize, io::Result<()>)>,
    index: usize,
}

enum ThreadJob {
    SyncFile(Arc<std::fs::File>),
    SyncDir(PathBuf),
    Replace { path: PathBuf, content: Box<dyn FnOnce() -> Vec<u8> + Send>, sync: bool },
    Release(Box<dyn Send>),
    Remove(PathBuf),
}

/// A removal of what is not there succeeds.
fn not_found_is_ok(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

impl ThreadJob {
    fn run(self) -> io::Result<()> {
        match self {
            ThreadJob::Remove(path) => not_found_is_ok(std::fs::remove_file(path)),
            ThreadJob::Release(value) => {
                drop(value);
                Ok(())
            }
            ThreadJob::SyncFile(f) => f.sync_data(),
            ThreadJob::SyncDir(p) => std::fs::File::open(p)?.sync_all(),
            ThreadJob::Replace { path, content, sync } => {
                let tmp = path.with_extension("tmp");
                let mut o = std::fs::OpenOptions::new();
                o.write(true).create(true).truncate(true).mode(0o600);
                let f = o.open(&tmp)?;
                std::io::Write::write_all(&mut &f, &content())?;
                if sync {
                    f.sync_data()?;
                }
                std::fs::rename(&tmp, &path)?;
                if sync {
                    std::fs::File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()?;
                }
                Ok(())
            }
        }
    }
}

use std::os::unix::fs::OpenOptionsExt;

impl RealIo {
    /// Syncs run on the calling thread (command-line tools, tests).
    pub fn inline() -> RealIo {
        RealIo { pool: None }
    }

    /// Syncs run on `threads` helper threads named `<name>.<i>`. Several
    /// threads, because the file system merges concurrent syncs into one
    /// journal commit (ext4, xfs): a batch of 50 mailboxes costs about one
    /// commit instead of 50 in a row.
    pub fn with_sync_threads(threads: usize, name: &str) -> RealIo {
        let (tx, rx) = flume::unbounded::<ThreadTask>();
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("{name}.{i}"))
                .spawn(move || {
                    while let Ok(t) = rx.recv() {
                        let mut r = Ok(());
                        for j in t.jobs {
                            r = j.run();
                            if r.is_err() {
                                break;
                            }
                        }
                        let _ = t.done.send((t.index, r));
                    }
                })
                .expect("spawn sync thread");
        }
        RealIo { pool: Some(tx) }
    }
}

struct RealFile(Arc<std::fs::File>);

impl RealFile {
    /// `File::map`; with `populate`, every page mapped at once.
    ///
    /// # Safety
    ///
    /// As for `File::map`.
    unsafe fn mmap(&self, populate: bool) -> io::Result<(Mapping, bool)> {
        // SAFETY: the caller's contract, passed on.
        Ok(match unsafe { self.view(populate) }? {
            Some(v) => (Rc::new(v), true),
            None => (Rc::new(Vec::<u8>::new()), false),
        })
    }

    /// The file mapped; None if it is empty (nothing to map).
    ///
    /// # Safety
    ///
    /// As for `File::map`.
    unsafe fn view(&self, populate: bool) -> io::Result<Option<MmapView>> {
        if self.len()? == 0 {
            return Ok(None);
        }
        let mut options = memmap2::MmapOptions::new();
        if populate {
            options.populate();
        }
        // SAFETY: the caller keeps the file's mapped regions unchanged while
        // the mapping lives (`File::map`'s contract); another process could
        // still change the file, which the data-directory lock rules out for
        // other servers. Readers see either the zeros of an unwritten region
        // (never referenced) or final bytes.
        let m = unsafe { options.map(&*self.0)? };
        Ok(Some(MmapView(m)))
    }
}

struct MmapView(memmap2::Mmap);

impl AsRef<[u8]> for MmapView {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// fallocate(2) with `mode`; `Unsupported` where the file system has no such mode.
fn fallocate(f: &std::fs::File, mode: libc::c_int, off: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (Ok(off), Ok(len)) = (libc::off_t::try_from(off), libc::off_t::try_from(len)) else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "range too large"));
    };
    // SAFETY: fallocate only reads its integer arguments; the descriptor is
    // owned by `f`, which outlives the call.
    let r = unsafe { libc::fallocate(f.as_raw_fd(), mode, off, len) };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    Err(match e.raw_os_error() {
        Some(libc::EOPNOTSUPP) => io::Error::new(io::ErrorKind::Unsupported, e),
        _ => e,
    })
}

impl File for RealFile {
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(&*self.0, buf, off)
    }

    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(&*self.0, buf, off)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn sync(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    unsafe fn map(&self) -> io::Result<(Mapping, bool)> {
        // SAFETY: the caller's contract, passed on.
        unsafe { self.mmap(false) }
    }

    unsafe fn map_to_read(&self) -> io::Result<Mapping> {
        // SAFETY: the caller's contract, passed on.
        unsafe { self.mmap(true) }.map(|(m, _)| m)
    }

    unsafe fn map_shared(&self) -> io::Result<SharedMapping> {
        // SAFETY: the caller's contract, passed on.
        Ok(match unsafe { self.view(false) }? {
            Some(v) => Arc::new(v),
            None => Arc::new(Vec::<u8>::new()),
        })
    }

    fn sync_handle(&self) -> Option<Arc<std::fs::File>> {
        Some(self.0.clone())
    }

    fn punch_hole(&self, off: u64, len: u64) -> io::Result<()> {
        fallocate(&self.0, libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, off, len)
    }

    fn preallocate(&self, off: u64, len: u64) -> io::Result<()> {
        fallocate(&self.0, libc::FALLOC_FL_KEEP_SIZE, off, len)
    }
}

impl Io for RealIo {
    fn allocated(&self, path: &Path) -> Option<u64> {
        allocated_on_disk(path)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Rc<dyn File>> {
        let mut o = std::fs::OpenOptions::new();
        // Mail is private to the server's user (issue: world-readable mail).
        o.read(true).write(true).mode(0o600);
        match mode {
            OpenMode::Existing => {}
            OpenMode::Create => {
                o.create(true);
            }
            OpenMode::Truncate => {
                o.create(true).truncate(true);
            }
        }
        Ok(Rc::new(RealFile(Arc::new(o.open(path)?))))
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        match std::fs::remove_dir_all(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut v = Vec::new();
        for e in std::fs::read_dir(path)? {
            v.push(e?.file_name().to_string_lossy().into_owned());
        }
        Ok(v)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::File::open(path)?.sync_all()
    }

    fn run(&self, tasks: Vec<Task>) -> Running {
        let Some(pool) = &self.pool else {
            let r = run_inline(self, tasks);
            return Box::pin(std::future::ready(r));
        };
        let n = tasks.len();
        let (done, results) = flume::bounded(n.max(1));
        let mut out: Vec<Option<io::Result<()>>> = (0..n).map(|_| None).collect();
        let mut sent = 0;
        for (index, Task(jobs)) in tasks.into_iter().enumerate() {
            let mut thread_jobs = Vec::with_capacity(jobs.len());
            let mut unsendable = None;
            for j in jobs {
                thread_jobs.push(match j {
                    Job::SyncFile(f) => match f.sync_handle() {
                        Some(h) => ThreadJob::SyncFile(h),
                        None => {
                            unsendable = Some(f.sync());
                            break;
                        }
                    },
                    Job::SyncDir(p) => ThreadJob::SyncDir(p),
                    Job::Replace { path, content, sync } => ThreadJob::Replace { path, content, sync },
                    Job::Release(value) => ThreadJob::Release(value),
                    Job::Remove(path) => ThreadJob::Remove(path),
                });
            }
            if let Some(r) = unsendable {
                out[index] = Some(r.and(Err(io::Error::other("file cannot be synced off the worker"))));
                continue;
            }
            match pool.send(ThreadTask { jobs: thread_jobs, done: done.clone(), index }) {
                Ok(()) => sent += 1,
                Err(_) => out[index] = Some(Err(io::Error::other("sync threads are gone"))),
            }
        }
        drop(done);
        Box::pin(async move {
            for _ in 0..sent {
                match results.recv_async().await {
                    Ok((i, r)) => out[i] = Some(r),
                    Err(_) => break,
                }
            }
            out.into_iter().map(|r| r.unwrap_or_else(|| Err(io::Error::other("sync thread died")))).collect()
        })
    }
}

// ---------------------------------------------------------------------------

/// A look at a data directory that a running server owns (`ringmail user
/// quota`): files open read-only, and whatever opening a mailbox would
/// tidy (cut a log tail that is still being written, remove a file) is
/// left to the server. What it reads is what was written so far.
pub struct ReadOnlyIo;

/// `st_blocks` counts 512-byte units whatever the file system's block.
fn allocated_on_disk(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.blocks() * 512)
}

fn read_only() -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, "read-only look at the store")
}

struct ReadOnlyFile(RealFile);

impl File for ReadOnlyFile {
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize> {
        self.0.read_at(buf, off)
    }

    fn write_at(&self, _: &[u8], _: u64) -> io::Result<()> {
        Err(read_only())
    }

    fn len(&self) -> io::Result<u64> {
        self.0.len()
    }

    /// Recovery cuts a torn log tail; here the tail belongs to the writer.
    fn set_len(&self, _: u64) -> io::Result<()> {
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        Ok(())
    }

    unsafe fn map(&self) -> io::Result<(Mapping, bool)> {
        // SAFETY: the caller's contract, passed on.
        unsafe { self.0.map() }
    }

    unsafe fn map_shared(&self) -> io::Result<SharedMapping> {
        // SAFETY: the caller's contract, passed on.
        unsafe { self.0.map_shared() }
    }

    fn sync_handle(&self) -> Option<Arc<std::fs::File>> {
        None
    }

    fn punch_hole(&self, _: u64, _: u64) -> io::Result<()> {
        Err(read_only())
    }

    fn preallocate(&self, _: u64, _: u64) -> io::Result<()> {
        Err(read_only())
    }
}

impl Io for ReadOnlyIo {
    fn allocated(&self, path: &Path) -> Option<u64> {
        allocated_on_disk(path)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Rc<dyn File>> {
        match mode {
            OpenMode::Existing => Ok(Rc::new(ReadOnlyFile(RealFile(Arc::new(std::fs::File::open(path)?))))),
            OpenMode::Create | OpenMode::Truncate => Err(read_only()),
        }
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        if path.is_dir() {
            Ok(())
        } else {
            Err(io::Error::new(io::ErrorKind::NotFound, "no such directory (read-only look)"))
        }
    }

    fn remove_file(&self, _: &Path) -> io::Result<()> {
        Ok(())
    }

    fn remove_dir_all(&self, _: &Path) -> io::Result<()> {
        Ok(())
    }

    fn rename(&self, _: &Path, _: &Path) -> io::Result<()> {
        Err(read_only())
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        RealIo::inline().read_dir(path)
    }

    fn sync_dir(&self, _: &Path) -> io::Result<()> {
        Ok(())
    }

    fn run(&self, tasks: Vec<Task>) -> Running {
        Box::pin(std::future::ready(tasks.iter().map(|_| Err(read_only())).collect()))
    }
}

// ---------------------------------------------------------------------------

/// One in-memory file: its current bytes, its synced bytes, and the writes
/// since the last sync (for simulating partial write-back at a crash).
struct MemData {
    current: Vec<u8>,
    durable: Vec<u8>,
    /// Writes, truncations and punched holes since the last sync, in order.
    pending: Vec<PendingOp>,
}

#[derive(Clone)]
enum PendingOp {
    Write(u64, Vec<u8>),
    SetLen(u64),
    Punch(u64, u64),
}

struct MemFile {
    data: RefCell<MemData>,
    fs: Rc<MemShared>,
    /// Blocks are reserved up to here (`preallocate`): writes below it
    /// succeed on a full disk.
    reserved: Cell<u64>,
}

#[derive(Default)]
struct MemShared {
    writes: Cell<u64>,
    syncs: Cell<u64>,
    fail_write_at: Cell<Option<u64>>,
    fail_sync_at: Cell<Option<u64>>,
    /// Set once an injected fault fired: every later operation fails too, as a
    /// dying disk would, so nothing after the fault can be acknowledged.
    broken: Cell<bool>,
    /// The write at which the disk becomes full (see [`MemIo::fill_at`]).
    full_at: Cell<Option<u64>>,
    full: Cell<bool>,
}

impl MemShared {
    fn check(&self, counter: &Cell<u64>, fail_at: &Cell<Option<u64>>) -> io::Result<()> {
        if self.broken.get() {
            return Err(io::Error::other("injected fault (disk already failed)"));
        }
        let n = counter.get() + 1;
        counter.set(n);
        if fail_at.get() == Some(n) {
            self.broken.set(true);
            return Err(io::Error::other("injected fault"));
        }
        Ok(())
    }

    /// Counts a write; whether the disk is full for it.
    fn write_finds_disk_full(&self) -> io::Result<bool> {
        self.check(&self.writes, &self.fail_write_at)?;
        if self.full_at.get().is_some_and(|n| self.writes.get() >= n) {
            self.full.set(true);
        }
        Ok(self.full.get())
    }
}

fn no_space() -> io::Error {
    io::Error::new(io::ErrorKind::StorageFull, "No space left on device (injected)")
}

fn apply(buf: &mut Vec<u8>, op: &PendingOp) {
    match op {
        PendingOp::Write(off, bytes) => {
            let end = *off as usize + bytes.len();
            if buf.len() < end {
                buf.resize(end, 0);
            }
            buf[*off as usize..end].copy_from_slice(bytes);
        }
        PendingOp::SetLen(len) => buf.resize(*len as usize, 0),
        PendingOp::Punch(off, len) => {
            let start = (*off as usize).min(buf.len());
            let end = (off + len).min(buf.len() as u64) as usize;
            buf[start..end].fill(0);
        }
    }
}

impl MemFile {
    fn push(&self, op: PendingOp) {
        let mut d = self.data.borrow_mut();
        apply(&mut d.current, &op);
        d.pending.push(op);
    }
}

impl File for MemFile {
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize> {
        let d = self.data.borrow();
        let off = off as usize;
        if off >= d.current.len() {
            return Ok(0);
        }
        let n = buf.len().min(d.current.len() - off);
        buf[..n].copy_from_slice(&d.current[off..off + n]);
        Ok(n)
    }

    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<()> {
        if self.fs.write_finds_disk_full()? && off + buf.len() as u64 > self.reserved.get() {
            // A full disk takes what fits in the blocks it has: a short write.
            let short = buf.len() / 2;
            if short > 0 {
                self.push(PendingOp::Write(off, buf[..short].to_vec()));
            }
            return Err(no_space());
        }
        self.push(PendingOp::Write(off, buf.to_vec()));
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.data.borrow().current.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        // Shrinking and growing a sparse file need no free blocks.
        self.fs.check(&self.fs.writes, &self.fs.fail_write_at)?;
        self.push(PendingOp::SetLen(len));
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        self.fs.check(&self.fs.syncs, &self.fs.fail_sync_at)?;
        let mut d = self.data.borrow_mut();
        d.durable = d.current.clone();
        d.pending.clear();
        Ok(())
    }

    unsafe fn map(&self) -> io::Result<(Mapping, bool)> {
        Ok((Rc::new(self.data.borrow().current.clone()), false))
    }

    fn sync_handle(&self) -> Option<Arc<std::fs::File>> {
        None
    }

    fn punch_hole(&self, off: u64, len: u64) -> io::Result<()> {
        if self.fs.broken.get() {
            return Err(io::Error::other("injected fault (disk already failed)"));
        }
        self.push(PendingOp::Punch(off, len));
        Ok(())
    }

    fn preallocate(&self, off: u64, len: u64) -> io::Result<()> {
        if self.fs.full.get() {
            return Err(no_space());
        }
        self.reserved.set(self.reserved.get().max(off + len));
        Ok(())
    }
}

/// Directory entries: path -> file. A name is durable once its directory is synced.
#[derive(Default, Clone)]
struct Names {
    files: BTreeMap<PathBuf, Rc<MemFile>>,
    dirs: std::collections::BTreeSet<PathBuf>,
}

/// An in-memory file system with fault injection and crash simulation.
pub struct MemIo {
    shared: Rc<MemShared>,
    current: RefCell<Names>,
    durable: RefCell<Names>,
    /// What [`Io::now`] says: [`MemIo::NOW`] unless a test moves it.
    clock: std::cell::Cell<i64>,
    /// Keys made so far (see [`Io::new_key`]).
    keys_made: std::cell::Cell<u64>,
}

impl Default for MemIo {
    fn default() -> Self {
        Self::new()
    }
}

/// How unsynced writes fare in a simulated crash.
#[derive(Debug, Clone, Copy)]
pub enum CrashMode {
    /// Only synced bytes survive.
    DropUnsynced,
    /// Every unsynced write survives too (the page cache was written back).
    KeepUnsynced,
    /// Each unsynced write survives, is torn at a random point, or is lost,
    /// decided by the seed.
    Random(u64),
}

impl MemIo {
    pub fn new() -> Self {
        MemIo {
            shared: Rc::new(MemShared::default()),
            current: RefCell::new(Names::default()),
            durable: RefCell::new(Names::default()),
            clock: Self::NOW.into(),
            keys_made: 0.into(),
        }
    }

    /// Fails the n-th write (1-based, counted from now) and everything after it.
    pub fn fail_write_at(&self, n: u64) {
        self.shared.fail_write_at.set(Some(self.shared.writes.get() + n));
    }

    /// Fails the n-th sync (1-based, counted from now) and everything after it.
    pub fn fail_sync_at(&self, n: u64) {
        self.shared.fail_sync_at.set(Some(self.shared.syncs.get() + n));
    }

    /// The disk fills up at the n-th write from now (1-based): that write and
    /// every later one write half their bytes and fail with `StorageFull`
    /// until [`MemIo::set_full`]`(false)`. Truncating, punching holes,
    /// renaming and syncing keep working, as on a real full disk.
    pub fn fill_at(&self, n: u64) {
        self.shared.full_at.set(Some(self.shared.writes.get() + n));
    }

    pub fn set_full(&self, full: bool) {
        self.shared.full.set(full);
        if !full {
            self.shared.full_at.set(None);
        }
    }

    pub fn counts(&self) -> (u64, u64) {
        (self.shared.writes.get(), self.shared.syncs.get())
    }

    /// Bytes currently stored (for tests of space reclamation): the length
    /// of every file minus the zeros of punched holes.
    pub fn stored_bytes(&self) -> u64 {
        self.current.borrow().files.values().map(|f| f.data.borrow().current.iter().filter(|&&b| b != 0).count() as u64).sum()
    }

    /// The file system as a power loss now would leave it.
    pub fn crash(&self, mode: CrashMode) -> MemIo {
        let shared = Rc::new(MemShared::default());
        let mut rng = match mode {
            CrashMode::Random(seed) => seed | 1,
            _ => 1,
        };
        let mut next = move || {
            // xorshift64: deterministic per seed.
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let durable = self.durable.borrow();
        let mut names = Names { files: BTreeMap::new(), dirs: durable.dirs.clone() };
        for (path, f) in &durable.files {
            let d = f.data.borrow();
            let mut bytes = d.durable.clone();
            for op in &d.pending {
                match mode {
                    CrashMode::DropUnsynced => {}
                    CrashMode::KeepUnsynced => apply(&mut bytes, op),
                    CrashMode::Random(_) => match (next() % 3, op) {
                        (0, _) => {}
                        (1, PendingOp::Write(off, b)) if !b.is_empty() => {
                            let cut = (next() as usize) % b.len();
                            apply(&mut bytes, &PendingOp::Write(*off, b[..cut].to_vec()));
                        }
                        _ => apply(&mut bytes, op),
                    },
                }
            }
            let file = MemFile {
                data: RefCell::new(MemData { current: bytes.clone(), durable: bytes, pending: Vec::new() }),
                fs: shared.clone(),
                reserved: Cell::new(0),
            };
            names.files.insert(path.clone(), Rc::new(file));
        }
        MemIo {
            shared,
            current: RefCell::new(names.clone()),
            durable: RefCell::new(names),
            clock: self.clock.get().into(),
            keys_made: self.keys_made.get().into(),
        }
    }
}

fn not_found(p: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{} not found", p.display()))
}

impl MemIo {
    /// The time a MemIo's clock shows until [`MemIo::set_now`].
    pub const NOW: i64 = 1_700_000_000;

    pub fn set_now(&self, t: i64) {
        self.clock.set(t);
    }
}

impl Io for MemIo {
    fn now(&self) -> i64 {
        self.clock.get()
    }

    fn new_key(&self) -> [u8; 32] {
        let n = self.keys_made.get() + 1;
        self.keys_made.set(n);
        let mut key = [0u8; 32];
        key[..16].copy_from_slice(&xxhash_rust::xxh3::xxh3_128(&n.to_le_bytes()).to_le_bytes());
        key
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Rc<dyn File>> {
        let mut names = self.current.borrow_mut();
        if let Some(f) = names.files.get(path) {
            if mode == OpenMode::Truncate {
                f.set_len(0)?;
            }
            return Ok(f.clone());
        }
        if mode == OpenMode::Existing {
            return Err(not_found(path));
        }
        if let Some(parent) = path.parent() {
            if !names.dirs.contains(parent) {
                return Err(not_found(parent));
            }
        }
        self.shared.check(&self.shared.writes, &self.shared.fail_write_at)?;
        let f = Rc::new(MemFile {
            data: RefCell::new(MemData { current: Vec::new(), durable: Vec::new(), pending: Vec::new() }),
            fs: self.shared.clone(),
            reserved: Cell::new(0),
        });
        names.files.insert(path.to_path_buf(), f.clone());
        Ok(f)
    }

    fn exists(&self, path: &Path) -> bool {
        let n = self.current.borrow();
        n.files.contains_key(path) || n.dirs.contains(path)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut n = self.current.borrow_mut();
        let mut d = self.durable.borrow_mut();
        for a in path.ancestors() {
            if a.as_os_str().is_empty() {
                continue;
            }
            n.dirs.insert(a.to_path_buf());
            // Directories are treated as durable at once (mkdir -p of the
            // store's fixed skeleton); the names inside them are not.
            d.dirs.insert(a.to_path_buf());
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.shared.check(&self.shared.writes, &self.shared.fail_write_at)?;
        self.current.borrow_mut().files.remove(path).map(|_| ()).ok_or_else(|| not_found(path))
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.shared.check(&self.shared.writes, &self.shared.fail_write_at)?;
        let mut n = self.current.borrow_mut();
        n.files.retain(|p, _| !p.starts_with(path));
        n.dirs.retain(|p| !p.starts_with(path));
        let mut d = self.durable.borrow_mut();
        d.files.retain(|p, _| !p.starts_with(path));
        d.dirs.retain(|p| !p.starts_with(path));
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.shared.check(&self.shared.writes, &self.shared.fail_write_at)?;
        let mut n = self.current.borrow_mut();
        let f = n.files.remove(from).ok_or_else(|| not_found(from))?;
        n.files.insert(to.to_path_buf(), f);
        Ok(())
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let n = self.current.borrow();
        if !n.dirs.contains(path) {
            return Err(not_found(path));
        }
        let mut v: Vec<String> = n
            .files
            .keys()
            .map(|p| p.as_path())
            .chain(n.dirs.iter().map(|p| p.as_path()))
            .filter(|p| p.parent() == Some(path))
            .filter_map(|p| p.file_name().map(|s| s.to_string_lossy().into_owned()))
            .collect();
        v.sort();
        v.dedup();
        Ok(v)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.shared.check(&self.shared.syncs, &self.shared.fail_sync_at)?;
        let n = self.current.borrow();
        let mut d = self.durable.borrow_mut();
        d.files.retain(|p, _| p.parent() != Some(path));
        for (p, f) in &n.files {
            if p.parent() == Some(path) {
                d.files.insert(p.clone(), f.clone());
            }
        }
        Ok(())
    }

    fn run(&self, tasks: Vec<Task>) -> Running {
        let r = run_inline(self, tasks);
        Box::pin(std::future::ready(r))
    }
}

/// Counts per path, used by tests to assert sync behaviour.
pub type SyncCounts = HashMap<PathBuf, u64>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_keeps_only_synced_names_and_bytes() {
        let io = MemIo::new();
        io.create_dir_all(Path::new("/d")).unwrap();
        let a = io.open(Path::new("/d/a"), OpenMode::Create).unwrap();
        a.write_at(b"hello", 0).unwrap();
        a.sync().unwrap();
        let after = io.crash(CrashMode::KeepUnsynced);
        assert!(!after.exists(Path::new("/d/a")), "name not durable without a dir sync");
        io.sync_dir(Path::new("/d")).unwrap();
        a.write_at(b" world", 5).unwrap();
        let after = io.crash(CrashMode::DropUnsynced);
        let f = after.open(Path::new("/d/a"), OpenMode::Existing).unwrap();
        assert_eq!(f.read_all().unwrap(), b"hello");
        let after = io.crash(CrashMode::KeepUnsynced);
        assert_eq!(after.open(Path::new("/d/a"), OpenMode::Existing).unwrap().read_all().unwrap(), b"hello world");
    }

    #[test]
    fn faults_fire_and_stick() {
        let io = MemIo::new();
        io.create_dir_all(Path::new("/d")).unwrap();
        let a = io.open(Path::new("/d/a"), OpenMode::Create).unwrap();
        io.fail_write_at(2);
        a.write_at(b"1", 0).unwrap();
        assert!(a.write_at(b"2", 1).is_err());
        assert!(a.sync().is_err());
    }

    #[test]
    fn a_full_disk_writes_short_then_recovers() {
        let io = MemIo::new();
        io.create_dir_all(Path::new("/d")).unwrap();
        let a = io.open(Path::new("/d/a"), OpenMode::Create).unwrap();
        io.fill_at(2);
        a.write_at(b"1111", 0).unwrap();
        let e = a.write_at(b"2222", 4).unwrap_err();
        assert!(is_full(&e));
        assert_eq!(a.read_all().unwrap(), b"111122", "a short write");
        a.set_len(4).unwrap();
        a.punch_hole(0, 2).unwrap();
        a.sync().unwrap();
        io.set_full(false);
        a.write_at(b"3", 4).unwrap();
        assert_eq!(a.read_all().unwrap(), [0, 0, b'1', b'1', b'3']);
    }

    #[test]
    fn real_files_punch_holes_and_jobs_run_on_threads() {
        let dir = tempfile::tempdir().unwrap();
        let io = RealIo::with_sync_threads(2, "test-sync");
        let p = dir.path().join("f");
        let f = io.open(&p, OpenMode::Create).unwrap();
        f.write_at(&vec![7u8; 64 << 10], 0).unwrap();
        match f.punch_hole(4096, 32 << 10) {
            Ok(()) => {
                let mut b = vec![1u8; 8];
                f.read_exact_at(&mut b, 8192).unwrap();
                assert_eq!(b, [0; 8]);
            }
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::Unsupported),
        }
        let target = dir.path().join("replaced");
        let tasks = vec![
            Task(vec![Job::SyncFile(f.clone())]),
            Task(vec![Job::Replace { path: target.clone(), content: Box::new(|| b"new".to_vec()), sync: true }]),
            Task(vec![Job::SyncDir(dir.path().join("missing"))]),
        ];
        let results = futures_lite_block_on(io.run(tasks));
        assert!(results[0].is_ok() && results[1].is_ok() && results[2].is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o600);
    }

    /// Polls a future to completion on this thread (the sync threads wake it).
    fn futures_lite_block_on<F: Future>(f: F) -> F::Output {
        crate::store::exec::block_on(f)
    }
}
