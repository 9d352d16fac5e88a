//! A user's store as files, for `ringmail user move`: listed (with hashes
//! to compare copies), read in pieces, written into a staging directory on
//! the receiving backend (`<data dir>/incoming/<user>`), sealed when whole
//! and durable, and finally put in the place of the user's store.
//!
//! The store's files are append-only segments, logs and indexes written
//! whole; a copy taken while the user is held (nothing written, every
//! commit done) is exactly what a restart after a crash would open, so
//! the receiving backend opens it as its own with no translation.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use super::relocate::{FileInfo, BLOCK, ZERO_BLOCK};
use crate::store::user_dir_name;

/// Where a user's store is received: `<data dir>/incoming/<user>`.
pub fn staging_dir(data_dir: &Path, user: &str) -> PathBuf {
    data_dir.join("incoming").join(user_dir_name(user))
}

/// The mark of a whole, durable staged copy (beside the directory).
fn seal_mark(data_dir: &Path, user: &str) -> PathBuf {
    data_dir.join("incoming").join(format!("{}.sealed", user_dir_name(user)))
}

/// Where a user's store lives: `<data dir>/mail/<user>`.
pub fn store_dir(data_dir: &Path, user: &str) -> PathBuf {
    data_dir.join("mail").join(user_dir_name(user))
}

fn invalid(why: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, why)
}

/// `path` under `dir`, refusing anything that could leave it.
pub fn inside(dir: &Path, path: &str) -> std::io::Result<PathBuf> {
    let p = Path::new(path);
    if path.is_empty() || !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(invalid(format!("{path:?} is not a path inside a user's store")));
    }
    Ok(dir.join(p))
}

/// Every file under `dir` (none if it does not exist), sorted by path.
pub fn list(dir: &Path) -> std::io::Result<Vec<FileInfo>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<FileInfo>) -> std::io::Result<()> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for e in entries {
            let p = e?.path();
            // A file removed between listing and looking (a checkpoint's
            // old log) is not there: the next round sees that.
            let m = match std::fs::symlink_metadata(&p) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if m.is_dir() {
                walk(root, &p, out)?;
            } else if m.is_file() {
                let rel = p.strip_prefix(root).map_err(|_| invalid(format!("{} is outside {}", p.display(), root.display())))?;
                let rel = rel.to_str().ok_or_else(|| invalid(format!("{} is not UTF-8", p.display())))?.to_string();
                let mtime = i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec());
                out.push(FileInfo { path: rel, len: m.len(), mtime, ino: m.ino() });
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// This host's clock, as file times are given.
pub fn now() -> i128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i128)
}

/// A file's length and the hash of each of its [`BLOCK`]s (XXH3-64;
/// [`ZERO_BLOCK`] for a block of zeros, which a hole reads as).
pub fn blocks(dir: &Path, path: &str) -> std::io::Result<(u64, Vec<u64>)> {
    let mut f = std::fs::File::open(inside(dir, path)?)?;
    let mut buf = vec![0u8; BLOCK as usize];
    let mut out = Vec::new();
    let mut len = 0u64;
    loop {
        let mut n = 0;
        while n < buf.len() {
            match f.read(&mut buf[n..])? {
                0 => break,
                k => n += k,
            }
        }
        if n == 0 {
            break;
        }
        len += n as u64;
        let b = &buf[..n];
        out.push(match b.iter().all(|&x| x == 0) {
            true => ZERO_BLOCK,
            false => xxhash_rust::xxh3::xxh3_64(b).max(1),
        });
        if n < buf.len() {
            break;
        }
    }
    Ok((len, out))
}

/// Up to `len` bytes of `dir/path` from `offset`.
pub fn read(dir: &Path, path: &str, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::File::open(inside(dir, path)?)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut out = Vec::with_capacity(len.min(64 << 20) as usize);
    f.take(len).read_to_end(&mut out)?;
    Ok(out)
}

fn staged_file(staging: &Path, path: &str) -> std::io::Result<std::fs::File> {
    let p = inside(staging, path)?;
    if let Some(parent) = p.parent() {
        crate::datadir::create_private_dir(parent)?;
    }
    std::fs::OpenOptions::new().create(true).write(true).truncate(false).open(&p)
}

