//! Where mail lives: per user a manifest of mailboxes, per mailbox
//! memory-mapped segments, an rkyv index and a change log
//! (docs/store-format.md).
//!
//! The store never formats IMAP and never blocks on a sync: it writes, says
//! which files need syncing, and publishes what became durable. Each worker
//! owns the [`Store`] of its users (users are sharded across workers), so
//! nothing here is shared between threads.

pub mod format;
pub mod index;
pub mod io;
pub mod journal;
pub mod mailbox;
pub mod manifest;

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;

pub use self::io::{Io, MemIo, RealIo};
pub use mailbox::{AppendHandle, CommitBatch, Mailbox, Msg, Settings, StoreError};
pub use manifest::{Entry, NameError, DELIMITER};

use self::io::{read_optional, write_atomic};
use manifest::{canonical, parents, Manifest};

pub type MailboxRef = Rc<RefCell<Mailbox>>;

/// The special-use mailboxes every new user gets (RFC 6154).
pub const DEFAULT_MAILBOXES: [(&str, Option<&str>); 6] = [
    ("INBOX", None),
    ("Drafts", Some("\\Drafts")),
    ("Sent", Some("\\Sent")),
    ("Trash", Some("\\Trash")),
    ("Junk", Some("\\Junk")),
    ("Archive", Some("\\Archive")),
];

