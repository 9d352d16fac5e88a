//! The selected mailbox as one session sees it: its own sequence numbers,
//! which lag behind the mailbox until the session may be told of changes
//! (RFC 9051 7.5.1: no EXPUNGE during FETCH, STORE or SEARCH), and the
//! untagged EXISTS / FETCH FLAGS / EXPUNGE updates that bring it up to date.

use std::rc::Rc;

use super::Enabled;
use crate::proto::{Out, SequenceSet, STAR};
use crate::signal::Signal;
use crate::store::{MailboxRef, Msg};

pub struct Selected {
    pub mbox: MailboxRef,
    /// Canonical name (UTF-8).
    pub name: String,
    pub read_only: bool,
    /// UIDs by sequence number (index + 1), as this session knows them.
    uids: Rc<[u32]>,
    version: u64,
    modseq: u64,
    /// UIDs that are \Recent in this session (RFC 3501).
    recent: Recent,
    /// Flag changes this session made and already reported: (uid, modseq).
    own: Vec<(u32, u64)>,
    /// `SEARCH RETURN (SAVE)` result, as UIDs (RFC 5182).
    pub saved: Vec<u32>,
    /// CONDSTORE is active: FETCH responses carry MODSEQ.
    pub condstore: bool,
    signal: Option<Rc<Signal>>,
}

impl Selected {
    pub fn open(mbox: MailboxRef, name: String, read_only: bool, signal: Option<Rc<Signal>>, condstore: bool) -> Selected {
        let (uids, version, modseq, recent) = {
            let mb = mbox.borrow();
            if let Some(s) = &signal {
                mb.watch(s);
            }
            let mut recent = Recent::default();
            if !read_only {
                let from = mb.claim_recent();
                recent.add(from, mb.uidnext().saturating_sub(1));
            }
            (mb.uids(), mb.version(), mb.highest_modseq(), recent)
        };
        Selected { mbox, name, read_only, uids, version, modseq, recent, own: Vec::new(), saved: Vec::new(), condstore, signal }
    }

    /// Stops watching the mailbox (on CLOSE, UNSELECT, another SELECT).
    pub fn close(&self) {
        if let Some(s) = &self.signal {
            self.mbox.borrow().unwatch(s);
        }
    }

    pub fn exists(&self) -> u32 {
        self.uids.len() as u32
    }

    pub fn uids(&self) -> &[u32] {
        &self.uids
    }

    pub fn seq_of(&self, uid: u32) -> Option<u32> {
        self.uids.binary_search(&uid).ok().map(|i| i as u32 + 1)
    }

    pub fn is_recent(&self, uid: u32) -> bool {
        self.recent.contains(uid)
    }

    pub fn recent_count(&self) -> u32 {
        self.uids.iter().filter(|&&u| self.is_recent(u)).count() as u32
    }

    /// Remembers a flag change reported in this command's own responses.
    pub fn reported(&mut self, uid: u32, modseq: u64) {
        self.own.push((uid, modseq));
    }

