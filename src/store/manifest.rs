//! A user's list of mailboxes (name, id, UIDVALIDITY, special use,
//! placeholder state), subscriptions and annotations: the `mailboxes` file of
//! docs/store-format.md, rewritten atomically on every change.
//!
//! A change takes effect in memory at once ([`ManifestCell::change`]) and
//! becomes durable with the next group commit that includes the cell
//! (`store::commit`): the file is replaced off the worker thread.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::format::crc;
use super::io::{Io, Job, Task};
use super::metadata::Metadata;
use crate::proto::percent::decode as unescape;

/// The hierarchy delimiter (RFC 9051 5.1.1).
pub const DELIMITER: char = '/';

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: u32,
    pub uidvalidity: u32,
    /// A placeholder for the children of a deleted mailbox (`\Noselect`).
    pub noselect: bool,
    /// RFC 6154 attribute such as `\Sent`.
    pub special_use: Option<String>,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Manifest {
    pub next_id: u32,
    pub last_uidvalidity: u32,
    pub entries: Vec<Entry>,
    pub subscribed: BTreeSet<String>,
    /// METADATA annotations (RFC 5464), shared between copies until one
    /// changes them.
    pub metadata: Rc<Metadata>,
    /// URLAUTH (RFC 4467) keys by mailbox id: secret, random, made at the
    /// first GENURLAUTH and replaced by RESETKEY.
    pub urlauth_keys: BTreeMap<u32, [u8; 32]>,
}

/// Why a mailbox name is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    Empty,
    BadComponent,
    BadCharacter,
    TooLong,
}

/// Canonical form of a name: `INBOX` (any case) and its children are
/// spelled `INBOX`; a trailing delimiter is dropped (RFC 9051 6.3.4).
pub fn canonical(name: &str) -> Result<String, NameError> {
    let name = name.strip_suffix(DELIMITER).unwrap_or(name);
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > 1000 {
        return Err(NameError::TooLong);
    }
    if name.chars().any(|c| c.is_control() || c == '*' || c == '%') {
        return Err(NameError::BadCharacter);
    }
    if name.split(DELIMITER).any(|c| c.is_empty() || c.len() > 255) {
        return Err(NameError::BadComponent);
    }
    let first = name.split(DELIMITER).next().expect("non-empty");
    if first.eq_ignore_ascii_case("INBOX") {
        return Ok(format!("INBOX{}", &name[first.len()..]));
    }
    Ok(name.to_string())
}

/// The names of the parents of `name`, outermost first.
pub fn parents(name: &str) -> Vec<&str> {
    name.match_indices(DELIMITER).map(|(i, _)| &name[..i]).collect()
}

fn escape(name: &str) -> String {
    let mut s = String::with_capacity(name.len());
    for c in name.chars() {
        if c == '%' || c == ' ' || c.is_control() {
            let mut b = [0; 4];
            for byte in c.encode_utf8(&mut b).bytes() {
                s.push_str(&format!("%{byte:02X}"));
            }
        } else {
            s.push(c);
        }
    }
    s
}

