//! Recent expunges and flag changes of a mailbox, so that a session
//! catching up looks only at what changed since it last looked instead of
//! comparing every message (which made each command O(mailbox size) while
//! other sessions were busy). Bounded: a session that fell further behind
//! than the journal reaches falls back to the full comparison.
//!
//! The same entries, with arrivals among the changes, answer QRESYNC and
//! CHANGEDSINCE (RFC 7162 3.2.5, 3.2.6): what went or changed after a
//! modseq. Nothing here is written to disk: on open the journal is rebuilt
//! from the change log back to the last checkpoint ([`Journal::with_history`]).
//! For a client asking from before what it holds, the caller lists every
//! UID of the client's range that no longer exists (RFC 7162 5.1: correct,
//! only less compact).

use std::collections::VecDeque;

/// Entries kept of each kind.
const KEEP: usize = 4096;

/// A change of at least this many messages at one modseq (a STORE batch)
/// is one entry that does not list them: see [`Journal::flags_since`].
const BULK: usize = 64;

/// The UID of an entry standing for a change of many messages (no message
/// has UID 0).
const MANY: u32 = 0;

#[derive(Debug, Default)]
pub struct Journal {
    /// (mailbox version after the expunge, modseq of the expunge, uid).
    expunged: VecDeque<(u64, u64, u32)>,
    /// Every expunge after this version is in `expunged`.
    expunged_from: u64,
    /// Every expunge with a higher modseq is in `expunged`.
    expunged_modseq_from: u64,
    /// (modseq of the change, uid): flag changes and arrivals; UID
    /// [`MANY`] for a change of many messages.
    flags: VecDeque<(u64, u32)>,
    /// Every flag change after this modseq is in `flags`.
    flags_from: u64,
}

impl Journal {
    /// An empty journal that covers everything after `version` and `modseq`.
    pub fn starting_at(version: u64, modseq: u64) -> Journal {
        Journal { expunged_from: version, expunged_modseq_from: modseq, flags_from: modseq, ..Journal::default() }
    }

    /// The journal of a mailbox just opened at `version` whose logs hold
    /// every expunge and every change (arrivals, flags) after modseq `from`
    /// (the checkpoint's), each as (modseq, UID) in log order: QRESYNC and
    /// CHANGEDSINCE are then answered across a restart. Sessions never see
    /// these expunges as new: their version, 0, is older than any session's.
    pub fn with_history(version: u64, from: u64, expunged: impl Iterator<Item = (u64, u32)>, changed: impl Iterator<Item = (u64, u32)>) -> Journal {
        let (expunged, expunged_modseq_from) = last_kept(expunged, from);
        let (flags, flags_from) = last_kept(changed, from);
        Journal { expunged: expunged.into_iter().map(|(m, u)| (0, m, u)).collect(), expunged_from: version, expunged_modseq_from, flags, flags_from }
    }

    pub fn expunged(&mut self, version: u64, modseq: u64, uid: u32) {
        debug_assert!(self.expunged.back().is_none_or(|&(_, m, _)| m <= modseq), "journal out of modseq order");
        if self.expunged.len() == KEEP {
            if let Some((v, m, _)) = self.expunged.pop_front() {
                self.expunged_from = self.expunged_from.max(v);
                self.expunged_modseq_from = self.expunged_modseq_from.max(m);
            }
        }
        self.expunged.push_back((version, modseq, uid));
    }

    pub fn flags_changed(&mut self, modseq: u64, uid: u32) {
        // The lookups below binary-search by modseq.
        debug_assert!(self.flags.back().is_none_or(|&(m, _)| m <= modseq), "journal out of modseq order");
        if self.flags.len() == KEEP {
            if let Some((m, _)) = self.flags.pop_front() {
                self.flags_from = self.flags_from.max(m);
            }
        }
        self.flags.push_back((modseq, uid));
    }

    /// Flag changes of many messages at one modseq (a STORE batch's).
    /// [`BULK`] or more are one entry that does not list them.
    pub fn flags_changed_many(&mut self, modseq: u64, uids: &[u32]) {
        for (m, u) in entries(modseq, uids) {
            self.flags_changed(m, u);
        }
    }

