//! Changing a mailbox: streamed appends into the active segment, flag
//! changes, expunges, and the change log they are recorded in.
//!
//! Every change is written to the log before memory changes, in one write
//! per call: a failed write (a full disk) leaves the mailbox as it was and
//! the log cut back to its last whole record, so the caller can answer NO
//! and mean it. Nothing here syncs; `durability` hands that out.

use std::rc::Rc;

use super::{extents, io_err, seg_path, Extent, Mailbox, Msg, Reservation, Staged, StoreError, Writer, MAX_KEYWORDS, NEW};
use crate::config::SyncMode;
use crate::store::events;
use crate::store::format::{self, FlagChange, Location, LogRecord, RecordHeader};
use crate::store::index::Rec;
use crate::store::io::{File, OpenMode};

/// Blocks reserved ahead of the log's end, so that expunging (which frees
/// space) still works when the disk is full: room for about 9,000 expunge
/// records. Every mailbox pays it, so it is kept small: at 1 MiB it was
/// most of the disk a small mailbox used.
const LOG_RESERVE: u64 = 256 << 10;

/// A copy to store (COPY, MOVE): the original's bytes and MIME cache
/// record, shared from its segment's mapping.
pub struct Copied {
    pub message: crate::proto::Shared,
    pub cache: crate::proto::Shared,
    pub flags: u8,
    pub keywords: u64,
    pub internal_date: i64,
}