impl Manifest {
    pub fn encode(&self) -> Vec<u8> {
        let mut s = String::from("ringmail-mailboxes 1\n");
        s.push_str(&format!("next-id {}\nlast-uidvalidity {}\n", self.next_id, self.last_uidvalidity));
        for e in &self.entries {
            s.push_str(&format!(
                "mailbox {} {} {} {} {}\n",
                e.id,
                e.uidvalidity,
                if e.noselect { "noselect" } else { "-" },
                e.special_use.as_deref().unwrap_or("-"),
                escape(&e.name)
            ));
        }
        for n in &self.subscribed {
            s.push_str(&format!("subscribed {}\n", escape(n)));
        }
        self.metadata.encode(&mut s);
        for (id, key) in &self.urlauth_keys {
            let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
            s.push_str(&format!("urlauth-key {id} {hex}\n"));
        }
        let c = crc(s.as_bytes());
        s.push_str(&format!("crc {c:08x}\n"));
        s.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Option<Manifest> {
        let text = std::str::from_utf8(bytes).ok()?;
        let crc_at = text.rfind("crc ")?;
        let (body, tail) = text.split_at(crc_at);
        let want = u32::from_str_radix(tail.trim().strip_prefix("crc ")?, 16).ok()?;
        if crc(body.as_bytes()) != want {
            return None;
        }
        let mut lines = body.lines();
        if lines.next()? != "ringmail-mailboxes 1" {
            return None;
        }
        let mut m = Manifest::default();
        for line in lines {
            let (key, rest) = line.split_once(' ')?;
            match key {
                "next-id" => m.next_id = rest.parse().ok()?,
                "last-uidvalidity" => m.last_uidvalidity = rest.parse().ok()?,
                "mailbox" => {
                    let mut f = rest.splitn(5, ' ');
                    let id = f.next()?.parse().ok()?;
                    let uidvalidity = f.next()?.parse().ok()?;
                    let noselect = f.next()? == "noselect";
                    let su = f.next()?;
                    let name = unescape(f.next()?)?;
                    m.entries.push(Entry { id, uidvalidity, noselect, special_use: (su != "-").then(|| su.to_string()), name });
                }
                "subscribed" => {
                    m.subscribed.insert(unescape(rest)?);
                }
                "metadata" => Rc::make_mut(&mut m.metadata).decode_line(rest)?,
                "urlauth-key" => {
                    let (id, hex) = rest.split_once(' ')?;
                    let mut key = [0u8; 32];
                    if hex.len() != 64 {
                        return None;
                    }
                    for (i, b) in key.iter_mut().enumerate() {
                        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
                    }
                    m.urlauth_keys.insert(id.parse().ok()?, key);
                }
                _ => return None,
            }
        }
        Some(m)
    }

    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == name)
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut Entry> {
        self.entries.iter_mut().find(|e| e.name == name)
    }

    pub fn has_children(&self, name: &str) -> bool {
        let prefix = format!("{name}{DELIMITER}");
        self.entries.iter().any(|e| e.name.starts_with(&prefix))
    }

    /// A fresh UIDVALIDITY: the current time, or one more than the last.
    pub fn new_uidvalidity(&mut self, now: i64) -> u32 {
        let v = (now.clamp(1, i64::from(u32::MAX)) as u32).max(self.last_uidvalidity.saturating_add(1));
        self.last_uidvalidity = v;
        v
    }

    /// `given` (kept from an import's source) or a fresh UIDVALIDITY.
    pub fn uidvalidity_for(&mut self, given: Option<u32>, now: i64) -> u32 {
        match given.filter(|&v| v != 0) {
            Some(v) => {
                self.last_uidvalidity = self.last_uidvalidity.max(v);
                v
            }
            None => self.new_uidvalidity(now),
        }
    }

    /// Adds a mailbox entry with a new id.
    pub fn add(&mut self, name: String, uidvalidity: u32, special_use: Option<String>, noselect: bool) -> u32 {
        let id = self.next_id.max(1);
        self.next_id = id + 1;
        self.entries.push(Entry { id, uidvalidity, noselect, special_use, name });
        id
    }
}

/// A user's manifest as the store uses it: the current version in memory,
/// and which version is on disk.
pub struct ManifestCell {
    io: Rc<dyn Io>,
    /// `<user dir>/mailboxes`.
    path: PathBuf,
    state: RefCell<Manifest>,
    version: Cell<u64>,
    durable: Cell<u64>,
    /// Directories whose new entries must be synced with the next write:
    /// for a new user, the user's directory in `mail/` and `boxes/` in it.
    new_dirs: RefCell<Vec<PathBuf>>,
    /// Directories to remove once the version that dropped them is durable
    /// (a deleted mailbox's files).
    remove_after: RefCell<Vec<(u64, PathBuf)>>,
    /// The user is moving to another backend (`ringmail user move`): their
    /// files must not change while they are copied, so nothing is written,
    /// by commands, deliveries or background work, until released.
    frozen: Cell<bool>,
}

impl ManifestCell {
    /// A manifest that is on disk as it is.
    pub fn saved(io: Rc<dyn Io>, path: &Path, m: Manifest) -> Rc<ManifestCell> {
        Rc::new(ManifestCell {
            io,
            path: path.to_path_buf(),
            state: RefCell::new(m),
            version: Cell::new(1),
            durable: Cell::new(1),
            new_dirs: RefCell::new(Vec::new()),
            remove_after: RefCell::new(Vec::new()),
            frozen: Cell::new(false),
        })
    }