/// Writes `data` at `offset` of a staged file, making it and its
/// directories.
pub fn stage(staging: &Path, path: &str, offset: u64, data: &[u8]) -> std::io::Result<()> {
    let mut f = staged_file(staging, path)?;
    f.seek(SeekFrom::Start(offset))?;
    f.write_all(data)
}

/// Makes `len` bytes from `offset` of a staged file read as zeros, without
/// writing them (a hole, as in the source's sparse segments).
pub fn stage_zeros(staging: &Path, path: &str, offset: u64, len: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut f = staged_file(staging, path)?;
    if f.metadata()?.len() < offset + len {
        f.set_len(offset + len)?;
    }
    // SAFETY: fallocate reads only its integer arguments; the descriptor
    // belongs to `f`, alive for the call.
    let r = unsafe { libc::fallocate(f.as_raw_fd(), libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, offset as i64, len as i64) };
    if r != 0 {
        // No holes on this file system: real zeros.
        f.seek(SeekFrom::Start(offset))?;
        std::io::copy(&mut std::io::repeat(0).take(len), &mut f)?;
    }
    Ok(())
}

/// Sets a staged file's length.
pub fn stage_len(staging: &Path, path: &str, len: u64) -> std::io::Result<()> {
    staged_file(staging, path)?.set_len(len)
}

