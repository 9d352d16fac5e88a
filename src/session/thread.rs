//! THREAD (RFC 5256 section 3): ORDEREDSUBJECT, REFERENCES, and REFS (as
//! Dovecot offers it: REFERENCES without merging threads by subject, the
//! threads ordered by their latest message), over keys computed at
//! delivery (`mime::sortkeys`).
//!
//! Threads live in an arena of nodes and every walk is iterative: a reply
//! chain of a hundred thousand messages is a tree that deep.

use std::cell::RefCell;
use std::hash::BuildHasher;
use std::rc::Rc;

use super::sort::{each_with_keys, HitIndex, REMEMBER_FROM};
use crate::proto::ThreadAlgorithm;
use crate::store::{Derived, Mailbox, Uids};

/// "No ID" among interned IDs.
const NONE: u32 = u32::MAX;
/// The interned empty base subject.
const EMPTY: u32 = 0;

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
struct Interner {
    hasher: foldhash::quality::RandomState,
    /// (hash, number) per slot; hash 0 marks a free slot. Always a power
    /// of two long, at most half full.
    slots: Vec<(u64, u32)>,
    len: u32,
}

/// How many texts ahead `number_all` asks for slots.
const INTERN_AHEAD: usize = 16;

impl Interner {
    /// The text's hash, never 0.
    fn hash(&self, text: &[u8]) -> u64 {
        self.hasher.hash_one(text) | 1
    }

    /// Room for `more` texts without growing.
    fn reserve(&mut self, more: usize) {
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
    fn free_slot(&self, h: u64) -> usize {
        let mask = self.slots.len() - 1;
        let mut i = h as usize & mask;
        while self.slots[i].0 != 0 && self.slots[i].0 != h {
            i = (i + 1) & mask;
        }
        i
    }

    /// The number of the text whose hash is `h`, a new one if unseen.
    fn number(&mut self, h: u64) -> u32 {
        self.reserve(1);
        self.number_in_room(h)
    }

    /// `number`, the table already having room for `h`.
    fn number_in_room(&mut self, h: u64) -> u32 {
        let i = self.free_slot(h);
        if self.slots[i].0 == 0 {
            self.slots[i] = (h, self.len);
            self.len += 1;
        }
        self.slots[i].1
    }

    /// `number` of each hash in `hs`, in place; 0 (no text) becomes `NONE`.
    fn number_all(&mut self, hs: &mut [u64]) {
        self.reserve(hs.len());
        let mask = self.slots.len() - 1;
        for i in 0..hs.len() {
            if let Some(&ahead) = hs.get(i + INTERN_AHEAD) {
                super::sort::prefetch(&self.slots[ahead as usize & mask]);
            }
            hs[i] = match hs[i] {
                0 => u64::from(NONE),
                h => u64::from(self.number_in_room(h)),
            };
        }
    }

    fn len(&self) -> usize {
        self.len as usize
    }
}

/// What threading reads of one message.
#[derive(Clone, Copy)]
struct Row {
    uid: u32,
    /// Sent date (RFC 5256 2.2, the internal date where there is none).
    date: i64,
    /// Base subject, interned (`EMPTY` for none).
    subject: u32,
    reply: bool,
    /// Message-ID, interned (`NONE`).
    message_id: u32,
    /// A range of `ThreadKeys::refs`.
    refs: (u32, u32),
}

/// The threading keys of messages, in UID order, read once from their
/// caches. Those of a whole mailbox are kept with it (`Mailbox::keep_derived`)
/// and brought up to date as messages come and go (`ThreadKeys::update`),
/// so threading again after an arrival reads one cache, not all of them.
/// About 32 bytes per message, 4 per reference, and the interners' tables.
struct ThreadKeys {
    rows: Vec<Row>,
    refs: Vec<u32>,
    ids: Interner,
    subjects: Interner,
}

impl ThreadKeys {
    fn new() -> ThreadKeys {
        let mut subjects = Interner::default();
        let empty = subjects.hash(b"");
        subjects.number(empty);
        ThreadKeys { rows: Vec::new(), refs: Vec::new(), ids: Interner::default(), subjects }
    }