    /// A manifest not written yet; `new_dirs` are synced with its first write.
    pub fn unsaved(io: Rc<dyn Io>, path: &Path, m: Manifest, new_dirs: Vec<PathBuf>) -> Rc<ManifestCell> {
        let c = Self::saved(io, path, m);
        c.durable.set(0);
        *c.new_dirs.borrow_mut() = new_dirs;
        c
    }

    pub fn get(&self) -> std::cell::Ref<'_, Manifest> {
        self.state.borrow()
    }

    /// Installs a changed manifest (effective at once, durable at the next commit).
    pub fn change(&self, m: Manifest) {
        *self.state.borrow_mut() = m;
        self.version.set(self.version.get() + 1);
    }

    /// Removes `dir` once the current version is durable.
    pub fn remove_when_durable(&self, dir: PathBuf) {
        self.remove_after.borrow_mut().push((self.version.get(), dir));
    }

    pub fn is_dirty(&self) -> bool {
        self.durable.get() < self.version.get()
    }

    pub fn is_frozen(&self) -> bool {
        self.frozen.get()
    }

    pub fn set_frozen(&self, frozen: bool) {
        self.frozen.set(frozen);
    }

    /// The job that writes the current version, if it is not on disk yet.
    pub(crate) fn begin_commit(&self, sync: bool) -> Option<(Task, u64)> {
        if !self.is_dirty() {
            return None;
        }
        let bytes = self.state.borrow().encode();
        let mut jobs = vec![Job::Replace { path: self.path.clone(), content: Box::new(move || bytes), sync }];
        if sync {
            jobs.extend(self.new_dirs.borrow().iter().cloned().map(Job::SyncDir));
        }
        Some((Task(jobs), self.version.get()))
    }

    pub(crate) fn end_commit(&self, version: u64, result: &std::io::Result<()>) {
        match result {
            Ok(()) => {
                if version > self.durable.get() {
                    self.durable.set(version);
                }
                self.new_dirs.borrow_mut().clear();
                let durable = self.durable.get();
                let done: Vec<PathBuf> = {
                    let mut r = self.remove_after.borrow_mut();
                    let (now, later): (Vec<_>, Vec<_>) = r.drain(..).partition(|(v, _)| *v <= durable);
                    *r = later;
                    now.into_iter().map(|(_, d)| d).collect()
                };
                for d in done {
                    if let Err(e) = self.io.remove_dir_all(&d) {
                        tracing::warn!(dir = %d.display(), error = %e, "cannot remove a deleted mailbox's files (removed at next start)");
                    }
                }
            }
            Err(e) => tracing::error!(path = %self.path.display(), error = %e, "cannot save the list of mailboxes"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_names() {
        assert_eq!(canonical("inbox").unwrap(), "INBOX");
        assert_eq!(canonical("Inbox/Sub").unwrap(), "INBOX/Sub");
        assert_eq!(canonical("INBOXES").unwrap(), "INBOXES");
        assert_eq!(canonical("a/b/").unwrap(), "a/b");
        assert_eq!(canonical("a//b"), Err(NameError::BadComponent));
        assert_eq!(canonical("/a"), Err(NameError::BadComponent));
        assert_eq!(canonical("a*"), Err(NameError::BadCharacter));
        assert_eq!(parents("a/b/c"), vec!["a", "a/b"]);
    }

    #[test]
    fn roundtrip_and_checksum() {
        let mut m = Manifest::default();
        m.add("INBOX".into(), 5, None, false);
        m.add("Dir ectory/100% \u{e9}".into(), 6, Some("\\Sent".into()), true);
        m.subscribed.insert("Not There".into());
        let v = Some(b"note\r\n".to_vec());
        Rc::make_mut(&mut m.metadata).set(2, &[("/private/comment".into(), v)], Default::default()).unwrap();
        let bytes = m.encode();
        assert_eq!(Manifest::decode(&bytes), Some(m));
        let mut bad = bytes.clone();
        bad[30] ^= 1;
        assert_eq!(Manifest::decode(&bad), None);
    }
}
