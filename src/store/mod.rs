//! Where mail lives: per user a manifest of mailboxes, per mailbox
//! memory-mapped segments, an rkyv index and change logs
//! (docs/store-format.md).
//!
//! The store owns durability. Changes take effect in memory at once and
//! are written (not synced) on the worker; [`Committer`] turns "tell me when
//! this is durable" into shared syncs that run off the worker thread, and
//! [`Store::housekeep`] carries out the rest of the policy: syncing what
//! nobody waits for, checkpoints, giving expunged space back, compaction.
//! The store never formats IMAP and never blocks on a sync. Each worker
//! owns the [`Store`] of its users (users are sharded across workers), so
//! nothing here is shared between threads.

pub mod commit;
pub mod events;
pub mod exec;
pub mod format;
pub mod index;
pub mod io;
pub mod journal;
pub mod mailbox;
pub mod manifest;
pub mod metadata;
pub mod quota;
pub mod uid_list;

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::rc::Rc;

pub use self::commit::{Committer, Target, Ticket};
pub use self::exec::{Deferred, Spawner};
pub use self::io::{Io, MemIo, ReadOnlyIo, RealIo};
pub use mailbox::durability::{CheckpointJob, CommitBatch};
pub use mailbox::key_column::KeyColumn;
pub use mailbox::keys::KeyWriter;
pub use mailbox::write::{AppendHandle, Copied};
pub use mailbox::{keyword_names, Derived, Finder, Mailbox, MailboxRef, Msg, Save, Settings, StoreError, Uids};
pub use manifest::{Entry, ManifestCell, NameError, DELIMITER};
pub use quota::{Claim, Usage};
pub use uid_list::UidList;

use self::io::read_optional;
use manifest::{canonical, parents, Manifest};
use metadata::{Depth, SPECIAL_USE};

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
    /// The user is moving to another backend: nothing is written here.
    Moving,
    Io(std::io::Error),
}

impl From<std::io::Error> for MailboxError {
    fn from(e: std::io::Error) -> Self {
        MailboxError::Io(e)
    }
}

