//! One mailbox on disk and in memory: its messages, flags and keywords.
//! The layout and the crash reasoning are docs/store-format.md.
//!
//! - [`recovery`]: opening, replaying the logs onto the index.
//! - [`write`]: streamed appends, flag changes, expunges, the change log.
//! - [`durability`]: group-commit hooks and checkpoints.
//! - [`reclaim`]: giving the space of expunged mail back (hole punching,
//!   compaction).
//!
//! A mailbox never formats IMAP and never waits for the disk: whatever
//! must be synced is handed out as jobs (`store::commit` runs them off the
//! worker) and what became durable is published when they finish.

pub(crate) mod derived;
pub(crate) mod durability;
pub(crate) mod key_column;
pub(crate) mod keys;
mod reclaim;
mod recovery;
pub(crate) mod write;

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;

use rustc_hash::FxHashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};

use super::format::{self, Location, RecordHeader};
use super::index::{IndexMap, Rec};
use super::io::{File, Io, Mapping};
use super::manifest::ManifestCell;
use super::uid_list::UidList;
use crate::config::SyncMode;
use crate::proto::Shared;
use crate::signal::Signal;

/// Settings every mailbox of a store shares.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub segment_size: u64,
    pub sync: SyncMode,
    /// Log records after which a checkpoint folds the log into the index.
    pub checkpoint_records: u32,
    /// Dead bytes in sealed segments before compaction copies their live
    /// messages out (see `reclaim`).
    pub compaction_min_dead: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { segment_size: 64 << 20, sync: SyncMode::Always, checkpoint_records: 4096, compaction_min_dead: 16 << 20 }
    }
}

/// The names of the keywords whose bits are set in `bits`, of a mailbox
/// whose keyword list is `all`.
pub fn keyword_names(all: &[String], bits: u64) -> Vec<String> {
    all.iter().enumerate().filter(|(i, _)| bits & (1 << i) != 0).map(|(_, k)| k.clone()).collect()
}

impl Settings {
    /// What `[store]` sets; the rest at its defaults.
    pub fn configured(c: &crate::config::StoreConfig) -> Settings {
        Settings { segment_size: c.segment_size, sync: c.sync, ..Settings::default() }
    }
}

/// UIDs in ascending order, each once.
fn sorted(uids: impl Iterator<Item = u32>) -> Vec<u32> {
    let mut v: Vec<u32> = uids.collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// A value an upper layer derived from every message of a mailbox (a SORT
/// order, THREAD's keys), kept with it (derived.rs).
#[derive(Clone)]
pub struct Derived {
    pub value: Rc<dyn std::any::Any>,
    /// The highest UID the mailbox had then (0: none): later ones came
    /// after.
    pub last_uid: u32,
    /// How many messages it had then: fewer of those now are expunges.
    pub count: usize,
    /// Brings the value up to date and gives the UIDs to save for it, at
    /// close; None for values read back from the saved file until they are
    /// used again (saved as they are).
    pub save: Option<Save>,
}

/// See [`Derived::save`].
pub type Save = Rc<dyn Fn(&Mailbox) -> Option<Rc<Uids>>>;

/// A derived value that is a list of UIDs (a SORT order, encoded threads):
/// saved with the mailbox (`derived`).
pub struct Uids(pub Vec<u32>);

/// The derived values of a mailbox, oldest first, and whether the saved
/// ones were read yet.
#[derive(Default)]
struct DerivedSet {
    entries: Vec<(Box<[u8]>, Derived)>,
    loaded: bool,
}

/// At most this many keywords per mailbox (one bit each in a u64).
pub const MAX_KEYWORDS: usize = 64;

/// See [`Mailbox::finder`].
pub struct Finder<'m> {
    msgs: &'m [Msg],
    /// Where the next search starts: no message before it is asked again.
    at: usize,
}

