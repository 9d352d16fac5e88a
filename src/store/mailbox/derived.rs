//! What upper layers derive from every message of a mailbox (SORT orders,
//! THREAD's keys and threads), kept with the open mailbox under opaque
//! keys. Each value records which messages it covered, and its owner
//! brings it up to date as messages come and go: UIDs only grow and new
//! messages join at the end, so "the messages then" is the highest UID and
//! the count.
//!
//! Values that are lists of UIDs ([`Uids`]) are also saved in the
//! mailbox's `derived` file when the store closes (at shutdown, after the
//! final checkpoint), each first brought up to date with the mail that
//! arrived since it was last used, and read back at their first use after
//! opening: the first SORT after a restart filters a saved order instead
//! of reading every message's keys through a mapping not yet faulted in.
//! The file is a cache: written atomically, checked whole by a CRC-32C,
//! and ignored (the values computed again) when missing, damaged, of
//! another format, or of another UIDVALIDITY. The values it holds were
//! computed from messages that were all durable when it was written (the
//! checkpoint comes first), so no message at or below a saved highest UID
//! can appear later, the one thing bringing a value up to date relies on.

use std::any::Any;
use std::io;
use std::rc::Rc;

use super::{Derived, DerivedSet, Mailbox, Save, Uids};
use crate::store::format::crc;
use crate::store::io::{write_atomic, Mapping, OpenMode};

/// Values kept per mailbox, the least recently computed forgotten first:
/// 4 bytes per message for a SORT order, 8 for encoded threads, about 40
/// for THREAD's keys (a webmail's threaded list takes two: the keys and the
/// threads of one algorithm). Sixteen hold every form Roundcube offers
/// (eleven in the comparison of README "SORT and THREAD") with room: 64
/// bytes per message if all were SORT orders.
const KEPT: usize = 16;

/// File name in the mailbox directory.
const FILE: &str = "derived";
const MAGIC: &[u8; 8] = b"RMDERIV1";
/// Bumped whenever what a key means changes (a collation fix, a new sort
/// key form), so values saved by an older build are not reused.
const FORMAT: u32 = 1;

impl DerivedSet {
    fn put(&mut self, key: &[u8], d: Derived) {
        self.entries.retain(|(k, _)| **k != *key);
        if self.entries.len() >= KEPT {
            self.entries.remove(0);
        }
        self.entries.push((key.into(), d));
    }

    /// The saved form of the `Uids` values (and of those read back but not
    /// used), None if there are none.
    fn encode(&self, uidvalidity: u32) -> Option<Vec<u8>> {
        let saved: Vec<(&[u8], &Derived, usize)> = (self.entries.iter())
            .filter_map(|(k, d)| match (d.value.downcast_ref::<Uids>(), d.value.downcast_ref::<Unread>()) {
                (Some(u), _) => Some((&k[..], d, u.0.len())),
                (_, Some(u)) => Some((&k[..], d, u.len)),
                _ => None,
            })
            .collect();
        if saved.is_empty() {
            return None;
        }
        let mut b = Vec::with_capacity(24 + saved.iter().map(|(k, _, n)| 16 + k.len() + 4 * n).sum::<usize>());
        b.extend_from_slice(MAGIC);
        for n in [FORMAT, uidvalidity, saved.len() as u32] {
            b.extend_from_slice(&n.to_le_bytes());
        }
        for (key, d, len) in saved {
            for n in [key.len() as u32, d.last_uid, d.count as u32, len as u32] {
                b.extend_from_slice(&n.to_le_bytes());
            }
            b.extend_from_slice(key);
            match d.value.downcast_ref::<Uids>() {
                Some(uids) => uids.0.iter().for_each(|u| b.extend_from_slice(&u.to_le_bytes())),
                None => b.extend_from_slice(d.value.downcast_ref::<Unread>().map_or(&[][..], Unread::bytes)),
            }
        }
        let c = crc(&b);
        b.extend_from_slice(&c.to_le_bytes());
        Some(b)
    }

