//! Opening a mailbox: the index checkpoint, then every change log of its
//! generation or later, replayed in order (docs/store-format.md, "Opening
//! a mailbox").
//!
//! Two rules keep a second crash from losing what the first left behind:
//! - A log record is trusted up to the first record that is torn (short or
//!   failing its checksum): that is where the unsynced tail begins. An
//!   APPEND record whose payload no longer matches its checksum (it was
//!   never synced, or it was expunged and its space given back) is skipped,
//!   not a reason to drop the records after it.
//! - New records are written after every byte that any log record refers
//!   to, live or not, and into segment numbers no record has used, so a
//!   later replay can never mistake new bytes for an old record's.

use std::cell::Cell;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::io;
use std::path::Path;
use std::rc::Rc;

use super::reclaim::BLOCK;
use super::{extents, seg_path, Extent, Log, Mailbox, Msg, OldLog, SegMap, Settings, Writer, NEW};
use crate::store::format::{self, Location, LogRecord, RecordHeader};
use crate::store::index::{IndexMap, Rec};
use crate::store::io::{Io, OpenMode};
use crate::store::journal::{self, Journal};

/// A log file found when opening.
struct FoundLog {
    path: std::path::PathBuf,
    generation: u64,
    bytes: Vec<u8>,
}

/// What the replayed logs changed, (modseq, UID) in log order: QRESYNC and
/// CHANGEDSINCE answer from it after a restart (see `journal`).
#[derive(Default)]
struct History {
    expunged: Vec<(u64, u32)>,
    /// Arrivals and flag changes.
    changed: Vec<(u64, u32)>,
}