impl<'m> Finder<'m> {
    pub fn find(&mut self, uid: u32) -> Option<&'m Msg> {
        // The walk's usual step: the next message.
        if let Some(m) = self.msgs.get(self.at + 1).filter(|m| m.uid == uid) {
            self.at += 1;
            return Some(m);
        }
        let rest = match self.msgs.get(self.at) {
            Some(m) if m.uid <= uid => &self.msgs[self.at..],
            _ => {
                self.at = 0;
                self.msgs
            }
        };
        // Gallop: the first 1, 2, 4, ... messages until one is not below
        // `uid`, then a binary search of the last stride.
        let mut end = 1;
        while end < rest.len() && rest[end].uid < uid {
            end *= 2;
        }
        let window = &rest[end / 2..rest.len().min(end + 1)];
        let i = window.partition_point(|m| m.uid < uid);
        self.at += end / 2 + i;
        self.msgs.get(self.at).filter(|m| m.uid == uid)
    }

    /// Where in the mailbox's messages the last message found is.
    pub fn position(&self) -> usize {
        self.at
    }
}

/// A live message: the mutable part in memory, the rest in the index or
/// the appended list (`loc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Msg {
    pub uid: u32,
    pub flags: u8,
    pub keywords: u64,
    pub modseq: u64,
    loc: u32,
}

impl Msg {
    /// Where its bytes are: in the index `base` or in `appended` (`loc`).
    fn location(&self, base: Option<&IndexMap>, appended: &[Rec]) -> Location {
        if self.loc & NEW != 0 {
            appended[(self.loc & !NEW) as usize].location()
        } else {
            base.expect("index-located message without an index").data().records[self.loc as usize].location()
        }
    }
}

/// `loc` values with this bit refer to `appended`, others to the index.
const NEW: u32 = 1 << 31;

struct SegMap {
    map: Mapping,
    live: bool,
    /// Bytes the mapping reflects (its length if live, else what was written when mapped).
    valid: u64,
}

/// Where new records go: the active segment.
struct Writer {
    segment: u32,
    /// Open only while writes are pending, so idle mailboxes hold no fds.
    file: Option<Rc<dyn File>>,
    /// Next free byte.
    pos: u64,
    size: u64,
}

/// The log the mailbox appends to (`log.<generation>`).
struct Log {
    path: PathBuf,
    generation: u64,
    /// Open only while writes are pending.
    file: Option<Rc<dyn File>>,
    /// The file exists with its header.
    created: bool,
    /// End of the last whole record.
    end: u64,
    records: u32,
    /// Messages the FLAG RUNS records change: what replaying them at open
    /// costs beyond a step per record.
    weight: u64,
    /// Written since the last sync.
    dirty: bool,
    /// Blocks are reserved up to here (expunges must work on a full disk).
    reserved: u64,
}

impl Log {
    /// The log of `generation` in `dir`, not yet created on disk.
    fn fresh(dir: &Path, generation: u64) -> Log {
        Log {
            path: log_path(dir, generation),
            generation,
            file: None,
            created: false,
            end: format::LOG_HEADER,
            records: 0,
            weight: 0,
            dirty: false,
            reserved: 0,
        }
    }
}

/// A log of an earlier generation, kept until a checkpoint covers it.
struct OldLog {
    path: PathBuf,
    generation: u64,
    /// Written and not yet synced: the next commit syncs it.
    unsynced: Option<Rc<dyn File>>,
}

/// A byte range of a segment: a record with its header and padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Extent {
    segment: u32,
    start: u64,
    end: u64,
}

/// Space reserved for a message still streaming in.
struct Reservation(Extent);

/// An append whose log record is written but not yet synced.
struct Staged {
    msg: Msg,
    rec: Rec,
    seq: u64,
}