pub fn unstage(staging: &Path, paths: &[String]) -> std::io::Result<()> {
    for path in paths {
        match std::fs::remove_file(inside(staging, path)?) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Syncs every staged file and directory, then marks the copy whole for
/// move `id` (the mark synced too): after this, a power loss keeps it.
pub fn seal(data_dir: &Path, user: &str, id: u64) -> std::io::Result<()> {
    let staging = staging_dir(data_dir, user);
    fn walk(dir: &Path) -> std::io::Result<()> {
        for e in std::fs::read_dir(dir)? {
            let p = e?.path();
            if p.is_dir() {
                walk(&p)?;
            } else {
                std::fs::File::open(&p)?.sync_all()?;
            }
        }
        sync_dir(dir)
    }
    crate::datadir::create_private_dir(&staging)?;
    walk(&staging)?;
    let mut mark = std::fs::File::create(seal_mark(data_dir, user))?;
    mark.write_all(id.to_string().as_bytes())?;
    mark.sync_all()?;
    sync_dir(&data_dir.join("incoming"))
}

/// The move a whole staged copy of the user was sealed for.
pub fn sealed_for(data_dir: &Path, user: &str) -> Option<u64> {
    std::fs::read_to_string(seal_mark(data_dir, user)).ok()?.trim().parse().ok()
}

/// Removes `dir` if it exists: first renamed into `incoming/` (at once, so
/// its name is free), then removed.
fn remove_aside(data_dir: &Path, dir: &Path, why: &str, user: &str) -> std::io::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let aside = data_dir.join("incoming").join(format!(".{why}-{}-{:016x}", user_dir_name(user), rand::random::<u64>()));
    std::fs::rename(dir, &aside)?;
    std::fs::remove_dir_all(&aside)
}

/// Removes a user's store and any staged copy here (moved out of the way
/// at once, removed after).
pub fn discard(data_dir: &Path, user: &str) -> std::io::Result<()> {
    let incoming = data_dir.join("incoming");
    crate::datadir::create_private_dir(&incoming)?;
    let _ = std::fs::remove_file(seal_mark(data_dir, user));
    for dir in [store_dir(data_dir, user), staging_dir(data_dir, user)] {
        remove_aside(data_dir, &dir, "discarded", user)?;
    }
    sync_dir(&incoming)?;
    sync_dir(&data_dir.join("mail"))
}

/// Puts the staged copy sealed for move `id` in the place of the user's
/// store (which is discarded if there is one), durably. False if there is
/// no such copy.
pub fn adopt(data_dir: &Path, user: &str, id: u64) -> std::io::Result<bool> {
    if sealed_for(data_dir, user) != Some(id) {
        return Ok(false);
    }
    let (staging, home) = (staging_dir(data_dir, user), store_dir(data_dir, user));
    remove_aside(data_dir, &home, "replaced", user)?;
    std::fs::rename(&staging, &home)?;
    sync_dir(&data_dir.join("mail"))?;
    std::fs::remove_file(seal_mark(data_dir, user))?;
    sync_dir(&data_dir.join("incoming"))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_is_copied_block_by_block_with_its_holes_sealed_and_adopted() {
        let d = tempfile::tempdir().unwrap();
        let data = d.path();
        std::fs::create_dir_all(data.join("mail")).unwrap();
        let src = store_dir(data, "src@x");
        std::fs::create_dir_all(src.join("boxes/1")).unwrap();
        std::fs::write(src.join("mailboxes"), b"manifest").unwrap();
        // A sparse segment: data, holes, data in its last (short) block.
        std::fs::File::create(src.join("boxes/1/seg.0")).unwrap().set_len(3 * BLOCK + 100).unwrap();
        stage(&src, "boxes/1/seg.0", 10, b"first").unwrap();
        stage(&src, "boxes/1/seg.0", 3 * BLOCK + 50, b"last").unwrap();
        let files = list(&src).unwrap();
        assert_eq!(files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), ["boxes/1/seg.0", "mailboxes"]);
        let (len, hashes) = blocks(&src, "boxes/1/seg.0").unwrap();
        assert_eq!(len, 3 * BLOCK + 100);
        assert_eq!(hashes.len(), 4);
        assert!(hashes[0] != ZERO_BLOCK && hashes[1] == ZERO_BLOCK && hashes[2] == ZERO_BLOCK && hashes[3] != ZERO_BLOCK);
        // Copied as "dst@x": data blocks as bytes, zero blocks as holes.
        let staging = staging_dir(data, "dst@x");
        std::fs::create_dir_all(&staging).unwrap();
        stage(&staging, "boxes/1/seg.0", BLOCK, b"stale data where the source has a hole").unwrap();
        for f in &files {
            let (len, hashes) = blocks(&src, &f.path).unwrap();
            for (i, h) in hashes.iter().enumerate() {
                let at = i as u64 * BLOCK;
                match *h {
                    ZERO_BLOCK => stage_zeros(&staging, &f.path, at, BLOCK.min(len - at)).unwrap(),
                    _ => stage(&staging, &f.path, at, &read(&src, &f.path, at, BLOCK).unwrap()).unwrap(),
                }
            }
            stage_len(&staging, &f.path, len).unwrap();
        }
        stage(&staging, "stray", 0, b"x").unwrap();
        unstage(&staging, &["stray".into(), "never-there".into()]).unwrap();
        let used = std::fs::metadata(staging.join("boxes/1/seg.0")).unwrap().blocks() * 512;
        assert!(used < 3 * BLOCK, "holes stay holes: {used} bytes used");
        let same = |a: &Path, b: &Path| {
            for f in list(a).unwrap() {
                assert!(std::fs::read(a.join(&f.path)).unwrap() == std::fs::read(b.join(&f.path)).unwrap(), "{}", f.path);
            }
            assert_eq!(list(a).unwrap().len(), list(b).unwrap().len());
        };
        same(&src, &staging);
        assert!(!adopt(data, "dst@x", 7).unwrap(), "not sealed: not adopted");
        seal(data, "dst@x", 7).unwrap();
        assert!(!adopt(data, "dst@x", 8).unwrap(), "sealed for another move: not adopted");
        std::fs::create_dir_all(store_dir(data, "dst@x")).unwrap();
        std::fs::write(store_dir(data, "dst@x").join("old"), b"stale").unwrap();
        assert!(adopt(data, "dst@x", 7).unwrap());
        same(&src, &store_dir(data, "dst@x"));
        assert!(!staging.exists() && sealed_for(data, "dst@x").is_none());
        discard(data, "dst@x").unwrap();
        assert!(!store_dir(data, "dst@x").exists());
        // Nothing outside the user's directory can be named.
        for bad in ["../x", "/etc/passwd", "a/../../b", "", "."] {
            assert!(read(&src, bad, 0, 1).is_err() && stage(&staging, bad, 0, b"").is_err(), "{bad}");
        }
    }
}