    /// The values `encode` wrote for this UIDVALIDITY, each left in `map`
    /// until it is used (`Unread`); nothing if the bytes are anything else.
    fn decode(map: &Mapping, uidvalidity: u32) -> Vec<(Box<[u8]>, Derived)> {
        let b = (**map).as_ref();
        let Some((body, sum)) = b.split_last_chunk::<4>() else { return Vec::new() };
        if crc(body) != u32::from_le_bytes(*sum) {
            return Vec::new();
        }
        let mut c = Cursor(body);
        let mut read = || -> Option<Vec<(Box<[u8]>, Derived)>> {
            if c.take(MAGIC.len())? != MAGIC || c.word()? != FORMAT || c.word()? != uidvalidity {
                return None;
            }
            let n = c.word()?;
            let mut out = Vec::new();
            for _ in 0..n {
                let (key_len, last_uid, count, len) = (c.word()?, c.word()?, c.word()?, c.word()?);
                let key: Box<[u8]> = c.take(key_len as usize)?.into();
                let at = b.len() - 4 - c.0.len();
                c.take((len as usize).checked_mul(4)?)?;
                let unread = Unread { map: map.clone(), at, len: len as usize };
                out.push((key, Derived { value: Rc::new(unread), last_uid, count: count as usize, save: None }));
            }
            c.0.is_empty().then_some(out)
        };
        read().unwrap_or_default()
    }
}

/// A saved list of UIDs read back but not used yet: where it is in the
/// mapped file (decoding every list at the first use after a restart cost
/// more than the SORT that asked for one).
struct Unread {
    map: Mapping,
    at: usize,
    /// How many UIDs.
    len: usize,
}

impl Unread {
    fn bytes(&self) -> &[u8] {
        &(*self.map).as_ref()[self.at..self.at + 4 * self.len]
    }

    fn uids(&self) -> Uids {
        Uids(self.bytes().chunks_exact(4).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]])).collect())
    }
}

/// Reads a saved file front to back.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.0.split_at_checked(n)?;
        self.0 = tail;
        Some(head)
    }
    fn word(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
}

impl Mailbox {
    /// What was derived from the whole mailbox under `key` (see
    /// `keep_derived`), current or not (`is_current`).
    pub fn derived(&self, key: &[u8]) -> Option<Derived> {
        self.load_derived();
        let mut set = self.derived.borrow_mut();
        let d = &mut set.entries.iter_mut().find(|(k, _)| **k == *key)?.1;
        if let Some(unread) = d.value.downcast_ref::<Unread>() {
            d.value = Rc::new(unread.uids());
        }
        Some(d.clone())
    }

    /// Keeps `value`, derived from every message of the mailbox as it is
    /// now, under `key`; the oldest of more than `KEPT` is forgotten.
    pub fn keep_derived(&self, key: &[u8], value: Rc<dyn Any>) {
        self.keep(key, value, None);
    }

    /// Keeps `value` as `keep_derived` does, and at close saves the UIDs
    /// `save` gives for it then (after bringing it up to date).
    pub fn keep_saved(&self, key: &[u8], value: Rc<dyn Any>, save: Save) {
        self.keep(key, value, Some(save));
    }

    fn keep(&self, key: &[u8], value: Rc<dyn Any>, save: Option<Save>) {
        self.load_derived();
        let d = Derived { value, last_uid: self.msgs.last().map_or(0, |m| m.uid), count: self.msgs.len(), save };
        self.derived.borrow_mut().put(key, d);
    }

    /// Drops everything upper layers derived, saved or not (benchmarks
    /// time a first SORT with it).
    pub fn forget_derived(&self) {
        let mut k = self.derived.borrow_mut();
        k.entries.clear();
        k.loaded = true;
    }

    /// Whether `d` covers exactly the messages the mailbox has now.
    pub fn is_current(&self, d: &Derived) -> bool {
        d.count == self.msgs.len() && d.last_uid == self.msgs.last().map_or(0, |m| m.uid)
    }

    /// Saves the values that are lists of UIDs (at close, after the final
    /// checkpoint); removes a saved file when there are none, so nothing
    /// older is read back.
    pub(crate) fn save_derived(&self) -> io::Result<()> {
        self.to_save();
        let path = self.dir.join(FILE);
        let kept = self.derived.borrow();
        match kept.encode(self.uidvalidity) {
            Some(b) => write_atomic(&*self.io, &path, &b),
            None if kept.loaded && self.io.exists(&path) => self.io.remove_file(&path),
            None => Ok(()),
        }
    }

