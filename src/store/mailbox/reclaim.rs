//! Giving the space of expunged mail back to the file system.
//!
//! Expunged records are not moved or rewritten: the blocks under them are
//! punched out of their segment (`fallocate(PUNCH_HOLE)`), which frees them
//! at once, needs no free space (it works on a full disk), and works the
//! same in the active segment as in sealed ones. A segment with nothing
//! live left is deleted. The rules that make this safe:
//!
//! - A region is punched only once nothing could still need its bytes:
//!   no live or staged message, no append still streaming into it, no
//!   expunge whose log record is not yet synced (a crash would bring the
//!   message back), no segment whose messages compaction moved before the
//!   index recording the move is durable, and no response being sent from
//!   that segment's mapping (one shared elsewhere is retried later).
//! - The log may still hold APPEND records for punched messages; replay
//!   checks each payload against its checksum and skips those, and new
//!   records never reuse the space (docs/store-format.md).
//!
//! Compaction (copying the live messages of mostly dead sealed segments
//! into the active one) is kept for the number of files and mappings, not
//! for space; it also runs where hole punching is unsupported. The same
//! slices make cache records an older build wrote again (the format
//! upgrade): then only those records are written anew, the messages stay,
//! and the old records' space is punched once the index is durable.

use std::collections::BTreeSet;
use std::io;
use std::rc::{Rc, Weak};

use super::{extents, seg_path, Compaction, Extent, Mailbox, Reclaim, Reservation, StoreError, NEW};
use crate::store::format::{self, RecordHeader};
use crate::store::index::Rec;
use crate::store::io::OpenMode;

/// File-system blocks: only whole ones are freed.
pub(super) const BLOCK: u64 = 4096;

impl Reclaim {
    pub(super) fn hold(&mut self, r: &Rc<Reservation>) {
        self.inflight.retain(|w| w.strong_count() > 0);
        self.inflight.push(Rc::downgrade(r));
    }

    /// Records expunged in log write `seq`.
    pub(super) fn expunged(&mut self, seq: u64, dead: Vec<Extent>) {
        self.pending.extend(dead.into_iter().map(|e| (seq, e)));
    }

    /// Log writes up to `upto` are durable: their expunges may be reclaimed.
    pub(super) fn durable(&mut self, upto: u64) {
        let (now, later): (Vec<_>, Vec<_>) = self.pending.drain(..).partition(|(s, _)| *s <= upto);
        self.pending = later;
        self.candidates.extend(now.into_iter().map(|(_, e)| e.segment));
    }

    pub(super) fn look_at(&mut self, segments: impl Iterator<Item = u32>) {
        self.candidates.extend(segments);
    }

    pub(super) fn wants_checkpoint(&self) -> bool {
        !self.compacted.is_empty() || !self.rewritten.is_empty() || self.checkpoint_wanted
    }

    pub(super) fn want_checkpoint(&mut self) {
        self.checkpoint_wanted = true;
    }

    /// The compacted segments a starting checkpoint will cover, and those
    /// whose cache records were rewritten.
    pub(super) fn take_compacted(&mut self) -> (Vec<u32>, Vec<u32>) {
        self.checkpoint_wanted = false;
        (std::mem::take(&mut self.compacted), std::mem::take(&mut self.rewritten))
    }

    pub(super) fn compacted_again(&mut self, compacted: Vec<u32>, rewritten: Vec<u32>) {
        self.compacted.extend(compacted);
        self.rewritten.extend(rewritten);
    }

    pub(super) fn released(&mut self, s: u32) {
        self.protected.remove(&s);
    }

    /// The index recording rewritten cache records is durable: the old
    /// records' space may be given back.
    pub(super) fn rewrite_durable(&mut self, rewritten: Vec<u32>) {
        for s in rewritten {
            self.protected.remove(&s);
            self.candidates.insert(s);
        }
    }

    fn is_protected(&self, s: u32) -> bool {
        self.protected.contains(&s) || self.compaction.as_ref().is_some_and(|c| c.old.contains(&s))
    }

    pub(super) fn has_work(&self) -> bool {
        !self.candidates.is_empty()
    }
}

impl Mailbox {
    /// Whether some segment may have space to give back.
    pub fn wants_reclaim(&self) -> bool {
        self.reclaim.has_work() && !self.poisoned && !self.is_frozen()
    }

