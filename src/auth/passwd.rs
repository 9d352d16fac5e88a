//! The user database: a passwd-file in Dovecot's format, one user per line,
//! `name:{SCHEME}hash[:uid:gid:gecos:home:shell:extra]`. Of the rest, only
//! quota rules in the extra fields mean anything to ringmail (see
//! [`super::quota_rule`]); all of it is kept when rewriting.
//!
//! The file is re-read when it changes on disk, so `ringmail user add` takes
//! effect in a running server without a restart.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use super::quota_rule::UserQuota;
use crate::config::QuotaLimits;

/// Rules for user names: they name directories, so they are restricted.
pub fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._@+-".contains(&b))
}

/// Dovecot's default `auth_username_format = %Lu`: names are compared lower-cased.
pub fn normalize_user_name(name: &str) -> String {
    name.to_ascii_lowercase()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub hash: Arc<str>,
    /// Fields after the hash, verbatim (without the leading colon).
    pub rest: String,
}

/// Parses a passwd-file; malformed lines are skipped and reported.
pub fn parse(text: &str) -> (Vec<Entry>, Vec<usize>) {
    let mut entries = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let mut it = line.splitn(3, ':');
        let (Some(name), Some(hash)) = (it.next(), it.next()) else {
            bad.push(i + 1);
            continue;
        };
        if name.is_empty() || hash.is_empty() {
            bad.push(i + 1);
            continue;
        }
        entries.push(Entry { name: normalize_user_name(name), hash: Arc::from(hash), rest: it.next().unwrap_or("").to_string() });
    }
    (entries, bad)
}

pub fn render(entries: &[Entry]) -> String {
    let mut s = String::new();
    for e in entries {
        s.push_str(&e.name);
        s.push(':');
        s.push_str(&e.hash);
        if !e.rest.is_empty() {
            s.push(':');
            s.push_str(&e.rest);
        }
        s.push('\n');
    }
    s
}

/// What identifies a version of the file: `ringmail user` replaces it by
/// rename (a new inode), an editor may rewrite it in place (new mtime).
type Stamp = (u64, SystemTime, u64);

#[derive(Default)]
struct Snapshot {
    users: HashMap<String, Arc<str>>,
    /// Users whose line sets quota limits.
    quotas: HashMap<String, UserQuota>,
    stamp: Option<Stamp>,
}

/// The passwd-file, cached in memory and re-read when it changes. Every
/// lookup stats the file (about a microsecond), so a user added, removed
/// or given a new password counts from the very next login.
pub struct UserDb {
    path: PathBuf,
    snapshot: RwLock<Snapshot>,
}

impl UserDb {
    pub fn open(path: &Path) -> io::Result<UserDb> {
        let db = UserDb { path: path.to_path_buf(), snapshot: RwLock::new(Snapshot::default()) };
        db.reload()?;
        Ok(db)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn stamp(&self) -> io::Result<Option<Stamp>> {
        use std::os::unix::fs::MetadataExt;
        match std::fs::metadata(&self.path) {
            Ok(m) => Ok(Some((m.ino(), m.modified()?, m.len()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn reload(&self) -> io::Result<()> {
        let stamp = self.stamp()?;
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        let (entries, bad) = parse(&text);
        if !bad.is_empty() {
            tracing::warn!(path = %self.path.display(), lines = ?bad, "skipping malformed passwd-file lines");
        }
        let mut quotas = HashMap::new();
        for e in &entries {
            let q = super::quota_rule::parse(&e.rest);
            if !q.ignored.is_empty() {
                tracing::warn!(user = e.name, rules = ?q.ignored, "ignoring quota rules: ringmail applies only whole-account (*) rules of storage, bytes and messages");
            }
            if !q.is_empty() {
                quotas.insert(e.name.clone(), q);
            }
        }
        let users = entries.into_iter().map(|e| (e.name, e.hash)).collect();
        *self.snapshot.write().expect("userdb lock") = Snapshot { users, quotas, stamp };
        Ok(())
    }

    fn refresh(&self) {
        let current = self.snapshot.read().expect("userdb lock").stamp;
        match self.stamp() {
            Ok(s) if s != current => {
                if let Err(e) = self.reload() {
                    tracing::error!(error = %e, "cannot re-read the passwd-file");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "cannot stat the passwd-file"),
        }
    }

    /// The stored hash of a user, if the user exists.
    pub fn lookup(&self, name: &str) -> Option<Arc<str>> {
        self.refresh();
        self.snapshot.read().expect("userdb lock").users.get(&normalize_user_name(name)).cloned()
    }

    /// A user's quota limits: what their line sets, the rest from `default`.
    pub fn quota(&self, name: &str, default: QuotaLimits) -> QuotaLimits {
        self.refresh();
        self.snapshot.read().expect("userdb lock").quotas.get(&normalize_user_name(name)).map_or(default, |q| q.limits(default))
    }

    pub fn is_empty(&self) -> bool {
        self.refresh();
        self.snapshot.read().expect("userdb lock").users.is_empty()
    }

    pub fn names(&self) -> Vec<String> {
        self.refresh();
        let mut v: Vec<_> = self.snapshot.read().expect("userdb lock").users.keys().cloned().collect();
        v.sort();
        v
    }
}

/// Edits the passwd-file atomically (write a temporary file, sync, rename).
pub fn edit_file(path: &Path, f: impl FnOnce(&mut Vec<Entry>) -> Result<(), String>) -> Result<(), String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let (mut entries, bad) = parse(&text);
    if !bad.is_empty() {
        return Err(format!("{} has malformed lines {bad:?}; fix them first", path.display()));
    }
    f(&mut entries)?;
    let tmp = path.with_extension("tmp");
    let write = || -> io::Result<()> {
        use std::io::Write;
        if let Some(dir) = path.parent() {
            crate::datadir::create_private_dir(dir)?;
        }
        let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        file.write_all(render(&entries).as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dovecot_lines() {
        let (e, bad) = parse("# comment\nJoe:{PLAIN}x:1000:1000::/home/joe::\n\nbroken\nann:{SHA512-CRYPT}$6$abc\n");
        assert_eq!(bad, vec![4]);
        assert_eq!(e[0].name, "joe");
        assert_eq!(&*e[0].hash, "{PLAIN}x");
        assert_eq!(e[0].rest, "1000:1000::/home/joe::");
        assert_eq!(render(&e), "joe:{PLAIN}x:1000:1000::/home/joe::\nann:{SHA512-CRYPT}$6$abc\n");
    }

    #[test]
    fn names() {
        assert!(valid_user_name("user1@example.com"));
        assert!(!valid_user_name("../etc"));
        assert!(!valid_user_name("a/b"));
        assert!(!valid_user_name(""));
    }

    #[test]
    fn reloads_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("users");
        let db = UserDb::open(&p).unwrap();
        assert!(db.lookup("a").is_none());
        edit_file(&p, |v| {
            v.push(Entry { name: "a".into(), hash: Arc::from("{PLAIN}1"), rest: String::new() });
            Ok(())
        })
        .unwrap();
        // At once: the next lookup sees it (hardening issue: a new user got
        // AUTHENTICATIONFAILED for up to half a second).
        assert_eq!(db.lookup("A").as_deref(), Some("{PLAIN}1"));
        edit_file(&p, |v| {
            v[0].hash = Arc::from("{PLAIN}2");
            Ok(())
        })
        .unwrap();
        assert_eq!(db.lookup("a").as_deref(), Some("{PLAIN}2"));
        edit_file(&p, |v| {
            v.clear();
            Ok(())
        })
        .unwrap();
        assert!(db.lookup("a").is_none());
    }
}
