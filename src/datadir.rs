//! The data directory's lock: one server per data directory, and
//! `ringmail deliver` stores directly only while no server holds it.

use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// Holds `ringmail.lock` until dropped (the kernel releases it on exit, even
/// after SIGKILL).
pub struct DataDirLock {
    file: File,
}

/// What a running server tells other processes in its lock file.
const LMTP_KEY: &str = "lmtp=";

impl DataDirLock {
    /// Takes the lock, retrying for up to `wait` while someone else holds it.
    /// `Ok(None)` means it is still held after `wait`.
    pub fn acquire(dir: &Path, wait: Duration) -> Result<Option<DataDirLock>, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let path = dir.join("ringmail.lock");
        let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let deadline = Instant::now() + wait;
        loop {
            // SAFETY: flock on a descriptor we own; no memory is involved.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(Some(DataDirLock { file: f }));
            }
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(format!("cannot lock {}: {err}", path.display()));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl DataDirLock {
    /// Records where the server takes LMTP, for `ringmail deliver`.
    pub fn publish(&self, pid: u32, lmtp: Option<SocketAddr>) -> std::io::Result<()> {
        let mut text = format!("pid={pid}\n");
        if let Some(a) = lmtp {
            text.push_str(&format!("{LMTP_KEY}{a}\n"));
        }
        self.file.set_len(0)?;
        // Not synced: after a crash the next server rewrites it anyway.
        self.file.write_all_at(text.as_bytes(), 0)
    }
}

/// The LMTP address a running server published in `dir`'s lock file.
pub fn published_lmtp(dir: &Path) -> Option<SocketAddr> {
    let text = std::fs::read_to_string(dir.join("ringmail.lock")).ok()?;
    text.lines().find_map(|l| l.strip_prefix(LMTP_KEY)).and_then(|a| a.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_waits_then_gives_up_and_reads_the_address() {
        let dir = tempfile::tempdir().unwrap();
        let lock = DataDirLock::acquire(dir.path(), Duration::ZERO).unwrap().unwrap();
        lock.publish(42, Some("127.0.0.1:2424".parse().unwrap())).unwrap();
        assert!(DataDirLock::acquire(dir.path(), Duration::from_millis(50)).unwrap().is_none());
        assert_eq!(published_lmtp(dir.path()), Some("127.0.0.1:2424".parse().unwrap()));
        drop(lock);
        assert!(DataDirLock::acquire(dir.path(), Duration::ZERO).unwrap().is_some());
    }
}
