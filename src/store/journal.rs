//! Recent expunges and flag changes of a mailbox, so that a session
//! catching up looks only at what changed since it last looked instead of
//! comparing every message (which made each command O(mailbox size) while
//! other sessions were busy). Bounded: a session that fell further behind
//! than the journal reaches falls back to the full comparison.

use std::collections::VecDeque;

/// Entries kept of each kind.
const KEEP: usize = 4096;

#[derive(Debug, Default)]
pub struct Journal {
    /// (mailbox version after the expunge, uid).
    expunged: VecDeque<(u64, u32)>,
    /// Every expunge after this version is in `expunged`.
    expunged_from: u64,
    /// (modseq of the change, uid).
    flags: VecDeque<(u64, u32)>,
    /// Every flag change after this modseq is in `flags`.
    flags_from: u64,
}

impl Journal {
    /// An empty journal that covers everything after `version` and `modseq`.
    pub fn starting_at(version: u64, modseq: u64) -> Journal {
        Journal { expunged_from: version, flags_from: modseq, ..Journal::default() }
    }

    pub fn expunged(&mut self, version: u64, uid: u32) {
        if self.expunged.len() == KEEP {
            if let Some((v, _)) = self.expunged.pop_front() {
                self.expunged_from = self.expunged_from.max(v);
            }
        }
        self.expunged.push_back((version, uid));
    }

    pub fn flags_changed(&mut self, modseq: u64, uid: u32) {
        if self.flags.len() == KEEP {
            if let Some((m, _)) = self.flags.pop_front() {
                self.flags_from = self.flags_from.max(m);
            }
        }
        self.flags.push_back((modseq, uid));
    }

    /// UIDs expunged after `version`, or None if the journal does not reach back that far.
    pub fn expunged_since(&self, version: u64) -> Option<impl Iterator<Item = u32> + '_> {
        (version >= self.expunged_from).then(|| {
            let start = self.expunged.partition_point(|&(v, _)| v <= version);
            self.expunged.range(start..).map(|&(_, u)| u)
        })
    }

    /// UIDs whose flags changed after `modseq` (a UID may repeat), or None
    /// if the journal does not reach back that far.
    pub fn flags_since(&self, modseq: u64) -> Option<impl Iterator<Item = u32> + '_> {
        (modseq >= self.flags_from).then(|| {
            let start = self.flags.partition_point(|&(m, _)| m <= modseq);
            self.flags.range(start..).map(|&(_, u)| u)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_only_what_it_covers() {
        let mut j = Journal::starting_at(10, 100);
        j.expunged(11, 5);
        j.expunged(12, 7);
        j.flags_changed(101, 3);
        j.flags_changed(103, 3);
        assert_eq!(j.expunged_since(10).unwrap().collect::<Vec<_>>(), [5, 7]);
        assert_eq!(j.expunged_since(11).unwrap().collect::<Vec<_>>(), [7]);
        assert!(j.expunged_since(9).is_none(), "older than the journal");
        assert_eq!(j.flags_since(101).unwrap().collect::<Vec<_>>(), [3]);
        assert!(j.flags_since(99).is_none());
        for i in 0..KEEP as u64 {
            j.flags_changed(200 + i, 1);
        }
        assert!(j.flags_since(100).is_none(), "entries after 100 were dropped");
        assert_eq!(j.flags_since(200).unwrap().count(), KEEP - 1);
    }
}