    /// The keys of `uids` (ascending).
    fn of(mb: &Mailbox, uids: impl Iterator<Item = u32>) -> ThreadKeys {
        let mut k = ThreadKeys::new();
        k.add(mb, uids);
        k
    }

    /// Reads the keys of `uids` in one pass over their caches, keeping
    /// the texts' hashes; then numbers them all.
    fn add(&mut self, mb: &Mailbox, uids: impl Iterator<Item = u32>) {
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
    fn update(&mut self, mb: &Mailbox, then: &Derived) -> bool {
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
    fn of_mailbox(mb: &Mailbox) -> Option<Rc<RefCell<ThreadKeys>>> {
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
struct Item {
    seq: u32,
    row: Row,
}

/// The messages to thread, with the keys they index.
struct Items<'k> {
    list: Vec<Item>,
    keys: &'k ThreadKeys,
}

impl std::ops::Index<u32> for Items<'_> {
    type Output = Row;
    fn index(&self, i: u32) -> &Row {
        &self.list[i as usize].row
    }
}

impl Items<'_> {
    fn len(&self) -> usize {
        self.list.len()
    }
    fn seq(&self, i: u32) -> u32 {
        self.list[i as usize].seq
    }
    fn subject(&self, i: u32) -> u32 {
        self[i].subject
    }
    fn message_id(&self, i: u32) -> Option<u32> {
        Some(self[i].message_id).filter(|&id| id != NONE)
    }
    fn references(&self, i: u32) -> &[u32] {
        let (from, to) = self[i].refs;
        &self.keys.refs[from as usize..to as usize]
    }
}

struct Node {
    /// Index of the message (None: a dummy, at the top only).
    msg: Option<u32>,
    children: Vec<u32>,
}

/// Threads: the top-level nodes and the arena they point into.
pub(crate) struct Forest {
    nodes: Vec<Node>,
    pub roots: Vec<u32>,
}

impl Forest {
    fn node(&mut self, msg: Option<u32>, children: Vec<u32>) -> u32 {
        self.nodes.push(Node { msg, children });
        (self.nodes.len() - 1) as u32
    }

    /// The message that dates a node: itself, or a dummy's first child.
    fn first_msg(&self, mut n: u32) -> Option<u32> {
        loop {
            let node = &self.nodes[n as usize];
            if node.msg.is_some() {
                return node.msg;
            }
            n = *node.children.first()?;
        }
    }

    /// Orders `list` by the sent date of each node's first message.
    fn sort_by_date(&self, items: &Items, list: &mut [u32]) {
        if list.len() < 2 {
            return;
        }
        // Each node's key looked up once, as one integer: (has a message,
        // date, sequence number), nodes without a message first and in
        // place. Every key differs, so an unstable sort does.
        let mut keyed: Vec<(u128, u32)> = list
            .iter()
            .zip(0u32..)
            .map(|(&n, pos)| match self.first_msg(n) {
                Some(i) => (1 << 96 | date_key(items, i), n),
                None => (u128::from(pos), n),
            })
            .collect();
        keyed.sort_unstable_by_key(|k| k.0);
        for (slot, (_, n)) in list.iter_mut().zip(keyed) {
            *slot = n;
        }
    }

    /// The forest as a flat list: the number of roots, then each node in
    /// preorder as its UID (0: a dummy) and its number of children.
    fn encode(&self, ids: &[(u32, u32)]) -> Vec<u32> {
        let mut out = Vec::with_capacity(1 + 2 * self.nodes.len());
        out.push(self.roots.len() as u32);
        let mut stack: Vec<u32> = self.roots.iter().rev().copied().collect();
        while let Some(n) = stack.pop() {
            let node = &self.nodes[n as usize];
            out.push(node.msg.map_or(0, |i| ids[i as usize].1));
            out.push(node.children.len() as u32);
            stack.extend(node.children.iter().rev());
        }
        out
    }

