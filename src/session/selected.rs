//! The selected mailbox as one session sees it: its own sequence numbers,
//! which lag behind the mailbox until the session may be told of changes
//! (RFC 9051 7.5.1: no EXPUNGE during FETCH, STORE or SEARCH), and the
//! untagged EXISTS / FETCH FLAGS / EXPUNGE updates that bring it up to date.

use std::rc::Rc;

use super::config::Enabled;
use super::contexts::{self, Context};
use super::flags::flags_item;
use super::vanished;
use crate::proto::{Out, SequenceSet};
use crate::signal::Signal;
use crate::store::{MailboxRef, UidList};

pub struct Selected {
    pub mbox: MailboxRef,
    /// Canonical name (UTF-8).
    pub name: String,
    pub read_only: bool,
    /// UIDs by sequence number (index + 1), as this session knows them.
    uids: UidList,
    version: u64,
    modseq: u64,
    /// Every change up to this modseq, expunges included, was told to the
    /// client; below `modseq` while expunges are held back.
    told: u64,
    /// UIDs that are \Recent in this session (RFC 3501).
    recent: Recent,
    /// Flag changes the client has seen already, not to tell again.
    reported: Reported,
    /// Updates being sent in slices (see [`Selected::sync_step`]).
    pending: Option<Box<SyncPlan>>,
    /// Keywords the session was told of in `* FLAGS`; a response may name
    /// only those (imaptest: "Keyword used without being in FLAGS").
    announced: usize,
    /// `SEARCH RETURN (SAVE)` result, as UIDs (RFC 5182).
    pub saved: Vec<u32>,
    /// CONDSTORE is active: FETCH responses carry MODSEQ.
    pub condstore: bool,
    /// Results kept up to date (RFC 5267 4.3), told of in every sync.
    pub contexts: Vec<Context>,
    signal: Option<Rc<Signal>>,
}

/// Others' flag changes noted as shown at most: past that, the next update
/// tells them again (harmless, and a FETCH of a whole mailbox after a big
/// STORE elsewhere costs no more memory).
const SHOWN_MAX: usize = 4096;

/// Flag changes a command's responses told the client of, since the last
/// update.
#[derive(Default)]
struct Reported {
    /// This session's own changes, by modseq (a STORE's changes are all
    /// its own modseq's).
    own: ModseqRuns,
    /// Others' changes a FETCH showed, as (UID, modseq), ascending: one
    /// modseq may be a STORE over many messages, not all shown.
    shown: Vec<(u32, u64)>,
}

impl Reported {
    fn contains(&self, m: &crate::store::Msg) -> bool {
        self.own.contains(m.modseq) || self.shown.binary_search(&(m.uid, m.modseq)).is_ok()
    }

    fn clear(&mut self) {
        self.own.clear();
        self.shown.clear();
    }
}

/// A set of modseqs kept as ascending runs: the batches of one STORE take
/// consecutive modseqs, so one over a whole mailbox is one run.
#[derive(Default)]
struct ModseqRuns(Vec<(u64, u64)>);

impl ModseqRuns {
    fn insert(&mut self, m: u64) {
        match self.0.last_mut() {
            Some((_, hi)) if *hi + 1 == m => *hi = m,
            Some(&mut (_, hi)) if hi >= m => {
                let i = self.0.partition_point(|&(_, hi)| hi < m);
                if self.0[i].0 > m {
                    self.0.insert(i, (m, m));
                }
            }
            _ => self.0.push((m, m)),
        }
    }

