//! SORT's ordering (RFC 5256 section 3, RFC 5957 SORT=DISPLAY): the keys
//! of the matching messages read from their caches (computed at delivery,
//! `mime::sortkeys`), copied into one arena, and the messages ordered by
//! them with the sequence number as the implicit last criterion.

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::rc::Rc;

use crate::mime::header;
use crate::mime::sortkeys::{SortKeys, SortKeysRef};
use crate::mime::Cache;
use crate::proto::{Shared, SortCriterion, SortKey};
use crate::store::{Mailbox, Msg};

/// Mailboxes from this size on keep their sort orders (`sorted`); smaller
/// ones sort in well under a millisecond. Lower in tests, which build the
/// mailbox message by message.
pub(crate) const REMEMBER_FROM: usize = if cfg!(test) { 50 } else { 1_000 };

/// `hits` ((sequence number, UID), in UID order) in sort order. When they
/// are most of a mailbox of some size, the whole mailbox is sorted once and
/// the order kept with it until a message comes or goes
/// (`Mailbox::remember_order`); later sorts by the same criteria, from any
/// session, filter that order (a webmail page view after the first).
pub(crate) fn sorted(mb: &Mailbox, hits: &[(u32, u32)], criteria: &[SortCriterion]) -> Vec<(u32, u32)> {
    let key = format!("SORT {criteria:?}");
    let n = mb.msgs().len();
    let order = match mb.remembered_order(key.as_bytes()) {
        Some(o) => o,
        None if n >= REMEMBER_FROM && hits.len() * 2 >= n => {
            // Sequence numbers of the mailbox as it is: in UID order, as the
            // session's are, so ties break the same way.
            let all: Vec<(u32, u32)> = mb.msgs().iter().zip(1..).map(|(m, seq)| (seq, m.uid)).collect();
            let o: Rc<[u32]> = SortTable::build(mb, &all, criteria).order().into_iter().map(|(_, uid)| uid).collect();
            mb.remember_order(key.as_bytes(), o.clone());
            o
        }
        None => return SortTable::build(mb, hits, criteria).order(),
    };
    order.iter().filter_map(|&uid| hits.binary_search_by_key(&uid, |h| h.1).ok().map(|i| hits[i])).collect()
}

/// How many messages ahead `each_with_keys` asks for a cache.
const READ_AHEAD: usize = 16;