    /// The forest `encode` wrote, indexing `ids` (in UID order); None if
    /// the list does not add up or names a UID not in `ids`.
    fn decode(t: &[u32], ids: &[(u32, u32)]) -> Option<Forest> {
        let mut f = Forest { nodes: Vec::with_capacity(t.len() / 2), roots: Vec::new() };
        let mut it = t.iter().copied();
        let index = HitIndex::new(ids);
        let mut seen = vec![false; ids.len()];
        let mut roots_left = it.next()?;
        // Nodes whose children are still to come, with how many.
        let mut open: Vec<(u32, u32)> = Vec::new();
        loop {
            while open.last().is_some_and(|&(_, left)| left == 0) {
                open.pop();
            }
            if open.is_empty() && roots_left == 0 {
                break;
            }
            let (uid, kids) = (it.next()?, it.next()?);
            let msg = match uid {
                0 => None,
                u => {
                    // Each message once: a list naming one twice (and so
                    // missing another) is not these messages' threads.
                    let i = index.get(u)?;
                    if std::mem::replace(seen.get_mut(i)?, true) {
                        return None;
                    }
                    Some(i as u32)
                }
            };
            let n = f.node(msg, Vec::with_capacity(kids.min(1 << 16) as usize));
            match open.last_mut() {
                Some((p, left)) => {
                    f.nodes[*p as usize].children.push(n);
                    *left -= 1;
                }
                None => {
                    f.roots.push(n);
                    roots_left -= 1;
                }
            }
            if kids > 0 {
                open.push((n, kids));
            }
        }
        (it.next().is_none() && seen.iter().all(|&s| s)).then_some(f)
    }

    /// Sorts the children of `n` by date.
    fn sort_children_of(&mut self, items: &Items, n: u32) {
        let mut kids = std::mem::take(&mut self.nodes[n as usize].children);
        self.sort_by_date(items, &mut kids);
        self.nodes[n as usize].children = kids;
    }
}

/// `thread`, kept with the mailbox when `hits` are all of it (a webmail's
/// threaded list) until a message comes or goes: a repeated THREAD costs
/// rebuilding the tree from a flat list instead of threading.
pub(crate) fn thread_kept(mb: &Mailbox, hits: &[(u32, u32)], algorithm: ThreadAlgorithm) -> (Forest, Vec<(u32, u32)>) {
    let msgs = mb.msgs();
    let whole = hits.len() >= REMEMBER_FROM && hits.len() == msgs.len() && hits.iter().zip(msgs).all(|(h, m)| h.1 == m.uid);
    if !whole {
        return thread(mb, hits, algorithm);
    }
    let key = format!("THREAD {algorithm:?}");
    let kept = mb.derived(key.as_bytes()).filter(|d| mb.is_current(d));
    if let Some(f) = kept.as_ref().and_then(|d| d.value.downcast_ref::<Uids>()).and_then(|t| Forest::decode(&t.0, hits)) {
        return (f, hits.to_vec());
    }
    let (f, ids) = thread(mb, hits, algorithm);
    mb.keep_derived(key.as_bytes(), Rc::new(Uids(f.encode(&ids))));
    (f, ids)
}

/// The threads of the messages `hits` ((sequence number, UID), in mailbox
/// order), and the (sequence number, UID) of each message they index. The
/// keys come from those kept with a mailbox of some size (all its messages
/// threaded before, or most of them asked for now), else from the caches
/// of `hits`.
pub(crate) fn thread(mb: &Mailbox, hits: &[(u32, u32)], algorithm: ThreadAlgorithm) -> (Forest, Vec<(u32, u32)>) {
    let kept = if mb.derived(b"THREAD keys").is_some() || hits.len() * 2 >= mb.msgs().len() { ThreadKeys::of_mailbox(mb) } else { None };
    let own;
    let keys = match &kept {
        Some(k) => k.borrow(),
        None => {
            own = RefCell::new(ThreadKeys::of(mb, hits.iter().map(|h| h.1)));
            own.borrow()
        }
    };
    thread_over(&keys, hits, algorithm)
}

/// The threads of `hits` whose keys are among `keys`.
fn thread_over(keys: &ThreadKeys, hits: &[(u32, u32)], algorithm: ThreadAlgorithm) -> (Forest, Vec<(u32, u32)>) {
    let mut items = Items { list: Vec::with_capacity(hits.len()), keys };
    let mut ids = Vec::with_capacity(hits.len());
    let mut rows = keys.rows.iter().peekable();
    for &(seq, uid) in hits {
        while rows.next_if(|r| r.uid < uid).is_some() {}
        if let Some(&&row) = rows.peek().filter(|r| r.uid == uid) {
            items.list.push(Item { seq, row });
            ids.push((seq, uid));
        }
    }
    let forest = match algorithm {
        ThreadAlgorithm::OrderedSubject => ordered_subject(&items),
        ThreadAlgorithm::References => references(&items, true),
        ThreadAlgorithm::Refs => references(&items, false),
    };
    (forest, ids)
}

/// Sent-date order, the sequence number breaking ties (RFC 5256 2.2), as
/// one integer (96 bits) that orders the same way.
fn date_key(items: &Items, i: u32) -> u128 {
    u128::from(items[i].date as u64 ^ 1 << 63) << 32 | u128::from(items.seq(i))
}

/// ORDEREDSUBJECT: by base subject, then sent date; each subject one
/// thread whose first message is the parent of all the others; threads in
/// order of their first message's sent date.
fn ordered_subject(items: &Items) -> Forest {
    let mut idx: Vec<u32> = (0..items.len() as u32).collect();
    idx.sort_by_cached_key(|&i| u128::from(items.subject(i)) << 96 | date_key(items, i));
    let mut f = Forest { nodes: Vec::with_capacity(items.len()), roots: Vec::new() };
    let mut i = 0;
    while i < idx.len() {
        let mut j = i + 1;
        while j < idx.len() && items.subject(idx[j]) == items.subject(idx[i]) {
            j += 1;
        }
        let children = idx[i + 1..j].iter().map(|&c| f.node(Some(c), Vec::new())).collect();
        let root = f.node(Some(idx[i]), children);
        f.roots.push(root);
        i = j;
    }
    let mut roots = std::mem::take(&mut f.roots);
    f.sort_by_date(items, &mut roots);
    f.roots = roots;
    f
}

/// The containers of the REFERENCES algorithm: one per message ID seen.
struct Containers {
    /// The message in each container (None: a dummy).
    msg: Vec<Option<u32>>,
    parent: Vec<Option<u32>>,
    children: Vec<Vec<u32>>,
}

impl Containers {
    fn add(&mut self, msg: Option<u32>) -> u32 {
        self.msg.push(msg);
        self.parent.push(None);
        self.children.push(Vec::new());
        (self.msg.len() - 1) as u32
    }

