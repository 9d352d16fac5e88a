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

use super::relocate::FileInfo;
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
pub fn list(dir: &Path, hash: bool) -> std::io::Result<Vec<FileInfo>> {
    fn walk(root: &Path, dir: &Path, hash: bool, out: &mut Vec<FileInfo>) -> std::io::Result<()> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for e in entries {
            let e = e?;
            let p = e.path();
            // A file removed between listing and looking (a checkpoint's
            // old log) is not there: the next round sees that.
            let m = match std::fs::symlink_metadata(&p) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if m.is_dir() {
                walk(root, &p, hash, out)?;
            } else if m.is_file() {
                let rel = p.strip_prefix(root).map_err(|_| invalid(format!("{} is outside {}", p.display(), root.display())))?;
                let rel = rel.to_str().ok_or_else(|| invalid(format!("{} is not UTF-8", p.display())))?.to_string();
                let hash = match hash {
                    true => match hash_file(&p) {
                        Ok(h) => Some(h),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(e),
                    },
                    false => None,
                };
                let mtime = i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec());
                out.push(FileInfo { path: rel, len: m.len(), mtime, ino: m.ino(), hash });
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, hash, &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// XXH3-128 of a file's bytes, hex.
fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:032x}", h.digest128()))
}

/// Up to `len` bytes of `dir/path` from `offset`.
pub fn read(dir: &Path, path: &str, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::File::open(inside(dir, path)?)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut out = Vec::with_capacity(len.min(64 << 20) as usize);
    f.take(len).read_to_end(&mut out)?;
    Ok(out)
}

/// Writes `data` at `offset` of a staged file, making it and its
/// directories; `truncate`: the file ends after `data`.
pub fn stage(staging: &Path, path: &str, offset: u64, data: &[u8], truncate: bool) -> std::io::Result<()> {
    let p = inside(staging, path)?;
    if let Some(parent) = p.parent() {
        crate::datadir::create_private_dir(parent)?;
    }
    let mut f = std::fs::OpenOptions::new().create(true).write(true).truncate(false).open(&p)?;
    f.seek(SeekFrom::Start(offset))?;
    f.write_all(data)?;
    if truncate {
        f.set_len(offset + data.len() as u64)?;
    }
    Ok(())
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

/// Removes a user's store and any staged copy here (moved out of the way
/// at once, removed after).
pub fn discard(data_dir: &Path, user: &str) -> std::io::Result<()> {
    let incoming = data_dir.join("incoming");
    crate::datadir::create_private_dir(&incoming)?;
    let _ = std::fs::remove_file(seal_mark(data_dir, user));
    for dir in [store_dir(data_dir, user), staging_dir(data_dir, user)] {
        if dir.exists() {
            let gone = incoming.join(format!(".discarded-{}-{:016x}", user_dir_name(user), rand::random::<u64>()));
            std::fs::rename(&dir, &gone)?;
            std::fs::remove_dir_all(&gone)?;
        }
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
    if home.exists() {
        let old = data_dir.join("incoming").join(format!(".replaced-{}-{:016x}", user_dir_name(user), rand::random::<u64>()));
        std::fs::rename(&home, &old)?;
        std::fs::remove_dir_all(&old)?;
    }
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
    fn a_store_is_copied_file_by_file_sealed_and_adopted() {
        let d = tempfile::tempdir().unwrap();
        let data = d.path();
        std::fs::create_dir_all(data.join("mail")).unwrap();
        let src = store_dir(data, "src@x");
        std::fs::create_dir_all(src.join("boxes/1")).unwrap();
        std::fs::write(src.join("mailboxes"), b"manifest").unwrap();
        std::fs::write(src.join("boxes/1/seg.0"), vec![7u8; 3 << 20]).unwrap();
        let files = list(&src, true).unwrap();
        assert_eq!(files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), ["boxes/1/seg.0", "mailboxes"]);
        // Copied in pieces as "dst@x", one piece cut short by the file's end.
        let staging = staging_dir(data, "dst@x");
        for f in &files {
            let mut at = 0;
            loop {
                let piece = read(&src, &f.path, at, 1 << 20).unwrap();
                let last = piece.len() < 1 << 20;
                stage(&staging, &f.path, at, &piece, last).unwrap();
                at += piece.len() as u64;
                if last {
                    break;
                }
            }
        }
        stage(&staging, "stray", 0, b"x", true).unwrap();
        unstage(&staging, &["stray".into(), "never-there".into()]).unwrap();
        let hashes = |v: Vec<FileInfo>| v.into_iter().map(|f| (f.path, f.len, f.hash)).collect::<Vec<_>>();
        assert_eq!(hashes(list(&staging, true).unwrap()), hashes(files.clone()));
        assert!(!adopt(data, "dst@x", 7).unwrap(), "not sealed: not adopted");
        seal(data, "dst@x", 7).unwrap();
        assert!(!adopt(data, "dst@x", 8).unwrap(), "sealed for another move: not adopted");
        std::fs::create_dir_all(store_dir(data, "dst@x")).unwrap();
        std::fs::write(store_dir(data, "dst@x").join("old"), b"stale").unwrap();
        assert!(adopt(data, "dst@x", 7).unwrap());
        assert_eq!(hashes(list(&store_dir(data, "dst@x"), true).unwrap()), hashes(files));
        assert!(!staging.exists() && sealed_for(data, "dst@x").is_none());
        discard(data, "dst@x").unwrap();
        assert!(!store_dir(data, "dst@x").exists());
        // Nothing outside the user's directory can be named.
        for bad in ["../x", "/etc/passwd", "a/../../b", "", "."] {
            assert!(read(&src, bad, 0, 1).is_err() && stage(&staging, bad, 0, b"", true).is_err(), "{bad}");
        }
    }
}