    fn contains(&self, m: u64) -> bool {
        let i = self.0.partition_point(|&(_, hi)| hi < m);
        self.0.get(i).is_some_and(|&(lo, _)| lo <= m)
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

impl Selected {
    pub fn open(mbox: MailboxRef, name: String, read_only: bool, signal: Option<Rc<Signal>>, condstore: bool) -> Selected {
        let (uids, version, modseq, recent) = {
            let mb = mbox.borrow();
            let mut recent = Recent::default();
            if read_only {
                // EXAMINE shows \Recent without taking it (RFC 3501 6.3.2).
                recent.add(mb.recent_floor(), mb.uidnext().saturating_sub(1));
            } else {
                let from = mb.claim_recent();
                recent.add(from, mb.uidnext().saturating_sub(1));
            }
            (mb.uids(), mb.version(), mb.highest_modseq(), recent)
        };
        Selected {
            mbox,
            name,
            read_only,
            uids,
            version,
            modseq,
            told: modseq,
            recent,
            reported: Reported::default(),
            pending: None,
            announced: 0,
            saved: Vec::new(),
            condstore,
            contexts: Vec::new(),
            signal,
        }
    }

    /// While expunges are held back (FETCH, STORE, SEARCH) after MODSEQ
    /// values above theirs may have been sent: the HIGHESTMODSEQ the client
    /// may keep, below the held expunges' (RFC 7162 3.2: else a client that
    /// loses its connection would never hear of them).
    pub fn held_back(&self) -> Option<u64> {
        (self.condstore && self.told < self.modseq).then_some(self.told)
    }

    /// Starts or stops being woken by changes to the mailbox. Only a
    /// session in IDLE, or one whose NOTIFY names the selected mailbox,
    /// needs that; others learn of changes at their next command, and
    /// waking them for nothing costs every busy mailbox dearly.
    pub fn watch(&self, on: bool) {
        if let Some(s) = &self.signal {
            let mb = self.mbox.borrow();
            if on {
                mb.watch(s);
            } else {
                mb.unwatch(s);
            }
        }
    }

    /// `* FLAGS` and `* OK [PERMANENTFLAGS]` (RFC 9051 7.3.5, 7.1): at
    /// SELECT, and again before any response names a keyword the session
    /// has not been told of.
    pub fn announce_flags(&mut self, out: &mut Out, always: bool) {
        let mb = self.mbox.borrow();
        if !always && mb.keywords().len() <= self.announced {
            return;
        }
        let mut flags = String::new();
        for (_, f) in crate::session::flags::SYSTEM_FLAGS {
            flags.push_str(f);
            flags.push(' ');
        }
        for k in mb.keywords() {
            flags.push_str(k);
            flags.push(' ');
        }
        let flags = flags.trim_end();
        out.raw(b"* FLAGS (").str(flags).raw(b")\r\n");
        if self.read_only {
            out.untagged_status("OK", Some("PERMANENTFLAGS ()"), "Read-only mailbox.");
        } else {
            let star = if mb.keywords().len() < crate::store::mailbox::MAX_KEYWORDS { " \\*" } else { "" };
            out.untagged_status("OK", Some(&format!("PERMANENTFLAGS ({flags}{star})")), "Flags permitted.");
        }
        self.announced = mb.keywords().len();
    }

    /// What changed in the mailbox since the session last looked: its
    /// set of messages (arrivals, expunges), and flags.
    pub fn news(&self) -> (bool, bool) {
        let mb = self.mbox.borrow();
        (mb.version() != self.version, mb.highest_modseq() != self.modseq)
    }

    /// Stops watching the mailbox (on CLOSE, UNSELECT, another SELECT).
    pub fn close(&self) {
        self.watch(false);
    }

    pub fn exists(&self) -> u32 {
        self.uids.len() as u32
    }

    pub fn uids(&self) -> &UidList {
        &self.uids
    }

    pub fn is_recent(&self, uid: u32) -> bool {
        self.recent.contains(uid)
    }

    pub fn recent_count(&self) -> u32 {
        self.recent.count_in(&self.uids)
    }

    /// Remembers a flag change (its modseq) reported in this command's own
    /// responses.
    pub fn reported(&mut self, modseq: u64) {
        self.reported.own.insert(modseq);
    }

    /// A command's response showed these flags of `uid`: a change newer
    /// than the session knows is then not told again by the next update.
    /// (Only such changes are noted, so a FETCH over the whole mailbox
    /// notes no more than what changed.)
    pub fn flags_shown(&mut self, uid: u32, modseq: u64) {
        let shown = &mut self.reported.shown;
        if modseq > self.modseq && shown.len() < SHOWN_MAX {
            let i = shown.partition_point(|&x| x < (uid, modseq));
            if shown.get(i) != Some(&(uid, modseq)) {
                shown.insert(i, (uid, modseq));
            }
        }
    }

    /// The messages a sequence set names, in this session's numbering, as
    /// a cursor (nothing is expanded). For sequence numbers, a number beyond
    /// the mailbox is an error (None); for UIDs, UIDs that do not exist are
    /// skipped (RFC 9051 6.4.8), and `*` always names the last message.
    pub fn select(&self, set: &SequenceSet, uid: bool) -> Option<Selection> {
        let n = self.uids.len() as u32;
        let mut spans: Vec<(u32, u32)> = Vec::new();
        match set {
            SequenceSet::Saved => {
                // The saved UIDs still here, as runs of positions.
                for &u in &self.saved {
                    if let Ok(i) = self.uids.binary_search(u) {
                        let i = i as u32;
                        match spans.last_mut() {
                            Some(last) if last.1 == i => last.1 = i + 1,
                            _ => spans.push((i, i + 1)),
                        }
                    }
                }
            }
            SequenceSet::Ranges(r) if uid => {
                let max_uid = self.uids.last().unwrap_or(0);
                for (lo, hi) in r.resolve(max_uid) {
                    let a = self.uids.partition_point(|u| u < lo) as u32;
                    let b = self.uids.partition_point(|u| u <= hi) as u32;
                    if a < b {
                        spans.push((a, b));
                    }
                }
                // `*` names the last message even when its range does not.
                if r.has_star() && n > 0 && spans.last().is_none_or(|s| s.1 < n) {
                    spans.push((n - 1, n));
                }
            }
            SequenceSet::Ranges(r) => {
                for (lo, hi) in r.resolve(n) {
                    if lo == 0 || hi > n {
                        return None;
                    }
                    spans.push((lo - 1, hi));
                }
            }
        }
        Some(Selection::new(self.uids.clone(), spans))
    }

    /// Sends what changed in the mailbox since the session last looked:
    /// EXPUNGE (only when `expunge_ok`), EXISTS / RECENT, and FETCH FLAGS of
    /// messages changed by others. All of it at once: for small updates and
    /// tests; commands use [`Selected::sync_step`]. False if the mailbox was
    /// deleted.
    #[cfg(test)]
    pub fn sync(&mut self, out: &mut Out, enabled: Enabled, expunge_ok: bool) -> bool {
        loop {
            match self.sync_step(out, enabled, expunge_ok, usize::MAX) {
                Synced::Done => return true,
                Synced::Deleted => return false,
                Synced::More => {}
            }
        }
    }

    /// As [`Selected::sync`], stopping once `out` holds `budget` bytes
    /// (More: call again, after a flush, to send the rest of the same
    /// updates). The session's numbering moves to the mailbox's at the
    /// first call; the lines follow in slices.
    pub fn sync_step(&mut self, out: &mut Out, enabled: Enabled, expunge_ok: bool, budget: usize) -> Synced {
        if self.pending.is_none() {
            self.announce_flags(out, false);
            match self.plan(enabled, expunge_ok) {
                None => return Synced::Deleted,
                Some(None) => return Synced::Done,
                Some(Some(p)) => self.pending = Some(p),
            }
        }
        let mb = self.mbox.borrow();
        let p = self.pending.as_mut().expect("planned above");
        // RFC 5267 4.3: REMOVEFROM for expunged messages before their EXPUNGE.
        out.raw(&std::mem::take(&mut p.results_before));
        while let Some(&seq) = p.expunged.get(p.at) {
            if out.len() >= budget {
                return Synced::More;
            }
            out.raw(b"* ").num(u64::from(seq)).raw(b" EXPUNGE\r\n");
            p.at += 1;
        }
        // RFC 7162 3.2.10: with QRESYNC, the same expunges as UIDs.
        while p.at_vanished < p.vanished.len() {
            if out.len() >= budget {
                return Synced::More;
            }
            p.at_vanished += vanished::line(out, false, &p.vanished[p.at_vanished..]);
        }
        if let Some(exists) = p.exists.take() {
            out.raw(b"* ").num(u64::from(exists)).raw(b" EXISTS\r\n");
            if let Some(recent) = p.recent.take() {
                out.raw(b"* ").num(u64::from(recent)).raw(b" RECENT\r\n");
            }
        }
        while let Some(&uid) = p.flags.get(p.at_flags) {
            if out.len() >= budget {
                return Synced::More;
            }
            p.at_flags += 1;
            let Some(m) = mb.find_from(uid, &mut p.at_msg) else { continue };
            if m.modseq <= p.since_modseq || m.uid > p.last_known || self.reported.contains(m) {
                continue;
            }
            let Ok(i) = self.uids.binary_search(m.uid) else { continue };
            out.raw(b"* ").num(i as u64 + 1).raw(b" FETCH (");
            flags_item(out, m, mb.keywords(), !enabled.rev2 && self.recent.contains(m.uid));
            out.raw(b" UID ").num(u64::from(m.uid));
            if self.condstore {
                out.raw(b" MODSEQ (").num(m.modseq).raw(b")");
            }
            out.raw(b")\r\n");
        }
        out.raw(&std::mem::take(&mut p.results_after));
        drop(mb);
        self.pending = None;
        self.reported.clear();
        Synced::Done
    }

    /// What changed since the session last looked, with the session's
    /// numbering moved to the mailbox's. None: the mailbox was deleted;
    /// Some(None): nothing to say.
    fn plan(&mut self, enabled: Enabled, expunge_ok: bool) -> Option<Option<Box<SyncPlan>>> {
        let mb = self.mbox.borrow();
        if mb.is_deleted() {
            return None;
        }
        if mb.version() == self.version && mb.highest_modseq() == self.modseq {
            self.reported.clear();
            return Some(None);
        }
        let current = mb.uids();
        // Expunges: positions (0-based) of UIDs this session knows that the
        // mailbox no longer has; from the journal when it reaches back far
        // enough, else by comparing the two lists.
        let mut gone: Vec<usize> = match mb.expunged_since(self.version) {
            Some(uids) => uids.filter_map(|u| self.uids.binary_search(u).ok()).collect(),
            None => {
                let mut v = Vec::new();
                let mut present = current.iter().peekable();
                for (i, u) in self.uids.iter().enumerate() {
                    while present.next_if(|&c| c < u).is_some() {}
                    if present.peek() != Some(&u) {
                        v.push(i);
                    }
                }
                v
            }
        };
        gone.sort_unstable();
        gone.dedup();
        let expunged_pending = !gone.is_empty() && !expunge_ok;
        // Kept results lose the expunged messages, told in the numbering
        // the client has until the EXPUNGE responses that follow.
        let mut results_before = Out::new();
        if !expunged_pending && !self.contexts.is_empty() {
            let gone_uids: Vec<u32> = gone.iter().map(|&i| self.uids[i]).collect();
            let changes = contexts::expunged(&mut self.contexts, &gone_uids);
            let old = self.uids.clone();
            let seq_of = move |u: u32| old.binary_search(u).ok().map(|i| i as u32 + 1);
            contexts::write(&mut results_before, &self.contexts, &changes, &seq_of);
        }
        // Highest number first (RFC 9051 7.5.1: each EXPUNGE renumbers the
        // rest); with QRESYNC, UIDs in VANISHED instead (in UID order).
        let (expunged, vanished): (Vec<u32>, Vec<(u32, u32)>) = match (expunged_pending, enabled.qresync) {
            (true, _) => Default::default(),
            (false, false) => (gone.iter().rev().map(|&i| i as u32 + 1).collect(), Vec::new()),
            (false, true) => (Vec::new(), crate::proto::ranges_of(&gone.iter().map(|&i| self.uids[i]).collect::<Vec<_>>())),
        };
        // New messages: the mailbox's UIDs above the last one we know.
        let last = self.uids.last().unwrap_or(0);
        let start = current.partition_point(|u| u <= last);
        let added: Vec<u32> = current.iter_from(start).collect();
        let added = &added[..];
        // This session's numbering after the update. Unless expunges must
        // wait, it is exactly the mailbox's list (known minus expunged plus
        // added), shared rather than copied.
        let uids = if expunged_pending && !added.is_empty() {
            self.uids.appended(added)
        } else if expunged_pending {
            self.uids.clone()
        } else {
            current.clone()
        };
        let (mut exists, mut recent) = (None, None);
        if !added.is_empty() {
            if !self.read_only && mb.claim_recent_from(added[0]) {
                self.recent.add(added[0], *added.last().expect("non-empty"));
            }
            exists = Some(uids.len() as u32);
            if !enabled.rev2 {
                recent = Some(self.recent.count_in(&uids));
            }
        }
        // Flag changes by others, for messages the session already knew.
        let flags: Vec<u32> = if mb.highest_modseq() == self.modseq {
            Vec::new()
        } else {
            match mb.flags_changed_since(self.modseq, |m| self.reported.own.contains(m)) {
                Some(mut changed) => {
                    // Arrivals are in the journal too; they are new here, not changed.
                    changed.retain(|&u| u <= last);
                    changed
                }
                None => mb.msgs().iter().filter(|m| m.modseq > self.modseq && m.uid <= last).map(|m| m.uid).collect(),
            }
        };
        let since_modseq = self.modseq;
        self.modseq = mb.highest_modseq();
        if !expunged_pending {
            // Keep the old version while expunges wait, to find them again.
            self.version = mb.version();
            self.told = self.modseq;
        }
        self.uids = uids;
        // Kept results take in what changed and what arrived.
        let mut results_after = Out::new();
        if !self.contexts.is_empty() {
            let mut ctxs = std::mem::take(&mut self.contexts);
            let changes = contexts::reevaluated(&mut ctxs, &mb, &*self, &flags, added);
            let seq_of = |u: u32| self.uids.binary_search(u).ok().map(|i| i as u32 + 1);
            contexts::write(&mut results_after, &ctxs, &changes, &seq_of);
            self.contexts = ctxs;
        }
        let plan = SyncPlan {
            expunged,
            at: 0,
            vanished,
            at_vanished: 0,
            exists,
            recent,
            flags,
            at_flags: 0,
            at_msg: 0,
            since_modseq,
            last_known: last,
            results_before: results_before.buf,
            results_after: results_after.buf,
        };
        Some(Some(Box::new(plan)))
    }
}

/// Updates decided by one sync and being sent.
struct SyncPlan {
    /// EXPUNGE responses to send, in order, and how many were sent.
    expunged: Vec<u32>,
    at: usize,
    /// The same as UID ranges, for a QRESYNC client, and how many were sent.
    vanished: Vec<(u32, u32)>,
    at_vanished: usize,
    exists: Option<u32>,
    recent: Option<u32>,
    /// UIDs whose flags others changed, and how many were looked at.
    flags: Vec<u32>,
    at_flags: usize,
    /// Where in the mailbox's messages the last of `flags` was (see
    /// `Mailbox::find_from`: they usually ascend).
    at_msg: usize,
    /// Changes at or below this modseq were known to the session.
    since_modseq: u64,
    /// The highest UID the session knew before (newer ones are new, not changed).
    last_known: u32,
    /// `* ESEARCH` updates of kept results (RFC 5267 4.3): before the
    /// EXPUNGE responses, and after the rest.
    results_before: Vec<u8>,
    results_after: Vec<u8>,
}

impl super::search::Numbering for Selected {
    fn uids(&self) -> &UidList {
        &self.uids
    }

    fn is_recent(&self, uid: u32) -> bool {
        self.recent.contains(uid)
    }

    fn saved(&self) -> &[u32] {
        &self.saved
    }
}

/// How far a [`Selected::sync_step`] got.
#[derive(Debug, PartialEq, Eq)]
pub enum Synced {
    Done,
    /// The budget is full: more updates of the same sync follow.
    More,
    /// The mailbox was deleted (or its storage failed): the session must end.
    Deleted,
}

/// The messages a sequence set names, walked in order as (sequence number,
/// UID) without ever expanding the set.
#[derive(Clone)]
pub struct Selection {
    uids: UidList,
    /// Runs of positions in `uids`, [start, end), ascending and disjoint.
    spans: Vec<(u32, u32)>,
    span: usize,
    pos: u32,
}

impl Selection {
    fn new(uids: UidList, spans: Vec<(u32, u32)>) -> Selection {
        let pos = spans.first().map_or(0, |s| s.0);
        Selection { uids, spans, span: 0, pos }
    }

    /// The part of this (not yet walked) selection whose UIDs are in
    /// `only` (ascending): O(|only| log n), whatever the set's size.
    pub fn narrowed(&self, only: &[u32]) -> Selection {
        let mut spans: Vec<(u32, u32)> = Vec::new();
        for &u in only {
            let Ok(i) = self.uids.binary_search(u) else { continue };
            let i = i as u32;
            let k = self.spans.partition_point(|&(_, end)| end <= i);
            if self.spans.get(k).is_none_or(|&(start, _)| start > i) {
                continue;
            }
            match spans.last_mut() {
                Some(last) if last.1 == i => last.1 = i + 1,
                _ => spans.push((i, i + 1)),
            }
        }
        Selection::new(self.uids.clone(), spans)
    }

    /// How many messages are left.
    pub fn remaining(&self) -> usize {
        self.spans.iter().skip(self.span).map(|&(a, b)| (b - a.max(self.pos)) as usize).sum()
    }
}

impl Iterator for Selection {
    type Item = (u32, u32);
    fn next(&mut self) -> Option<(u32, u32)> {
        loop {
            let &(start, end) = self.spans.get(self.span)?;
            self.pos = self.pos.max(start);
            if self.pos < end {
                let i = self.pos;
                self.pos += 1;
                return Some((i + 1, self.uids[i as usize]));
            }
            self.span += 1;
        }
    }
}

/// UID ranges claimed as \Recent. Claims are nearly always contiguous, so
/// the common case is one range held inline, with no allocation.
#[derive(Default)]
struct Recent {
    first: Option<(u32, u32)>,
    more: Vec<(u32, u32)>,
}

impl Recent {
    fn add(&mut self, a: u32, b: u32) {
        if a > b {
            return;
        }
        match &mut self.first {
            None => self.first = Some((a, b)),
            Some(r) if self.more.is_empty() && r.1.checked_add(1) == Some(a) => r.1 = b,
            Some(_) => self.more.push((a, b)),
        }
    }

    fn contains(&self, uid: u32) -> bool {
        self.first.is_some_and(|(a, b)| a <= uid && uid <= b) || self.more.iter().any(|&(a, b)| a <= uid && uid <= b)
    }

    /// How many of `uids` (ascending) are recent: a binary search per
    /// range (they never overlap: each claims UIDs above the last), not a
    /// look at every message, which each arrival in a big mailbox paid.
    fn count_in(&self, uids: &UidList) -> u32 {
        self.first.iter().chain(&self.more).map(|&(a, b)| uids.partition_point(|u| u <= b) - uids.partition_point(|u| u < a)).sum::<usize>() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::io::{Io, MemIo};
    use crate::store::{Mailbox, Settings};
    use std::cell::RefCell;

    proptest::proptest! {
        /// The runs hold exactly the modseqs inserted, in any order: runs
        /// (the batches of a STORE), single ones (a FETCH that set \Seen),
        /// repeats.
        #[test]
        fn modseq_runs_hold_what_was_inserted(inserts in proptest::collection::vec(1u64..300, 0..200), asks in proptest::collection::vec(0u64..310, 0..100)) {
            let mut runs = ModseqRuns::default();
            let mut set = std::collections::BTreeSet::new();
            for (k, &m) in inserts.iter().enumerate() {
                // Every third insert starts a run of five, as a STORE does.
                let run = if k % 3 == 0 { m..m + 5 } else { m..m + 1 };
                for x in run {
                    runs.insert(x);
                    set.insert(x);
                }
            }
            for m in asks.into_iter().chain(set.iter().copied()) {
                proptest::prop_assert_eq!(runs.contains(m), set.contains(&m), "modseq {}", m);
            }
        }
    }

    #[test]
    fn recent_counts_by_range() {
        let mut r = Recent::default();
        r.add(5, 9);
        r.add(10, 12);
        r.add(20, 25);
        let uids: UidList = (1..=30).filter(|u| u % 3 != 0).collect();
        assert_eq!(r.count_in(&uids), uids.iter().filter(|&u| r.contains(u)).count() as u32);
        assert_eq!(r.count_in(&UidList::default()), 0);
        assert_eq!(Recent::default().count_in(&uids), 0);
    }

    fn text(out: &mut Out) -> String {
        let s = String::from_utf8(out.buf.clone()).unwrap();
        out.clear();
        s
    }

    #[test]
    fn a_narrowed_selection_keeps_only_the_named_uids_inside_the_set() {
        let uids: UidList = [2, 4, 6, 8, 10, 12].into_iter().collect();
        // Positions 1..3 and 4..6: UIDs 4, 6, 10, 12.
        let s = Selection::new(uids, vec![(1, 3), (4, 6)]);
        let got: Vec<(u32, u32)> = s.narrowed(&[2, 3, 6, 10, 12, 99]).collect();
        assert_eq!(got, [(3, 6), (5, 10), (6, 12)]);
    }

    /// The journal and the full comparison must say the same thing; the
    /// second session here has fallen behind further than the journal reaches.
    #[test]
    fn catching_up_from_the_journal_or_by_full_comparison_agree() {
        let io: Rc<dyn Io> = Rc::new(MemIo::new());
        let mb = Rc::new(RefCell::new(Mailbox::create(io, std::path::Path::new("/b"), 9, Settings::default()).unwrap()));
        for i in 0..20 {
            mb.borrow_mut().append_bytes(format!("Subject: {i}\r\n\r\nx\r\n").as_bytes(), 0, 0, 0).unwrap();
        }
        mb.borrow_mut().commit().unwrap();
        let enabled = Enabled { rev2: true, ..Enabled::default() };
        let mut near = Selected::open(mb.clone(), "INBOX".into(), false, None, false);
        let mut far = Selected::open(mb.clone(), "INBOX".into(), false, None, false);
        let mut out = Out::new();
        // 5000 flag changes overflow the journal for `far`; `near` syncs often.
        for round in 0..5000u32 {
            let uid = 1 + round % 20;
            // Every touch flips the flag: 5000 real changes.
            let flags = if (round / 20) % 2 == 0 { crate::store::format::F_SEEN } else { 0 };
            mb.borrow_mut().set_flags(uid, flags, 0).unwrap();
            if round % 100 == 0 {
                near.sync(&mut out, enabled, true);
                out.clear();
            }
        }
        mb.borrow_mut().expunge(&[3, 7]).unwrap();
        assert!(near.sync(&mut out, enabled, false));
        let held = text(&mut out);
        assert!(!held.contains("EXPUNGE"), "expunges wait during FETCH/STORE/SEARCH: {held}");
        assert!(near.sync(&mut out, enabled, true));
        let near_text = held + &text(&mut out);
        assert!(far.sync(&mut out, enabled, true));
        let far_text = text(&mut out);
        // Sequence numbers differ (`near` reported its changes before its
        // expunges, in the old numbering); what changed must not.
        let lines = |t: &str| -> Vec<String> {
            let mut v: Vec<String> =
                t.lines().map(|l| if l.contains(" FETCH ") { l.split_once(" FETCH ").unwrap().1.to_string() } else { l.to_string() }).collect();
            v.sort();
            v
        };
        assert!(far_text.starts_with("* 7 EXPUNGE\r\n* 3 EXPUNGE\r\n"), "descending (RFC 9051 7.5.1): {far_text}");
        assert_eq!(lines(&far_text), lines(&near_text));
        assert_eq!(far_text.matches(" FETCH (FLAGS () UID ").count(), 18, "{far_text}");
        assert_eq!(far.exists(), 18);
        assert_eq!(near.uids(), far.uids());
    }
}