#[derive(Debug)]
pub enum StoreError {
    Io(io::Error),
    /// The disk (or the user's disk quota) is full.
    Full,
    /// The mailbox cannot take more keywords (NO [LIMIT]).
    TooManyKeywords,
    /// A sync failed earlier, or the mailbox was deleted; it refuses writes.
    Poisoned,
    /// The user's quota (RFC 9208) has no room for it: NO [OVERQUOTA].
    OverQuota,
    /// The user is moving to another backend: nothing is written here.
    Moving,
}

impl From<io::Error> for StoreError {
    fn from(e: io::Error) -> Self {
        if super::io::is_full(&e) {
            StoreError::Full
        } else {
            StoreError::Io(e)
        }
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Io(e) => write!(f, "I/O error: {e}"),
            StoreError::Full => f.write_str("no space left on the disk"),
            StoreError::TooManyKeywords => f.write_str("too many keywords in this mailbox"),
            StoreError::Poisoned => f.write_str("an earlier sync failed; mailbox is read-only until reopened"),
            StoreError::OverQuota => f.write_str("quota exceeded"),
            StoreError::Moving => f.write_str("the mailbox is moving to another server"),
        }
    }
}

pub struct Mailbox {
    io: Rc<dyn Io>,
    dir: PathBuf,
    settings: Settings,
    /// The user's list of mailboxes; committed along with this mailbox
    /// while it has unsaved changes (a new mailbox must be listed before
    /// mail in it counts as stored).
    owner: Option<Rc<ManifestCell>>,
    uidvalidity: u32,
    uidnext: u32,
    highest_modseq: u64,
    keywords: Vec<String>,
    next_segment: u32,
    base: Option<IndexMap>,
    appended: Vec<Rec>,
    msgs: Vec<Msg>,
    /// Mapped segments by number. Looked up for every message read, so
    /// keyed by FxHash: the numbers are the store's own, not a sender's.
    segments: RefCell<FxHashMap<u32, SegMap>>,
    writer: Option<Writer>,
    log: Log,
    old_logs: Vec<OldLog>,
    dirty_segments: BTreeSet<u32>,
    /// Directories with new names not yet synced.
    dirs: BTreeSet<PathBuf>,
    /// Appended, not yet durable: invisible to sessions.
    staged: Vec<Staged>,
    /// Counts log writes; a commit covers the writes up to its start.
    seq: u64,
    /// A commit batch is between `begin_commit` and `end_commit`.
    committing: bool,
    /// A checkpoint job is running.
    checkpointing: bool,
    poisoned: bool,
    version: u64,
    /// Recent expunges and flag changes, for sessions catching up.
    journal: super::journal::Journal,
    uids: RefCell<Option<UidList>>,
    /// What upper layers derived from the whole mailbox (derived.rs).
    derived: RefCell<DerivedSet>,
    /// Where the next record of the key column goes (keys.rs); 0 until
    /// the file was looked at.
    keys_end: Cell<u64>,
    /// The last sweep of the key column, and the version it is of.
    key_column: RefCell<Option<(u64, Rc<key_column::KeyColumn>)>>,
    watchers: RefCell<Vec<Weak<Signal>>>,
    /// The user's change feed and this mailbox's id in it (NOTIFY).
    feed: Option<(Rc<super::events::Feed>, u32)>,
    /// Messages with uid >= this are \Recent for the next session to claim them.
    recent_floor: Cell<u32>,
    unseen: u32,
    deleted: u32,
    size: u64,
    /// Bytes of the messages flagged \Deleted (STATUS DELETED-STORAGE).
    deleted_size: u64,
    dead_bytes: u64,
    live_bytes: u64,
    reclaim: Reclaim,
    removed: bool,
}

pub type MailboxRef = Rc<RefCell<Mailbox>>;