    /// Punches out dead regions of up to `max_segments` candidate segments
    /// and deletes segments with nothing live left. Cheap (no data moves,
    /// no sync); one pass over the message list.
    pub fn reclaim_space(&mut self, max_segments: usize) {
        if self.poisoned || self.reclaim.candidates.is_empty() {
            return;
        }
        // Ascending (a BTreeSet's order): looked up by binary search for
        // each extent of each message, the pass this costs (no hashing:
        // a million messages are two million lookups).
        let todo: Vec<u32> = self.reclaim.candidates.iter().copied().take(max_segments).collect();
        let mut live: Vec<Vec<(u64, u64)>> = vec![Vec::new(); todo.len()];
        let mut add = |e: Extent| {
            if let Ok(i) = todo.binary_search(&e.segment) {
                live[i].push((e.start, e.end));
            }
        };
        for m in &self.msgs {
            extents(&self.location(m)).for_each(&mut add);
        }
        for s in &self.staged {
            extents(&s.rec.location()).for_each(&mut add);
        }
        self.reclaim.inflight.retain(|w| w.strong_count() > 0);
        for r in self.reclaim.inflight.iter().filter_map(Weak::upgrade) {
            add(r.0);
        }
        for &(_, e) in &self.reclaim.pending {
            add(e);
        }
        if let Some(c) = &self.reclaim.compaction {
            for (_, l) in &c.moved {
                extents(l).for_each(&mut add);
            }
        }
        let active = self.writer.as_ref().map(|w| (w.segment, w.pos));
        for (s, mut ranges) in todo.into_iter().zip(live) {
            if self.reclaim.is_protected(s) {
                continue;
            }
            // A response still sending from this segment: try again later.
            if self.segments.borrow().get(&s).is_some_and(|m| Rc::strong_count(&m.map) > 1) {
                continue;
            }
            self.reclaim.candidates.remove(&s);
            let is_active = active.is_some_and(|(a, _)| a == s);
            if ranges.is_empty() && !is_active {
                self.segments.borrow_mut().remove(&s);
                match self.io.remove_file(&seg_path(&self.dir, s)) {
                    Ok(()) => self.dirs.insert(self.dir.join("segments")),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => false,
                    Err(e) => {
                        tracing::warn!(dir = %self.dir.display(), segment = s, error = %e, "cannot remove an empty segment");
                        false
                    }
                };
                continue;
            }
            if self.reclaim.unsupported {
                continue;
            }
            let file = match self.io.open(&seg_path(&self.dir, s), OpenMode::Existing) {
                Ok(f) => f,
                Err(_) => continue,
            };
            let limit = match active {
                Some((a, pos)) if a == s => pos,
                _ => file.len().unwrap_or(0),
            };
            ranges.sort_unstable();
            let mut from = format::SEGMENT_HEADER;
            let mut gaps = Vec::new();
            for &(start, end) in &ranges {
                if start > from {
                    gaps.push((from, start));
                }
                from = from.max(end);
            }
            if limit > from {
                gaps.push((from, limit));
            }
            for (start, end) in gaps {
                let (a, b) = (start.div_ceil(BLOCK) * BLOCK, end / BLOCK * BLOCK);
                if b <= a {
                    continue;
                }
                match file.punch_hole(a, b - a) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                        tracing::info!(dir = %self.dir.display(), "file system cannot punch holes; expunged mail is reclaimed by compaction only");
                        self.reclaim.unsupported = true;
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(dir = %self.dir.display(), segment = s, error = %e, "cannot punch a hole");
                        break;
                    }
                }
            }
        }
    }

    /// Whether to compact this round (see [`Mailbox::wants_compaction`]),
    /// counting down the pause after a failure.
    pub fn compaction_due(&mut self) -> bool {
        if self.is_frozen() {
            return false;
        }
        if self.reclaim.pause > 0 {
            self.reclaim.pause -= 1;
            return false;
        }
        (self.wants_compaction() || self.wants_cache_rewrite()) && !self.poisoned
    }

    /// A compaction step failed: drop what it copied (unreferenced, given
    /// back like any dead space) and wait a minute before trying again.
    pub fn compaction_failed(&mut self) {
        if let Some(c) = self.reclaim.compaction.take() {
            self.reclaim.candidates.extend(c.moved.iter().map(|(_, l)| l.segment));
        }
        self.reclaim.pause = 60;
    }

    /// Whether expunged messages waste enough sealed segments to compact
    /// them (hole punching already gave their space back; compaction
    /// brings the number of files down, or reclaims where punching cannot).
    pub fn wants_compaction(&self) -> bool {
        let threshold = if self.reclaim.unsupported { self.settings.compaction_min_dead.min(1 << 20) } else { self.settings.compaction_min_dead };
        self.dead_bytes >= threshold && self.dead_bytes >= self.live_bytes / 3 && self.nothing_awaits_checkpoint()
    }

    /// Whether cache records an older build wrote were met: a compaction
    /// of caches alone makes them again (the store format upgrade, in the
    /// background and in slices, never a rescan when the mailbox opens).
    pub fn wants_cache_rewrite(&self) -> bool {
        self.reclaim.outdated_seen.get() && self.nothing_awaits_checkpoint()
    }

    fn nothing_awaits_checkpoint(&self) -> bool {
        self.reclaim.compacted.is_empty() && self.reclaim.rewritten.is_empty() && self.reclaim.protected.is_empty()
    }

    /// Copies the live messages of sealed segments into the active one, a
    /// slice at a time (at most `budget` bytes per call) so the worker keeps
    /// serving between slices; a cache record an older build wrote is made
    /// again from its message on the way. Started when only outdated caches
    /// call for it, it copies no message: it writes new cache records for
    /// those alone. When all is written, messages point at the copies in
    /// memory and a checkpoint is wanted; emptied segments are deleted, and
    /// the space of replaced cache records given back, once that checkpoint
    /// is durable. Returns true when done.
    pub fn compact_step(&mut self, budget: u64) -> Result<bool, StoreError> {
        if self.is_frozen() {
            return Err(StoreError::Moving);
        }
        /// Budget a message that needs nothing costs in a rewrite of caches:
        /// its cache's first byte is read, which faults in a page of a
        /// mapping not yet touched (so a slice looks at 1,024 messages).
        const LOOK: u64 = 4096;
        self.check_writable()?;
        if self.reclaim.compaction.is_none() {
            let caches_only = self.wants_cache_rewrite() && !self.wants_compaction();
            let active = self.writer.as_ref().map(|w| w.segment);
            let old: BTreeSet<u32> = if caches_only {
                BTreeSet::new()
            } else {
                self.msgs.iter().flat_map(|m| extents(&self.location(m))).map(|e| e.segment).filter(|s| Some(*s) != active && *s != 0).collect()
            };
            self.reclaim.compaction = Some(Compaction { old, caches_only, next_uid: 0, moved: Vec::new(), replaced: BTreeSet::new() });
        }
        let mut spent = 0u64;
        loop {
            let state = self.reclaim.compaction.as_ref().expect("set above");
            let start = self.msgs.partition_point(|m| m.uid < state.next_uid);
            let Some(&m) = self.msgs.get(start) else { break };
            let l = self.location(&m);
            let whole = state.old.contains(&l.segment) || state.old.contains(&l.cache_segment);
            if spent >= budget {
                return Ok(false);
            }
            let cache = if whole || state.caches_only { Some(self.cache(&m)?) } else { None };
            let outdated = cache.as_ref().is_some_and(|c| !crate::mime::Cache::is_current(c.bytes()));
            if whole || outdated {
                let mut loc = l;
                // Shared from the mapping: copied whole, or analysed.
                let data = self.message(&m)?;
                if whole {
                    let (seg, file, off) = self.reserve(RecordHeader::span(l.length))?;
                    let h = RecordHeader { kind: format::KIND_MESSAGE, uid: m.uid, payload_crc: l.crc, len: l.length, internal_date: l.internal_date };
                    Self::write_record(&file, off, &h, data.bytes())?;
                    self.wrote(seg);
                    (loc.segment, loc.offset) = (seg, off + format::RECORD_HEADER);
                    spent += l.length;
                }
                let remade;
                let blob = match &cache {
                    Some(c) if !outdated => c.bytes(),
                    _ => {
                        // Analysis reads the whole message: it counts.
                        if !whole {
                            spent += l.length;
                        }
                        remade = crate::mime::analyze(data.bytes());
                        &remade[..]
                    }
                };
                // A moved or remade cache keeps its save date.
                let saved = self.save_date(&m)?;
                (loc.cache_segment, loc.cache_offset) = self.write_cache(m.uid, blob, saved)?;
                loc.cache_length = blob.len() as u32;
                spent += blob.len() as u64;
                let state = self.reclaim.compaction.as_mut().expect("set");
                if !whole && l.cache_segment != 0 {
                    state.replaced.insert(l.cache_segment);
                }
                state.moved.push((m.uid, loc));
            } else {
                spent += LOOK;
            }
            self.reclaim.compaction.as_mut().expect("set").next_uid = m.uid + 1;
        }
        let state = self.reclaim.compaction.take().expect("set");
        for (uid, loc) in state.moved {
            if let Ok(i) = self.msgs.binary_search_by_key(&uid, |m| m.uid) {
                let m = self.msgs[i];
                self.appended.push(Rec::new(uid, loc, m.flags, m.keywords, m.modseq));
                self.msgs[i].loc = (self.appended.len() - 1) as u32 | NEW;
            }
        }
        self.reclaim.protected.extend(state.old.iter().chain(&state.replaced).copied());
        self.reclaim.compacted.extend(state.old);
        self.reclaim.rewritten.extend(state.replaced);
        self.reclaim.want_checkpoint();
        self.reclaim.outdated_seen.set(false);
        if !state.caches_only {
            self.dead_bytes = 0;
        }
        Ok(true)
    }
}