    /// UIDs expunged after `version`, or None if the journal does not reach back that far.
    pub fn expunged_since(&self, version: u64) -> Option<impl Iterator<Item = u32> + '_> {
        (version >= self.expunged_from).then(|| {
            let start = self.expunged.partition_point(|&(v, _, _)| v <= version);
            self.expunged.range(start..).map(|&(_, _, u)| u)
        })
    }

    /// UIDs expunged with a modseq above `modseq`, or None if the journal
    /// does not reach back that far.
    pub fn expunged_after_modseq(&self, modseq: u64) -> Option<impl Iterator<Item = u32> + '_> {
        (modseq >= self.expunged_modseq_from).then(|| {
            let start = self.expunged.partition_point(|&(_, m, _)| m <= modseq);
            self.expunged.range(start..).map(|&(_, _, u)| u)
        })
    }

    /// UIDs whose flags changed after `modseq` (a UID may repeat), or None
    /// if the journal does not reach back that far or a change of many
    /// messages since is not listed, unless `known(its modseq)` says the
    /// asker knows of it (a session's own STORE).
    pub fn flags_since(&self, modseq: u64, known: impl Fn(u64) -> bool) -> Option<impl Iterator<Item = u32> + '_> {
        if modseq < self.flags_from {
            return None;
        }
        let start = self.flags.partition_point(|&(m, _)| m <= modseq);
        let changes = self.flags.range(start..);
        if changes.clone().any(|&(m, u)| u == MANY && !known(m)) {
            return None;
        }
        Some(changes.filter(|&&(_, u)| u != MANY).map(|&(_, u)| u))
    }
}

/// The journal entries, (modseq, UID), of a change of `uids` at `modseq`:
/// one per message, or one for them all when they are [`BULK`] or more.
pub fn entries(modseq: u64, uids: &[u32]) -> impl Iterator<Item = (u64, u32)> + '_ {
    let bulk = uids.len() >= BULK;
    let listed = if bulk { &[][..] } else { uids };
    bulk.then_some((modseq, MANY)).into_iter().chain(listed.iter().map(move |&u| (modseq, u)))
}

/// The last [`KEEP`] entries of `history` after modseq `from`, and the
/// modseq after which they hold every entry.
fn last_kept(history: impl Iterator<Item = (u64, u32)>, from: u64) -> (VecDeque<(u64, u32)>, u64) {
    let mut kept: VecDeque<(u64, u32)> = history.filter(|&(m, _)| m > from).collect();
    let mut from = from;
    while kept.len() > KEEP {
        if let Some((m, _)) = kept.pop_front() {
            from = from.max(m);
        }
    }
    (kept, from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_only_what_it_covers() {
        let mut j = Journal::starting_at(10, 100);
        j.expunged(11, 101, 5);
        j.expunged(12, 102, 7);
        j.flags_changed(101, 3);
        j.flags_changed(103, 3);
        assert_eq!(j.expunged_since(10).unwrap().collect::<Vec<_>>(), [5, 7]);
        assert_eq!(j.expunged_since(11).unwrap().collect::<Vec<_>>(), [7]);
        assert!(j.expunged_since(9).is_none(), "older than the journal");
        assert_eq!(j.expunged_after_modseq(101).unwrap().collect::<Vec<_>>(), [7]);
        assert!(j.expunged_after_modseq(99).is_none());
        let none = |_| false;
        assert_eq!(j.flags_since(101, none).unwrap().collect::<Vec<_>>(), [3]);
        assert!(j.flags_since(99, none).is_none());
        for i in 0..KEEP as u64 {
            j.flags_changed(200 + i, 1);
        }
        assert!(j.flags_since(100, none).is_none(), "entries after 100 were dropped");
        assert_eq!(j.flags_since(200, none).unwrap().count(), KEEP - 1);
        j.flags_changed_many(9000, &[4, 5]);
        assert_eq!(j.flags_since(200 + KEEP as u64 - 1, none).unwrap().collect::<Vec<_>>(), [4, 5]);
        let many: Vec<u32> = (1..=BULK as u32).collect();
        j.flags_changed_many(9001, &many);
        j.flags_changed(9002, 8);
        assert!(j.flags_since(9000, none).is_none(), "too many to list: not answered for others");
        assert_eq!(j.flags_since(9000, |m| m == 9001).unwrap().collect::<Vec<_>>(), [8], "but for the session that made them");
        assert_eq!(j.flags_since(9001, none).unwrap().collect::<Vec<_>>(), [8]);
    }
}