/// Giving space back: hole punching and compaction (see `reclaim.rs`).
#[derive(Default)]
struct Reclaim {
    /// Appends streaming into reserved space.
    inflight: Vec<Weak<Reservation>>,
    /// Expunged records whose expunge is not yet durable: (log seq, extent).
    pending: Vec<(u64, Extent)>,
    /// Segments that may have dead space to give back.
    candidates: BTreeSet<u32>,
    /// The file system cannot punch holes; rely on compaction.
    unsupported: bool,
    /// Compaction in progress.
    compaction: Option<Compaction>,
    /// Segments whose messages compaction moved, deleted once an index
    /// recording the move is durable. Never punched meanwhile: the durable
    /// index still points into them.
    protected: BTreeSet<u32>,
    /// Of `protected`, those waiting for the next checkpoint to start.
    compacted: Vec<u32>,
    /// Something other than log growth wants a checkpoint (a rebuild).
    checkpoint_wanted: bool,
    /// Housekeeping rounds to skip compaction after it failed (a full disk).
    pause: u32,
    /// A reader met a cache record an older build wrote (`Mailbox::cache`):
    /// the next compaction rewrites every such record.
    outdated_seen: Cell<bool>,
    /// Segments whose cache records a rewrite replaced (their messages
    /// stay): protected until an index recording the new records is
    /// durable, then looked at for dead space.
    rewritten: Vec<u32>,
}

/// Progress of a compaction between slices.
struct Compaction {
    /// Sealed segments being emptied: their messages are copied whole.
    old: BTreeSet<u32>,
    /// Started for outdated caches alone: no segment is emptied, only
    /// cache records of older versions are made again from their message.
    caches_only: bool,
    next_uid: u32,
    /// Copies made so far: live, though no message points at them yet.
    moved: Vec<(u32, Location)>,
    /// Segments holding cache records replaced so far.
    replaced: BTreeSet<u32>,
}

fn seg_path(dir: &Path, n: u32) -> PathBuf {
    dir.join("segments").join(format!("{n:08}.seg"))
}

fn log_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("log.{generation}"))
}