    /// Messages of a sequence set as (seq, uid), ascending. For sequence
    /// numbers, a number beyond the mailbox is an error (None); for UIDs,
    /// UIDs that do not exist are skipped (RFC 9051 6.4.8).
    pub fn resolve(&self, set: &SequenceSet, uid: bool) -> Option<Vec<(u32, u32)>> {
        let n = self.uids.len() as u32;
        let ranges = match set {
            SequenceSet::Saved => {
                return Some(self.saved.iter().filter_map(|&u| self.seq_of(u).map(|s| (s, u))).collect());
            }
            SequenceSet::Ranges(r) => r,
        };
        let mut out: Vec<(u32, u32)> = Vec::new();
        if uid {
            let max_uid = self.uids.last().copied().unwrap_or(0);
            for r in ranges {
                let a = if r.start == STAR { max_uid } else { r.start };
                let b = if r.end == STAR { max_uid } else { r.end };
                let (lo, hi) = (a.min(b), a.max(b));
                let start = self.uids.partition_point(|&u| u < lo);
                for (i, &u) in self.uids[start..].iter().enumerate() {
                    if u > hi {
                        break;
                    }
                    out.push((start as u32 + i as u32 + 1, u));
                }
                // `*` always names the last message, even past the range (RFC 9051 6.4.8).
                if (r.start == STAR || r.end == STAR) && n > 0 && !out.iter().any(|&(s, _)| s == n) {
                    out.push((n, max_uid));
                }
            }
        } else {
            for r in ranges {
                let a = if r.start == STAR { n } else { r.start };
                let b = if r.end == STAR { n } else { r.end };
                let (lo, hi) = (a.min(b), a.max(b));
                if lo == 0 || hi > n {
                    return None;
                }
                for s in lo..=hi {
                    out.push((s, self.uids[s as usize - 1]));
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        Some(out)
    }

    /// Sends what changed in the mailbox since the session last looked:
    /// EXPUNGE (only when `expunge_ok`), EXISTS / RECENT, and FETCH FLAGS of
    /// messages changed by others. Returns false if the mailbox was deleted.
    pub fn sync(&mut self, out: &mut Out, enabled: Enabled, expunge_ok: bool) -> bool {
        let mb = self.mbox.borrow();
        if mb.is_deleted() {
            return false;
        }
        if mb.version() == self.version && mb.highest_modseq() == self.modseq {
            self.own.clear();
            return true;
        }
        let current = mb.uids();
        let mut uids: Vec<u32>;
        let mut expunged_pending = false;
        // Expunges: UIDs this session knows that the mailbox no longer has.
        let gone: Vec<usize> = {
            let mut v = Vec::new();
            let mut j = 0;
            for (i, &u) in self.uids.iter().enumerate() {
                while j < current.len() && current[j] < u {
                    j += 1;
                }
                if j >= current.len() || current[j] != u {
                    v.push(i);
                }
            }
            v
        };
        if !gone.is_empty() && expunge_ok {
            for &i in gone.iter().rev() {
                out.raw(b"* ").num(i as u64 + 1).raw(b" EXPUNGE\r\n");
            }
            uids = self.uids.to_vec();
            for &i in gone.iter().rev() {
                uids.remove(i);
            }
        } else {
            expunged_pending = !gone.is_empty();
            uids = self.uids.to_vec();
        }
        // New messages: the mailbox's UIDs above the last one we know.
        let last = self.uids.last().copied().unwrap_or(0);
        let start = current.partition_point(|&u| u <= last);
        let added = &current[start..];
        if !added.is_empty() {
            uids.extend_from_slice(added);
            if !self.read_only && mb.claim_recent_from(added[0]) {
                self.recent.add(added[0], *added.last().expect("non-empty"));
            }
            out.raw(b"* ").num(uids.len() as u64).raw(b" EXISTS\r\n");
            if !enabled.rev2 {
                let recent = uids.iter().filter(|&&u| self.is_recent(u)).count();
                out.raw(b"* ").num(recent as u64).raw(b" RECENT\r\n");
            }
        }
        // Flag changes by others, for messages the session already knew.
        if mb.highest_modseq() != self.modseq {
            for m in mb.msgs().iter().filter(|m| m.modseq > self.modseq && m.uid <= last) {
                if self.own.iter().any(|&(u, s)| u == m.uid && s == m.modseq) {
                    continue;
                }
                let Ok(i) = uids.binary_search(&m.uid) else { continue };
                out.raw(b"* ").num(i as u64 + 1).raw(b" FETCH (");
                flags_item(out, m, mb.keywords(), !enabled.rev2 && self.is_recent(m.uid));
                out.raw(b" UID ").num(u64::from(m.uid));
                if self.condstore {
                    out.raw(b" MODSEQ (").num(m.modseq).raw(b")");
                }
                out.raw(b")\r\n");
            }
        }
        self.own.clear();
        self.modseq = mb.highest_modseq();
        if expunged_pending {
            // Keep the old numbering; come back when EXPUNGE may be sent.
            self.uids = uids.into();
        } else {
            self.version = mb.version();
            self.uids = if uids.len() == current.len() { current } else { uids.into() };
        }
        true
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
}

/// `FLAGS (...)` of a message.
pub fn flags_item(out: &mut Out, m: &Msg, keywords: &[String], recent: bool) {
    out.raw(b"FLAGS (");
    let mut first = true;
    let mut put = |out: &mut Out, s: &str| {
        if !first {
            out.sp();
        }
        first = false;
        out.str(s);
    };
    for (bit, name) in crate::session::cmd::SYSTEM_FLAGS {
        if m.flags & bit != 0 {
            put(out, name);
        }
    }
    if recent {
        put(out, "\\Recent");
    }
    for (i, k) in keywords.iter().enumerate() {
        if m.keywords & (1 << i) != 0 {
            put(out, k);
        }
    }
    out.raw(b")");
}