impl Mailbox {
    /// Opens a mailbox, recovering from whatever a crash left. Writes
    /// nothing it would have to sync: cut log tails and removed files are
    /// made durable by the next commit, and until then a crash leaves the
    /// same state to recover from.
    pub fn open(io: Rc<dyn Io>, dir: &Path, uidvalidity: u32, settings: Settings) -> io::Result<Mailbox> {
        let mut new_dirs = BTreeSet::new();
        if !io.exists(dir) {
            if let Some(parent) = dir.parent() {
                new_dirs.insert(parent.to_path_buf());
            }
            new_dirs.insert(dir.to_path_buf());
        }
        if !io.exists(&dir.join("segments")) {
            new_dirs.insert(dir.to_path_buf());
            new_dirs.insert(dir.join("segments"));
        }
        io.create_dir_all(&dir.join("segments"))?;
        let mut mb = Mailbox {
            io: io.clone(),
            dir: dir.to_path_buf(),
            settings,
            owner: None,
            uidvalidity,
            uidnext: 1,
            highest_modseq: 1,
            keywords: Vec::new(),
            next_segment: 1,
            base: None,
            appended: Vec::new(),
            msgs: Vec::new(),
            segments: Default::default(),
            writer: None,
            log: Log::fresh(dir, 0),
            old_logs: Vec::new(),
            dirty_segments: BTreeSet::new(),
            dirs: new_dirs,
            staged: Vec::new(),
            seq: 0,
            committing: false,
            checkpointing: false,
            poisoned: false,
            version: 0,
            journal: Default::default(),
            uids: Default::default(),
            derived: Default::default(),
            keys_end: Cell::new(0),
            key_column: Default::default(),
            watchers: Default::default(),
            feed: None,
            recent_floor: Cell::new(1),
            unseen: 0,
            deleted: 0,
            size: 0,
            deleted_size: 0,
            dead_bytes: 0,
            live_bytes: 0,
            reclaim: Default::default(),
            removed: false,
        };
        let mut generation = 0;
        let index_path = dir.join("index");
        if io.exists(&index_path) {
            let f = io.open(&index_path, OpenMode::Existing)?;
            // SAFETY: an index is written whole under a new name and renamed
            // into place, never changed after.
            let map = unsafe { f.map_shared() }?;
            match IndexMap::open(map) {
                Some(ix) => generation = mb.load_index(ix),
                None => {
                    tracing::error!(dir = %dir.display(), "index is corrupt; rebuilding from segments");
                    mb.rebuild_from_segments()?;
                    mb.reclaim.want_checkpoint();
                    generation = u64::MAX;
                }
            }
        }
        let logs = mb.find_logs(generation)?;
        // Expunges after the checkpoint are all in the logs: the journal can
        // answer QRESYNC from there (not when the index had to be rebuilt).
        let history_from = (generation != u64::MAX).then_some(mb.highest_modseq);
        if generation == u64::MAX {
            // The index was lost: every log continues the rebuilt state (their
            // records are idempotent).
            generation = logs.first().map_or(0, |l| l.generation);
        }
        // Segments without an index or a log hold nothing: whatever is in
        // them was never acknowledged (an acknowledged append has a synced
        // log record, and a log is deleted only after an index covering it
        // is durable). They are removed below like any orphan.
        let mut referenced = Vec::new();
        let mut expunged = Vec::new();
        let mut history = History::default();
        mb.replay(logs, generation, &mut referenced, &mut expunged, &mut history)?;
        let live = mb.recount();
        mb.place_writer(live.last, &referenced)?;
        mb.remove_orphan_segments(&live)?;
        mb.recent_floor.set(mb.uidnext);
        // Mail expunged by the replayed logs: its space may be given back
        // once those logs are known to be synced (the next commit).
        if !expunged.is_empty() {
            mb.log.dirty = true;
            mb.reclaim.expunged(0, expunged);
        }
        // Segments may hold dead space from before (a crash between an
        // expunge and its reclamation): each is looked at once, unless the
        // file system holds no more of it than its live records' blocks
        // (after a clean stop, none: a million-message mailbox is not
        // walked again and again while it is first used).
        let names = io.read_dir(&dir.join("segments"))?;
        let segments = names.iter().filter_map(|n| n.strip_suffix(".seg").and_then(|s| s.parse::<u32>().ok()));
        let writer = mb.writer.as_ref().map(|w| (w.segment, w.size.saturating_sub(w.pos)));
        let unwritten = |s: u32| writer.filter(|w| w.0 == s).map_or(0, |w| w.1);
        mb.reclaim.look_at(segments.filter(|&s| live.may_hold_dead_space(s, io.allocated(&seg_path(dir, s)), unwritten(s))));
        mb.journal = match history_from {
            Some(from) => Journal::with_history(mb.version, from, history.expunged.into_iter(), history.changed.into_iter()),
            None => Journal::starting_at(mb.version, mb.highest_modseq),
        };
        Ok(mb)
    }

    /// Takes the checkpoint in; returns its generation.
    fn load_index(&mut self, ix: IndexMap) -> u64 {
        let d = ix.data();
        if d.uidvalidity.to_native() != self.uidvalidity {
            tracing::warn!(dir = %self.dir.display(), "index UIDVALIDITY differs from the manifest; the index wins");
            self.uidvalidity = d.uidvalidity.to_native();
        }
        self.uidnext = d.uidnext.to_native();
        self.highest_modseq = d.highest_modseq.to_native();
        self.next_segment = d.next_segment.to_native();
        self.keywords = d.keywords.iter().map(|k| k.as_str().to_string()).collect();
        self.msgs = d
            .records
            .iter()
            .enumerate()
            .map(|(i, r)| Msg { uid: r.uid.to_native(), flags: r.flags, keywords: r.keywords.to_native(), modseq: r.modseq.to_native(), loc: i as u32 })
            .collect();
        let generation = d.generation.to_native();
        self.base = Some(ix);
        generation
    }

