//! The store's only way to touch the file system, so crash tests can
//! replace it.
//!
//! [`RealIo`] is the operating system. [`MemIo`] is an in-memory file system
//! that remembers, for every file, what was written and what was synced; it
//! can fail the N-th write or sync, and [`MemIo::crash`] produces the file
//! system a power loss would leave: synced bytes, plus any subset of unsynced
//! writes (whole, torn, or missing), and only the names whose directory was synced.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

/// A read-only view of a whole file; shared with outgoing responses.
pub type Mapping = Rc<dyn AsRef<[u8]>>;

#[allow(clippy::len_without_is_empty)]
pub trait File {
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `off`.
    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<()>;
    fn len(&self) -> io::Result<u64>;
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes written data durable (fdatasync).
    fn sync(&self) -> io::Result<()>;
    /// Maps the whole file. `live` mappings see later writes within their
    /// length; other mappings are snapshots and must be taken again.
    fn map(&self) -> io::Result<(Mapping, bool)>;
    /// A handle another thread can sync, when there is one (real files).
    fn sync_handle(&self) -> Option<Arc<std::fs::File>>;
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

pub trait Io {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Rc<dyn File>>;
    fn exists(&self, path: &Path) -> bool;
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Names of the entries of a directory.
    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Makes the directory's entries durable (created, renamed, removed names).
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
}

// ---------------------------------------------------------------------------

/// The operating system's file system.
pub struct RealIo;

struct RealFile(Arc<std::fs::File>);

struct MmapView(memmap2::Mmap);

impl AsRef<[u8]> for MmapView {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
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

    fn map(&self) -> io::Result<(Mapping, bool)> {
        if self.len()? == 0 {
            return Ok((Rc::new(Vec::<u8>::new()), false));
        }
        // SAFETY: the store is the only writer of its files (one server per
        // data directory, enforced by ringmail.lock) and it never shrinks or
        // rewrites a region of a mapped file that a reader may hold: records
        // are written once into reserved space, and segments are truncated
        // only after no record refers to them. Readers see either the old
        // zeros of an unwritten region (never referenced) or final bytes.
        let m = unsafe { memmap2::MmapOptions::new().map(&*self.0)? };
        Ok((Rc::new(MmapView(m)), true))
    }

    fn sync_handle(&self) -> Option<Arc<std::fs::File>> {
        Some(self.0.clone())
    }
}

impl Io for RealIo {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Rc<dyn File>> {
        let mut o = std::fs::OpenOptions::new();
        o.read(true).write(true);
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
        std::fs::create_dir_all(path)
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
}

// ---------------------------------------------------------------------------

/// One in-memory file: its current bytes, its synced bytes, and the writes
/// since the last sync (for simulating partial write-back at a crash).
struct MemData {
    current: Vec<u8>,
    durable: Vec<u8>,
    /// Writes and truncations since the last sync, in order.
    pending: Vec<PendingOp>,
}

#[derive(Clone)]
enum PendingOp {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

struct MemFile {
    data: RefCell<MemData>,
    fs: Rc<MemShared>,
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
        self.fs.check(&self.fs.writes, &self.fs.fail_write_at)?;
        let mut d = self.data.borrow_mut();
        let op = PendingOp::Write(off, buf.to_vec());
        apply(&mut d.current, &op);
        d.pending.push(op);
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.data.borrow().current.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.fs.check(&self.fs.writes, &self.fs.fail_write_at)?;
        let mut d = self.data.borrow_mut();
        let op = PendingOp::SetLen(len);
        apply(&mut d.current, &op);
        d.pending.push(op);
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        self.fs.check(&self.fs.syncs, &self.fs.fail_sync_at)?;
        let mut d = self.data.borrow_mut();
        d.durable = d.current.clone();
        d.pending.clear();
        Ok(())
    }

    fn map(&self) -> io::Result<(Mapping, bool)> {
        Ok((Rc::new(self.data.borrow().current.clone()), false))
    }

    fn sync_handle(&self) -> Option<Arc<std::fs::File>> {
        None
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
        MemIo { shared: Rc::new(MemShared::default()), current: RefCell::new(Names::default()), durable: RefCell::new(Names::default()) }
    }

    /// Fails the n-th write (1-based, counted from now) and everything after it.
    pub fn fail_write_at(&self, n: u64) {
        self.shared.fail_write_at.set(Some(self.shared.writes.get() + n));
    }

    /// Fails the n-th sync (1-based, counted from now) and everything after it.
    pub fn fail_sync_at(&self, n: u64) {
        self.shared.fail_sync_at.set(Some(self.shared.syncs.get() + n));
    }

    pub fn counts(&self) -> (u64, u64) {
        (self.shared.writes.get(), self.shared.syncs.get())
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
            let file = MemFile { data: RefCell::new(MemData { current: bytes.clone(), durable: bytes, pending: Vec::new() }), fs: shared.clone() };
            names.files.insert(path.clone(), Rc::new(file));
        }
        MemIo { shared, current: RefCell::new(names.clone()), durable: RefCell::new(names) }
    }
}

fn not_found(p: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{} not found", p.display()))
}

impl Io for MemIo {
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
        let f = Rc::new(MemFile { data: RefCell::new(MemData { current: Vec::new(), durable: Vec::new(), pending: Vec::new() }), fs: self.shared.clone() });
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
}

/// Writes a file atomically: `<path>.tmp`, sync, rename, sync the directory.
pub fn write_atomic(io: &dyn Io, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let f = io.open(&tmp, OpenMode::Truncate)?;
    f.write_at(bytes, 0)?;
    f.sync()?;
    io.rename(&tmp, path)?;
    io.sync_dir(path.parent().unwrap_or(Path::new(".")))
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
}
