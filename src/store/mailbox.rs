//! One mailbox on disk and in memory: its messages, flags and keywords,
//! recovery on open, streamed appends, group-commit hooks, checkpoints and
//! compaction. The layout is docs/store-format.md.
//!
//! A mailbox never formats IMAP and never waits: syncing is split into
//! [`Mailbox::begin_commit`] (which files need it) and
//! [`Mailbox::end_commit`] (publish what became durable), so the caller can
//! sync on another thread and batch many appends into one sync.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};

use super::format::{self, Location, LogRecord, RecordHeader};
use super::index::{self, IndexData, IndexMap, Rec};
use super::io::{File, Io, Mapping, OpenMode};
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
}

impl Default for Settings {
    fn default() -> Self {
        Settings { segment_size: 64 << 20, sync: SyncMode::Always, checkpoint_records: 4096 }
    }
}

/// At most this many keywords per mailbox (one bit each in a u64).
pub const MAX_KEYWORDS: usize = 64;

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
    /// A copy with other flags (for reporting a change).
    pub fn with_flags(self, flags: u8, keywords: u64, modseq: u64) -> Msg {
        Msg { flags, keywords, modseq, ..self }
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

struct Writer {
    segment: u32,
    /// Open only while writes are pending, so idle mailboxes hold no fds.
    file: Option<Rc<dyn File>>,
    /// Next free byte.
    pos: u64,
    size: u64,
}

/// A message being streamed into a segment.
pub struct AppendHandle {
    segment: u32,
    file: Rc<dyn File>,
    /// Record start.
    offset: u64,
    len: u64,
    written: u64,
    crc: u32,
}

impl AppendHandle {
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn written(&self) -> u64 {
        self.written
    }
}

#[derive(Debug)]
pub enum StoreError {
    Io(io::Error),
    /// The mailbox cannot take more keywords (NO [LIMIT]).
    TooManyKeywords,
    /// A sync failed earlier; the mailbox refuses writes until reopened.
    Poisoned,
}

impl From<io::Error> for StoreError {
    fn from(e: io::Error) -> Self {
        StoreError::Io(e)
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Io(e) => write!(f, "I/O error: {e}"),
            StoreError::TooManyKeywords => f.write_str("too many keywords in this mailbox"),
            StoreError::Poisoned => f.write_str("an earlier sync failed; mailbox is read-only until reopened"),
        }
    }
}

/// Files a commit must sync, and which staged appends it covers: those
/// below this UID (another commit may publish some of them first, e.g. the
/// one that ends a compaction; counting by UID keeps that safe).
pub struct CommitBatch {
    pub files: Vec<Rc<dyn File>>,
    below_uid: u32,
}

pub struct Mailbox {
    io: Rc<dyn Io>,
    dir: PathBuf,
    settings: Settings,
    uidvalidity: u32,
    uidnext: u32,
    highest_modseq: u64,
    keywords: Vec<String>,
    generation: u64,
    next_segment: u32,
    base: Option<IndexMap>,
    appended: Vec<Rec>,
    msgs: Vec<Msg>,
    segments: RefCell<HashMap<u32, SegMap>>,
    writer: Option<Writer>,
    log: Option<(Rc<dyn File>, u64)>,
    log_end: u64,
    log_records: u32,
    dirty_segments: BTreeSet<u32>,
    log_dirty: bool,
    /// Appended, not yet durable: invisible to sessions.
    staged: Vec<(Msg, Rec)>,
    poisoned: bool,
    version: u64,
    /// Recent expunges and flag changes, for sessions catching up.
    journal: super::journal::Journal,
    uids: RefCell<Option<Rc<[u32]>>>,
    watchers: RefCell<Vec<Weak<Signal>>>,
    /// Messages with uid >= this are \Recent for the next session to claim them.
    recent_floor: Cell<u32>,
    unseen: u32,
    deleted: u32,
    size: u64,
    dead_bytes: u64,
    live_bytes: u64,
    compaction: Option<Compaction>,
    removed: bool,
}

fn seg_path(dir: &Path, n: u32) -> PathBuf {
    dir.join("segments").join(format!("{n:08}.seg"))
}