    /// The logs to replay (generation `from` and later, oldest first). Logs
    /// of older generations are folded into the index: they are removed.
    /// A log without a valid header (its creation was torn) is empty.
    fn find_logs(&mut self, from: u64) -> io::Result<Vec<FoundLog>> {
        let mut found = Vec::new();
        for name in self.io.read_dir(&self.dir)? {
            // `log` is the single log of format version 1; `log.<n>` since.
            let numbered = match name.strip_prefix("log.") {
                Some(n) => match n.parse::<u64>() {
                    Ok(g) => Some(g),
                    Err(_) => continue,
                },
                None if name == "log" => None,
                None => continue,
            };
            let path = self.dir.join(&name);
            let bytes = self.io.open(&path, OpenMode::Existing)?.read_all()?;
            let header = format::check_log_header(&bytes).map(|(_, g)| g);
            let generation = match (numbered, header) {
                (Some(g), Some(h)) if g == h => g,
                (Some(g), _) => {
                    // Created but its header never made it: nothing in it counts.
                    found.push(FoundLog { path, generation: g, bytes: Vec::new() });
                    continue;
                }
                (None, Some(h)) => h,
                (None, None) => continue,
            };
            found.push(FoundLog { path, generation, bytes });
        }
        found.sort_by_key(|l| l.generation);
        let mut keep = Vec::new();
        for l in found {
            if from != u64::MAX && l.generation < from {
                self.io.remove_file(&l.path)?;
            } else {
                keep.push(l);
            }
        }
        Ok(keep)
    }

    /// Replays the logs in order. The newest becomes the log new records
    /// go to; older ones stay until the next checkpoint covers them.
    /// `referenced` collects every extent an APPEND record points at,
    /// `expunged` the extents of messages the logs expunged; `history` what
    /// the logs changed, by modseq.
    fn replay(
        &mut self,
        logs: Vec<FoundLog>,
        generation: u64,
        referenced: &mut Vec<Extent>,
        expunged: &mut Vec<Extent>,
        history: &mut History,
    ) -> io::Result<()> {
        let mut gone: HashSet<u32> = HashSet::new();
        let last = logs.len().saturating_sub(1);
        let mut current = None;
        for (i, l) in logs.into_iter().enumerate() {
            let mut end = format::LOG_HEADER as usize;
            let (mut records, mut weight) = (0, 0);
            if !l.bytes.is_empty() {
                while let Some((rec, n)) = LogRecord::decode(&l.bytes[end..]) {
                    weight += self.apply(&rec, referenced, &mut gone, history);
                    end += n;
                    records += 1;
                }
            }
            let torn = !l.bytes.is_empty() && end < l.bytes.len();
            if torn {
                tracing::warn!(log = %l.path.display(), offset = end, "log ends in a torn record (never synced); cutting it there");
                self.io.open(&l.path, OpenMode::Existing)?.set_len(end as u64)?;
            }
            if i == last {
                current = Some((l, end as u64, records, weight, torn));
            } else {
                self.old_logs.push(OldLog { path: l.path, generation: l.generation, unsynced: None });
            }
        }
        // Expunges are applied once, at the end: removing from the middle of
        // the message list one by one would be quadratic.
        if !gone.is_empty() {
            let msgs = std::mem::take(&mut self.msgs);
            let mut kept = Vec::with_capacity(msgs.len());
            for m in msgs {
                if gone.contains(&m.uid) {
                    expunged.extend(extents(&self.location(&m)));
                } else {
                    kept.push(m);
                }
            }
            self.msgs = kept;
            self.version += 1;
        }
        self.log = match current {
            Some((l, end, records, weight, torn)) => {
                let created = !l.bytes.is_empty();
                super::Log { path: l.path, generation: l.generation, file: None, created, end, records, weight, dirty: torn, reserved: 0 }
            }
            None => super::Log::fresh(&self.dir, generation),
        };
        Ok(())
    }