/// Directory name for a user (names are validated, but be safe anyway).
pub fn user_dir_name(user: &str) -> String {
    user.bytes().map(|b| if b.is_ascii_alphanumeric() || b"._@+-".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

/// The users open on one worker, by name.
type UserMap = RefCell<HashMap<String, Rc<UserStore>>>;
type Users = Rc<UserMap>;

/// All users' mail on one worker.
pub struct Store {
    io: Rc<dyn Io>,
    root: PathBuf,
    settings: Settings,
    users: Users,
    committer: Rc<Committer>,
    /// Each user's quota limits (unlimited without one).
    quota_limits: Option<QuotaSource>,
    /// Tasks spawned by the committer when no runtime was given.
    deferred: Option<Deferred>,
    /// Users held for a move to another backend: not opened, not written.
    held: RefCell<std::collections::HashSet<String>>,
}

/// A user's quota limits by name.
pub type QuotaSource = Rc<dyn Fn(&str) -> crate::config::QuotaLimits>;

/// Users kept open without sessions before idle ones are dropped.
const USERS_CACHED: usize = 20_000;

impl Store {
    /// A store whose background tasks (group commits, checkpoints) run on
    /// the caller's runtime through `spawn`.
    pub fn with_spawner(io: Rc<dyn Io>, root: &Path, settings: Settings, spawn: Spawner) -> Store {
        let committer = Committer::new(io.clone(), settings.sync == crate::config::SyncMode::Always, spawn);
        Store { io, root: root.to_path_buf(), settings, users: Users::default(), committer, quota_limits: None, deferred: None, held: RefCell::default() }
    }

    /// A store without a runtime (tests, command-line tools): background
    /// tasks run when [`Store::run_pending`] is called.
    pub fn new(io: Rc<dyn Io>, root: &Path, settings: Settings) -> Store {
        let d = Deferred::default();
        let mut s = Self::with_spawner(io, root, settings, d.spawner());
        s.deferred = Some(d);
        s
    }

    /// Runs the commits and checkpoints spawned so far (stores made with
    /// [`Store::new`]).
    pub fn run_pending(&self) {
        if let Some(d) = &self.deferred {
            d.run();
        }
    }

    /// Waits for `f` on this thread, running the store's background tasks
    /// meanwhile (stores made with [`Store::new`]).
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        match &self.deferred {
            Some(d) => d.block_on(f),
            None => exec::block_on(f),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn committer(&self) -> &Rc<Committer> {
        &self.committer
    }

    /// A ticket for everything written to `target` so far.
    pub fn durable(&self, target: Target) -> Ticket {
        self.committer.durable(target)
    }

    /// Where users' quota limits come from (looked up at every
    /// [`Store::user`], so a changed passwd-file counts at the next login
    /// or delivery).
    pub fn set_quota_source(&mut self, source: QuotaSource) {
        self.quota_limits = Some(source);
    }

    /// What a user's mail counts against their quota, without creating
    /// anything for a user who has no mail yet.
    pub fn user_usage(&self, name: &str, now: i64) -> std::io::Result<quota::Usage> {
        if !self.io.exists(&self.root.join(user_dir_name(name))) {
            return Ok(quota::Usage::default());
        }
        self.user(name, now)?.quota_usage()
    }

    /// Opens (creating on first use) a user's store.
    pub fn user(&self, name: &str, now: i64) -> std::io::Result<Rc<UserStore>> {
        if self.is_held(name) {
            return Err(std::io::Error::new(std::io::ErrorKind::ResourceBusy, "the user is moving to another server"));
        }
        let cached = self.users.borrow().get(name).cloned();
        let u = match cached {
            Some(u) => u,
            None => {
                let mut u = UserStore::open(self.io.clone(), &self.root, &user_dir_name(name), name, self.settings, now, self.committer.clone())?;
                u.neighbours = Rc::downgrade(&self.users);
                let u = Rc::new(u);
                let mut users = self.users.borrow_mut();
                if users.len() >= USERS_CACHED {
                    users.retain(|_, u| Rc::strong_count(u) > 1 || u.manifest.is_dirty());
                }
                users.insert(name.to_string(), u.clone());
                u
            }
        };
        if let Some(source) = &self.quota_limits {
            u.set_quota_limits(source(name));
        }
        Ok(u)
    }

    /// Holds a user for a move to another backend: their store is not
    /// opened again and what is open takes no writes (commands get
    /// [`StoreError::Moving`]) and no background work. What was written
    /// before still commits; [`Store::settled`] says when that is done.
    pub fn hold(&self, name: &str) {
        self.held.borrow_mut().insert(name.to_string());
        if let Some(u) = self.users.borrow().get(name) {
            u.manifest.set_frozen(true);
        }
    }

    /// Ends a hold: the user is served here again.
    pub fn release(&self, name: &str) {
        self.held.borrow_mut().remove(name);
        if let Some(u) = self.users.borrow().get(name) {
            u.manifest.set_frozen(false);
        }
    }

    pub fn is_held(&self, name: &str) -> bool {
        let held = self.held.borrow();
        !held.is_empty() && held.contains(name)
    }

    /// Whether everything written to a held user's store is on disk, with
    /// no commit or checkpoint under way: their files can be copied.
    pub fn settled(&self, name: &str) -> bool {
        let Some(u) = self.users.borrow().get(name).cloned() else { return true };
        !u.manifest.is_dirty() && u.open.borrow().values().all(|mb| mb.borrow().is_settled())
    }

    /// Commits for everything written to `name`'s store so far.
    pub fn durable_user(&self, name: &str) -> Vec<Ticket> {
        let Some(u) = self.users.borrow().get(name).cloned() else { return Vec::new() };
        let mut t = vec![u.manifest_durable()];
        t.extend(u.open.borrow().values().map(|mb| self.durable(Target::Mailbox(mb.clone()))));
        t
    }

    /// Drops a user's open store from memory (their files are about to be
    /// removed or replaced: the user lives on another backend now).
    pub fn forget(&self, name: &str) {
        if let Some(u) = self.users.borrow_mut().remove(name) {
            for mb in u.open.borrow().values() {
                mb.borrow_mut().mark_deleted();
            }
        }
    }

    /// The directory of a user's store.
    pub fn user_dir(&self, name: &str) -> PathBuf {
        self.root.join(user_dir_name(name))
    }

    /// Every open mailbox (for the background work and shutdown).
    pub fn open_mailboxes(&self) -> Vec<MailboxRef> {
        self.users.borrow().values().flat_map(|u| u.open.borrow().values().cloned().collect::<Vec<_>>()).collect()
    }

    /// One round of background work: syncs what nobody waits for (a
    /// session that went away before its commit), starts checkpoints,
    /// gives expunged space back, compacts in slices (calling `pause`
    /// between them so the worker keeps serving), and lets go of mailboxes
    /// a failed sync poisoned so the next session reopens them from disk.
    pub async fn housekeep<F: Future<Output = ()>>(&self, pause: impl Fn() -> F) {
        /// Compaction slices per mailbox per round; the rest waits.
        const SLICES: usize = 64;
        /// Segments looked at for dead space per mailbox per round: each
        /// round walks the mailbox's messages once, so a mailbox whose every
        /// segment is a candidate (after a restart) takes few rounds.
        const RECLAIM_SEGMENTS: usize = 128;
        let users: Vec<Rc<UserStore>> = self.users.borrow().values().cloned().collect();
        let mut tickets = Vec::new();
        for u in &users {
            u.open.borrow_mut().retain(|_, mb| !mb.borrow().is_poisoned());
            if u.manifest.is_dirty() {
                tickets.push(self.durable(Target::Manifest(u.manifest.clone())));
            }
        }
        let mailboxes = self.open_mailboxes();
        for mb in &mailboxes {
            if mb.borrow().is_dirty() {
                tickets.push(self.durable(Target::Mailbox(mb.clone())));
            }
        }
        for t in tickets {
            let _ = t.await;
        }
        for mb in &mailboxes {
            self.committer.checkpoint_if_needed(mb);
            if mb.borrow().wants_reclaim() {
                mb.borrow_mut().reclaim_space(RECLAIM_SEGMENTS);
            }
            if mb.borrow_mut().compaction_due() {
                for _ in 0..SLICES {
                    let r = mb.borrow_mut().compact_step(4 << 20);
                    match r {
                        Ok(true) => {
                            self.committer.checkpoint_if_needed(mb);
                            break;
                        }
                        Ok(false) => pause().await,
                        Err(StoreError::Moving) => break,
                        Err(e) => {
                            tracing::error!(error = %e, "compaction failed; retrying in a minute");
                            mb.borrow_mut().compaction_failed();
                            break;
                        }
                    }
                }
            }
        }
    }

    /// Syncs and checkpoints every open mailbox now, on this thread (at
    /// shutdown, when no session is left to serve).
    pub fn close(&self) {
        // Not through the committer: its task needs the runtime this thread
        // would be blocked in.
        let sync = self.settings.sync == crate::config::SyncMode::Always;
        for u in self.users.borrow().values() {
            if let Some((task, version)) = u.manifest.begin_commit(sync) {
                let r = exec::block_on(self.io.run(vec![task])).pop().unwrap_or(Ok(()));
                u.manifest.end_commit(version, &r);
            }
        }
        for mb in self.open_mailboxes() {
            let mut m = mb.borrow_mut();
            if m.is_poisoned() || m.is_frozen() {
                continue;
            }
            if let Err(e) = m.checkpoint() {
                tracing::error!(error = %e, "final checkpoint failed");
                continue;
            }
            if let Err(e) = m.save_derived() {
                tracing::warn!(error = %e, "saving SORT orders failed; they will be computed again");
            }
        }
    }
}

/// One user's mailboxes.
pub struct UserStore {
    io: Rc<dyn Io>,
    dir: PathBuf,
    name: String,
    settings: Settings,
    manifest: Rc<ManifestCell>,
    open: RefCell<HashMap<u32, MailboxRef>>,
    committer: Rc<Committer>,
    ledger: quota::Ledger,
    /// What changed, for sessions that asked (NOTIFY).
    feed: Rc<events::Feed>,
    /// The other users open on this worker (see [`UserStore::peer`]).
    neighbours: std::rc::Weak<UserMap>,
}

impl UserStore {
    /// Opens the user directory `<root>/<dir_name>`, creating a user's
    /// default mailboxes on first use (saved with the first commit).
    pub fn open(io: Rc<dyn Io>, root: &Path, dir_name: &str, name: &str, settings: Settings, now: i64, committer: Rc<Committer>) -> std::io::Result<UserStore> {
        let dir = root.join(dir_name);
        let mut new_dirs = Vec::new();
        if !io.exists(&dir) {
            new_dirs.push(root.to_path_buf());
        }
        if !io.exists(&dir.join("boxes")) {
            new_dirs.push(dir.clone());
        }
        io.create_dir_all(&dir.join("boxes"))?;
        let path = dir.join("mailboxes");
        let manifest = match read_optional(&*io, &path)? {
            Some(bytes) => ManifestCell::saved(
                io.clone(),
                &path,
                Manifest::decode(&bytes).ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{} is corrupt", path.display())))?,
            ),
            None => {
                let mut m = Manifest { next_id: 1, ..Default::default() };
                for (n, su) in DEFAULT_MAILBOXES {
                    let uv = m.new_uidvalidity(now);
                    m.add(n.to_string(), uv, su.map(str::to_string), false);
                    m.subscribed.insert(n.to_string());
                }
                new_dirs.push(dir.clone());
                ManifestCell::unsaved(io.clone(), &path, m, new_dirs)
            }
        };
        let u = UserStore {
            io,
            dir,
            name: name.to_string(),
            settings,
            manifest,
            open: RefCell::new(HashMap::new()),
            committer,
            ledger: Default::default(),
            feed: Default::default(),
            neighbours: Default::default(),
        };
        u.remove_orphans();
        Ok(u)
    }

    /// Mailbox directories the manifest does not list: left by a DELETE
    /// whose removal did not finish, or by a CREATE a crash undid.
    fn remove_orphans(&self) {
        let Ok(names) = self.io.read_dir(&self.dir.join("boxes")) else { return };
        let listed: BTreeSet<u32> = self.manifest.get().entries.iter().filter(|e| !e.noselect).map(|e| e.id).collect();
        for n in names {
            match n.parse::<u32>() {
                Ok(id) if !listed.contains(&id) => {
                    if let Err(e) = self.io.remove_dir_all(&self.box_dir(id)) {
                        tracing::warn!(user = self.name, id, error = %e, "cannot remove an unlisted mailbox directory");
                    }
                }
                _ => {}
            }
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn box_dir(&self, id: u32) -> PathBuf {
        self.dir.join("boxes").join(id.to_string())
    }

    pub fn quota_limits(&self) -> crate::config::QuotaLimits {
        self.ledger.limits()
    }

    /// Sets the user's limits (from the user database, on every open).
    pub fn set_quota_limits(&self, limits: crate::config::QuotaLimits) {
        self.ledger.set_limits(limits);
    }

    /// What the user's mailboxes hold now (see `quota.rs`).
    pub fn quota_usage(&self) -> std::io::Result<quota::Usage> {
        let boxes: Vec<(u32, u32)> = self.manifest.get().entries.iter().filter(|e| !e.noselect).map(|e| (e.id, e.uidvalidity)).collect();
        self.ledger.usage(
            boxes.into_iter(),
            |id| self.open.borrow().get(&id).map(|mb| mb.borrow().quota_usage()),
            |id, uidvalidity| {
                let dir = self.box_dir(id);
                if !self.io.exists(&dir) {
                    return Ok(quota::Usage::default());
                }
                Ok(Mailbox::open(self.io.clone(), &dir, uidvalidity, self.settings)?.quota_usage())
            },
        )
    }

    /// Claims room for `messages` more messages of `bytes` in all, or
    /// refuses with [`StoreError::OverQuota`] if they would not fit beside
    /// what is stored and claimed. Nothing is read for a user without limits.
    pub fn claim(&self, messages: u64, bytes: u64) -> Result<quota::Claim, StoreError> {
        self.ledger.claim(quota::Usage { messages, bytes }, || self.quota_usage())
    }

    /// A ticket for the user's list of mailboxes (after CREATE, DELETE,
    /// RENAME, SUBSCRIBE, UNSUBSCRIBE).
    pub fn manifest_durable(&self) -> Ticket {
        self.committer.durable(Target::Manifest(self.manifest.clone()))
    }

    /// A ticket for everything written to `mb` so far.
    pub fn durable(&self, mb: &MailboxRef) -> Ticket {
        self.committer.durable(Target::Mailbox(mb.clone()))
    }

    /// Every mailbox entry (placeholders included), INBOX first then by name.
    pub fn entries(&self) -> Vec<Entry> {
        let mut v = self.manifest.get().entries.clone();
        v.sort_by(|a, b| (a.name != "INBOX", &a.name).cmp(&(b.name != "INBOX", &b.name)));
        v
    }

    pub fn subscriptions(&self) -> BTreeSet<String> {
        self.manifest.get().subscribed.clone()
    }

    pub fn has_children(&self, name: &str) -> bool {
        self.manifest.get().has_children(name)
    }

    /// Opens a selectable mailbox by (canonical or client) name.
    pub fn mailbox(&self, name: &str) -> Result<MailboxRef, MailboxError> {
        let name = canonical(name).map_err(|_| MailboxError::NonExistent)?;
        let (id, uv) = {
            let m = self.manifest.get();
            let e = m.get(&name).ok_or(MailboxError::NonExistent)?;
            if e.noselect {
                return Err(MailboxError::NoSelect);
            }
            (e.id, e.uidvalidity)
        };
        if let Some(mb) = self.open.borrow().get(&id) {
            if !mb.borrow().is_poisoned() {
                return Ok(mb.clone());
            }
        }
        let mut mb = Mailbox::open(self.io.clone(), &self.box_dir(id), uv, self.settings)?;
        mb.set_owner(self.manifest.clone());
        mb.set_feed(self.feed.clone(), id);
        let mb = Rc::new(RefCell::new(mb));
        self.open.borrow_mut().insert(id, mb.clone());
        self.ledger.opened(id);
        Ok(mb)
    }

    /// CREATE (RFC 9051 6.3.4), making missing parent levels as well.
    /// In memory at once; durable with [`UserStore::manifest_durable`].
    /// `special_use` (RFC 6154) is given to the mailbox itself, not to
    /// parents made along the way.
    pub fn create(&self, name: &str, special_use: Option<&str>, now: i64) -> Result<(), MailboxError> {
        self.create_with(name, special_use, None, now)
    }

    /// CREATE with the mailbox's UIDVALIDITY given (`ringmail import` keeps
    /// the source's) or, with None, a fresh one.
    pub fn create_with(&self, name: &str, special_use: Option<&str>, uidvalidity: Option<u32>, now: i64) -> Result<(), MailboxError> {
        self.check_writable()?;
        let name = canonical(name).map_err(MailboxError::InvalidName)?;
        let mut m = self.manifest.get().clone();
        if m.get(&name).is_some_and(|e| !e.noselect) {
            return Err(MailboxError::AlreadyExists);
        }
        // The levels made here, each told to NOTIFY listeners.
        let mut made = Vec::new();
        for level in parents(&name).into_iter().map(str::to_string).chain(std::iter::once(name.clone())) {
            match m.get(&level).map(|e| e.noselect) {
                Some(false) => continue,
                Some(true) => {
                    let uv = m.uidvalidity_for(uidvalidity.filter(|_| level == name), now);
                    let id = m.next_id;
                    m.next_id += 1;
                    let old = m.get(&level).expect("present").id;
                    Rc::make_mut(&mut m.metadata).remove_owner(old);
                    let use_here = (level == name).then(|| special_use.map(str::to_string)).flatten();
                    let e = m.get_mut(&level).expect("present");
                    e.noselect = false;
                    e.id = id;
                    e.uidvalidity = uv;
                    e.special_use = use_here;
                }
                None => {
                    let uv = m.uidvalidity_for(uidvalidity.filter(|_| level == name), now);
                    let use_here = (level == name).then(|| special_use.map(str::to_string)).flatten();
                    m.add(level.clone(), uv, use_here, false);
                }
            }
            made.push(level);
        }
        self.manifest.change(m);
        for n in made {
            self.feed.post(|| events::Change::Created(n));
        }
        Ok(())
    }

    /// Gives a mailbox that never held a message (UIDNEXT 1: the INBOX
    /// made for a new user, say) the UIDVALIDITY `uidvalidity`, so that an
    /// import can keep its source's. The mailbox starts over in a new
    /// directory, like a DELETE and CREATE: a session that has it selected
    /// sees it deleted. Refused (false) for a mailbox that has used UIDs.
    pub fn adopt_uidvalidity(&self, name: &str, uidvalidity: u32) -> Result<bool, MailboxError> {
        self.check_writable()?;
        let mb = self.mailbox(name)?;
        if mb.borrow().uidvalidity() == uidvalidity {
            return Ok(true);
        }
        if mb.borrow().uidnext() != 1 || uidvalidity == 0 {
            return Ok(false);
        }
        let name = canonical(name).map_err(|_| MailboxError::NonExistent)?;
        let mut m = self.manifest.get().clone();
        let id = m.next_id;
        m.next_id += 1;
        let uv = m.uidvalidity_for(Some(uidvalidity), 0);
        let e = m.get_mut(&name).ok_or(MailboxError::NonExistent)?;
        let old = std::mem::replace(&mut e.id, id);
        e.uidvalidity = uv;
        Rc::make_mut(&mut m.metadata).remove_owner(old);
        m.urlauth_keys.remove(&old);
        self.manifest.change(m);
        if let Some(mb) = self.open.borrow_mut().remove(&old) {
            mb.borrow_mut().mark_deleted();
        }
        self.manifest.remove_when_durable(self.box_dir(old));
        Ok(true)
    }

    /// The URLAUTH key (RFC 4467) of the mailbox with id `id`; a new
    /// random one if it has none and `make` (durable with
    /// [`UserStore::manifest_durable`]).
    pub fn urlauth_key(&self, id: u32, make: bool) -> Option<[u8; 32]> {
        if let Some(k) = self.manifest.get().urlauth_keys.get(&id) {
            return Some(*k);
        }
        if !make || self.manifest.is_frozen() {
            return None;
        }
        let key = self.io.new_key();
        let mut m = self.manifest.get().clone();
        m.urlauth_keys.insert(id, key);
        self.manifest.change(m);
        Some(key)
    }

    /// RESETKEY (RFC 4467 6.2): forgets the URLAUTH key of the mailbox
    /// with id `id`, or of every mailbox; URLs made with it stop working.
    pub fn reset_urlauth_keys(&self, id: Option<u32>) {
        if self.manifest.is_frozen() {
            return;
        }
        let mut m = self.manifest.get().clone();
        let changed = match id {
            Some(id) => m.urlauth_keys.remove(&id).is_some(),
            None => !std::mem::take(&mut m.urlauth_keys).is_empty(),
        };
        if changed {
            self.manifest.change(m);
        }
    }

    /// Refuses changes while the user is held for a move.
    fn check_writable(&self) -> Result<(), MailboxError> {
        match self.manifest.is_frozen() {
            true => Err(MailboxError::Moving),
            false => Ok(()),
        }
    }

    /// Another user's store, to read what they shared with URLAUTH (RFC
    /// 4467): theirs if it is open on this worker, else what is on disk,
    /// opened read-only (their own worker may be writing it).
    pub fn peer(&self, name: &str) -> std::io::Result<Rc<UserStore>> {
        if let Some(u) = self.neighbours.upgrade().and_then(|m| m.borrow().get(name).cloned()) {
            return Ok(u);
        }
        let root = self.dir.parent().ok_or_else(|| std::io::Error::other("no store root"))?;
        let dir = user_dir_name(name);
        if !root.join(&dir).join("mailboxes").exists() {
            return Err(std::io::ErrorKind::NotFound.into());
        }
        let io: Rc<dyn Io> = Rc::new(ReadOnlyIo);
        Ok(Rc::new(UserStore::open(io, root, &dir, name, self.settings, 0, self.committer.clone())?))
    }

    /// Listens to what changes in this user's store from now on (NOTIFY,
    /// RFC 5465), woken through `signal`.
    pub fn listen(&self, signal: Rc<crate::signal::Signal>) -> Rc<events::Listener> {
        self.feed.listen(signal)
    }

    /// The mailbox (or placeholder) called `name` (canonical).
    pub fn entry(&self, name: &str) -> Option<Entry> {
        self.manifest.get().get(name).cloned()
    }

    pub fn is_subscribed(&self, name: &str) -> bool {
        self.manifest.get().subscribed.contains(name)
    }

    /// The name of the mailbox with this id (ids are what
    /// [`events::Change`] names mailboxes by, so they survive RENAME).
    pub fn name_of(&self, id: u32) -> Option<String> {
        self.manifest.get().entries.iter().find(|e| e.id == id).map(|e| e.name.clone())
    }

    /// DELETE (RFC 9051 6.3.5). A mailbox with children becomes a
    /// `\Noselect` placeholder (its messages are removed); deleting a
    /// placeholder that still has children is refused with HASCHILDREN.
    /// The files go once the change is durable.
    pub fn delete(&self, name: &str) -> Result<(), MailboxError> {
        self.check_writable()?;
        let name = canonical(name).map_err(|_| MailboxError::NonExistent)?;
        if name == "INBOX" {
            return Err(MailboxError::Forbidden("INBOX cannot be deleted"));
        }
        let mut m = self.manifest.get().clone();
        let e = m.get(&name).cloned().ok_or(MailboxError::NonExistent)?;
        // RFC 5464 4.1: a deleted mailbox's annotations go with it, also
        // when it stays as a placeholder; so does its URLAUTH key.
        Rc::make_mut(&mut m.metadata).remove_owner(e.id);
        m.urlauth_keys.remove(&e.id);
        if m.has_children(&name) {
            if e.noselect {
                return Err(MailboxError::HasChildren);
            }
            m.get_mut(&name).expect("present").noselect = true;
        } else {
            m.entries.retain(|x| x.name != name);
            prune_placeholders(&mut m, &name);
        }
        self.manifest.change(m);
        if !e.noselect {
            if let Some(mb) = self.open.borrow_mut().remove(&e.id) {
                mb.borrow_mut().mark_deleted();
            }
            self.manifest.remove_when_durable(self.box_dir(e.id));
        }
        self.feed.post(|| events::Change::Deleted(name));
        Ok(())
    }

    /// RENAME (RFC 9051 6.3.6), children included. Renaming INBOX moves its
    /// messages to the new name and leaves an empty INBOX.
    pub fn rename(&self, from: &str, to: &str, now: i64) -> Result<(), MailboxError> {
        self.check_writable()?;
        let from = canonical(from).map_err(|_| MailboxError::NonExistent)?;
        let to = canonical(to).map_err(MailboxError::InvalidName)?;
        let mut m = self.manifest.get().clone();
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
                m.add(p.to_string(), uv, None, false);
            }
        }
        if from == "INBOX" {
            m.get_mut("INBOX").expect("present").name = to.clone();
            let uv = m.new_uidvalidity(now);
            m.add("INBOX".to_string(), uv, None, false);
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
        self.manifest.change(m);
        self.feed.post(|| events::Change::Renamed { from, to });
        Ok(())
    }

    /// The MAILBOXID (RFC 8474 4) of `name`: the user's name and the
    /// mailbox's id and UIDVALIDITY, hashed. RENAME keeps it; a mailbox
    /// made again under the same name gets another.
    pub fn mailbox_id(&self, name: &str) -> Option<String> {
        let name = canonical(name).ok()?;
        let m = self.manifest.get();
        let e = m.get(&name)?;
        let key = format!("{}\0{}\0{}", self.name, e.id, e.uidvalidity);
        Some(format!("F{:032x}", xxhash_rust::xxh3::xxh3_128(key.as_bytes())))
    }

    /// Whose annotations `mailbox` names (RFC 5464 4.2: "" is the
    /// server's); NonExistent if no such mailbox.
    pub fn metadata_owner(&self, mailbox: &str) -> Result<u32, MailboxError> {
        if mailbox.is_empty() {
            return Ok(metadata::SERVER);
        }
        let name = canonical(mailbox).map_err(|_| MailboxError::NonExistent)?;
        self.manifest.get().get(&name).map(|e| e.id).ok_or(MailboxError::NonExistent)
    }

    /// `entry` of `owner` to `depth` (RFC 5464 4.2), with a mailbox's
    /// special use as `/private/specialuse` (RFC 6154 4) where the request
    /// reaches it.
    pub fn metadata(&self, owner: u32, entry: &str, depth: Depth) -> Vec<(String, Vec<u8>)> {
        let m = self.manifest.get();
        let mut v: Vec<(String, Vec<u8>)> = m.metadata.get(owner, entry, depth).into_iter().map(|(k, v)| (k.to_string(), v.to_vec())).collect();
        if let Some(su) = m.entries.iter().find(|e| e.id == owner && owner != metadata::SERVER).and_then(|e| e.special_use.as_ref()) {
            if metadata::reaches(entry, depth, SPECIAL_USE) {
                v.push((SPECIAL_USE.to_string(), su.clone().into_bytes()));
                v.sort();
            }
        }
        v
    }

    /// SETMETADATA (RFC 5464 4.3) for `owner`, all or nothing; in memory at
    /// once, durable with [`UserStore::manifest_durable`]. A mailbox's
    /// `/private/specialuse` sets its special use, which the caller has
    /// checked; empty or NIL removes it.
    pub fn set_metadata(&self, owner: u32, changes: &[(String, Option<Vec<u8>>)], limits: metadata::Limits) -> Result<(), metadata::SetError> {
        if self.manifest.is_frozen() {
            return Err(metadata::SetError::Moving);
        }
        let mut m = self.manifest.get().clone();
        let (special, stored): (Vec<_>, Vec<_>) = changes.iter().cloned().partition(|(k, _)| owner != metadata::SERVER && k == SPECIAL_USE);
        Rc::make_mut(&mut m.metadata).set(owner, &stored, limits)?;
        if let (Some((_, value)), Some(e)) = (special.last(), m.entries.iter_mut().find(|e| e.id == owner)) {
            e.special_use = value.as_ref().and_then(|v| String::from_utf8(v.clone()).ok()).filter(|s| !s.is_empty());
        }
        self.manifest.change(m);
        self.feed.post(|| events::Change::Metadata { owner, entries: changes.iter().map(|(k, _)| k.clone()).collect() });
        Ok(())
    }

    pub fn subscribe(&self, name: &str) -> Result<(), MailboxError> {
        self.check_writable()?;
        let name = canonical(name).map_err(MailboxError::InvalidName)?;
        let mut m = self.manifest.get().clone();
        if m.subscribed.insert(name.clone()) {
            self.manifest.change(m);
            self.feed.post(|| events::Change::Subscription(name, true));
        }
        Ok(())
    }

    pub fn unsubscribe(&self, name: &str) -> Result<(), MailboxError> {
        self.check_writable()?;
        let name = canonical(name).map_err(|_| MailboxError::NonExistent)?;
        let mut m = self.manifest.get().clone();
        if !m.subscribed.remove(&name) {
            return Err(MailboxError::NonExistent);
        }
        self.manifest.change(m);
        self.feed.post(|| events::Change::Subscription(name, false));
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
mod model_tests;
#[cfg(test)]
mod tests;