fn io_err(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

impl Mailbox {
    /// Creates the files of a new, empty mailbox.
    pub fn create(io: Rc<dyn Io>, dir: &Path, uidvalidity: u32, settings: Settings) -> io::Result<Mailbox> {
        io.create_dir_all(&dir.join("segments"))?;
        let log = io.open(&dir.join("log"), OpenMode::Truncate)?;
        log.write_at(&format::log_header(uidvalidity, 0), 0)?;
        log.sync()?;
        io.sync_dir(dir)?;
        Self::open(io, dir, uidvalidity, settings)
    }

    /// Opens a mailbox, recovering from whatever a crash left (see the
    /// format document, "Opening a mailbox").
    pub fn open(io: Rc<dyn Io>, dir: &Path, uidvalidity: u32, settings: Settings) -> io::Result<Mailbox> {
        io.create_dir_all(&dir.join("segments"))?;
        let mut mb = Mailbox {
            io: io.clone(),
            dir: dir.to_path_buf(),
            settings,
            uidvalidity,
            uidnext: 1,
            highest_modseq: 1,
            keywords: Vec::new(),
            generation: 0,
            next_segment: 1,
            base: None,
            appended: Vec::new(),
            msgs: Vec::new(),
            segments: RefCell::new(HashMap::new()),
            writer: None,
            log: None,
            log_end: format::LOG_HEADER,
            log_records: 0,
            dirty_segments: BTreeSet::new(),
            log_dirty: false,
            staged: Vec::new(),
            poisoned: false,
            version: 0,
            journal: Default::default(),
            uids: RefCell::new(None),
            watchers: RefCell::new(Vec::new()),
            recent_floor: Cell::new(1),
            unseen: 0,
            deleted: 0,
            size: 0,
            dead_bytes: 0,
            live_bytes: 0,
            compaction: None,
            removed: false,
        };
        let index_path = dir.join("index");
        let mut rebuilt = false;
        if io.exists(&index_path) {
            let f = io.open(&index_path, OpenMode::Existing)?;
            let (map, _) = f.map()?;
            match IndexMap::open(map) {
                Some(ix) => mb.load_index(ix),
                None => {
                    tracing::error!(dir = %dir.display(), "index is corrupt; rebuilding from segments");
                    mb.rebuild_from_segments()?;
                    rebuilt = true;
                }
            }
        } else if !io.exists(&dir.join("log")) && !io.read_dir(&dir.join("segments"))?.is_empty() {
            tracing::error!(dir = %dir.display(), "index and log missing; rebuilding from segments");
            mb.rebuild_from_segments()?;
            rebuilt = true;
        }
        mb.replay_log()?;
        mb.place_writer()?;
        mb.remove_orphan_segments()?;
        mb.recount();
        mb.recent_floor.set(mb.uidnext);
        if rebuilt {
            mb.checkpoint()?;
        }
        mb.journal = super::journal::Journal::starting_at(mb.version, mb.highest_modseq);
        Ok(mb)
    }

    fn load_index(&mut self, ix: IndexMap) {
        let d = ix.data();
        if d.uidvalidity.to_native() != self.uidvalidity {
            tracing::warn!(dir = %self.dir.display(), "index UIDVALIDITY differs from the manifest; the index wins");
            self.uidvalidity = d.uidvalidity.to_native();
        }
        self.uidnext = d.uidnext.to_native();
        self.highest_modseq = d.highest_modseq.to_native();
        self.generation = d.generation.to_native();
        self.next_segment = d.next_segment.to_native();
        self.keywords = d.keywords.iter().map(|k| k.as_str().to_string()).collect();
        self.msgs = d
            .records
            .iter()
            .enumerate()
            .map(|(i, r)| Msg { uid: r.uid.to_native(), flags: r.flags, keywords: r.keywords.to_native(), modseq: r.modseq.to_native(), loc: i as u32 })
            .collect();
        self.base = Some(ix);
    }

    /// Disaster recovery: message bytes and dates from segment record
    /// headers; flags are lost except what the log still has.
    fn rebuild_from_segments(&mut self) -> io::Result<()> {
        let mut names = self.io.read_dir(&self.dir.join("segments"))?;
        names.sort();
        let mut msgs: HashMap<u32, Rec> = HashMap::new();
        let mut caches: HashMap<u32, (u32, u64, u32)> = HashMap::new();
        for name in names {
            let Some(n) = name.strip_suffix(".seg").and_then(|s| s.parse::<u32>().ok()) else { continue };
            let f = self.io.open(&seg_path(&self.dir, n), OpenMode::Existing)?;
            let bytes = f.read_all()?;
            if let Some(uv) = bytes.get(16..20) {
                if format::check_segment_header(&bytes).is_some() {
                    self.uidvalidity = u32::from_le_bytes(uv.try_into().expect("4 bytes"));
                }
            }
            self.next_segment = self.next_segment.max(n + 1);
            let mut at = format::SEGMENT_HEADER as usize;
            while at + format::RECORD_HEADER as usize <= bytes.len() {
                let Some(h) = RecordHeader::decode(&bytes[at..]) else {
                    at += 8;
                    continue;
                };
                let start = at + format::RECORD_HEADER as usize;
                let Some(end) = usize::try_from(h.len).ok().and_then(|l| start.checked_add(l)).filter(|&e| e <= bytes.len()) else {
                    at += 8;
                    continue;
                };
                if format::crc(&bytes[start..end]) == h.payload_crc {
                    match h.kind {
                        format::KIND_MESSAGE => {
                            let loc = Location {
                                segment: n,
                                offset: start as u64,
                                length: h.len,
                                internal_date: h.internal_date,
                                crc: h.payload_crc,
                                ..Default::default()
                            };
                            msgs.insert(h.uid, Rec::new(h.uid, loc, 0, 0, 1));
                        }
                        format::KIND_CACHE => {
                            caches.insert(h.uid, (n, start as u64, h.len as u32));
                        }
                        _ => {}
                    }
                    at = format::align8(end as u64) as usize;
                } else {
                    at += 8;
                }
            }
        }
        let mut recs: Vec<Rec> = msgs.into_values().collect();
        recs.sort_by_key(|r| r.uid);
        for r in &mut recs {
            if let Some(&(s, o, l)) = caches.get(&r.uid) {
                r.cache_segment = s;
                r.cache_offset = o;
                r.cache_length = l;
            }
        }
        self.uidnext = recs.last().map(|r| r.uid + 1).unwrap_or(1);
        self.msgs = recs.iter().enumerate().map(|(i, r)| Msg { uid: r.uid, flags: r.flags, keywords: 0, modseq: 1, loc: i as u32 | NEW }).collect();
        self.appended = recs;
        // Whatever log there is belongs to a lost index generation; replay it
        // as a continuation (its records are idempotent).
        self.generation = u64::MAX;
        Ok(())
    }

    /// Replays the log onto the checkpoint and cuts it after the last good record.
    fn replay_log(&mut self) -> io::Result<()> {
        let path = self.dir.join("log");
        let file = self.io.open(&path, OpenMode::Create)?;
        let bytes = file.read_all()?;
        let header = format::check_log_header(&bytes);
        let usable = match header {
            Some((_, gen)) if self.generation == u64::MAX => {
                self.generation = gen;
                true
            }
            Some((_, gen)) if gen >= self.generation => {
                self.generation = gen;
                true
            }
            _ => false,
        };
        if self.generation == u64::MAX {
            self.generation = 0;
        }
        let mut end = format::LOG_HEADER as usize;
        if usable {
            while let Some((rec, n)) = LogRecord::decode(&bytes[end..]) {
                if !self.apply(&rec)? {
                    tracing::warn!(dir = %self.dir.display(), offset = end, "log record points at damaged data; cutting the log there");
                    break;
                }
                end += n;
                self.log_records += 1;
            }
        }
        if !usable || end < bytes.len() {
            if usable {
                file.set_len(end as u64)?;
            } else {
                file.set_len(0)?;
                file.write_at(&format::log_header(self.uidvalidity, self.generation), 0)?;
                end = format::LOG_HEADER as usize;
            }
            file.sync()?;
            self.io.sync_dir(&self.dir)?;
        }
        self.log_end = end as u64;
        Ok(())
    }

    /// Applies one replayed record. Returns false when an APPEND points at
    /// bytes that do not match its checksum (the append never completed).
    fn apply(&mut self, rec: &LogRecord) -> io::Result<bool> {
        match rec {
            LogRecord::Append { uid, loc, flags, keywords, modseq } => {
                if *uid < self.uidnext {
                    return Ok(true);
                }
                match self.bytes(loc.segment, loc.offset, loc.length) {
                    Ok(b) if format::crc(b.bytes()) == loc.crc => {}
                    _ => return Ok(false),
                }
                self.appended.push(Rec::new(*uid, *loc, *flags, *keywords, *modseq));
                self.msgs.push(Msg { uid: *uid, flags: *flags, keywords: *keywords, modseq: *modseq, loc: (self.appended.len() - 1) as u32 | NEW });
                self.uidnext = uid + 1;
                self.highest_modseq = self.highest_modseq.max(*modseq);
            }
            LogRecord::Flags { uid, flags, keywords, modseq } => {
                if let Ok(i) = self.msgs.binary_search_by_key(uid, |m| m.uid) {
                    let m = &mut self.msgs[i];
                    if *modseq > m.modseq {
                        m.flags = *flags;
                        m.keywords = *keywords;
                        m.modseq = *modseq;
                    }
                }
                self.highest_modseq = self.highest_modseq.max(*modseq);
            }
            LogRecord::Expunge { uid, modseq } => {
                if let Ok(i) = self.msgs.binary_search_by_key(uid, |m| m.uid) {
                    self.msgs.remove(i);
                }
                self.highest_modseq = self.highest_modseq.max(*modseq);
            }
            LogRecord::Keyword { index, name } => {
                let i = *index as usize;
                if i == self.keywords.len() {
                    self.keywords.push(name.clone());
                } else if self.keywords.get(i) != Some(name) {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Points the writer after the last byte any record of the newest segment uses.
    fn place_writer(&mut self) -> io::Result<()> {
        let mut last: Option<(u32, u64)> = None;
        let mut bump = |seg: u32, end: u64| {
            if seg == 0 {
                return;
            }
            match last {
                Some((s, e)) if s > seg || (s == seg && e >= end) => {}
                _ => last = Some((seg, end)),
            }
        };
        for m in &self.msgs {
            let l = self.location(m);
            bump(l.segment, format::align8(l.offset + l.length));
            bump(l.cache_segment, format::align8(l.cache_offset + u64::from(l.cache_length)));
        }
        if let Some((seg, end)) = last {
            self.next_segment = self.next_segment.max(seg + 1);
            let path = seg_path(&self.dir, seg);
            if self.io.exists(&path) {
                let file = self.io.open(&path, OpenMode::Existing)?;
                let size = file.len()?;
                if end < size {
                    self.writer = Some(Writer { segment: seg, file: Some(file), pos: end, size });
                }
            }
        }
        Ok(())
    }

    /// Segment files no message refers to (left by compaction or by appends
    /// that never completed) are deleted.
    fn remove_orphan_segments(&mut self) -> io::Result<()> {
        let used: BTreeSet<u32> = self
            .msgs
            .iter()
            .flat_map(|m| {
                let l = self.location(m);
                [l.segment, l.cache_segment]
            })
            .collect();
        let active = self.writer.as_ref().map(|w| w.segment);
        let mut removed = false;
        for name in self.io.read_dir(&self.dir.join("segments"))? {
            let Some(n) = name.strip_suffix(".seg").and_then(|s| s.parse::<u32>().ok()) else { continue };
            if !used.contains(&n) && Some(n) != active {
                self.io.remove_file(&seg_path(&self.dir, n))?;
                removed = true;
            }
            self.next_segment = self.next_segment.max(n + 1);
        }
        if removed {
            self.io.sync_dir(&self.dir.join("segments"))?;
        }
        Ok(())
    }

    fn recount(&mut self) {
        self.unseen = 0;
        self.deleted = 0;
        self.size = 0;
        self.live_bytes = 0;
        for i in 0..self.msgs.len() {
            let m = self.msgs[i];
            let l = self.location(&m);
            self.count(&m, &l, 1);
        }
    }

    fn count(&mut self, m: &Msg, l: &Location, sign: i64) {
        let add = |v: &mut u32, c: bool| {
            if c {
                *v = (*v as i64 + sign) as u32;
            }
        };
        add(&mut self.unseen, m.flags & format::F_SEEN == 0);
        add(&mut self.deleted, m.flags & format::F_DELETED != 0);
        let span = RecordHeader::span(l.length) + RecordHeader::span(u64::from(l.cache_length));
        if sign > 0 {
            self.size += l.length;
            self.live_bytes += span;
        } else {
            self.size -= l.length;
            self.live_bytes -= span;
        }
    }

    // ----- reading -------------------------------------------------------

    pub fn uidvalidity(&self) -> u32 {
        self.uidvalidity
    }

    /// UIDNEXT as sessions may see it: no UID below it can still appear.
    pub fn uidnext(&self) -> u32 {
        self.staged.first().map(|(m, _)| m.uid).unwrap_or(self.uidnext)
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

    /// UIDs whose flags changed after `modseq`, possibly repeated (None:
    /// scan [`msgs`](Self::msgs) instead).
    pub fn flags_changed_since(&self, modseq: u64) -> Option<impl Iterator<Item = u32> + '_> {
        self.journal.flags_since(modseq)
    }

    pub fn msgs(&self) -> &[Msg] {
        &self.msgs
    }

    /// The visible UIDs in order, shared between sessions until they change.
    pub fn uids(&self) -> Rc<[u32]> {
        let mut c = self.uids.borrow_mut();
        c.get_or_insert_with(|| self.msgs.iter().map(|m| m.uid).collect()).clone()
    }

    pub fn find(&self, uid: u32) -> Option<&Msg> {
        self.msgs.binary_search_by_key(&uid, |m| m.uid).ok().map(|i| &self.msgs[i])
    }

    /// Where a message's bytes are; read in place from the index mapping.
    pub fn location(&self, m: &Msg) -> Location {
        if m.loc & NEW != 0 {
            self.appended[(m.loc & !NEW) as usize].location()
        } else {
            self.base.as_ref().expect("index-located message without an index").data().records[m.loc as usize].location()
        }
    }

    /// Bytes of a segment region, shared from the mapping.
    fn bytes(&self, segment: u32, offset: u64, len: u64) -> io::Result<Shared> {
        let end = offset.checked_add(len).ok_or_else(|| io_err("region overflows"))?;
        let mut segs = self.segments.borrow_mut();
        let stale = match segs.get(&segment) {
            Some(s) => end > s.valid,
            None => true,
        };
        if stale {
            let f = self.io.open(&seg_path(&self.dir, segment), OpenMode::Existing)?;
            let (map, live) = f.map()?;
            let valid = (*map).as_ref().len() as u64;
            segs.insert(segment, SegMap { map, live, valid });
        }
        let s = &segs[&segment];
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

    /// The message's MIME cache record (see `crate::mime`).
    pub fn cache(&self, m: &Msg) -> io::Result<Shared> {
        let l = self.location(m);
        if l.cache_segment == 0 {
            return Ok(Shared::from_vec(Vec::new()));
        }
        self.bytes(l.cache_segment, l.cache_offset, u64::from(l.cache_length))
    }

    /// Claims the \Recent messages for a session (RFC 3501 2.3.2): returns the
    /// first UID that is recent for it; later arrivals are claimed by `claim_recent`.
    pub fn claim_recent(&self) -> u32 {
        let floor = self.recent_floor.get();
        self.recent_floor.set(self.uidnext().max(floor));
        floor
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
        *self.uids.borrow_mut() = None;
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

    // ----- writing -------------------------------------------------------

    fn check_writable(&self) -> Result<(), StoreError> {
        if self.poisoned {
            Err(StoreError::Poisoned)
        } else {
            Ok(())
        }
    }

    /// Space for a record of `span` bytes: in the active segment if it fits,
    /// in a new segment otherwise.
    fn reserve(&mut self, span: u64) -> io::Result<(u32, Rc<dyn File>, u64)> {
        let fits = self.writer.as_ref().is_some_and(|w| w.pos + span <= w.size);
        if !fits {
            let n = self.next_segment;
            let size = self.settings.segment_size.max(format::SEGMENT_HEADER + span);
            let path = seg_path(&self.dir, n);
            let file = self.io.open(&path, OpenMode::Truncate)?;
            file.set_len(size)?;
            file.write_at(&format::segment_header(n, self.uidvalidity), 0)?;
            file.sync()?;
            self.io.sync_dir(&self.dir.join("segments"))?;
            self.next_segment = n + 1;
            self.writer = Some(Writer { segment: n, file: Some(file), pos: format::SEGMENT_HEADER, size });
        }
        let (io, dir) = (self.io.clone(), self.dir.clone());
        let w = self.writer.as_mut().expect("writer just ensured");
        if w.file.is_none() {
            w.file = Some(io.open(&seg_path(&dir, w.segment), OpenMode::Existing)?);
        }
        let at = w.pos;
        w.pos += span;
        let (segment, file) = (w.segment, w.file.clone().expect("opened above"));
        self.dirty_segments.insert(segment);
        self.wrote(segment);
        Ok((segment, file, at))
    }

    /// Forgets a snapshot mapping of a segment that was written to, so the
    /// next read maps it again (live mappings see writes by themselves).
    fn wrote(&self, segment: u32) {
        let mut segs = self.segments.borrow_mut();
        if segs.get(&segment).is_some_and(|s| !s.live) {
            segs.remove(&segment);
        }
    }

    /// Reserves space for a message of `len` bytes that will be streamed in.
    pub fn begin_append(&mut self, len: u64) -> Result<AppendHandle, StoreError> {
        self.check_writable()?;
        let (segment, file, offset) = self.reserve(RecordHeader::span(len))?;
        Ok(AppendHandle { segment, file, offset, len, written: 0, crc: 0 })
    }

    /// Writes the next bytes of a streamed message.
    pub fn append_chunk(&mut self, h: &mut AppendHandle, data: &[u8]) -> Result<(), StoreError> {
        self.check_writable()?;
        if h.written + data.len() as u64 > h.len {
            return Err(io_err("more message bytes than announced").into());
        }
        h.file.write_at(data, h.offset + format::RECORD_HEADER + h.written)?;
        self.wrote(h.segment);
        h.crc = crc32c::crc32c_append(h.crc, data);
        h.written += data.len() as u64;
        Ok(())
    }

    /// Completes a streamed message: header, MIME cache, log record. The
    /// message gets its UID now but stays invisible until the next commit.
    pub fn finish_append(&mut self, h: AppendHandle, flags: u8, keywords: u64, internal_date: i64) -> Result<u32, StoreError> {
        self.check_writable()?;
        if h.written != h.len {
            return Err(io_err("message shorter than announced").into());
        }
        let uid = self.uidnext;
        let header = RecordHeader { kind: format::KIND_MESSAGE, uid, payload_crc: h.crc, len: h.len, internal_date };
        h.file.write_at(&header.encode(), h.offset)?;
        self.wrote(h.segment);
        let offset = h.offset + format::RECORD_HEADER;
        let blob = {
            let bytes = self.bytes(h.segment, offset, h.len)?;
            crate::mime::analyze(bytes.bytes())
        };
        let (cseg, cfile, coff) = self.reserve(RecordHeader::span(blob.len() as u64))?;
        let ch = RecordHeader { kind: format::KIND_CACHE, uid, payload_crc: format::crc(&blob), len: blob.len() as u64, internal_date: 0 };
        let mut rec_bytes = ch.encode().to_vec();
        rec_bytes.extend_from_slice(&blob);
        cfile.write_at(&rec_bytes, coff)?;
        self.wrote(cseg);
        let loc = Location {
            segment: h.segment,
            offset,
            length: h.len,
            internal_date,
            cache_segment: cseg,
            cache_offset: coff + format::RECORD_HEADER,
            cache_length: blob.len() as u32,
            crc: h.crc,
        };
        self.highest_modseq += 1;
        let modseq = self.highest_modseq;
        self.log_write(&LogRecord::Append { uid, loc, flags, keywords, modseq })?;
        self.uidnext = uid + 1;
        let rec = Rec::new(uid, loc, flags, keywords, modseq);
        self.staged.push((Msg { uid, flags, keywords, modseq, loc: 0 }, rec));
        if self.settings.sync == SyncMode::Never {
            let n = self.staged.len();
            self.publish(n);
        }
        Ok(uid)
    }

    /// Stores a whole message at once (COPY, delivery, tests).
    pub fn append_bytes(&mut self, data: &[u8], flags: u8, keywords: u64, internal_date: i64) -> Result<u32, StoreError> {
        let mut h = self.begin_append(data.len() as u64)?;
        self.append_chunk(&mut h, data)?;
        self.finish_append(h, flags, keywords, internal_date)
    }

    fn log_write(&mut self, rec: &LogRecord) -> io::Result<()> {
        if self.log.is_none() {
            let f = self.io.open(&self.dir.join("log"), OpenMode::Existing)?;
            self.log = Some((f, self.log_end));
        }
        let mut buf = Vec::with_capacity(96);
        rec.encode(&mut buf);
        let (f, pos) = self.log.as_mut().expect("log just opened");
        f.write_at(&buf, *pos)?;
        *pos += buf.len() as u64;
        self.log_end = *pos;
        self.log_dirty = true;
        self.log_records += 1;
        Ok(())
    }

    /// Index of a keyword, defining it (durably logged) when `create` is set.
    pub fn keyword(&mut self, name: &str, create: bool) -> Result<Option<u8>, StoreError> {
        if let Some(i) = self.keywords.iter().position(|k| k.eq_ignore_ascii_case(name)) {
            return Ok(Some(i as u8));
        }
        if !create {
            return Ok(None);
        }
        self.check_writable()?;
        if self.keywords.len() >= MAX_KEYWORDS {
            return Err(StoreError::TooManyKeywords);
        }
        let index = self.keywords.len() as u8;
        self.log_write(&LogRecord::Keyword { index, name: name.to_string() })?;
        self.keywords.push(name.to_string());
        self.changed();
        Ok(Some(index))
    }

    /// Sets a message's flags and keywords; returns the new modseq, or None if
    /// the message is gone or nothing changed.
    pub fn set_flags(&mut self, uid: u32, flags: u8, keywords: u64) -> Result<Option<u64>, StoreError> {
        self.check_writable()?;
        let Ok(i) = self.msgs.binary_search_by_key(&uid, |m| m.uid) else { return Ok(None) };
        let old = self.msgs[i];
        if old.flags == flags && old.keywords == keywords {
            return Ok(None);
        }
        self.highest_modseq += 1;
        let modseq = self.highest_modseq;
        self.log_write(&LogRecord::Flags { uid, flags, keywords, modseq })?;
        let l = self.location(&old);
        self.count(&old, &l, -1);
        let new = Msg { flags, keywords, modseq, ..old };
        self.msgs[i] = new;
        self.count(&new, &l, 1);
        self.journal.flags_changed(modseq, uid);
        self.notify();
        Ok(Some(modseq))
    }

    /// Removes messages; returns the UIDs that were removed.
    pub fn expunge(&mut self, uids: &[u32]) -> Result<Vec<u32>, StoreError> {
        self.check_writable()?;
        let mut gone = Vec::new();
        for &uid in uids {
            let Ok(i) = self.msgs.binary_search_by_key(&uid, |m| m.uid) else { continue };
            self.highest_modseq += 1;
            let modseq = self.highest_modseq;
            self.log_write(&LogRecord::Expunge { uid, modseq })?;
            let m = self.msgs.remove(i);
            let l = self.location(&m);
            self.count(&m, &l, -1);
            self.dead_bytes += RecordHeader::span(l.length) + RecordHeader::span(u64::from(l.cache_length));
            gone.push(uid);
        }
        if !gone.is_empty() {
            self.changed();
            for &uid in &gone {
                self.journal.expunged(self.version, uid);
            }
        }
        Ok(gone)
    }

    // ----- commit --------------------------------------------------------

    /// Whether anything written is not yet synced.
    pub fn is_dirty(&self) -> bool {
        self.log_dirty || !self.dirty_segments.is_empty() || !self.staged.is_empty()
    }

    pub fn has_staged(&self) -> bool {
        !self.staged.is_empty()
    }

    /// The files to sync so that everything written so far is durable.
    pub fn begin_commit(&mut self) -> io::Result<CommitBatch> {
        let mut files: Vec<Rc<dyn File>> = Vec::new();
        for &s in &self.dirty_segments {
            match &self.writer {
                Some(Writer { segment, file: Some(f), .. }) if *segment == s => files.push(f.clone()),
                _ => files.push(self.io.open(&seg_path(&self.dir, s), OpenMode::Existing)?),
            }
        }
        if self.log_dirty {
            if let Some((f, _)) = &self.log {
                files.push(f.clone());
            }
        }
        self.dirty_segments.clear();
        self.log_dirty = false;
        Ok(CommitBatch { files, below_uid: self.uidnext })
    }

    /// After the batch's files were synced: make its appends visible. On a
    /// sync failure nothing is published and the mailbox stops taking writes
    /// (after a failed fsync the kernel may have dropped the dirty pages).
    pub fn end_commit(&mut self, batch: CommitBatch, result: &io::Result<()>) {
        match result {
            Ok(()) => {
                let n = self.staged.partition_point(|(m, _)| m.uid < batch.below_uid);
                self.publish(n)
            }
            Err(e) => {
                tracing::error!(dir = %self.dir.display(), error = %e, "sync failed; mailbox refuses writes until reopened");
                self.poisoned = true;
                self.staged.clear();
            }
        }
        if !self.is_dirty() {
            // Nothing pending: let go of write handles so idle mailboxes hold no fds.
            self.log = None;
            if let Some(w) = &mut self.writer {
                w.file = None;
            }
        }
    }

    /// Syncs everything now, on this thread (tests, CLI tools, checkpoints).
    pub fn commit(&mut self) -> io::Result<()> {
        let batch = self.begin_commit()?;
        let mut r = Ok(());
        for f in &batch.files {
            if let Err(e) = f.sync() {
                r = Err(e);
                break;
            }
        }
        let out = r.as_ref().map(|_| ()).map_err(|e| io::Error::new(e.kind(), e.to_string()));
        self.end_commit(batch, &r);
        out
    }

    fn publish(&mut self, upto: usize) {
        if upto == 0 {
            return;
        }
        for (mut m, rec) in self.staged.drain(..upto).collect::<Vec<_>>() {
            self.appended.push(rec);
            m.loc = (self.appended.len() - 1) as u32 | NEW;
            self.msgs.push(m);
            let l = rec.location();
            self.count(&m, &l, 1);
        }
        self.changed();
    }

    // ----- checkpoint ----------------------------------------------------

    pub fn needs_checkpoint(&self) -> bool {
        self.log_records >= self.settings.checkpoint_records || self.log_end >= 8 << 20
    }

    /// Folds the log into a new index (see the format document). Skipped
    /// while appends wait for their sync.
    pub fn checkpoint(&mut self) -> io::Result<()> {
        if !self.staged.is_empty() || self.poisoned {
            return Ok(());
        }
        self.commit()?;
        let generation = self.generation + 1;
        let data = IndexData {
            uidvalidity: self.uidvalidity,
            uidnext: self.uidnext,
            highest_modseq: self.highest_modseq,
            generation,
            next_segment: self.next_segment,
            keywords: self.keywords.clone(),
            records: self.msgs.iter().map(|m| Rec::new(m.uid, self.location(m), m.flags, m.keywords, m.modseq)).collect(),
        };
        let path = self.dir.join("index");
        super::io::write_atomic(&*self.io, &path, &index::encode(&data))?;
        let f = self.io.open(&path, OpenMode::Existing)?;
        let (map, _) = f.map()?;
        let ix = IndexMap::open(map).ok_or_else(|| io_err("index just written does not validate"))?;
        for (i, m) in self.msgs.iter_mut().enumerate() {
            m.loc = i as u32;
        }
        self.appended.clear();
        self.base = Some(ix);
        let log = match self.log.take() {
            Some((f, _)) => f,
            None => self.io.open(&self.dir.join("log"), OpenMode::Create)?,
        };
        log.set_len(0)?;
        log.write_at(&format::log_header(self.uidvalidity, generation), 0)?;
        log.sync()?;
        self.generation = generation;
        self.log_end = format::LOG_HEADER;
        self.log_records = 0;
        Ok(())
    }

    // ----- compaction ----------------------------------------------------

    /// Whether expunged messages waste enough space to compact.
    pub fn wants_compaction(&self) -> bool {
        self.dead_bytes >= 16 << 20 && self.dead_bytes >= self.live_bytes
    }

    /// Reclaims the space of expunged messages, a slice at a time so the
    /// worker keeps serving between slices: live messages of sealed segments
    /// are copied into the active one (at most `budget` bytes per call), and
    /// when all are copied a checkpoint records their new places and the old
    /// segments are deleted. Sessions keep their mappings of old segments for
    /// as long as they hold them. Returns true when compaction is finished.
    pub fn compact_step(&mut self, budget: u64) -> Result<bool, StoreError> {
        self.check_writable()?;
        if self.compaction.is_none() {
            let active = self.writer.as_ref().map(|w| w.segment);
            let old: BTreeSet<u32> = self
                .msgs
                .iter()
                .flat_map(|m| {
                    let l = self.location(m);
                    [l.segment, l.cache_segment]
                })
                .filter(|s| Some(*s) != active && *s != 0)
                .collect();
            self.compaction = Some(Compaction { old, next_uid: 0, moved: Vec::new() });
        }
        let mut spent = 0u64;
        loop {
            let state = self.compaction.as_ref().expect("set above");
            let start = self.msgs.partition_point(|m| m.uid < state.next_uid);
            let Some(&m) = self.msgs.get(start) else { break };
            let l = self.location(&m);
            let old = &state.old;
            if old.contains(&l.segment) || old.contains(&l.cache_segment) {
                if spent >= budget {
                    return Ok(false);
                }
                let data = self.message(&m)?;
                let cache = self.cache(&m)?;
                let (seg, file, off) = self.reserve(RecordHeader::span(l.length))?;
                let h = RecordHeader { kind: format::KIND_MESSAGE, uid: m.uid, payload_crc: l.crc, len: l.length, internal_date: l.internal_date };
                file.write_at(&h.encode(), off)?;
                file.write_at(data.bytes(), off + format::RECORD_HEADER)?;
                self.wrote(seg);
                let (cseg, cfile, coff) = self.reserve(RecordHeader::span(cache.len() as u64))?;
                let ch =
                    RecordHeader { kind: format::KIND_CACHE, uid: m.uid, payload_crc: format::crc(cache.bytes()), len: cache.len() as u64, internal_date: 0 };
                cfile.write_at(&ch.encode(), coff)?;
                cfile.write_at(cache.bytes(), coff + format::RECORD_HEADER)?;
                self.wrote(cseg);
                let loc = Location { segment: seg, offset: off + format::RECORD_HEADER, cache_segment: cseg, cache_offset: coff + format::RECORD_HEADER, ..l };
                spent += l.length + cache.len() as u64;
                self.compaction.as_mut().expect("set").moved.push((m.uid, loc));
            }
            self.compaction.as_mut().expect("set").next_uid = m.uid + 1;
        }
        // Everything, staged appends included, becomes durable and visible
        // now, so that the checkpoint below can record the new places. (A
        // synchronous sync on the worker, once per compaction.)
        self.commit()?;
        let state = self.compaction.take().expect("set");
        for (uid, loc) in state.moved {
            if let Ok(i) = self.msgs.binary_search_by_key(&uid, |m| m.uid) {
                let m = self.msgs[i];
                self.appended.push(Rec::new(uid, loc, m.flags, m.keywords, m.modseq));
                self.msgs[i].loc = (self.appended.len() - 1) as u32 | NEW;
            }
        }
        self.checkpoint()?;
        for s in state.old {
            self.segments.borrow_mut().remove(&s);
            match self.io.remove_file(&seg_path(&self.dir, s)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        self.io.sync_dir(&self.dir.join("segments"))?;
        self.dead_bytes = 0;
        self.live_bytes = 0;
        for i in 0..self.msgs.len() {
            let l = self.location(&self.msgs[i]);
            self.live_bytes += RecordHeader::span(l.length) + RecordHeader::span(u64::from(l.cache_length));
        }
        Ok(true)
    }
}

/// Progress of a compaction between slices.
struct Compaction {
    old: BTreeSet<u32>,
    next_uid: u32,
    moved: Vec<(u32, Location)>,
}

#[cfg(test)]
mod tests;