    /// Applies one replayed record and notes what it changed in `history`;
    /// returns how many messages a FLAG RUNS record changed (0 for others).
    /// Idempotent: records already in the index (UIDs below its UIDNEXT,
    /// older modseqs) change nothing.
    fn apply(&mut self, rec: &LogRecord, referenced: &mut Vec<Extent>, gone: &mut HashSet<u32>, history: &mut History) -> u64 {
        match rec {
            LogRecord::Append { uid, loc, flags, keywords, modseq } => {
                history.changed.push((*modseq, *uid));
                referenced.extend(extents(loc));
                self.highest_modseq = self.highest_modseq.max(*modseq);
                if *uid < self.uidnext {
                    return 0;
                }
                // Whatever happens to this record, its UID is used.
                self.uidnext = uid + 1;
                let whole = matches!(self.bytes(loc.segment, loc.offset, loc.length), Ok(b) if format::crc(b.bytes()) == loc.crc);
                if !whole {
                    // Never acknowledged (its payload was not synced) or
                    // expunged later in this log (its space was given back).
                    tracing::debug!(dir = %self.dir.display(), uid, "log record points at bytes that do not match; skipping it");
                    return 0;
                }
                self.appended.push(Rec::new(*uid, *loc, *flags, *keywords, *modseq));
                self.msgs.push(Msg { uid: *uid, flags: *flags, keywords: *keywords, modseq: *modseq, loc: (self.appended.len() - 1) as u32 | NEW });
            }
            LogRecord::Flags { uid, flags, keywords, modseq } => {
                history.changed.push((*modseq, *uid));
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
            LogRecord::FlagRuns { change, modseq, runs } => {
                // Runs ascend: one walk over the messages.
                let mut at = 0;
                let mut touched = Vec::new();
                for &(first, last) in runs {
                    at += self.msgs[at..].partition_point(|m| m.uid < first);
                    while let Some(m) = self.msgs.get_mut(at).filter(|m| m.uid <= last) {
                        if *modseq > m.modseq {
                            (m.flags, m.keywords) = change.apply(m.flags, m.keywords);
                            m.modseq = *modseq;
                            touched.push(m.uid);
                        }
                        at += 1;
                    }
                }
                history.changed.extend(journal::entries(*modseq, &touched));
                self.highest_modseq = self.highest_modseq.max(*modseq);
                return touched.len() as u64;
            }
            LogRecord::Expunge { uid, modseq } => {
                history.expunged.push((*modseq, *uid));
                gone.insert(*uid);
                self.highest_modseq = self.highest_modseq.max(*modseq);
            }
            LogRecord::UidNext { uid } => self.uidnext = self.uidnext.max(*uid),
            LogRecord::Keyword { index, name } => {
                let i = *index as usize;
                if i == self.keywords.len() {
                    self.keywords.push(name.clone());
                } else if self.keywords.get(i) != Some(name) {
                    tracing::error!(dir = %self.dir.display(), index, name, "keyword record disagrees with the index; ignoring it");
                }
            }
        }
        0
    }

    /// Disaster recovery: message bytes and dates from segment record
    /// headers; flags are lost except what the logs still have.
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
        Ok(())
    }

    /// The counts (\Seen, \Deleted, sizes) made anew from every message,
    /// and what the messages use of the segments: one walk, at open.
    fn recount(&mut self) -> LiveExtents {
        self.unseen = 0;
        self.deleted = 0;
        self.size = 0;
        self.deleted_size = 0;
        self.live_bytes = 0;
        let mut live = LiveExtents::default();
        for i in 0..self.msgs.len() {
            let m = self.msgs[i];
            let l = self.location(&m);
            self.count(&m, &l, 1);
            extents(&l).for_each(|e| live.note(e));
        }
        live
    }

    /// Points the writer after the last byte that any live message
    /// (`last`) or any log record uses, and `next_segment` past every
    /// segment they name.
    fn place_writer(&mut self, mut last: Option<(u32, u64)>, referenced: &[Extent]) -> io::Result<()> {
        for &e in referenced {
            furthest(&mut last, e);
        }
        if let Some((seg, end)) = last {
            self.next_segment = self.next_segment.max(seg + 1);
            let path = seg_path(&self.dir, seg);
            if self.io.exists(&path) {
                let file = self.io.open(&path, OpenMode::Existing)?;
                let size = file.len()?;
                if end < size {
                    self.writer = Some(Writer { segment: seg, file: None, pos: end, size });
                }
            }
        }
        Ok(())
    }