    /// Turns the values to be saved into lists of UIDs of the mailbox as
    /// it is, so the first use after a restart has nothing to bring up to
    /// date: those behind it, or kept in another form, are given by their
    /// `save` and kept as lists.
    fn to_save(&self) {
        let pending: Vec<(Box<[u8]>, Save)> = (self.derived.borrow().entries.iter())
            .filter(|(_, d)| !self.is_current(d) || !d.value.is::<Uids>())
            .filter_map(|(k, d)| Some((k.clone(), d.save.clone()?)))
            .collect();
        for (key, save) in pending {
            if let Some(uids) = save(self) {
                self.keep(&key, uids, Some(save));
            }
        }
    }

    /// The saved file, mapped.
    fn map_saved(&self) -> io::Result<Option<Mapping>> {
        let path = self.dir.join(FILE);
        if !self.io.exists(&path) {
            return Ok(None);
        }
        let f = self.io.open(&path, OpenMode::Existing)?;
        // SAFETY: the file is only ever replaced whole (`write_atomic`
        // renames a new one over it), never cut or written in place: the
        // mapped bytes do not change while the mapping lives.
        unsafe { f.map_to_read() }.map(Some)
    }

    /// Reads the saved values at the first use after opening.
    fn load_derived(&self) {
        if self.derived.borrow().loaded {
            return;
        }
        let saved = match self.map_saved() {
            Ok(Some(map)) => DerivedSet::decode(&map, self.uidvalidity),
            Ok(None) => Vec::new(),
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "saved SORT orders unreadable; they will be computed again");
                Vec::new()
            }
        };
        // Nothing is kept before this: keeping loads first.
        let mut k = self.derived.borrow_mut();
        k.loaded = true;
        for (key, d) in saved {
            k.put(&key, d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(entries: &[(&[u8], Vec<u32>, u32, usize)]) -> DerivedSet {
        let mut k = DerivedSet::default();
        for (key, uids, last_uid, count) in entries {
            k.put(key, Derived { value: Rc::new(Uids(uids.clone())), last_uid: *last_uid, count: *count, save: None });
        }
        k.put(b"not saved", Derived { value: Rc::new(7u8), last_uid: 1, count: 1, save: None });
        k
    }

    fn mapped(b: &[u8]) -> Mapping {
        Rc::new(b.to_vec())
    }

    fn summary(e: &[(Box<[u8]>, Derived)]) -> Vec<(Vec<u8>, Vec<u32>, u32, usize)> {
        e.iter().map(|(k, d)| (k.to_vec(), d.value.downcast_ref::<Unread>().unwrap().uids().0, d.last_uid, d.count)).collect()
    }

    /// Lists of UIDs come back as they were saved; other values are not
    /// saved; any damage, another format or another UIDVALIDITY gives
    /// nothing back rather than a wrong order.
    #[test]
    fn saved_orders_come_back_whole_or_not_at_all() {
        let k = kept(&[(b"SORT a", vec![3, 1, 2], 3, 3), (b"SORT b", vec![], 0, 0)]);
        let b = k.encode(77).unwrap();
        let back = DerivedSet::decode(&mapped(&b), 77);
        assert_eq!(summary(&back), vec![(b"SORT a".to_vec(), vec![3, 1, 2], 3, 3), (b"SORT b".to_vec(), vec![], 0, 0)]);
        let mut unused = DerivedSet::default();
        for (key, d) in back {
            unused.put(&key, d);
        }
        assert_eq!(unused.encode(77).as_ref(), Some(&b), "read back, not used, saved again as they were");
        assert!(DerivedSet::decode(&mapped(&b), 78).is_empty(), "another UIDVALIDITY");
        for i in 0..b.len() {
            let mut d = b.clone();
            d[i] ^= 0x20;
            assert!(DerivedSet::decode(&mapped(&d), 77).is_empty(), "byte {i} flipped");
            assert!(DerivedSet::decode(&mapped(&b[..i]), 77).is_empty(), "cut at {i}");
        }
        let mut other = b[..b.len() - 4].to_vec();
        other[8] = FORMAT as u8 + 1;
        let c = crc(&other);
        other.extend_from_slice(&c.to_le_bytes());
        assert!(DerivedSet::decode(&mapped(&other), 77).is_empty(), "another format");
        assert!(kept(&[]).encode(77).is_none(), "nothing to save");
    }
}
