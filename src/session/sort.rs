//! SORT's ordering (RFC 5256 section 3, RFC 5957 SORT=DISPLAY): the keys
//! of the matching messages read from their caches (computed at delivery,
//! `mime::sortkeys`), copied into one arena, and the messages ordered by
//! them with the sequence number as the implicit last criterion.

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::rc::Rc;

use crate::mime::sortkeys::{SortKeys, SortKeysRef};
use crate::mime::{Cache, ColumnEntry};
use crate::proto::{Shared, SortCriterion, SortKey};
use crate::store::{Derived, KeyColumn, KeyWriter, Mailbox, Msg, Uids};

/// Mailboxes from this size on keep their sort orders (`sorted`); smaller
/// ones sort in well under a millisecond. Lower in tests, which build the
/// mailbox message by message.
pub(crate) const REMEMBER_FROM: usize = if cfg!(test) { 50 } else { 1_000 };

/// `hits` ((sequence number, UID), in UID order) in sort order. When they
/// are most of a mailbox of some size, the whole mailbox is sorted once and
/// the order kept with it; later sorts by the same criteria, from any
/// session, filter that order (a webmail page view after the first). The
/// keys never change, so a kept order outlives arrivals and expunges: the
/// expunged are dropped from it and the new inserted (`brought_up_to_date`).
pub(crate) fn sorted(mb: &Mailbox, hits: &[(u32, u32)], criteria: &[SortCriterion]) -> Vec<(u32, u32)> {
    let n = mb.msgs().len();
    let Some(order) = kept_order(mb, criteria, n >= REMEMBER_FROM && hits.len() * 2 >= n) else { return SortTable::build(mb, hits, criteria).order() };
    let index = HitIndex::new(hits);
    order.0.iter().filter_map(|&uid| index.get(uid).map(|i| hits[i])).collect()
}

/// The order of the whole mailbox by `criteria` kept with it, brought up
/// to date; when none is kept, sorted and kept if `start`, else None.
fn kept_order(mb: &Mailbox, criteria: &[SortCriterion], start: bool) -> Option<Rc<Uids>> {
    let key = format!("SORT {criteria:?}");
    let order = match mb.derived(key.as_bytes()) {
        Some(d) if mb.is_current(&d) => return d.value.downcast::<Uids>().ok(),
        Some(d) => {
            let old = d.value.downcast_ref::<Uids>().map_or(&[][..], |o| &o.0);
            brought_up_to_date(mb, old, &d, criteria).unwrap_or_else(|| whole_order(mb, criteria))
        }
        None if start => whole_order(mb, criteria),
        None => return None,
    };
    let order = Rc::new(order);
    let criteria = criteria.to_vec();
    mb.keep_saved(key.as_bytes(), order.clone(), Rc::new(move |mb| kept_order(mb, &criteria, false)));
    Some(order)
}

/// Where each UID is in a list of hits ((sequence number, UID), in UID
/// order), for walking a kept order over them: a table indexed by UID when
/// the UIDs are dense (the usual mailbox), a binary search when they are
/// not. The binary search was three quarters of a repeated SORT.
pub(crate) enum HitIndex<'a> {
    /// Position + 1 of each UID from `first` (0: not a hit).
    Dense {
        first: u32,
        at: Vec<u32>,
    },
    Sparse(&'a [(u32, u32)]),
}

