//! What THREAD reads of each message: its keys, read once from the
//! caches (or the key column) and interned, kept with a mailbox of some
//! size and brought up to date as mail comes and goes.

use std::cell::RefCell;
use std::hash::BuildHasher;
use std::rc::Rc;

use crate::session::sort::{each_with_keys, REMEMBER_FROM};
use crate::store::{Derived, Mailbox};

/// "No ID" among interned IDs.
pub(super) const NONE: u32 = u32::MAX;
/// The interned empty base subject.
pub(super) const EMPTY: u32 = 0;

/// Texts turned into small numbers, equal texts into equal numbers, so
/// threading compares and indexes integers. A text is known by a 63-bit
/// hash seeded at random per process (foldhash's quality variant, several
/// times faster than the standard SipHash on short IDs), so a sender
/// cannot aim two IDs at one number; by chance two of a million texts
/// share one with odds below 1 in 10^7.
///
/// The table is open addressing of its own rather than a HashMap because
/// numbering a whole mailbox's texts is a run of cache misses (a slot per
/// text, at random in a table of megabytes): `number_all` asks for the
/// slots of the texts a few places on while numbering this one, which
/// halves THREAD's first call over 100k messages (benches/sort.rs).
#[derive(Default)]
pub(super) struct Interner {
    pub(super) hasher: foldhash::quality::RandomState,
    /// (hash, number) per slot; hash 0 marks a free slot. Always a power
    /// of two long, at most half full.
    pub(super) slots: Vec<(u64, u32)>,
    pub(super) len: u32,
}

/// How many texts ahead `number_all` asks for slots.
pub(super) const INTERN_AHEAD: usize = 16;

impl Interner {
    /// The text's hash, never 0.
    pub(super) fn hash(&self, text: &[u8]) -> u64 {
        self.hasher.hash_one(text) | 1
    }

    /// Room for `more` texts without growing.
    pub(super) fn reserve(&mut self, more: usize) {
        let want = ((self.len as usize + more) * 2).next_power_of_two().max(64);
        if want <= self.slots.len() {
            return;
        }
        let old = std::mem::replace(&mut self.slots, vec![(0, 0); want]);
        for (h, n) in old.into_iter().filter(|&(h, _)| h != 0) {
            let i = self.free_slot(h);
            self.slots[i] = (h, n);
        }
    }

    /// The slot holding `h`, or the free one where it goes.
    pub(super) fn free_slot(&self, h: u64) -> usize {
        let mask = self.slots.len() - 1;
        let mut i = h as usize & mask;
        while self.slots[i].0 != 0 && self.slots[i].0 != h {
            i = (i + 1) & mask;
        }
        i
    }

    /// The number of the text whose hash is `h`, a new one if unseen.
    pub(super) fn number(&mut self, h: u64) -> u32 {
        self.reserve(1);
        self.number_in_room(h)
    }

    /// `number`, the table already having room for `h`.
    pub(super) fn number_in_room(&mut self, h: u64) -> u32 {
        let i = self.free_slot(h);
        if self.slots[i].0 == 0 {
            self.slots[i] = (h, self.len);
            self.len += 1;
        }
        self.slots[i].1
    }

    /// `number` of each hash in `hs`, in place; 0 (no text) becomes `NONE`.
    pub(super) fn number_all(&mut self, hs: &mut [u64]) {
        self.reserve(hs.len());
        let mask = self.slots.len() - 1;
        for i in 0..hs.len() {
            if let Some(&ahead) = hs.get(i + INTERN_AHEAD) {
                crate::session::sort::prefetch(&self.slots[ahead as usize & mask]);
            }
            hs[i] = match hs[i] {
                0 => u64::from(NONE),
                h => u64::from(self.number_in_room(h)),
            };
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len as usize
    }
}

/// What threading reads of one message.
#[derive(Clone, Copy)]
pub(super) struct Row {
    pub(super) uid: u32,
    /// Sent date (RFC 5256 2.2, the internal date where there is none).
    pub(super) date: i64,
    /// Base subject, interned (`EMPTY` for none).
    pub(super) subject: u32,
    pub(super) reply: bool,
    /// Message-ID, interned (`NONE`).
    pub(super) message_id: u32,
    /// A range of `ThreadKeys::refs`.
    pub(super) refs: (u32, u32),
}

/// The threading keys of messages, in UID order, read once from their
/// caches. Those of a whole mailbox are kept with it (`Mailbox::keep_derived`)
/// and brought up to date as messages come and go (`ThreadKeys::update`),
/// so threading again after an arrival reads one cache, not all of them.
/// About 32 bytes per message, 4 per reference, and the interners' tables.
pub(super) struct ThreadKeys {
    pub(super) rows: Vec<Row>,
    pub(super) refs: Vec<u32>,
    pub(super) ids: Interner,
    pub(super) subjects: Interner,
}

impl ThreadKeys {
    pub(super) fn new() -> ThreadKeys {
        let mut subjects = Interner::default();
        let empty = subjects.hash(b"");
        subjects.number(empty);
        ThreadKeys { rows: Vec::new(), refs: Vec::new(), ids: Interner::default(), subjects }
    }