fn io_err(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// The extents of a message's records (message, then cache).
fn extents(l: &Location) -> impl Iterator<Item = Extent> {
    let msg = Extent { segment: l.segment, start: l.offset - format::RECORD_HEADER, end: format::align8(l.offset + l.length) };
    let cache = (l.cache_segment != 0).then(|| Extent {
        segment: l.cache_segment,
        start: l.cache_offset - format::RECORD_HEADER,
        end: format::align8(l.cache_offset + u64::from(l.cache_length)),
    });
    std::iter::once(msg).chain(cache)
}

impl Mailbox {
    /// A new, empty mailbox (nothing is written until something is stored).
    pub fn create(io: Rc<dyn Io>, dir: &Path, uidvalidity: u32, settings: Settings) -> io::Result<Mailbox> {
        Self::open(io, dir, uidvalidity, settings)
    }

    /// The mailbox's directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The user's manifest this mailbox is listed in.
    pub fn owner(&self) -> Option<&Rc<ManifestCell>> {
        self.owner.as_ref()
    }

    pub fn set_owner(&mut self, owner: Rc<ManifestCell>) {
        self.owner = Some(owner);
    }

    /// Tells `feed` of this mailbox's message changes, as mailbox `id`.
    pub fn set_feed(&mut self, feed: Rc<super::events::Feed>, id: u32) {
        self.feed = Some((feed, id));
    }

    /// Tells the user's listening sessions what happened (`events::NEW`,
    /// `EXPUNGE`, `FLAGS`).
    fn tell(&self, what: u8) {
        if let Some((feed, id)) = &self.feed {
            feed.post(|| super::events::Change::Messages { mailbox: *id, what });
        }
    }

    fn count(&mut self, m: &Msg, l: &Location, sign: i64) {
        self.count_flags(m.flags, l.length, sign);
        let span = RecordHeader::span(l.length) + RecordHeader::span(u64::from(l.cache_length));
        if sign > 0 {
            self.size += l.length;
            self.live_bytes += span;
        } else {
            self.size -= l.length;
            self.live_bytes -= span;
        }
    }

    /// The counts that follow a message's flags (\Seen, \Deleted and the
    /// bytes of the deleted), for a message of `length` bytes with `flags`
    /// coming (`sign` 1) or going (-1). A flag change is the old flags
    /// going and the new ones coming, the length needed only if \Deleted
    /// changed.
    fn count_flags(&mut self, flags: u8, length: u64, sign: i64) {
        let add = |v: &mut u32, c: bool| {
            if c {
                *v = (*v as i64 + sign) as u32;
            }
        };
        add(&mut self.unseen, flags & format::F_SEEN == 0);
        add(&mut self.deleted, flags & format::F_DELETED != 0);
        if flags & format::F_DELETED != 0 {
            if sign > 0 {
                self.deleted_size += length;
            } else {
                self.deleted_size -= length;
            }
        }
    }

    // ----- reading -------------------------------------------------------

    pub fn uidvalidity(&self) -> u32 {
        self.uidvalidity
    }

    /// UIDNEXT as sessions may see it: no UID below it can still appear.
    pub fn uidnext(&self) -> u32 {
        self.staged.first().map(|s| s.msg.uid).unwrap_or(self.uidnext)
    }

    pub fn highest_modseq(&self) -> u64 {
        self.highest_modseq
    }

    pub fn exists(&self) -> u32 {
        self.msgs.len() as u32
    }

    pub fn unseen(&self) -> u32 {
        self.unseen
    }

    pub fn deleted(&self) -> u32 {
        self.deleted
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes an EXPUNGE would remove (RFC 9208 4.1.4, DELETED-STORAGE).
    pub fn deleted_size(&self) -> u64 {
        self.deleted_size
    }

    /// Messages appended but not yet committed, and their bytes.
    pub(crate) fn staged_totals(&self) -> (u64, u64) {
        (self.staged.len() as u64, self.staged.iter().map(|s| s.rec.location().length).sum())
    }

    /// Bumped by every change sessions can see.
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn keywords(&self) -> &[String] {
        &self.keywords
    }

    /// UIDs expunged after `version` (None: ask [`uids`](Self::uids) instead).
    pub fn expunged_since(&self, version: u64) -> Option<impl Iterator<Item = u32> + '_> {
        self.journal.expunged_since(version)
    }

    /// UIDs expunged with a modseq above `modseq` (QRESYNC), ascending;
    /// None: the history does not reach back that far (see `journal`).
    pub fn expunged_after_modseq(&self, modseq: u64) -> Option<Vec<u32>> {
        self.journal.expunged_after_modseq(modseq).map(sorted)
    }

    /// UIDs whose flags changed, or that arrived, after `modseq`,
    /// ascending, but for changes at modseqs the asker says it `knows`
    /// of (a session's own STOREs); None: scan [`msgs`](Self::msgs) instead.
    pub fn flags_changed_since(&self, modseq: u64, known: impl Fn(u64) -> bool) -> Option<Vec<u32>> {
        self.journal.flags_since(modseq, known).map(sorted)
    }

    pub fn msgs(&self) -> &[Msg] {
        &self.msgs
    }

    /// The visible UIDs in order, shared between sessions (arrivals extend
    /// the list, an expunge makes it anew).
    pub fn uids(&self) -> UidList {
        let mut c = self.uids.borrow_mut();
        c.get_or_insert_with(|| self.msgs.iter().map(|m| m.uid).collect()).clone()
    }

    pub fn find(&self, uid: u32) -> Option<&Msg> {
        self.msgs.binary_search_by_key(&uid, |m| m.uid).ok().map(|i| &self.msgs[i])
    }

    /// Finds messages by UIDs asked for in ascending order (a search, a
    /// sort, a sequence set): each search starts where the last one ended
    /// and gallops, so a walk over the whole mailbox costs a step per
    /// message instead of a binary search over a table bigger than the
    /// CPU's caches. A UID below the last one asked is still found.
    pub fn finder(&self) -> Finder<'_> {
        Finder { msgs: &self.msgs, at: 0 }
    }

    /// `find` as a `finder` does it, for a walk that spans calls (a command
    /// sent in slices): the search starts at position `at`, where the walk
    /// found its last message, and leaves there the position of this one.
    /// The mailbox may have changed in between: a UID before `at` is still
    /// found.
    pub fn find_from(&self, uid: u32, at: &mut usize) -> Option<&Msg> {
        let mut f = Finder { msgs: &self.msgs, at: *at };
        let m = f.find(uid);
        *at = f.position();
        m
    }

    /// Where a message's bytes are; read in place from the index mapping.
    pub fn location(&self, m: &Msg) -> Location {
        m.location(self.base.as_ref(), &self.appended)
    }

    /// Bytes of a segment region, shared from the mapping.
    fn bytes(&self, segment: u32, offset: u64, len: u64) -> io::Result<Shared> {
        let end = offset.checked_add(len).ok_or_else(|| io_err("region overflows"))?;
        let mut segs = self.segments.borrow_mut();
        if let Some(s) = segs.get(&segment).filter(|s| end <= s.valid) {
            return Ok(Shared::new(s.map.clone(), offset as usize, len as usize));
        }
        let f = self.io.open(&seg_path(&self.dir, segment), super::io::OpenMode::Existing)?;
        // SAFETY: a segment's records are written once into reserved
        // space and never rewritten; it is deleted or punched only where
        // no record refers (reclaim.rs), and never truncated.
        let (map, live) = unsafe { f.map() }?;
        let valid = (*map).as_ref().len() as u64;
        let s = segs.entry(segment).insert_entry(SegMap { map, live, valid }).into_mut();
        if end > s.valid {
            return Err(io_err(format!("segment {segment} is shorter than a record in it")));
        }
        Ok(Shared::new(s.map.clone(), offset as usize, len as usize))
    }

    /// The message's bytes, straight from the mapped segment.
    pub fn message(&self, m: &Msg) -> io::Result<Shared> {
        let l = self.location(m);
        self.bytes(l.segment, l.offset, l.length)
    }

    /// Where `m`'s cache record is, without reading a byte of it (what
    /// `cache` checks first would wait for memory): for asking the CPU for
    /// it ahead of use.
    pub fn cache_unread(&self, m: &Msg) -> io::Result<Shared> {
        let l = self.location(m);
        match l.cache_segment {
            0 => Ok(Shared::from_vec(Vec::new())),
            s => self.bytes(s, l.cache_offset, u64::from(l.cache_length)),
        }
    }

    /// The message's MIME cache record (see `crate::mime`). One an older
    /// build wrote (or none) is noted, and rewritten in the background.
    pub fn cache(&self, m: &Msg) -> io::Result<Shared> {
        let cache = self.cache_unread(m)?;
        self.note_cache(&cache);
        Ok(cache)
    }

    /// Notes a cache record `cache_unread` gave, once read: one an older
    /// build wrote is rewritten in the background.
    pub fn note_cache(&self, cache: &Shared) {
        if !crate::mime::Cache::is_current(cache.bytes()) {
            self.reclaim.outdated_seen.set(true);
        }
    }

    /// When the message was saved into this mailbox (RFC 8514): the date
    /// in its cache record's header. Messages stored before ringmail kept
    /// it have their INTERNALDATE, the nearest thing known.
    pub fn save_date(&self, m: &Msg) -> io::Result<i64> {
        let l = self.location(m);
        if l.cache_segment == 0 || l.cache_offset < format::RECORD_HEADER {
            return Ok(l.internal_date);
        }
        let raw = self.bytes(l.cache_segment, l.cache_offset - format::RECORD_HEADER, format::RECORD_HEADER)?;
        Ok(RecordHeader::decode(raw.bytes()).map(|h| h.internal_date).filter(|&d| d != 0).unwrap_or(l.internal_date))
    }

    /// Claims the \Recent messages for a session (RFC 3501 2.3.2): returns the
    /// first UID that is recent for it; later arrivals are claimed by `claim_recent`.
    pub fn claim_recent(&self) -> u32 {
        let floor = self.recent_floor.get();
        self.recent_floor.set(self.uidnext().max(floor));
        floor
    }

    /// The first UID no session has claimed as \Recent.
    pub fn recent_floor(&self) -> u32 {
        self.recent_floor.get()
    }

    /// Messages no session has claimed as \Recent yet (STATUS RECENT).
    pub fn unclaimed_recent(&self) -> u32 {
        let floor = self.recent_floor.get();
        (self.msgs.len() - self.msgs.partition_point(|m| m.uid < floor)) as u32
    }

    /// Claims newly visible messages (uid >= from) as recent; returns whether
    /// the caller got them.
    pub fn claim_recent_from(&self, from: u32) -> bool {
        if self.recent_floor.get() <= from {
            self.recent_floor.set(self.uidnext().max(from));
            true
        } else {
            false
        }
    }

    // ----- change notification -----------------------------------------

    /// The mailbox was deleted; sessions that have it selected must leave.
    pub fn mark_deleted(&mut self) {
        self.removed = true;
        self.poisoned = true;
        self.changed();
    }

    pub fn is_deleted(&self) -> bool {
        self.removed
    }

    /// A sync failed: the mailbox takes no more writes; the store opens it
    /// afresh (recovering from disk) for the next session that wants it.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    pub fn watch(&self, s: &Rc<Signal>) {
        let mut w = self.watchers.borrow_mut();
        w.retain(|x| x.strong_count() > 0);
        if !w.iter().any(|x| x.upgrade().is_some_and(|x| Rc::ptr_eq(&x, s))) {
            w.push(Rc::downgrade(s));
        }
    }

    pub fn unwatch(&self, s: &Rc<Signal>) {
        self.watchers.borrow_mut().retain(|x| x.upgrade().is_some_and(|x| !Rc::ptr_eq(&x, s)));
    }

    /// The set of messages changed: a new version, and sessions are woken.
    fn changed(&mut self) {
        self.version += 1;
        self.notify();
    }

    /// Wakes the sessions watching (flag changes need no new version:
    /// sessions notice them by HIGHESTMODSEQ).
    fn notify(&self) {
        let mut w = self.watchers.borrow_mut();
        w.retain(|x| match x.upgrade() {
            Some(s) => {
                s.fire();
                true
            }
            None => false,
        });
    }

    fn check_writable(&self) -> Result<(), StoreError> {
        if self.poisoned {
            Err(StoreError::Poisoned)
        } else if self.is_frozen() {
            Err(StoreError::Moving)
        } else {
            Ok(())
        }
    }

    /// Nothing of the mailbox is waiting to be written or being written:
    /// its files are what a reader will find.
    pub fn is_settled(&self) -> bool {
        !self.is_dirty() && !self.committing && !self.checkpointing
    }

    /// Whether the owner is moving to another backend (see
    /// [`ManifestCell::is_frozen`]): no writes, no background work.
    pub fn is_frozen(&self) -> bool {
        self.owner.as_ref().is_some_and(|o| o.is_frozen())
    }

    /// Stops taking writes after a failure the mailbox cannot recover from
    /// in memory (a failed sync: the kernel may have dropped the pages).
    fn poison(&mut self, why: &dyn std::fmt::Display) {
        if !self.poisoned {
            tracing::error!(dir = %self.dir.display(), error = %why, "mailbox refuses writes until it is reopened");
        }
        self.poisoned = true;
        // Never published: their waiters are told the commit failed.
        self.staged.clear();
        self.notify();
    }
}

#[cfg(test)]
mod tests;