impl<'a> HitIndex<'a> {
    pub fn new(hits: &'a [(u32, u32)]) -> HitIndex<'a> {
        let (Some(first), Some(last)) = (hits.first(), hits.last()) else { return HitIndex::Sparse(hits) };
        let span = (last.1 - first.1) as usize + 1;
        if span > 4 * hits.len() + 64 {
            return HitIndex::Sparse(hits);
        }
        let mut at = vec![0u32; span];
        for (&(_, uid), pos) in hits.iter().zip(1..) {
            at[(uid - first.1) as usize] = pos;
        }
        HitIndex::Dense { first: first.1, at }
    }

    /// The position of `uid` in the hits.
    pub fn get(&self, uid: u32) -> Option<usize> {
        match self {
            HitIndex::Dense { first, at } => {
                let pos = *at.get(uid.checked_sub(*first)? as usize)?;
                (pos != 0).then(|| pos as usize - 1)
            }
            HitIndex::Sparse(hits) => hits.binary_search_by_key(&uid, |h| h.1).ok(),
        }
    }
}

/// A sum over a set of UIDs, each mixed first (SplitMix64's finalizer), so
/// that two different sets of one size almost never give the same sum.
fn uid_set_sum(uids: impl Iterator<Item = u32>) -> u64 {
    uids.map(|u| {
        let mut z = u64::from(u).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
    .fold(0u64, u64::wrapping_add)
}

/// Every message of the mailbox sorted afresh.
fn whole_order(mb: &Mailbox, criteria: &[SortCriterion]) -> Uids {
    Uids(SortTable::build(mb, &every_message(mb), criteria).order().into_iter().map(|(_, uid)| uid).collect())
}

/// (sequence number, UID) of every message of the mailbox as it is:
/// numbered in UID order, as a session's are, so ties break the same way.
pub(crate) fn every_message(mb: &Mailbox) -> Vec<(u32, u32)> {
    mb.msgs().iter().zip(1..).map(|(m, seq)| (seq, m.uid)).collect()
}

/// `old`, the order of the mailbox as `then` describes it, made the order
/// of the mailbox now: the expunged dropped, the new sorted among
/// themselves and each placed by a binary search over the old (its keys
/// against those of about log2(n) old messages). None when so much is new
/// that sorting afresh costs less.
fn brought_up_to_date(mb: &Mailbox, old: &[u32], then: &Derived, criteria: &[SortCriterion]) -> Option<Uids> {
    let msgs = mb.msgs();
    let split = msgs.partition_point(|m| m.uid <= then.last_uid);
    let (before, new) = msgs.split_at(split);
    if old.len() != then.count || new.len() * 4 > msgs.len() {
        return None;
    }
    let mut order: Vec<u32> = if before.len() == old.len() {
        old.to_vec()
    } else {
        // Expunges: keep the UIDs of `old` still among `before`.
        let still: Vec<(u32, u32)> = before.iter().map(|m| (0, m.uid)).collect();
        let index = HitIndex::new(&still);
        old.iter().copied().filter(|&u| index.get(u).is_some()).collect()
    };
    // What is left must be exactly the messages up to the highest UID
    // then. It is unless the order and the mailbox disagree (a saved order
    // beside a mailbox restored from an older backup): checked with a sum
    // of mixed UIDs over both, two linear passes.
    if order.len() != before.len() || uid_set_sum(order.iter().copied()) != uid_set_sum(before.iter().map(|m| m.uid)) {
        return None;
    }
    if new.is_empty() {
        return Some(Uids(order));
    }
    // The UID stands for the sequence number in ties: both ascend together.
    let fresh: Vec<(u32, u32)> = new.iter().map(|m| (m.uid, m.uid)).collect();
    let mut t = SortTable::build(mb, &fresh, criteria);
    // About log2(n) probes per new message, each a cache read, cold after
    // a restart: the key column's sweep costs less when they are many.
    let probes = new.len() * (usize::BITS - order.len().leading_zeros()) as usize;
    let column = if column_pays(probes, msgs.len()) { mb.key_column() } else { None };
    let mut at = Vec::with_capacity(t.rows.len());
    let mut lo = 0;
    for row in t.order_of_rows() {
        let mut hi = order.len();
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let below = t.with_row(mb, column.as_deref(), (order[mid], order[mid]), |t, probe| t.compare(probe, row as usize) == Ordering::Less)?;
            if below {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        at.push((lo, t.rows[row as usize].1));
    }
    // One pass merges them in: `at` ascends.
    let mut merged = Vec::with_capacity(order.len() + at.len());
    let mut from = 0;
    for (pos, uid) in at {
        merged.extend_from_slice(&order[from..pos]);
        merged.push(uid);
        from = pos;
    }
    merged.extend_from_slice(&order[from..]);
    order = merged;
    Some(Uids(order))
}

/// How many messages ahead `each_with_keys` asks for a cache.
const READ_AHEAD: usize = 32;

/// Where `each_with_keys` reads a message's keys.
enum KeysAt<'c> {
    /// A record of the mailbox's key column (`store::mailbox::keys`).
    Column(&'c [u8]),
    /// The message's cache record, if it can be read.
    Cache(Option<Shared>),
}

/// Whether `hits` are enough of a mailbox of `n` messages that reading
/// the whole key column costs less than reading their caches one by one.
pub(crate) fn column_pays(hits: usize, n: usize) -> bool {
    hits >= 64 && hits * 8 >= n
}

/// Calls `f` for each of `hits` ((sequence number, UID)) still in the
/// mailbox, in order, with its message and its sort keys (None: none can
/// be read). For many hits the keys come from the mailbox's key column, one
/// sequential sweep; messages it lacks are read from their caches and
/// given a record, so the next sweep finds them. Each message's cache is a
/// different place in the mapping, so reading them one after the other
/// waits for memory once per message; asking for the cache `READ_AHEAD`
/// messages on while reading this one lets those waits overlap (SORT over
/// 100k messages: 67 ms without, see benches/sort.rs).
pub(crate) fn each_with_keys(mb: &Mailbox, hits: &[(u32, u32)], f: impl FnMut((u32, u32), &Msg, Option<SortKeysRef<'_>>)) {
    if column_pays(hits.len(), mb.msgs().len()) {
        let column = mb.key_column();
        each_with_keys_in(mb, column.as_deref(), Some(mb.key_writer()), hits, f)
    } else {
        each_with_keys_in(mb, None, None, hits, f)
    }
}

/// `each_with_keys` reading `column` where it has the keys, and giving
/// `missing` the keys of the messages it lacks.
fn each_with_keys_in(
    mb: &Mailbox,
    column: Option<&KeyColumn>,
    mut missing: Option<KeyWriter<'_>>,
    hits: &[(u32, u32)],
    mut f: impl FnMut((u32, u32), &Msg, Option<SortKeysRef<'_>>),
) {
    let mut finder = mb.finder();
    let mut fetch = |&(_, uid): &(u32, u32)| {
        let m = finder.find(uid)?;
        if let Some(r) = column.and_then(|c| c.record(finder.position())) {
            prefetch(r);
            return Some((m, KeysAt::Column(r)));
        }
        let cache = mb.cache_unread(m).ok();
        if let Some(c) = &cache {
            // The keys come first in the record, a few cache lines.
            prefetch_lines(c.bytes(), 4);
        }
        Some((m, KeysAt::Cache(cache)))
    };
    let mut ahead: VecDeque<Option<(&Msg, KeysAt)>> = hits.iter().take(READ_AHEAD).map(&mut fetch).collect();
    for (i, &hit) in hits.iter().enumerate() {
        let next = ahead.pop_front().flatten();
        if let Some(h) = hits.get(i + READ_AHEAD) {
            ahead.push_back(fetch(h));
        }
        let Some((m, at)) = next else { continue };
        let cache = match at {
            KeysAt::Column(r) => match KeyColumn::entry_in(r).and_then(ColumnEntry::decode).and_then(|e| e.sort_keys()) {
                Some(k) => {
                    f(hit, m, Some(k));
                    continue;
                }
                None => mb.cache(m).ok(),
            },
            KeysAt::Cache(c) => {
                if let Some(c) = &c {
                    mb.note_cache(c);
                }
                c
            }
        };
        let bytes = cache.as_ref().map_or(&[][..], |c| c.bytes());
        match Cache::sort_keys(bytes) {
            Some(k) => {
                if let Some(w) = &mut missing {
                    w.push_cached(m, bytes);
                }
                f(hit, m, Some(k))
            }
            None => {
                let keys = header_keys(mb, m);
                f(hit, m, keys.as_deref().and_then(SortKeysRef::decode).map(|(k, _)| k));
            }
        }
    }
}

/// Asks the CPU to bring the start of `b` into its cache.
#[inline]
pub(crate) fn prefetch<T: ?Sized>(b: &T) {
    // SAFETY: the intrinsic is unsafe only for its target feature, SSE,
    // which every x86_64 CPU has; a prefetch reads nothing and cannot
    // fault, whatever the address.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>((b as *const T).cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = b;
}

/// Asks the CPU for the first `lines` cache lines of `b`.
pub(crate) fn prefetch_lines(b: &[u8], lines: usize) {
    for line in b.chunks(64).take(lines) {
        prefetch(line);
    }
}

/// The encoded sort keys of a message whose cache has none (written
/// before they existed, or damaged), from its header.
fn header_keys(mb: &Mailbox, m: &Msg) -> Option<Vec<u8>> {
    Some(SortKeys::encoded_of_message(mb.message(m).ok()?.bytes()))
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
        if criteria.iter().all(|c| matches!(c.key, SortKey::Arrival | SortKey::Size)) {
            let mut finder = mb.finder();
            for &hit in hits {
                if let Some(m) = finder.find(hit.1) {
                    t.add(mb, hit, m, None);
                }
            }
        } else {
            each_with_keys(mb, hits, |hit, m, keys| t.add(mb, hit, m, keys));
        }
        t
    }

    /// A row for `hit`, of message `m` with sort keys `keys`.
    fn add(&mut self, mb: &Mailbox, hit: (u32, u32), m: &Msg, keys: Option<SortKeysRef<'_>>) {
        let loc = mb.location(m);
        for i in 0..self.criteria.len() {
            let v = match (self.criteria[i].key, keys) {
                (SortKey::Arrival, _) => Value::Num(loc.internal_date),
                (SortKey::Size, _) => Value::Num(loc.length as i64),
                (SortKey::Date, k) => Value::Num(k.and_then(|k| k.sent).unwrap_or(loc.internal_date)),
                // No keys (an unreadable message): empty texts.
                (_, None) => Value::Text(0, 0),
                (SortKey::Subject, Some(k)) => self.text(k.subject),
                (SortKey::From, Some(k)) => self.text(k.from),
                (SortKey::To, Some(k)) => self.text(k.to),
                (SortKey::Cc, Some(k)) => self.text(k.cc),
                (SortKey::DisplayFrom, Some(k)) => self.text(k.display_from),
                (SortKey::DisplayTo, Some(k)) => self.text(k.display_to),
            };
            self.values.push(v);
        }
        let first = self.values.len() - self.criteria.len();
        if let (Some(c), Some(&v)) = (self.criteria.first(), self.values.get(first)) {
            let p = self.prefix_of(v);
            self.prefix.push(if c.reverse { !p } else { p });
        }
        self.rows.push(hit);
    }

    /// `f` of this table with a row for `hit` added, and its index; the row
    /// is gone afterwards. None if `hit` is not in the mailbox.
    /// The keys are read from `column` if it has them.
    fn with_row<R>(&mut self, mb: &Mailbox, column: Option<&KeyColumn>, hit: (u32, u32), f: impl FnOnce(&Self, usize) -> R) -> Option<R> {
        let (rows, arena) = (self.rows.len(), self.arena.len());
        each_with_keys_in(mb, column, None, &[hit], |hit, m, keys| self.add(mb, hit, m, keys));
        let r = (self.rows.len() > rows).then(|| f(self, rows));
        self.rows.truncate(rows);
        self.prefix.truncate(rows);
        self.values.truncate(rows * self.criteria.len());
        self.arena.truncate(arena);
        r
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
        self.compare_from(0, a, b)
    }

    /// `compare` by the criteria from the `first`-th on.
    fn compare_from(&self, first: usize, a: usize, b: usize) -> Ordering {
        let w = self.criteria.len();
        for (i, c) in self.criteria.iter().enumerate().skip(first) {
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
        self.order_of_rows().into_iter().map(|i| self.rows[i as usize]).collect()
    }

    /// The indices of the rows in sort order: by the first criterion's
    /// prefix, then each run of rows it cannot tell apart by `settle`.
    fn order_of_rows(&self) -> Vec<u32> {
        let mut idx: Vec<(u64, u32)> = self.prefix.iter().copied().zip(0..).collect();
        idx.sort_unstable_by_key(|e| e.0);
        self.settle(&mut idx, 8);
        idx.into_iter().map(|(_, i)| i).collect()
    }

    /// Orders each run of `idx` (ordered by its integers) that shares its
    /// integer. While the first criterion is a text with bytes left past
    /// `depth`, a run is ordered by the next 8 of them as integers (a
    /// string sort by integer comparisons: subjects share their first
    /// words often, and comparing them in full, a miss in the arena each,
    /// was most of a first SORT); then by `compare` in full.
    fn settle(&self, idx: &mut [(u64, u32)], depth: u32) {
        let w = self.criteria.len();
        let reverse = self.criteria.first().is_some_and(|c| c.reverse);
        let mut start = 0;
        while start < idx.len() {
            let key = idx[start].0;
            let end = start + idx[start..].iter().position(|e| e.0 != key).unwrap_or(idx.len() - start);
            let run = &mut idx[start..end];
            start = end;
            if run.len() < 2 {
                continue;
            }
            let text_len = |i: u32| match self.values[i as usize * w] {
                Value::Text(_, len) => Some(len),
                Value::Num(_) => None,
            };
            let longest = run.iter().map(|e| text_len(e.1)).max().flatten();
            match longest {
                Some(longest) if longest > depth && depth < 256 => {
                    for e in run.iter_mut() {
                        let Value::Text(at, len) = self.values[e.1 as usize * w] else { continue };
                        let rest = len.saturating_sub(depth);
                        let p = self.prefix_of(Value::Text(at + depth.min(len), rest));
                        e.0 = if reverse { !p } else { p };
                    }
                    run.sort_unstable_by_key(|e| e.0);
                    self.settle(run, depth + 8);
                }
                Some(longest) if longest > depth => run.sort_unstable_by(|a, b| self.compare(a.1 as usize, b.1 as usize)),
                // Texts equal but for zeros that pad the shorter (a text
                // that is a prefix of another sorts first): by length.
                Some(_) => run.sort_unstable_by(|a, b| {
                    let o = text_len(a.1).cmp(&text_len(b.1));
                    (if reverse { o.reverse() } else { o }).then_with(|| self.compare_from(1, a.1 as usize, b.1 as usize))
                }),
                // Equal numbers.
                None => run.sort_unstable_by(|a, b| self.compare_from(1, a.1 as usize, b.1 as usize)),
            }
        }
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

    /// An order saved at close comes back after reopening, is brought up
    /// to date with what changed since, and answers as sorting afresh does.
    #[test]
    fn a_saved_order_is_read_back_and_brought_up_to_date() {
        let io: Rc<dyn Io> = Rc::new(MemIo::new());
        let dir = std::path::Path::new("/saved");
        let message = |i: u32| format!("Subject: topic {}\r\nFrom: u{}@x\r\n\r\nbody\r\n", (i * 7919) % 89, i % 11);
        let criteria = by(SortKey::Subject, true);
        let key = format!("SORT {criteria:?}");
        {
            let mut mb = Mailbox::create(io.clone(), dir, 9, Settings::default()).unwrap();
            for i in 0..(REMEMBER_FROM as u32 + 10) {
                mb.append_bytes(message(i).as_bytes(), 0, 0, 1_000).unwrap();
            }
            mb.commit().unwrap();
            sorted(&mb, &every_message(&mb), &criteria);
            mb.checkpoint().unwrap();
            mb.save_derived().unwrap();
        }
        let mut mb = Mailbox::open(io.clone(), dir, 9, Settings::default()).unwrap();
        let saved = mb.derived(key.as_bytes()).expect("read back");
        assert!(mb.is_current(&saved));
        let gone: Vec<u32> = mb.msgs().iter().map(|m| m.uid).filter(|u| u % 5 == 0).collect();
        mb.expunge(&gone).unwrap();
        for i in 0..7 {
            mb.append_bytes(message(1_000 + i).as_bytes(), 0, 0, 1_000).unwrap();
        }
        mb.commit().unwrap();
        let hits = every_message(&mb);
        assert_eq!(sorted(&mb, &hits, &criteria), SortTable::build(&mb, &hits, &criteria).order());
    }

    /// An order that does not hold the mailbox's messages (a saved order
    /// beside a mailbox restored from an older backup) is sorted afresh,
    /// not trusted.
    #[test]
    fn an_order_of_other_messages_is_not_brought_up_to_date() {
        let io: Rc<dyn Io> = Rc::new(MemIo::new());
        let mut mb = Mailbox::create(io, std::path::Path::new("/other"), 3, Settings::default()).unwrap();
        for i in 0..20u32 {
            mb.append_bytes(format!("Subject: s{}\r\n\r\nx\r\n", i % 7).as_bytes(), 0, 0, 1_000).unwrap();
        }
        mb.commit().unwrap();
        let criteria = by(SortKey::Subject, false);
        let good = whole_order(&mb, &criteria).0;
        let then = |n: usize| Derived { value: Rc::new(()), last_uid: 20, count: n, save: None };
        assert_eq!(brought_up_to_date(&mb, &good, &then(20), &criteria).map(|u| u.0), Some(good.clone()));
        let mut swapped = good.clone();
        let i = swapped.iter().position(|&u| u == 7).unwrap();
        swapped[i] = 99;
        assert!(brought_up_to_date(&mb, &swapped, &then(20), &criteria).is_none(), "one UID not in the mailbox");
        let short: Vec<u32> = good.iter().copied().filter(|&u| u != 7).collect();
        assert!(brought_up_to_date(&mb, &short, &then(19), &criteria).is_none(), "a message the order lacks");
    }

    /// The key column sorts as the caches do whatever a crash left of it
    /// (records torn, lost, or of appends a crash undid and whose UIDs
    /// went to other messages), and a mailbox without one (a store from
    /// before it) gets one at its first sweep.
    #[test]
    fn the_key_column_sorts_as_the_caches_after_crashes_and_without_it() {
        use crate::store::io::CrashMode;
        let small = Settings { segment_size: 256 << 10, ..Settings::default() };
        let criteria = [by(SortKey::Subject, false), vec![by(SortKey::DisplayFrom, true)[0], by(SortKey::Date, false)[0]]];
        let message = |i: u32| {
            format!(
                "Subject: {}t{}\r\nFrom: N{} <n{}@x>\r\nDate: {} Jan 2024 10:00 +0000\r\n\r\nb\r\n",
                if i.is_multiple_of(4) { "Re: " } else { "" },
                (i * 37) % 101,
                i % 13,
                i % 9,
                1 + i % 28
            )
        };
        let from_caches = |io: &MemIo, dir: &std::path::Path, c: &[SortCriterion]| {
            let copy: Rc<dyn Io> = Rc::new(io.crash(CrashMode::KeepUnsynced));
            copy.remove_file(&dir.join("keys")).unwrap();
            let mb = Mailbox::open(copy, dir, 9, small).unwrap();
            let all = every_message(&mb);
            SortTable::build(&mb, &all, c).order()
        };
        let dir = std::path::Path::new("/crashed");
        let mem = Rc::new(MemIo::new());
        {
            let io: Rc<dyn Io> = mem.clone();
            let mut mb = Mailbox::create(io, dir, 9, small).unwrap();
            for i in 0..200u32 {
                mb.append_bytes(message(i).as_bytes(), 0, 0, 1_000).unwrap();
                if i % 25 == 24 {
                    mb.commit().unwrap();
                }
            }
            mb.expunge(&(1..200).filter(|u| u % 6 == 0).collect::<Vec<_>>()).unwrap();
            mb.commit().unwrap();
            // Never committed: undone by the crash, their UIDs given again.
            for i in 200..210u32 {
                mb.append_bytes(message(i * 3).as_bytes(), 0, 0, 1_000).unwrap();
            }
        }
        // The column's name survives (a later commit synced the directory);
        // its bytes were never synced.
        mem.sync_dir(dir).unwrap();
        for seed in 0..8 {
            let crashed = Rc::new(mem.crash(CrashMode::Random(seed)));
            assert!(crashed.exists(&dir.join("keys")));
            let io: Rc<dyn Io> = crashed.clone();
            {
                let mut mb = Mailbox::open(io.clone(), dir, 9, small).unwrap();
                for i in 210..220u32 {
                    mb.append_bytes(message(i).as_bytes(), 0, 0, 1_000).unwrap();
                }
                mb.commit().unwrap();
            }
            for c in &criteria {
                let mb = Mailbox::open(io.clone(), dir, 9, small).unwrap();
                let all = every_message(&mb);
                assert_eq!(SortTable::build(&mb, &all, c).order(), from_caches(&crashed, dir, c), "seed {seed}, {c:?}");
            }
        }
        // Without a column: the first sweep writes one, the second finds
        // every message in it.
        let io: Rc<dyn Io> = Rc::new(mem.crash(CrashMode::KeepUnsynced));
        io.remove_file(&dir.join("keys")).unwrap();
        let mb = Mailbox::open(io.clone(), dir, 9, small).unwrap();
        let all = every_message(&mb);
        let first = SortTable::build(&mb, &all, &criteria[0]).order();
        let column = mb.key_column().expect("written by the sweep");
        assert!((0..all.len()).all(|p| column.entry(p).is_some()));
        assert_eq!(SortTable::build(&mb, &all, &criteria[0]).order(), first);
    }

    proptest::proptest! {
        /// Ordering by prefixes, 8 bytes at a time, and then in full orders
        /// as comparing every pair in full does: texts sharing long
        /// prefixes, prefixes of each other, holding NULs, identical;
        /// either direction; a second criterion behind.
        #[test]
        fn settling_by_prefixes_orders_as_comparing_in_full(
            texts in proptest::collection::vec(proptest::collection::vec(proptest::prop_oneof![proptest::strategy::Just(b'a'), proptest::strategy::Just(b'b'), proptest::strategy::Just(0u8)], 0..40), 0..200),
            reverse: bool,
            second: bool,
        ) {
            let mut criteria = by(SortKey::Subject, reverse);
            if second {
                criteria.push(SortCriterion { key: SortKey::Size, reverse: true });
            }
            let mut t = SortTable { arena: Vec::new(), values: Vec::new(), prefix: Vec::new(), rows: Vec::new(), criteria: criteria.clone() };
            for (i, text) in texts.iter().enumerate() {
                // A common start, so that many runs go deep.
                let full: Vec<u8> = b"common start ".iter().chain(text).copied().collect();
                let v = t.text(&full);
                t.values.push(v);
                if second {
                    t.values.push(Value::Num((i % 3) as i64));
                }
                let p = t.prefix_of(v);
                t.prefix.push(if reverse { !p } else { p });
                t.rows.push((i as u32 + 1, i as u32 + 1));
            }
            let mut expected: Vec<u32> = (0..texts.len() as u32).collect();
            expected.sort_by(|&a, &b| t.compare(a as usize, b as usize));
            proptest::prop_assert_eq!(t.order_of_rows(), expected);
        }
    }

    /// Both forms of the index find what a binary search finds.
    #[test]
    fn a_hit_index_finds_each_hit_and_nothing_else() {
        let dense: Vec<(u32, u32)> = (1..=500u32).filter(|u| u % 7 != 3).zip(1..).map(|(u, s)| (s, u + 40)).collect();
        let sparse: Vec<(u32, u32)> = [3u32, 90, 1_000_000, u32::MAX - 1].iter().zip(1..).map(|(&u, s)| (s, u)).collect();
        for (hits, dense_form) in [(&dense, true), (&sparse, false), (&Vec::new(), false)] {
            let index = HitIndex::new(hits);
            assert_eq!(matches!(index, HitIndex::Dense { .. }), dense_form);
            for uid in (0..700).chain([999_999, 1_000_000, u32::MAX - 1, u32::MAX]) {
                assert_eq!(index.get(uid), hits.binary_search_by_key(&uid, |h| h.1).ok(), "uid {uid}");
            }
        }
    }

    /// A kept order answers what sorting afresh answers, for the whole
    /// mailbox and for part of it, and still does after messages come and
    /// go (brought up to date, not sorted again).
    #[test]
    fn a_kept_order_is_the_fresh_order_as_the_mailbox_changes() {
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
            assert!(m.derived(format!("SORT {criteria:?}").as_bytes()).is_some(), "a whole-mailbox sort is kept");
            let some = hits(&m, &|u| u % 4 != 1);
            assert_eq!(sorted(&m, &some, &criteria), SortTable::build(&m, &some, &criteria).order(), "filtered from the kept order");
        }
        let key = format!("SORT {:?}", by(SortKey::Subject, false));
        mb.borrow_mut().append_bytes(b"Subject: aaa first\r\n\r\nx\r\n", 0, 0, 5).unwrap();
        mb.borrow_mut().commit().unwrap();
        let stale = mb.borrow().derived(key.as_bytes()).unwrap();
        assert!(!mb.borrow().is_current(&stale), "a new message makes it stale");
        let m = mb.borrow();
        let all = hits(&m, &|_| true);
        let order = sorted(&m, &all, &by(SortKey::Subject, false));
        assert_eq!(order[0].1, m.uidnext() - 1, "the new message sorts first");
        drop(m);
        // Rounds of expunges and arrivals (ties among them: the subjects
        // repeat), each checked against sorting afresh.
        for round in 0..6u32 {
            let gone: Vec<u32> = mb.borrow().msgs().iter().map(|m| m.uid).filter(|u| (u + round) % 9 == 0).take(5).collect();
            mb.borrow_mut().expunge(&gone).unwrap();
            for i in 0..round * 3 {
                mb.borrow_mut().append_bytes(subject(i * 31 + round).as_bytes(), 0, 0, 1_000 + i64::from(i % 7)).unwrap();
            }
            mb.borrow_mut().commit().unwrap();
            let m = mb.borrow();
            for criteria in [by(SortKey::Subject, false), by(SortKey::Arrival, true), vec![by(SortKey::From, true)[0], by(SortKey::Size, false)[0]]] {
                let all = hits(&m, &|_| true);
                assert_eq!(sorted(&m, &all, &criteria), SortTable::build(&m, &all, &criteria).order(), "round {round}, {criteria:?}");
                assert!(m.is_current(&m.derived(format!("SORT {criteria:?}").as_bytes()).unwrap()));
            }
        }
    }
}