#[derive(Debug)]
pub enum MailboxError {
    NonExistent,
    /// The name is a `\Noselect` placeholder.
    NoSelect,
    AlreadyExists,
    HasChildren,
    InvalidName(NameError),
    /// INBOX cannot be deleted; a mailbox cannot move into itself.
    Forbidden(&'static str),
    Io(std::io::Error),
}

impl From<std::io::Error> for MailboxError {
    fn from(e: std::io::Error) -> Self {
        MailboxError::Io(e)
    }
}

/// Directory name for a user (names are validated, but be safe anyway).
fn user_dir_name(user: &str) -> String {
    user.bytes().map(|b| if b.is_ascii_alphanumeric() || b"._@+-".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

/// All users' mail on one worker.
pub struct Store {
    io: Rc<dyn Io>,
    root: PathBuf,
    settings: Settings,
    users: RefCell<HashMap<String, Rc<UserStore>>>,
}

/// Users kept open without sessions before idle ones are dropped.
const USERS_CACHED: usize = 20_000;

impl Store {
    pub fn new(io: Rc<dyn Io>, root: &Path, settings: Settings) -> Store {
        Store { io, root: root.to_path_buf(), settings, users: RefCell::new(HashMap::new()) }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Opens (creating on first use) a user's store.
    pub fn user(&self, name: &str, now: i64) -> std::io::Result<Rc<UserStore>> {
        if let Some(u) = self.users.borrow().get(name) {
            return Ok(u.clone());
        }
        let u = Rc::new(UserStore::open(self.io.clone(), &self.root.join(user_dir_name(name)), name, self.settings, now)?);
        let mut users = self.users.borrow_mut();
        if users.len() >= USERS_CACHED {
            users.retain(|_, u| Rc::strong_count(u) > 1);
        }
        users.insert(name.to_string(), u.clone());
        Ok(u)
    }

    /// Every open mailbox (for the background flush and compaction).
    pub fn open_mailboxes(&self) -> Vec<MailboxRef> {
        self.users.borrow().values().flat_map(|u| u.open.borrow().values().cloned().collect::<Vec<_>>()).collect()
    }
}

/// One user's mailboxes.
pub struct UserStore {
    io: Rc<dyn Io>,
    dir: PathBuf,
    name: String,
    settings: Settings,
    manifest: RefCell<Manifest>,
    open: RefCell<HashMap<u32, MailboxRef>>,
}

impl UserStore {
    pub fn open(io: Rc<dyn Io>, dir: &Path, name: &str, settings: Settings, now: i64) -> std::io::Result<UserStore> {
        io.create_dir_all(&dir.join("boxes"))?;
        let path = dir.join("mailboxes");
        let manifest = match read_optional(&*io, &path)? {
            Some(bytes) => {
                Manifest::decode(&bytes).ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{} is corrupt", path.display())))?
            }
            None => {
                let mut m = Manifest { next_id: 1, ..Default::default() };
                for (n, su) in DEFAULT_MAILBOXES {
                    let uv = m.new_uidvalidity(now);
                    let id = m.add(n.to_string(), uv, su.map(str::to_string), false);
                    Mailbox::create(io.clone(), &dir.join("boxes").join(id.to_string()), uv, settings)?;
                    m.subscribed.insert(n.to_string());
                }
                write_atomic(&*io, &path, &m.encode())?;
                m
            }
        };
        Ok(UserStore { io, dir: dir.to_path_buf(), name: name.to_string(), settings, manifest: RefCell::new(manifest), open: RefCell::new(HashMap::new()) })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn save(&self, m: &Manifest) -> std::io::Result<()> {
        write_atomic(&*self.io, &self.dir.join("mailboxes"), &m.encode())
    }

    fn box_dir(&self, id: u32) -> PathBuf {
        self.dir.join("boxes").join(id.to_string())
    }

    /// Every mailbox entry (placeholders included), INBOX first then by name.
    pub fn entries(&self) -> Vec<Entry> {
        let mut v = self.manifest.borrow().entries.clone();
        v.sort_by(|a, b| (a.name != "INBOX", &a.name).cmp(&(b.name != "INBOX", &b.name)));
        v
    }

    pub fn subscriptions(&self) -> BTreeSet<String> {
        self.manifest.borrow().subscribed.clone()
    }

    pub fn has_children(&self, name: &str) -> bool {
        self.manifest.borrow().has_children(name)
    }

    /// Opens a selectable mailbox by (canonical or client) name.
    pub fn mailbox(&self, name: &str) -> Result<MailboxRef, MailboxError> {
        let name = canonical(name).map_err(|_| MailboxError::NonExistent)?;
        let (id, uv) = {
            let m = self.manifest.borrow();
            let e = m.get(&name).ok_or(MailboxError::NonExistent)?;
            if e.noselect {
                return Err(MailboxError::NoSelect);
            }
            (e.id, e.uidvalidity)
        };
        if let Some(mb) = self.open.borrow().get(&id) {
            return Ok(mb.clone());
        }
        let mb = Rc::new(RefCell::new(Mailbox::open(self.io.clone(), &self.box_dir(id), uv, self.settings)?));
        self.open.borrow_mut().insert(id, mb.clone());
        Ok(mb)
    }

    /// CREATE (RFC 9051 6.3.4), making missing parent levels as well.
    pub fn create(&self, name: &str, now: i64) -> Result<(), MailboxError> {
        let name = canonical(name).map_err(MailboxError::InvalidName)?;
        let mut m = self.manifest.borrow().clone();
        if m.get(&name).is_some_and(|e| !e.noselect) {
            return Err(MailboxError::AlreadyExists);
        }
        let mut made = Vec::new();
        for level in parents(&name).into_iter().map(str::to_string).chain(std::iter::once(name.clone())) {
            match m.get(&level).map(|e| e.noselect) {
                Some(false) => continue,
                Some(true) => {
                    let uv = m.new_uidvalidity(now);
                    let id = m.next_id;
                    m.next_id += 1;
                    let e = m.get_mut(&level).expect("present");
                    e.noselect = false;
                    e.id = id;
                    e.uidvalidity = uv;
                    made.push((id, uv));
                }
                None => {
                    let uv = m.new_uidvalidity(now);
                    let id = m.add(level, uv, None, false);
                    made.push((id, uv));
                }
            }
        }
        for &(id, uv) in &made {
            Mailbox::create(self.io.clone(), &self.box_dir(id), uv, self.settings)?;
        }
        self.save(&m)?;
        *self.manifest.borrow_mut() = m;
        Ok(())
    }

    /// DELETE (RFC 9051 6.3.5). A mailbox with children becomes a
    /// `\Noselect` placeholder (its messages are removed); deleting a
    /// placeholder that still has children is refused with HASCHILDREN.
    pub fn delete(&self, name: &str) -> Result<(), MailboxError> {
        let name = canonical(name).map_err(|_| MailboxError::NonExistent)?;
        if name == "INBOX" {
            return Err(MailboxError::Forbidden("INBOX cannot be deleted"));
        }
        let mut m = self.manifest.borrow().clone();
        let e = m.get(&name).cloned().ok_or(MailboxError::NonExistent)?;
        if m.has_children(&name) {
            if e.noselect {
                return Err(MailboxError::HasChildren);
            }
            m.get_mut(&name).expect("present").noselect = true;
        } else {
            m.entries.retain(|x| x.name != name);
            prune_placeholders(&mut m, &name);
        }
        self.save(&m)?;
        *self.manifest.borrow_mut() = m;
        if !e.noselect {
            if let Some(mb) = self.open.borrow_mut().remove(&e.id) {
                mb.borrow_mut().mark_deleted();
            }
            self.io.remove_dir_all(&self.box_dir(e.id))?;
        }
        Ok(())
    }

    /// RENAME (RFC 9051 6.3.6), children included. Renaming INBOX moves its
    /// messages to the new name and leaves an empty INBOX.
    pub fn rename(&self, from: &str, to: &str, now: i64) -> Result<(), MailboxError> {
        let from = canonical(from).map_err(|_| MailboxError::NonExistent)?;
        let to = canonical(to).map_err(MailboxError::InvalidName)?;
        let mut m = self.manifest.borrow().clone();
        if m.get(&from).is_none_or(|e| e.noselect && from == "INBOX") {
            return Err(MailboxError::NonExistent);
        }
        if m.get(&to).is_some() || to == from {
            return Err(MailboxError::AlreadyExists);
        }
        if to.starts_with(&format!("{from}{DELIMITER}")) {
            return Err(MailboxError::Forbidden("A mailbox cannot be moved into itself"));
        }
        for p in parents(&to) {
            if m.get(p).is_none() {
                let uv = m.new_uidvalidity(now);
                let id = m.add(p.to_string(), uv, None, false);
                Mailbox::create(self.io.clone(), &self.box_dir(id), uv, self.settings)?;
            }
        }
        if from == "INBOX" {
            m.get_mut("INBOX").expect("present").name = to.clone();
            let uv = m.new_uidvalidity(now);
            let id = m.add("INBOX".to_string(), uv, None, false);
            Mailbox::create(self.io.clone(), &self.box_dir(id), uv, self.settings)?;
        } else {
            let prefix = format!("{from}{DELIMITER}");
            for e in &mut m.entries {
                if e.name == from {
                    e.name = to.clone();
                } else if let Some(rest) = e.name.strip_prefix(&prefix) {
                    e.name = format!("{to}{DELIMITER}{rest}");
                }
            }
            prune_placeholders(&mut m, &from);
        }
        self.save(&m)?;
        *self.manifest.borrow_mut() = m;
        Ok(())
    }

    pub fn subscribe(&self, name: &str) -> Result<(), MailboxError> {
        let name = canonical(name).map_err(MailboxError::InvalidName)?;
        let mut m = self.manifest.borrow().clone();
        if m.subscribed.insert(name) {
            self.save(&m)?;
            *self.manifest.borrow_mut() = m;
        }
        Ok(())
    }

    pub fn unsubscribe(&self, name: &str) -> Result<(), MailboxError> {
        let name = canonical(name).map_err(|_| MailboxError::NonExistent)?;
        let mut m = self.manifest.borrow().clone();
        if !m.subscribed.remove(&name) {
            return Err(MailboxError::NonExistent);
        }
        self.save(&m)?;
        *self.manifest.borrow_mut() = m;
        Ok(())
    }
}

/// Removes `\Noselect` ancestors of `name` that no longer have children.
fn prune_placeholders(m: &mut Manifest, name: &str) {
    for p in parents(name).into_iter().rev() {
        if m.get(p).is_some_and(|e| e.noselect) && !m.has_children(p) {
            let p = p.to_string();
            m.entries.retain(|e| e.name != p);
        } else {
            break;
        }
    }
}

#[cfg(test)]
mod tests;