/// Calls `f` for each of `hits` ((sequence number, UID)) still in the
/// mailbox, in order, with its message and its sort keys (None: none can
/// be read). Each message's cache is a different place in the mapping,
/// so reading them one after the other waits for memory once per message;
/// asking for the cache `READ_AHEAD` messages on while reading this one
/// lets those waits overlap (SORT over 100k messages: 67 ms without,
/// see benches/sort.rs).
pub(crate) fn each_with_keys(mb: &Mailbox, hits: &[(u32, u32)], mut f: impl FnMut((u32, u32), &Msg, Option<SortKeysRef<'_>>)) {
    let mut finder = mb.finder();
    let mut fetch = |&(_, uid): &(u32, u32)| {
        let m = finder.find(uid)?;
        let cache = mb.cache(m).ok();
        if let Some(c) = &cache {
            prefetch(c.bytes());
        }
        Some((m, cache))
    };
    let mut ahead: VecDeque<Option<(&Msg, Option<Shared>)>> = hits.iter().take(READ_AHEAD).map(&mut fetch).collect();
    for (i, &hit) in hits.iter().enumerate() {
        let next = ahead.pop_front().flatten();
        if let Some(h) = hits.get(i + READ_AHEAD) {
            ahead.push_back(fetch(h));
        }
        let Some((m, cache)) = next else { continue };
        match cache.as_ref().and_then(|c| Cache::sort_keys(c.bytes())) {
            Some(k) => f(hit, m, Some(k)),
            None => {
                let keys = header_keys(mb, m);
                f(hit, m, keys.as_deref().and_then(SortKeysRef::decode).map(|(k, _)| k));
            }
        }
    }
}

/// Asks the CPU to bring the start of `b` into its cache.
#[inline]
fn prefetch(b: &[u8]) {
    // SAFETY: the intrinsic is unsafe only for its target feature, SSE,
    // which every x86_64 CPU has; a prefetch reads nothing and cannot
    // fault, whatever the address.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(b.as_ptr().cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = b;
}

/// The encoded sort keys of a message whose cache has none (written
/// before they existed, or damaged), from its header.
fn header_keys(mb: &Mailbox, m: &Msg) -> Option<Vec<u8>> {
    let msg = mb.message(m).ok()?;
    let all = msg.bytes();
    let keys = SortKeys::of(&all[..header::header_len(all)]);
    let mut b = Vec::new();
    keys.encode(&mut b);
    Some(b)
}

#[derive(Debug, Clone, Copy)]
enum Value {
    Num(i64),
    /// A range of the arena.
    Text(u32, u32),
}

/// The values of each criterion for each message.
pub(crate) struct SortTable {
    arena: Vec<u8>,
    /// `criteria.len()` values per row.
    values: Vec<Value>,
    /// The first criterion's value of each row as one integer that orders
    /// the same way (a text's first 8 bytes), so most comparisons are one
    /// integer comparison; rows it cannot tell apart are compared in full.
    prefix: Vec<u64>,
    /// (sequence number, UID) per row.
    pub rows: Vec<(u32, u32)>,
    criteria: Vec<SortCriterion>,
}

impl SortTable {
    /// The table of `hits` ((sequence number, UID), in mailbox order).
    pub fn build(mb: &Mailbox, hits: &[(u32, u32)], criteria: &[SortCriterion]) -> SortTable {
        let mut t = SortTable {
            arena: Vec::new(),
            values: Vec::with_capacity(hits.len() * criteria.len()),
            prefix: Vec::with_capacity(hits.len()),
            rows: Vec::with_capacity(hits.len()),
            criteria: criteria.to_vec(),
        };
        let add = |t: &mut SortTable, hit: (u32, u32), m: &Msg, keys: Option<SortKeysRef<'_>>| {
            let loc = mb.location(m);
            for c in criteria {
                let v = match (c.key, keys) {
                    (SortKey::Arrival, _) => Value::Num(loc.internal_date),
                    (SortKey::Size, _) => Value::Num(loc.length as i64),
                    (SortKey::Date, k) => Value::Num(k.and_then(|k| k.sent).unwrap_or(loc.internal_date)),
                    // No keys (an unreadable message): empty texts.
                    (_, None) => Value::Text(0, 0),
                    (SortKey::Subject, Some(k)) => t.text(k.subject),
                    (SortKey::From, Some(k)) => t.text(k.from),
                    (SortKey::To, Some(k)) => t.text(k.to),
                    (SortKey::Cc, Some(k)) => t.text(k.cc),
                    (SortKey::DisplayFrom, Some(k)) => t.text(k.display_from),
                    (SortKey::DisplayTo, Some(k)) => t.text(k.display_to),
                };
                t.values.push(v);
            }
            let first = t.values.len() - criteria.len();
            if let (Some(c), Some(&v)) = (criteria.first(), t.values.get(first)) {
                let p = t.prefix_of(v);
                t.prefix.push(if c.reverse { !p } else { p });
            }
            t.rows.push(hit);
        };
        if criteria.iter().all(|c| matches!(c.key, SortKey::Arrival | SortKey::Size)) {
            let mut finder = mb.finder();
            for &hit in hits {
                if let Some(m) = finder.find(hit.1) {
                    add(&mut t, hit, m, None);
                }
            }
        } else {
            each_with_keys(mb, hits, |hit, m, keys| add(&mut t, hit, m, keys));
        }
        t
    }

    fn text(&mut self, b: &[u8]) -> Value {
        let at = self.arena.len() as u32;
        self.arena.extend_from_slice(b);
        Value::Text(at, b.len() as u32)
    }

    fn bytes(&self, at: u32, len: u32) -> &[u8] {
        &self.arena[at as usize..(at + len) as usize]
    }

    /// An integer in the order of `v`: a number with its sign bit flipped,
    /// a text's first 8 bytes big-endian (zero-padded: a shorter text that
    /// is a prefix of a longer one is not greater than it).
    fn prefix_of(&self, v: Value) -> u64 {
        match v {
            Value::Num(n) => (n as u64) ^ (1 << 63),
            Value::Text(at, len) => {
                let mut b = [0u8; 8];
                let t = self.bytes(at, len);
                let n = t.len().min(8);
                b[..n].copy_from_slice(&t[..n]);
                u64::from_be_bytes(b)
            }
        }
    }

    fn compare(&self, a: usize, b: usize) -> Ordering {
        let w = self.criteria.len();
        for (i, c) in self.criteria.iter().enumerate() {
            let o = match (self.values[a * w + i], self.values[b * w + i]) {
                (Value::Num(x), Value::Num(y)) => x.cmp(&y),
                (Value::Text(s, l), Value::Text(t, m)) => self.bytes(s, l).cmp(self.bytes(t, m)),
                _ => Ordering::Equal,
            };
            let o = if c.reverse { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        // RFC 5256: the implicit last criterion, never reversed.
        self.rows[a].0.cmp(&self.rows[b].0)
    }

    /// The rows in sort order.
    pub fn order(&self) -> Vec<(u32, u32)> {
        let mut idx: Vec<(u64, u32)> = self.prefix.iter().copied().zip(0..).collect();
        idx.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| self.compare(a.1 as usize, b.1 as usize)));
        idx.into_iter().map(|(_, i)| self.rows[i as usize]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Io, MemIo, Settings};
    use std::cell::RefCell;

    fn by(key: SortKey, reverse: bool) -> Vec<SortCriterion> {
        vec![SortCriterion { key, reverse }]
    }

    /// A remembered order answers what sorting afresh answers, for the whole
    /// mailbox and for part of it, and is forgotten when messages come or go.
    #[test]
    fn a_remembered_order_is_the_fresh_order_until_the_mailbox_changes() {
        let io: Rc<dyn Io> = Rc::new(MemIo::new());
        let mb = Rc::new(RefCell::new(Mailbox::create(io, std::path::Path::new("/s"), 7, Settings::default()).unwrap()));
        let subject =
            |i: u32| format!("Subject: {}topic {}\r\nFrom: u{}@x\r\n\r\nbody\r\n", if i.is_multiple_of(3) { "Re: " } else { "" }, (i * 7919) % 97, i % 13);
        for i in 0..(REMEMBER_FROM as u32 + 30) {
            mb.borrow_mut().append_bytes(subject(i).as_bytes(), 0, 0, 1_000 + i64::from(i % 50)).unwrap();
        }
        mb.borrow_mut().commit().unwrap();
        let hits = |mb: &Mailbox, keep: &dyn Fn(u32) -> bool| -> Vec<(u32, u32)> {
            mb.msgs().iter().zip(1..).map(|(m, s)| (s, m.uid)).filter(|h| keep(h.1)).collect()
        };
        for criteria in [by(SortKey::Subject, false), by(SortKey::Arrival, true), vec![by(SortKey::From, true)[0], by(SortKey::Size, false)[0]]] {
            let m = mb.borrow();
            let all = hits(&m, &|_| true);
            assert_eq!(sorted(&m, &all, &criteria), SortTable::build(&m, &all, &criteria).order());
            assert!(m.remembered_order(format!("SORT {criteria:?}").as_bytes()).is_some(), "a whole-mailbox sort is kept");
            let some = hits(&m, &|u| u % 4 != 1);
            assert_eq!(sorted(&m, &some, &criteria), SortTable::build(&m, &some, &criteria).order(), "filtered from the kept order");
        }
        let key = format!("SORT {:?}", by(SortKey::Subject, false));
        mb.borrow_mut().append_bytes(b"Subject: aaa first\r\n\r\nx\r\n", 0, 0, 5).unwrap();
        mb.borrow_mut().commit().unwrap();
        assert!(mb.borrow().remembered_order(key.as_bytes()).is_none(), "a new message forgets it");
        let m = mb.borrow();
        let all = hits(&m, &|_| true);
        let order = sorted(&m, &all, &by(SortKey::Subject, false));
        assert_eq!(order[0].1, m.uidnext() - 1, "the new message sorts first");
        drop(m);
        mb.borrow_mut().expunge(&[5]).unwrap();
        mb.borrow_mut().commit().unwrap();
        assert!(mb.borrow().remembered_order(key.as_bytes()).is_none(), "an expunge forgets it");
    }
}