/// What [`Mailbox::change_flags`] did.
#[derive(Debug, PartialEq, Eq)]
pub struct FlagsChanged {
    /// The change's modseq; 0 if nothing changed.
    pub modseq: u64,
    /// The UIDs whose flags changed, ascending.
    pub changed: Vec<u32>,
    /// How many UIDs asked for the mailbox does not have (expunged).
    pub missing: usize,
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
    /// Keeps the space from being reclaimed while the message streams in.
    _reserved: Rc<Reservation>,
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

impl Mailbox {
    /// Space for a record of `span` bytes: in the active segment if it fits,
    /// in a new segment otherwise. A new segment's name becomes durable with
    /// the next commit (its directory is synced then).
    pub(super) fn reserve(&mut self, span: u64) -> Result<(u32, Rc<dyn File>, u64), StoreError> {
        self.check_writable()?;
        let fits = self.writer.as_ref().is_some_and(|w| w.pos + span <= w.size);
        if !fits {
            let n = self.next_segment;
            let size = self.settings.segment_size.max(format::SEGMENT_HEADER + span);
            let path = seg_path(&self.dir, n);
            let file = self.io.open(&path, OpenMode::Truncate)?;
            file.set_len(size)?;
            file.write_at(&format::segment_header(n, self.uidvalidity), 0)?;
            self.next_segment = n + 1;
            self.dirs.insert(self.dir.join("segments"));
            self.dirty_segments.insert(n);
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
    pub(super) fn wrote(&self, segment: u32) {
        let mut segs = self.segments.borrow_mut();
        if segs.get(&segment).is_some_and(|s| !s.live) {
            segs.remove(&segment);
        }
    }

    /// Reserves space for a message of `len` bytes that will be streamed in.
    pub fn begin_append(&mut self, len: u64) -> Result<AppendHandle, StoreError> {
        self.check_writable()?;
        let span = RecordHeader::span(len);
        let (segment, file, offset) = self.reserve(span)?;
        let reserved = Rc::new(Reservation(Extent { segment, start: offset, end: offset + span }));
        self.reclaim.hold(&reserved);
        Ok(AppendHandle { segment, file, offset, len, written: 0, crc: 0, _reserved: reserved })
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

    /// Writes a record (header and payload) into reserved space.
    pub(super) fn write_record(file: &Rc<dyn File>, at: u64, h: &RecordHeader, payload: &[u8]) -> std::io::Result<()> {
        let mut b = Vec::with_capacity(format::RECORD_HEADER as usize + payload.len());
        b.extend_from_slice(&h.encode());
        b.extend_from_slice(payload);
        file.write_at(&b, at)
    }

    /// Completes a streamed message: header, MIME cache, log record. The
    /// message gets its UID now but stays invisible until the next commit.
    pub fn finish_append(&mut self, h: AppendHandle, flags: u8, keywords: u64, internal_date: i64) -> Result<u32, StoreError> {
        let uids = self.finish_appends(vec![(h, flags, keywords, internal_date)])?;
        Ok(uids[0])
    }

    /// Completes streamed messages (a MULTIAPPEND's) together: each gets
    /// its header and MIME cache, then one log write records them all, so
    /// a failure before it stores none of them. Consecutive UIDs, each its
    /// own modseq.
    pub fn finish_appends(&mut self, batch: Vec<(AppendHandle, u8, u64, i64)>) -> Result<Vec<u32>, StoreError> {
        let first = self.uidnext;
        let batch = batch.into_iter().enumerate().map(|(i, (h, flags, keywords, date))| (h, first + i as u32, flags, keywords, date)).collect();
        self.finish_with_uids(batch)
    }

    /// Completes streamed messages that keep the UIDs their source gave
    /// them (`ringmail import`), like [`Mailbox::finish_appends`]
    /// otherwise. The UIDs must ascend from UIDNEXT on; gaps are allowed
    /// (RFC 9051 2.3.1.1 asks only that UIDs ascend and are never reused).
    pub fn finish_with_uids(&mut self, batch: Vec<(AppendHandle, u32, u8, u64, i64)>) -> Result<Vec<u32>, StoreError> {
        self.check_writable()?;
        if batch.iter().any(|(h, ..)| h.written != h.len) {
            return Err(io_err("message shorter than announced").into());
        }
        let mut floor = self.uidnext;
        for (_, uid, ..) in &batch {
            if *uid < floor || *uid == u32::MAX {
                return Err(io_err("UIDs must ascend from UIDNEXT").into());
            }
            floor = uid + 1;
        }
        let mut recs = Vec::with_capacity(batch.len());
        for (i, (h, uid, flags, keywords, internal_date)) in batch.into_iter().enumerate() {
            let modseq = self.highest_modseq + 1 + i as u64;
            recs.push(self.written_message(h, uid, internal_date, (flags, keywords, modseq), None)?);
        }
        self.stage_appends(recs)
    }

    /// Raises UIDNEXT to `uid` without a message (`ringmail import` keeps a
    /// source's UIDNEXT, past messages expunged there, so that those UIDs
    /// are never given again: RFC 9051 2.3.1.1). Logged; durable with the
    /// next commit. Lower values change nothing.
    pub fn raise_uidnext(&mut self, uid: u32) -> Result<(), StoreError> {
        if uid <= self.uidnext {
            return Ok(());
        }
        self.log_write(&[LogRecord::UidNext { uid }])?;
        self.uidnext = uid;
        Ok(())
    }

    /// Stores copies of stored messages (COPY, MOVE) with one log write:
    /// each message's bytes as they are, and its original's MIME cache
    /// record unless an older build wrote that one (then it is made
    /// again), so nothing is parsed. Consecutive UIDs, each its own modseq,
    /// invisible until the next commit.
    pub fn append_copies(&mut self, copies: &[Copied]) -> Result<Vec<u32>, StoreError> {
        self.check_writable()?;
        let mut recs = Vec::with_capacity(copies.len());
        for (i, c) in copies.iter().enumerate() {
            let mut h = self.begin_append(c.message.len() as u64)?;
            self.append_chunk(&mut h, c.message.bytes())?;
            let (uid, modseq) = (self.uidnext + i as u32, self.highest_modseq + 1 + i as u64);
            let cache = Some(c.cache.bytes()).filter(|b| crate::mime::Cache::is_current(b));
            recs.push(self.written_message(h, uid, c.internal_date, (c.flags, c.keywords, modseq), cache)?);
        }
        self.stage_appends(recs)
    }

    /// Logs the APPEND records of written messages in one write and stages
    /// them for the next commit.
    fn stage_appends(&mut self, recs: Vec<LogRecord>) -> Result<Vec<u32>, StoreError> {
        self.log_write(&recs)?;
        let mut uids = Vec::with_capacity(recs.len());
        for r in recs {
            let LogRecord::Append { uid, loc, flags, keywords, modseq } = r else { continue };
            self.highest_modseq = modseq;
            self.uidnext = uid + 1;
            // An arrival is a change since an older modseq too (CHANGEDSINCE).
            // Journalled now, when its modseq is taken, so the journal stays
            // in modseq order while other changes happen before the commit.
            self.journal.flags_changed(modseq, uid);
            let rec = Rec::new(uid, loc, flags, keywords, modseq);
            self.staged.push(Staged { msg: Msg { uid, flags, keywords, modseq, loc: 0 }, rec, seq: self.seq });
            uids.push(uid);
        }
        if self.settings.sync == SyncMode::Never {
            let n = self.staged.len();
            self.publish(n);
        }
        Ok(uids)
    }

    /// Writes the record header and the MIME cache of a streamed message
    /// (`cache`, when one is at hand, else made from the message); the log
    /// record that will make it part of the mailbox.
    fn written_message(
        &mut self,
        h: AppendHandle,
        uid: u32,
        internal_date: i64,
        (flags, keywords, modseq): (u8, u64, u64),
        cache: Option<&[u8]>,
    ) -> Result<LogRecord, StoreError> {
        let header = RecordHeader { kind: format::KIND_MESSAGE, uid, payload_crc: h.crc, len: h.len, internal_date };
        h.file.write_at(&header.encode(), h.offset)?;
        self.wrote(h.segment);
        let offset = h.offset + format::RECORD_HEADER;
        let made;
        let blob = match cache {
            Some(c) => c,
            None => {
                made = crate::mime::analyze(self.bytes(h.segment, offset, h.len)?.bytes());
                &made[..]
            }
        };
        // The cache record's date is the save date (RFC 8514): now.
        let (cache_segment, cache_offset) = self.write_cache(uid, blob, self.io.now())?;
        let loc =
            Location { segment: h.segment, offset, length: h.len, internal_date, cache_segment, cache_offset, cache_length: blob.len() as u32, crc: h.crc };
        Ok(LogRecord::Append { uid, loc, flags, keywords, modseq })
    }

    /// Writes a message's MIME cache record, dated `save_date` (RFC 8514);
    /// the segment and offset of its payload.
    pub(super) fn write_cache(&mut self, uid: u32, blob: &[u8], save_date: i64) -> Result<(u32, u64), StoreError> {
        let (segment, file, at) = self.reserve(RecordHeader::span(blob.len() as u64))?;
        let h = RecordHeader { kind: format::KIND_CACHE, uid, payload_crc: format::crc(blob), len: blob.len() as u64, internal_date: save_date };
        Self::write_record(&file, at, &h, blob)?;
        self.wrote(segment);
        Ok((segment, at + format::RECORD_HEADER))
    }

    /// Stores a whole message at once (COPY, delivery, tests).
    pub fn append_bytes(&mut self, data: &[u8], flags: u8, keywords: u64, internal_date: i64) -> Result<u32, StoreError> {
        let mut h = self.begin_append(data.len() as u64)?;
        self.append_chunk(&mut h, data)?;
        self.finish_append(h, flags, keywords, internal_date)
    }

    /// Opens the current log for writing, creating it (with its header)
    /// the first time.
    fn log_file(&mut self) -> std::io::Result<Rc<dyn File>> {
        if let Some(f) = &self.log.file {
            return Ok(f.clone());
        }
        let f = if self.log.created {
            self.io.open(&self.log.path, OpenMode::Existing)?
        } else {
            let f = self.io.open(&self.log.path, OpenMode::Truncate)?;
            f.write_at(&format::log_header(self.uidvalidity, self.log.generation), 0)?;
            self.log.created = true;
            self.log.end = format::LOG_HEADER;
            self.log.dirty = true;
            self.dirs.insert(self.dir.clone());
            f
        };
        self.log.file = Some(f.clone());
        Ok(f)
    }

    /// Appends records to the log in one write. On failure the log is cut
    /// back to its last whole record, or, if even that fails, the mailbox
    /// stops taking writes (a later record must never follow garbage).
    pub(super) fn log_write(&mut self, recs: &[LogRecord]) -> Result<(), StoreError> {
        self.check_writable()?;
        let f = self.log_file()?;
        let mut buf = Vec::with_capacity(80 * recs.len());
        for r in recs {
            r.encode(&mut buf);
        }
        let at = self.log.end;
        if let Err(e) = f.write_at(&buf, at) {
            if let Err(cut) = f.set_len(at) {
                self.poison(&format_args!("log write failed ({e}) and the log cannot be cut back ({cut})"));
            }
            return Err(e.into());
        }
        self.log.end = at + buf.len() as u64;
        self.log.records += recs.len() as u32;
        self.log.dirty = true;
        self.seq += 1;
        if self.log.end + LOG_RESERVE / 2 > self.log.reserved {
            // Best effort: file systems without fallocate simply do not reserve.
            if f.preallocate(self.log.end, LOG_RESERVE).is_ok() {
                self.log.reserved = self.log.end + LOG_RESERVE;
            }
        }
        Ok(())
    }

    /// Index of a keyword, defining it (logged) when `create` is set.
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
        self.log_write(&[LogRecord::Keyword { index, name: name.to_string() }])?;
        self.keywords.push(name.to_string());
        self.changed();
        Ok(Some(index))
    }

    /// Sets a message's flags and keywords; returns the new modseq, or None if
    /// the message is gone or nothing changed.
    pub fn set_flags(&mut self, uid: u32, flags: u8, keywords: u64) -> Result<Option<u64>, StoreError> {
        let done = self.change_flags(&[uid], FlagChange::replace(flags, keywords))?;
        Ok((!done.changed.is_empty()).then_some(done.modseq))
    }

    /// Applies one change to the messages of `uids` (a STORE's), with one
    /// log write and one new modseq for all (RFC 7162 3.1 asks for one
    /// per STORE). Messages that already have the flags keep their modseq.
    pub fn change_flags(&mut self, uids: &[u32], change: FlagChange) -> Result<FlagsChanged, StoreError> {
        self.check_writable()?;
        // Positions of the messages that change. UIDs usually ascend (a
        // STORE's set): each is found a step on from the last.
        let mut hit = Vec::new();
        let mut missing = 0;
        let mut finder = self.finder();
        for &uid in uids {
            let Some(m) = finder.find(uid) else {
                missing += 1;
                continue;
            };
            if change.apply(m.flags, m.keywords) != (m.flags, m.keywords) {
                hit.push(finder.position());
            }
        }
        if !hit.is_sorted_by(|a, b| a < b) {
            hit.sort_unstable();
            hit.dedup();
        }
        if hit.is_empty() {
            return Ok(FlagsChanged { modseq: 0, changed: Vec::new(), missing });
        }
        let changed: Vec<u32> = hit.iter().map(|&i| self.msgs[i].uid).collect();
        let modseq = self.highest_modseq + 1;
        let runs = crate::proto::ranges_of(&changed);
        let recs: Vec<LogRecord> = runs.chunks(format::MAX_RUNS).map(|r| LogRecord::FlagRuns { change, modseq, runs: r.to_vec() }).collect();
        self.log_write(&recs)?;
        self.log.weight += changed.len() as u64;
        self.highest_modseq = modseq;
        for i in hit {
            let old = self.msgs[i];
            let (flags, keywords) = change.apply(old.flags, old.keywords);
            // The index is read only when \Deleted changes (its bytes count).
            let length = if (old.flags ^ flags) & format::F_DELETED != 0 { self.location(&old).length } else { 0 };
            self.count_flags(old.flags, length, -1);
            self.count_flags(flags, length, 1);
            self.msgs[i] = Msg { flags, keywords, modseq, ..old };
        }
        self.journal.flags_changed_many(modseq, &changed);
        self.notify();
        self.tell(events::FLAGS);
        Ok(FlagsChanged { modseq, changed, missing })
    }

    /// Removes messages with one log write; returns the UIDs that were removed.
    pub fn expunge(&mut self, uids: &[u32]) -> Result<Vec<u32>, StoreError> {
        self.check_writable()?;
        let mut doomed: Vec<u32> = uids.iter().copied().filter(|&u| self.find(u).is_some()).collect();
        doomed.sort_unstable();
        doomed.dedup();
        if doomed.is_empty() {
            return Ok(Vec::new());
        }
        let first = self.highest_modseq + 1;
        let recs: Vec<LogRecord> = doomed.iter().enumerate().map(|(k, &uid)| LogRecord::Expunge { uid, modseq: first + k as u64 }).collect();
        self.log_write(&recs)?;
        self.highest_modseq = first + doomed.len() as u64 - 1;
        // One pass over the list, not one removal per message.
        let msgs = std::mem::take(&mut self.msgs);
        let mut kept = Vec::with_capacity(msgs.len() - doomed.len());
        let mut dead = Vec::new();
        for m in msgs {
            if doomed.binary_search(&m.uid).is_ok() {
                let l = self.location(&m);
                self.count(&m, &l, -1);
                self.dead_bytes += RecordHeader::span(l.length) + RecordHeader::span(u64::from(l.cache_length));
                dead.extend(extents(&l));
            } else {
                kept.push(m);
            }
        }
        self.msgs = kept;
        *self.uids.get_mut() = None;
        self.reclaim.expunged(self.seq, dead);
        self.changed();
        self.tell(events::EXPUNGE);
        for (k, &uid) in doomed.iter().enumerate() {
            self.journal.expunged(self.version, first + k as u64, uid);
        }
        Ok(doomed)
    }

    /// Makes staged appends visible (their commit finished).
    pub(super) fn publish(&mut self, upto: usize) {
        if upto == 0 {
            return;
        }
        let first = self.msgs.len();
        for s in self.staged.drain(..upto).collect::<Vec<_>>() {
            let mut m = s.msg;
            self.appended.push(s.rec);
            m.loc = (self.appended.len() - 1) as u32 | NEW;
            self.msgs.push(m);
            let l = s.rec.location();
            self.count(&m, &l, 1);
        }
        self.write_keys_from(first);
        let list = self.uids.get_mut();
        if let Some(l) = list.as_mut() {
            let added: Vec<u32> = self.msgs[first..].iter().map(|m| m.uid).collect();
            *l = l.appended(&added);
        }
        self.changed();
        self.tell(events::NEW);
    }
}