    /// Segment files no live message refers to (left by compaction, by
    /// expunges, or by appends that never completed) are deleted. A log
    /// record that still names one is skipped at the next replay, like any
    /// APPEND whose bytes are gone.
    fn remove_orphan_segments(&mut self, live: &LiveExtents) -> io::Result<()> {
        let active = self.writer.as_ref().map(|w| w.segment);
        for name in self.io.read_dir(&self.dir.join("segments"))? {
            let Some(n) = name.strip_suffix(".seg").and_then(|s| s.parse::<u32>().ok()) else { continue };
            self.next_segment = self.next_segment.max(n + 1);
            if !live.uses(n) && Some(n) != active {
                self.io.remove_file(&seg_path(&self.dir, n))?;
                self.segments.borrow_mut().remove(&n);
            }
        }
        // Keep the mapping cache small: it was filled while verifying records.
        self.segments.borrow_mut().retain(|&s, _: &mut SegMap| live.uses(s));
        Ok(())
    }
}

/// What the live messages use of the segments (see `Mailbox::recount`).
#[derive(Default)]
pub(super) struct LiveExtents {
    uses: Vec<SegmentUse>,
    /// Where each segment's use is in `uses` (segment numbers only grow
    /// over a mailbox's life, so they are not indexes themselves).
    at: rustc_hash::FxHashMap<u32, usize>,
    /// The segment noted last and its place: neighbours mostly share one.
    recent: Option<(u32, usize)>,
    /// The last byte used: (segment, end), the highest segment's furthest.
    last: Option<(u32, u64)>,
}

/// The live records of one segment: the file-system blocks they touch,
/// one bit each (2 KiB for a 64 MiB segment).
#[derive(Default)]
struct SegmentUse {
    blocks: Vec<u64>,
}

impl LiveExtents {
    pub(super) fn note(&mut self, e: Extent) {
        furthest(&mut self.last, e);
        let i = match self.recent {
            Some((s, i)) if s == e.segment => i,
            _ => {
                let next = self.uses.len();
                let i = *self.at.entry(e.segment).or_insert(next);
                if i == next {
                    self.uses.push(SegmentUse::default());
                }
                self.recent = Some((e.segment, i));
                i
            }
        };
        let u = &mut self.uses[i];
        let (first, last) = ((e.start / BLOCK) as usize, (e.end.saturating_sub(1) / BLOCK) as usize);
        if last / 64 >= u.blocks.len() {
            u.blocks.resize(last / 64 + 1, 0);
        }
        // A word at a time: most records lie within one.
        let mut b = first;
        while b <= last {
            let (w, lo) = (b / 64, b % 64);
            let hi = if last / 64 == w { last % 64 } else { 63 };
            u.blocks[w] |= (u64::MAX >> (63 - hi)) & (u64::MAX << lo);
            b = (w + 1) * 64;
        }
    }

    fn uses(&self, s: u32) -> bool {
        self.at.contains_key(&s)
    }

    /// Whether segment `s`, of which the file system holds `allocated`
    /// bytes (None: cannot tell), may hold space a hole could give back:
    /// more blocks than its live records touch, plus the header's and
    /// those the file system keeps for a file with holes (ext4 counts its
    /// extent tree: a block per 340 extents). Dead space under that slack,
    /// 1/256 of the live blocks, waits for the next expunge there. In the
    /// segment being written, what lies past the writer (`unwritten`
    /// bytes) is written over by the next appends, not punched.
    fn may_hold_dead_space(&self, s: u32, allocated: Option<u64>, unwritten: u64) -> bool {
        let Some(allocated) = allocated else { return true };
        match self.at.get(&s).map(|&i| &self.uses[i]) {
            Some(u) => {
                let live: u64 = u.blocks.iter().map(|w| u64::from(w.count_ones())).sum();
                allocated > (live + 2 + live / 256 + unwritten.div_ceil(BLOCK)) * BLOCK
            }
            None => allocated > 0,
        }
    }
}

/// `last` moved to `e`'s end when that is further: a higher segment, or
/// further into the same one.
fn furthest(last: &mut Option<(u32, u64)>, e: Extent) {
    if e.segment == 0 {
        return;
    }
    match *last {
        Some((s, end)) if s > e.segment || (s == e.segment && end >= e.end) => {}
        _ => *last = Some((e.segment, e.end)),
    }
}
