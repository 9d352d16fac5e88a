//! The data directory: its lock (one server per data directory, and
//! `ringmail deliver` stores directly only while no server holds it) and
//! the rule that everything in it is private to the server's user.

use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// The lock file's name in the data directory.
pub const LOCK_FILE: &str = "ringmail.lock";

/// Holds `ringmail.lock` until dropped (the kernel releases it on exit, even
/// after SIGKILL).
pub struct DataDirLock {
    file: File,
}

/// What a running server tells other processes in its lock file.
const LMTP_KEY: &str = "lmtp=";

/// Files and directories the process creates are private to its user:
/// mail, password hashes and keys must not be readable by other local
/// users. Called first thing by every command. (The systemd unit sets
/// `UMask=0077` too.)
pub fn private_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// Run as root on a data directory that belongs to another user (the
/// package's `ringmail`), an admin command (`import`, `user`, `deliver`)
/// gives what it wrote under `paths` to that user afterwards, so the server
/// can still read it. (It cannot become that user instead: an import's
/// source, say Dovecot's /var/vmail, may be readable by root alone.)
/// `paths` are handed back with everything under them, `single` alone.
pub fn hand_back(dir: &Path, paths: &[std::path::PathBuf], single: &[std::path::PathBuf]) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    if !rustix::process::geteuid().is_root() {
        return Ok(());
    }
    let Ok(meta) = std::fs::metadata(dir) else { return Ok(()) };
    if meta.uid() == 0 {
        return Ok(());
    }
    let owner = (Some(rustix::fs::Uid::from_raw(meta.uid())), Some(rustix::fs::Gid::from_raw(meta.gid())));
    let give = |p: &Path| rustix::fs::chown(p, owner.0, owner.1).map_err(|e| format!("cannot give {} to the owner of {}: {e}", p.display(), dir.display()));
    for p in single.iter().filter(|p| p.exists()) {
        give(p)?;
    }
    let mut todo: Vec<std::path::PathBuf> = paths.iter().filter(|p| p.exists()).cloned().collect();
    while let Some(p) = todo.pop() {
        give(&p)?;
        if p.is_dir() && !p.is_symlink() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                todo.extend(rd.flatten().map(|e| e.path()));
            }
        }
    }
    Ok(())
}

/// [`hand_back`] of what writing one user's mail touches: the user's mail
/// directory `mail/<user_dir>` with everything under it, `mail` itself and
/// the lock file, and `also` with everything under it.
pub fn hand_back_mail(dir: &Path, user_dir: &str, also: &[std::path::PathBuf]) -> Result<(), String> {
    let mail = dir.join("mail");
    let mut deep = vec![mail.join(user_dir)];
    deep.extend_from_slice(also);
    hand_back(dir, &deep, &[mail, dir.join(LOCK_FILE)])
}

/// Creates `dir` and its missing parents with mode 0700.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Paths under `dir` (itself included, at most `limit` of them) that other
/// users can read or write, or the group can write: what `doctor` reports.
pub fn loose_permissions(dir: &Path, limit: usize) -> Vec<(std::path::PathBuf, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    let mut seen = 0;
    while let Some(p) = todo.pop() {
        seen += 1;
        if seen > limit {
            break;
        }
        let Ok(meta) = std::fs::symlink_metadata(&p) else { continue };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o027 != 0 {
            out.push((p.clone(), mode));
        }
        if meta.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                todo.extend(rd.flatten().map(|e| e.path()));
            }
        }
    }
    out
}

/// Free (for unprivileged users) and total bytes of the file system
/// holding `dir`.
pub fn disk_space(dir: &Path) -> Option<(u64, u64)> {
    let vfs = rustix::fs::statvfs(dir).ok()?;
    Some((vfs.f_bavail * vfs.f_frsize, vfs.f_blocks * vfs.f_frsize))
}

impl DataDirLock {
    /// Takes the lock, retrying for up to `wait` while someone else holds it.
    /// `Ok(None)` means it is still held after `wait`.
    pub fn acquire(dir: &Path, wait: Duration) -> Result<Option<DataDirLock>, String> {
        create_private_dir(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let path = dir.join(LOCK_FILE);
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let deadline = Instant::now() + wait;
        loop {
            match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(Some(DataDirLock { file: f })),
                Err(rustix::io::Errno::WOULDBLOCK) => {}
                Err(e) => return Err(format!("cannot lock {}: {e}", path.display())),
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
    let text = std::fs::read_to_string(dir.join(LOCK_FILE)).ok()?;
    text.lines().find_map(|l| l.strip_prefix(LMTP_KEY)).and_then(|a| a.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_dirs_and_the_permission_scan() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("data/mail");
        create_private_dir(&d).unwrap();
        assert_eq!(std::fs::metadata(&d).unwrap().permissions().mode() & 0o777, 0o700);
        let f = d.join("f");
        std::fs::write(&f, b"x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let loose = loose_permissions(&dir.path().join("data"), 100);
        assert_eq!(loose, vec![(f.clone(), 0o644)]);
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(loose_permissions(&dir.path().join("data"), 100).is_empty());
    }

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
