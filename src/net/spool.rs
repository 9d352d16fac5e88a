//! Where a message received by LMTP or SMTP waits between its DATA and
//! being stored for each recipient: in memory while it is small, in an
//! unlinked file under `<data_dir>/tmp` once it is large or once the
//! messages in flight on the whole server hold too much memory. Without
//! this, six clients sending 40 MiB each and stalling before the final dot
//! held 250 MiB of RAM.
//!
//! The file is never synced: a message is acknowledged only after its
//! copies are stored and synced in the recipients' mailboxes. When the
//! message is complete the file is mapped, and every copy is written into
//! the store from the mapping.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

/// A message up to this size stays in memory.
pub const MEMORY_MAX: usize = 256 << 10;
/// Messages in flight on the whole server keep at most this much in
/// memory; beyond it every new byte goes to disk.
pub const MEMORY_TOTAL_MAX: usize = 64 << 20;

/// Memory held by spools and in-memory bodies, across workers (the
/// counter is shared with the metrics).
#[derive(Default)]
pub struct Budget(Arc<AtomicUsize>);

impl Budget {
    /// A budget counting in `counter`.
    pub fn new(counter: Arc<AtomicUsize>) -> Budget {
        Budget(counter)
    }
}

impl Budget {
    fn take(&self, n: usize) -> bool {
        let mut cur = self.0.load(Relaxed);
        loop {
            if cur + n > MEMORY_TOTAL_MAX {
                return false;
            }
            match self.0.compare_exchange_weak(cur, cur + n, Relaxed, Relaxed) {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    fn give(&self, n: usize) {
        self.0.fetch_sub(n, Relaxed);
    }

    /// Bytes held now (for tests and metrics).
    pub fn held(&self) -> usize {
        self.0.load(Relaxed)
    }

    /// The counter itself, for the metrics.
    pub fn counter(&self) -> Arc<AtomicUsize> {
        self.0.clone()
    }
}

/// A message being received.
pub struct Spool {
    dir: PathBuf,
    budget: Arc<Budget>,
    mem: Vec<u8>,
    file: Option<File>,
    len: u64,
}

impl Spool {
    pub fn new(dir: &Path, budget: Arc<Budget>) -> Spool {
        Spool { dir: dir.to_path_buf(), budget, mem: Vec::new(), file: None, len: 0 }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.len += data.len() as u64;
        if self.file.is_none() {
            if self.mem.len() + data.len() <= MEMORY_MAX && self.budget.take(data.len()) {
                self.mem.extend_from_slice(data);
                return Ok(());
            }
            let mut f = anonymous_file(&self.dir)?;
            f.write_all(&self.mem)?;
            self.budget.give(self.mem.len());
            self.mem = Vec::new();
            self.file = Some(f);
        }
        self.file.as_mut().expect("spilled above").write_all(data)
    }

    /// The complete message.
    pub fn finish(mut self) -> io::Result<Body> {
        match self.file.take() {
            None => {
                let mem = std::mem::take(&mut self.mem);
                Ok(Body(Inner::Memory { bytes: mem, budget: self.budget.clone() }))
            }
            Some(f) if self.len == 0 => {
                drop(f);
                Ok(Body(Inner::Memory { bytes: Vec::new(), budget: self.budget.clone() }))
            }
            Some(f) => {
                // SAFETY: the file is unlinked (no other process can reach
                // it), this process wrote it completely above and never
                // writes it again: the mapping cannot change underneath.
                let map = unsafe { memmap2::Mmap::map(&f)? };
                Ok(Body(Inner::Mapped(map)))
            }
        }
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        self.budget.give(self.mem.len());
    }
}

/// A complete message, shared by the workers storing its copies.
pub struct Body(Inner);

enum Inner {
    Memory { bytes: Vec<u8>, budget: Arc<Budget> },
    Mapped(memmap2::Mmap),
}

impl AsRef<[u8]> for Body {
    fn as_ref(&self) -> &[u8] {
        match &self.0 {
            Inner::Memory { bytes, .. } => bytes,
            Inner::Mapped(m) => m,
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Inner::Memory { bytes, budget } = self {
            budget.give(bytes.len());
        }
    }
}

/// A file with no name in `dir` (O_TMPFILE), or, where the file system
/// has none, a named one unlinked at once.
fn anonymous_file(dir: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmpfile = std::fs::OpenOptions::new().read(true).write(true).mode(0o600).custom_flags(rustix::fs::OFlags::TMPFILE.bits() as i32).open(dir);
    match tmpfile {
        Ok(f) => Ok(f),
        Err(_) => {
            let p = dir.join(format!("spool.{}.{}", std::process::id(), rand::random::<u64>()));
            let f = std::fs::OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(&p)?;
            std::fs::remove_file(&p)?;
            Ok(f)
        }
    }
}

/// Empties the spool directory at start (files left by a crash, if any).
pub fn prepare(dir: &Path) -> io::Result<()> {
    crate::datadir::create_private_dir(dir)?;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_name().to_string_lossy().starts_with("spool.") {
            let _ = std::fs::remove_file(e.path());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_in_memory_large_on_disk_and_the_budget_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let budget = Arc::new(Budget::default());
        let mut small = Spool::new(dir.path(), budget.clone());
        small.write(b"hello ").unwrap();
        small.write(b"world").unwrap();
        assert_eq!(budget.held(), 11);
        let mut big = Spool::new(dir.path(), budget.clone());
        let chunk = vec![b'x'; 100 << 10];
        for _ in 0..10 {
            big.write(&chunk).unwrap();
        }
        assert_eq!(budget.held(), 11, "a large message left memory");
        let b = big.finish().unwrap();
        assert_eq!(b.as_ref().len(), 1000 << 10);
        assert!(b.as_ref().iter().all(|&c| c == b'x'));
        let s = small.finish().unwrap();
        assert_eq!(s.as_ref(), b"hello world");
        drop(s);
        drop(b);
        assert_eq!(budget.held(), 0);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no file left behind");
    }

    #[test]
    fn the_global_cap_sends_new_bytes_to_disk() {
        let dir = tempfile::tempdir().unwrap();
        let budget = Arc::new(Budget::default());
        let mut held = Vec::new();
        let chunk = vec![b'y'; MEMORY_MAX];
        for _ in 0..(MEMORY_TOTAL_MAX / MEMORY_MAX + 5) {
            let mut s = Spool::new(dir.path(), budget.clone());
            s.write(&chunk).unwrap();
            held.push(s);
        }
        assert!(budget.held() <= MEMORY_TOTAL_MAX);
        assert!(held.iter().any(|s| s.file.is_some()));
    }
}