    /// The keys of `uids` (ascending).
    pub(super) fn of(mb: &Mailbox, uids: impl Iterator<Item = u32>) -> ThreadKeys {
        let mut k = ThreadKeys::new();
        k.add(mb, uids);
        k
    }

    /// Reads the keys of `uids` in one pass over their caches, keeping
    /// the texts' hashes; then numbers them all.
    pub(super) fn add(&mut self, mb: &Mailbox, uids: impl Iterator<Item = u32>) {
        let hits: Vec<(u32, u32)> = uids.map(|u| (u, u)).collect();
        let (first_row, first_ref) = (self.rows.len(), self.refs.len());
        self.rows.reserve(hits.len());
        let (mut subjects, mut ids, mut refs) = (Vec::with_capacity(hits.len()), Vec::with_capacity(hits.len()), Vec::new());
        let empty = self.subjects.hash(b"");
        each_with_keys(mb, &hits, |(_, uid), m, keys| {
            let internal = mb.location(m).internal_date;
            let from = (first_ref + refs.len()) as u32;
            let row = match keys {
                Some(k) => {
                    refs.extend(k.references().map(|r| self.ids.hash(r)));
                    subjects.push(self.subjects.hash(k.subject));
                    ids.push(k.message_id.map_or(0, |id| self.ids.hash(id)));
                    Row {
                        uid,
                        date: k.sent.unwrap_or(internal),
                        subject: EMPTY,
                        reply: k.reply,
                        message_id: NONE,
                        refs: (from, (first_ref + refs.len()) as u32),
                    }
                }
                None => {
                    subjects.push(empty);
                    ids.push(0);
                    Row { uid, date: internal, subject: EMPTY, reply: false, message_id: NONE, refs: (from, from) }
                }
            };
            self.rows.push(row);
        });
        self.subjects.number_all(&mut subjects);
        self.ids.number_all(&mut ids);
        self.ids.number_all(&mut refs);
        for ((row, s), id) in self.rows[first_row..].iter_mut().zip(subjects).zip(ids) {
            (row.subject, row.message_id) = (s as u32, id as u32);
        }
        self.refs.extend(refs.into_iter().map(|r| r as u32));
    }

    /// Made the keys of the mailbox now, from those of the mailbox `then`
    /// describes: rows of expunged messages dropped, the new read. False
    /// when starting over costs less (the interners hold mostly IDs of
    /// messages gone).
    pub(super) fn update(&mut self, mb: &Mailbox, then: &Derived) -> bool {
        let msgs = mb.msgs();
        let split = msgs.partition_point(|m| m.uid <= then.last_uid);
        if split < self.rows.len() {
            let mut still = msgs[..split].iter().map(|m| m.uid).peekable();
            self.rows.retain(|r| {
                while still.next_if(|&u| u < r.uid).is_some() {}
                still.next_if_eq(&r.uid).is_some()
            });
        }
        if self.ids.len() > 4 * (self.rows.len() + self.refs.len()) + 1024 {
            return false;
        }
        self.add(mb, msgs[split..].iter().map(|m| m.uid));
        true
    }

    /// The keys of the whole mailbox, kept with it from `REMEMBER_FROM`
    /// messages on; None for a smaller mailbox with nothing kept.
    pub(super) fn of_mailbox(mb: &Mailbox) -> Option<Rc<RefCell<ThreadKeys>>> {
        const KEY: &[u8] = b"THREAD keys";
        let kept = mb.derived(KEY);
        let keys = match kept {
            Some(d) if mb.is_current(&d) => return d.value.downcast::<RefCell<ThreadKeys>>().ok(),
            Some(d) => match d.value.clone().downcast::<RefCell<ThreadKeys>>() {
                Ok(k) if k.borrow_mut().update(mb, &d) => k,
                _ => Rc::new(RefCell::new(ThreadKeys::of(mb, mb.msgs().iter().map(|m| m.uid)))),
            },
            None if mb.msgs().len() >= REMEMBER_FROM => Rc::new(RefCell::new(ThreadKeys::of(mb, mb.msgs().iter().map(|m| m.uid)))),
            None => return None,
        };
        mb.keep_derived(KEY, keys.clone());
        Some(keys)
    }
}

/// One message to thread.
pub(super) struct Item {
    pub(super) seq: u32,
    pub(super) row: Row,
}

/// The messages to thread, with the keys they index.
pub(super) struct Items<'k> {
    pub(super) list: Vec<Item>,
    pub(super) keys: &'k ThreadKeys,
}

impl std::ops::Index<u32> for Items<'_> {
    type Output = Row;
    fn index(&self, i: u32) -> &Row {
        &self.list[i as usize].row
    }
}

impl Items<'_> {
    pub(super) fn len(&self) -> usize {
        self.list.len()
    }
    pub(super) fn seq(&self, i: u32) -> u32 {
        self.list[i as usize].seq
    }
    pub(super) fn subject(&self, i: u32) -> u32 {
        self[i].subject
    }
    pub(super) fn message_id(&self, i: u32) -> Option<u32> {
        Some(self[i].message_id).filter(|&id| id != NONE)
    }
    pub(super) fn references(&self, i: u32) -> &[u32] {
        let (from, to) = self[i].refs;
        &self.keys.refs[from as usize..to as usize]
    }
}