    /// Whether `a` is `b` or below it. A container without children has
    /// nothing below it: checked first, it keeps the common case (a new
    /// message) constant time however deep the chain above it.
    fn is_under(&self, mut a: u32, b: u32) -> bool {
        if a != b && self.children[b as usize].is_empty() {
            return false;
        }
        loop {
            if a == b {
                return true;
            }
            match self.parent[a as usize] {
                Some(p) => a = p,
                None => return false,
            }
        }
    }

    fn unlink(&mut self, c: u32) {
        if let Some(p) = self.parent[c as usize].take() {
            self.children[p as usize].retain(|&x| x != c);
        }
    }

    /// Makes `p` the parent of `c`, unless that would make a loop.
    fn link(&mut self, p: u32, c: u32) {
        if self.is_under(p, c) {
            return;
        }
        self.unlink(c);
        self.parent[c as usize] = Some(p);
        self.children[p as usize].push(c);
    }
}

/// REFERENCES (RFC 5256 steps 1 to 6); without `by_subject`, REFS.
fn references(items: &Items, by_subject: bool) -> Forest {
    let mut t = Containers { msg: Vec::new(), parent: Vec::new(), children: Vec::new() };
    // The container of each interned ID (NONE: none yet).
    let mut ids: Vec<u32> = vec![NONE; items.keys.ids.len()];
    for i in 0..items.len() as u32 {
        // (1) A container under the message's ID; a missing ID, or one an
        // earlier message has, gets a container of its own.
        let c = match items.message_id(i) {
            Some(id) => match ids[id as usize] {
                NONE => {
                    let c = t.add(Some(i));
                    ids[id as usize] = c;
                    c
                }
                c if t.msg[c as usize].is_none() => {
                    t.msg[c as usize] = Some(i);
                    c
                }
                _ => t.add(Some(i)),
            },
            None => t.add(Some(i)),
        };
        // (1.A) Each reference the parent of the next, keeping links
        // already made (a References line may have been cut short).
        let mut prev: Option<u32> = None;
        for &r in items.references(i) {
            let rc = match ids[r as usize] {
                NONE => {
                    let rc = t.add(None);
                    ids[r as usize] = rc;
                    rc
                }
                rc => rc,
            };
            if let Some(p) = prev {
                if t.parent[rc as usize].is_none() && p != rc {
                    t.link(p, rc);
                }
            }
            prev = Some(rc);
        }
        // (1.B) The last reference is the message's parent: any parent it
        // has goes first, then the new link is made unless it would loop.
        t.unlink(c);
        if let Some(p) = prev.filter(|&p| p != c) {
            t.link(p, c);
        }
    }
    let mut f = prune(&t, items);
    if !by_subject {
        // REFS: threads ordered by their latest message.
        let mut latest: Vec<(i64, u32)> = Vec::with_capacity(f.roots.len());
        let mut stack = Vec::new();
        for &r in &f.roots {
            let mut best = (i64::MIN, 0);
            stack.push(r);
            while let Some(n) = stack.pop() {
                let node = &f.nodes[n as usize];
                if let Some(i) = node.msg {
                    best = best.max((items[i].date, items.seq(i)));
                }
                stack.extend(node.children.iter());
            }
            latest.push(best);
        }
        // Every message's (date, sequence number) differs: unstable does.
        let mut order: Vec<usize> = (0..f.roots.len()).collect();
        order.sort_unstable_by_key(|&i| latest[i]);
        f.roots = order.into_iter().map(|i| f.roots[i]).collect();
        return f;
    }
    // (4) Roots by sent date (a dummy's children were sorted in `prune`).
    let mut roots = std::mem::take(&mut f.roots);
    f.sort_by_date(items, &mut roots);
    f.roots = roots;
    // (5) Threads with the same base subject gathered together.
    merge_by_subject(&mut f, items);
    // (6) Siblings by date: deeper levels were sorted in `prune`; merging
    // only changed the top two.
    let roots = f.roots.clone();
    for r in roots {
        f.sort_children_of(items, r);
    }
    let mut roots = std::mem::take(&mut f.roots);
    f.sort_by_date(items, &mut roots);
    f.roots = roots;
    f
}

/// (2) and (3): the containers without a parent are the threads; a dummy
/// without children goes, a dummy with children gives them up to its
/// parent (at the top only when it has just one). Every set of children is
/// sorted by date on the way (step 6 below the top).
fn prune(t: &Containers, items: &Items) -> Forest {
    let n = t.msg.len();
    let mut f = Forest { nodes: Vec::with_capacity(n), roots: Vec::new() };
    // Post-order without recursion, children before their parent. What
    // each container became (nodes to put where it was) goes on `became`;
    // a container's children left theirs above the mark it was given.
    let mut stack: Vec<(u32, Option<usize>)> = Vec::new();
    let mut became: Vec<u32> = Vec::new();
    for root in (0..n as u32).filter(|&c| t.parent[c as usize].is_none()) {
        stack.push((root, None));
        while let Some((c, mark)) = stack.pop() {
            let Some(mark) = mark else {
                stack.push((c, Some(became.len())));
                stack.extend(t.children[c as usize].iter().rev().map(|&k| (k, None)));
                continue;
            };
            let mut kids = became.split_off(mark);
            f.sort_by_date(items, &mut kids);
            let top = t.parent[c as usize].is_none();
            match t.msg[c as usize] {
                Some(m) => became.push(f.node(Some(m), kids)),
                None if kids.is_empty() => {}
                None if !top || kids.len() == 1 => became.append(&mut kids),
                None => became.push(f.node(None, kids)),
            }
        }
        f.roots.append(&mut became);
    }
    f
}

/// (5) Gathers the top-level threads that share a base subject.
fn merge_by_subject(f: &mut Forest, items: &Items) {
    let subject = |f: &Forest, n: u32| f.first_msg(n).map_or(EMPTY, |i| items.subject(i));
    let is_dummy = |f: &Forest, n: u32| f.nodes[n as usize].msg.is_none();
    let is_reply = |f: &Forest, n: u32| f.nodes[n as usize].msg.is_some_and(|i| items[i].reply);
    // (5.B) One thread per subject: a dummy if there is one, else one that
    // is not a reply if there is one, else the first. The table holds
    // positions in `slots`, indexed by subject number (`NONE`: none yet).
    let mut slots: Vec<Option<u32>> = f.roots.drain(..).map(Some).collect();
    let subjects: Vec<u32> = slots.iter().map(|n| subject(f, n.expect("all present"))).collect();
    let mut table: Vec<u32> = vec![NONE; items.keys.subjects.len()];
    for (pos, (n, &s)) in slots.iter().zip(&subjects).enumerate() {
        let n = n.expect("all present");
        if s == EMPTY {
            continue;
        }
        let p = &mut table[s as usize];
        let replace = *p == NONE || {
            let j = slots[*p as usize].expect("all present");
            !is_dummy(f, j) && (is_dummy(f, n) || (is_reply(f, j) && !is_reply(f, n)))
        };
        if replace {
            *p = pos as u32;
        }
    }
    // (5.C) The others merge into the one in the table.
    for (pos, &s) in subjects.iter().enumerate() {
        let Some(n) = slots[pos] else { continue };
        let p = table[s as usize] as usize;
        if s == EMPTY || p == pos {
            continue;
        }
        let Some(j) = slots[p] else { continue };
        slots[pos] = None;
        match (is_dummy(f, j), is_dummy(f, n)) {
            (true, true) => {
                let mut kids = std::mem::take(&mut f.nodes[n as usize].children);
                f.nodes[j as usize].children.append(&mut kids);
            }
            (true, false) => f.nodes[j as usize].children.push(n),
            _ if is_reply(f, n) && !is_reply(f, j) => f.nodes[j as usize].children.push(n),
            // Neither is the other's reply: a new dummy holds both.
            _ => slots[p] = Some(f.node(None, vec![j, n])),
        }
    }
    f.roots = slots.into_iter().flatten().collect();
}

/// `THREAD` data (RFC 5256 section 5: a thread with one child continues
/// in line, several children are each in parentheses). `numbers` are the
/// numbers to show per message index.
pub(crate) fn render(f: &Forest, numbers: &[u32], out: &mut Vec<u8>) {
    enum Step {
        Node(u32),
        Open,
        Close,
    }
    let mut stack: Vec<Step> = Vec::new();
    let mut digits = itoa::Buffer::new();
    for &r in f.roots.iter().rev() {
        stack.push(Step::Close);
        stack.push(Step::Node(r));
        stack.push(Step::Open);
    }
    while let Some(s) = stack.pop() {
        match s {
            Step::Open => out.push(b'('),
            Step::Close => out.push(b')'),
            Step::Node(n) => {
                let node = &f.nodes[n as usize];
                if let Some(i) = node.msg {
                    out.extend_from_slice(digits.format(numbers[i as usize]).as_bytes());
                    match node.children.len() {
                        0 => continue,
                        1 => {
                            out.push(b' ');
                            stack.push(Step::Node(node.children[0]));
                            continue;
                        }
                        _ => out.push(b' '),
                    }
                }
                for &c in node.children.iter().rev() {
                    stack.push(Step::Close);
                    stack.push(Step::Node(c));
                    stack.push(Step::Open);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Io, MemIo, Settings};
    use std::cell::RefCell;
    use std::rc::Rc;

    fn rendered(f: &Forest, ids: &[(u32, u32)]) -> String {
        let numbers: Vec<u32> = ids.iter().map(|h| h.1).collect();
        let mut out = Vec::new();
        render(f, &numbers, &mut out);
        String::from_utf8(out).unwrap()
    }

    /// A kept thread renders as threading afresh does; after messages come
    /// and go, threading over the kept keys (brought up to date) renders as
    /// threading over keys read afresh.
    #[test]
    fn kept_threads_and_keys_thread_as_afresh_as_the_mailbox_changes() {
        let io: Rc<dyn Io> = Rc::new(MemIo::new());
        let mb = Rc::new(RefCell::new(Mailbox::create(io, std::path::Path::new("/t"), 7, Settings::default()).unwrap()));
        let message = |i: u32| {
            // Replies to earlier messages, some to missing ones (dummies), some by subject only.
            let refs = match i % 4 {
                0 => String::new(),
                1 => format!("References: <m{}@x>\r\n", i / 2),
                2 => format!("References: <gone{}@x> <m{}@x>\r\n", i % 3, i - 1),
                _ => format!("In-Reply-To: <gone{}@x>\r\n", i % 5),
            };
            format!(
                "Subject: {}topic {}\r\nMessage-ID: <m{i}@x>\r\n{refs}Date: {} Jan 2024 10:00 +0000\r\n\r\nx\r\n",
                if i.is_multiple_of(3) { "Re: " } else { "" },
                i % 7,
                1 + i % 28
            )
        };
        for i in 0..(REMEMBER_FROM as u32 + 20) {
            mb.borrow_mut().append_bytes(message(i).as_bytes(), 0, 0, 1_000).unwrap();
        }
        mb.borrow_mut().commit().unwrap();
        let all = crate::session::sort::every_message;
        for alg in [ThreadAlgorithm::OrderedSubject, ThreadAlgorithm::References, ThreadAlgorithm::Refs] {
            let m = mb.borrow();
            let hits = all(&m);
            let (f, ids) = thread(&m, &hits, alg);
            let fresh = rendered(&f, &ids);
            assert!(fresh.contains(" (") || fresh.contains("(("), "{alg:?}: nested threads: {fresh}");
            for round in 0..2 {
                let (f, ids) = thread_kept(&m, &hits, alg);
                assert_eq!(rendered(&f, &ids), fresh, "{alg:?}, round {round}");
            }
            assert!(m.derived(format!("THREAD {alg:?}").as_bytes()).is_some());
            let part: Vec<(u32, u32)> = hits.iter().copied().filter(|h| h.1 % 2 == 0).collect();
            let (f, ids) = thread_kept(&m, &part, alg);
            let (g, jds) = thread(&m, &part, alg);
            assert_eq!(rendered(&f, &ids), rendered(&g, &jds), "part of the mailbox is threaded afresh");
        }
        let afresh = |m: &Mailbox, hits: &[(u32, u32)], alg| {
            let (f, ids) = thread_over(&ThreadKeys::of(m, hits.iter().map(|h| h.1)), hits, alg);
            rendered(&f, &ids)
        };
        for round in 0..5u32 {
            let gone: Vec<u32> = mb.borrow().msgs().iter().map(|m| m.uid).filter(|u| (u + round) % 7 == 0).take(4).collect();
            mb.borrow_mut().expunge(&gone).unwrap();
            for i in 0..round * 4 {
                // New replies to old and new messages, and repeated IDs.
                mb.borrow_mut().append_bytes(message(REMEMBER_FROM as u32 + round * 10 + i % 9).as_bytes(), 0, 0, 1_000).unwrap();
            }
            mb.borrow_mut().commit().unwrap();
            let m = mb.borrow();
            let hits = all(&m);
            for alg in [ThreadAlgorithm::OrderedSubject, ThreadAlgorithm::References, ThreadAlgorithm::Refs] {
                assert!(!m.is_current(&m.derived(format!("THREAD {alg:?}").as_bytes()).unwrap()) || round == 0);
                let (f, ids) = thread_kept(&m, &hits, alg);
                assert_eq!(rendered(&f, &ids), afresh(&m, &hits, alg), "round {round}, {alg:?}");
                let part: Vec<(u32, u32)> = hits.iter().copied().filter(|h| h.1 % 3 != 0).collect();
                let (f, ids) = thread(&m, &part, alg);
                assert_eq!(rendered(&f, &ids), afresh(&m, &part, alg), "round {round}, {alg:?}, part");
            }
            assert!(m.is_current(&m.derived(b"THREAD keys").unwrap()), "the keys were brought up to date");
        }
        assert_eq!(Forest::decode(&[1, 3, 0], &[]).map(|f| f.roots.len()), None, "a cut list is refused");
        let ids = [(1, 10), (2, 11)];
        assert_eq!(Forest::decode(&[2, 10, 0, 11, 0], &ids).map(|f| f.roots.len()), Some(2));
        assert!(Forest::decode(&[2, 10, 0, 10, 0], &ids).is_none(), "a message twice, another missing");
        assert!(Forest::decode(&[1, 10, 0], &ids).is_none(), "a message missing");
    }
}
