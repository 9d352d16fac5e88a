//! THREAD (RFC 5256 section 3): ORDEREDSUBJECT, REFERENCES, and REFS (as
//! Dovecot offers it: REFERENCES without merging threads by subject, the
//! threads ordered by their latest message), over keys computed at
//! delivery (`mime::sortkeys`).
//!
//! Threads live in an arena of nodes and every walk is iterative: a reply
//! chain of a hundred thousand messages is a tree that deep.

mod forest;
mod keys;
mod references;

use std::cell::RefCell;
use std::rc::Rc;

use super::sort::{every_message, REMEMBER_FROM};
use crate::proto::ThreadAlgorithm;
use crate::store::{Mailbox, Uids};
use forest::date_key;
pub(crate) use forest::{render, Forest};
use keys::{Item, Items, ThreadKeys};
use references::{gathered_by_subject, references, Refs};

/// Calls `f` with the threads of `hits` and the (sequence number, UID) of
/// each message they index. When `hits` are all of the mailbox (a
/// webmail's threaded list), the threads are kept with it as a flat list
/// until a message comes or goes (a repeated THREAD costs rebuilding the
/// tree from it, not threading); and REFERENCES' linked threads (steps 1
/// to 3, REFS's answer) are kept and grown with the mail that arrives
/// (`KeptLinks`), so after an arrival REFS threads nothing and REFERENCES
/// only gathers the threads by subject.
pub(crate) fn with_threads<R>(mb: &Mailbox, hits: &[(u32, u32)], algorithm: ThreadAlgorithm, f: impl FnOnce(&Forest, &[(u32, u32)]) -> R) -> R {
    let msgs = mb.msgs();
    let whole = hits.len() >= REMEMBER_FROM && hits.len() == msgs.len() && hits.iter().zip(msgs).all(|(h, m)| h.1 == m.uid);
    if !whole {
        let (forest, ids) = thread(mb, hits, algorithm);
        return f(&forest, &ids);
    }
    let key = format!("THREAD {algorithm:?}");
    let kept = mb.derived(key.as_bytes());
    let list = kept.as_ref().filter(|d| mb.is_current(d)).and_then(|d| d.value.downcast_ref::<Uids>());
    if let Some(forest) = list.and_then(|t| Forest::decode(&t.0, hits)) {
        return f(&forest, hits);
    }
    let save = Rc::new(move |mb: &Mailbox| Some(saved_form(mb, algorithm)));
    let links = match algorithm {
        ThreadAlgorithm::OrderedSubject => None,
        _ => KeptLinks::of_mailbox(mb),
    };
    let (forest, ids) = match (algorithm, links) {
        (ThreadAlgorithm::Refs, Some(links)) => {
            // Saved at close in the flat form, made then.
            mb.keep_saved(key.as_bytes(), Rc::new(Unsaved), save);
            return f(&links.borrow().refs.forest, hits);
        }
        (_, Some(links)) => {
            let mut l = links.borrow_mut();
            let keys = l.keys.clone();
            let items = Items { list: std::mem::take(&mut l.list), keys: &keys.borrow() };
            let forest = gathered_by_subject(l.refs.forest.clone(), &items);
            l.list = items.list;
            (forest, hits.to_vec())
        }
        (_, None) => thread(mb, hits, algorithm),
    };
    mb.keep_saved(key.as_bytes(), Rc::new(Uids(forest.encode(&ids))), save);
    f(&forest, &ids)
}

/// A kept value standing for threads that are not kept in the flat form
/// (REFS's are `KeptLinks`'): made at close for saving.
struct Unsaved;

/// The threads of the whole mailbox as the flat list saved at close.
fn saved_form(mb: &Mailbox, algorithm: ThreadAlgorithm) -> Rc<Uids> {
    with_threads(mb, &every_message(mb), algorithm, |f, ids| Rc::new(Uids(f.encode(ids))))
}

/// REFERENCES' linked threads (REFS's answer) of a whole mailbox, kept
/// with it and grown as mail arrives; threaded afresh after an expunge
/// (sequence numbers moved) or when the keys were read afresh (their
/// numbering changed).
struct KeptLinks {
    refs: Refs,
    /// The keys the threads were made from.
    keys: Rc<RefCell<ThreadKeys>>,
    /// Every message of the mailbox, numbered in UID order.
    list: Vec<Item>,
}

impl KeptLinks {
    /// The linked threads of the mailbox as it is, from those kept if they
    /// can be brought up to date, and kept; None if the mailbox keeps no
    /// keys (too small).
    fn of_mailbox(mb: &Mailbox) -> Option<Rc<RefCell<KeptLinks>>> {
        const KEY: &[u8] = b"THREAD links";
        let keys = ThreadKeys::of_mailbox(mb)?;
        let then = mb.derived(KEY).and_then(|d| Some((d.value.clone().downcast::<RefCell<KeptLinks>>().ok()?, d)));
        if let Some((refs, d)) = then {
            if mb.is_current(&d) {
                return Some(refs);
            }
            // Messages only came: those then are the first `d.count`.
            let first = mb.msgs().partition_point(|m| m.uid <= d.last_uid);
            let grows = {
                let r = refs.borrow();
                first == d.count && r.list.len() == first && Rc::ptr_eq(&r.keys, &keys) && !r.refs.is_bloated()
            };
            if grows {
                refs.borrow_mut().thread_from(first);
                mb.keep_derived(KEY, refs.clone());
                return Some(refs);
            }
        }
        let mut fresh = KeptLinks { refs: Refs::default(), keys, list: Vec::new() };
        fresh.thread_from(0);
        let fresh = Rc::new(RefCell::new(fresh));
        mb.keep_derived(KEY, fresh.clone());
        Some(fresh)
    }

    /// Threads the messages of the keys from `first` on (in UID order),
    /// those before having been threaded.
    fn thread_from(&mut self, first: usize) {
        let keys = self.keys.clone();
        let k = keys.borrow();
        self.list.extend(k.rows[first..].iter().zip(first as u32 + 1..).map(|(&row, seq)| Item { seq, row }));
        let items = Items { list: std::mem::take(&mut self.list), keys: &k };
        self.refs.add(&items, first as u32);
        self.list = items.list;
    }
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
        ThreadAlgorithm::References => references(&items),
        ThreadAlgorithm::Refs => Refs::new(&items).forest,
    };
    (forest, ids)
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
                assert_eq!(with_threads(&m, &hits, alg, rendered), fresh, "{alg:?}, round {round}");
            }
            assert!(m.derived(format!("THREAD {alg:?}").as_bytes()).is_some());
            let part: Vec<(u32, u32)> = hits.iter().copied().filter(|h| h.1 % 2 == 0).collect();
            let (g, jds) = thread(&m, &part, alg);
            assert_eq!(with_threads(&m, &part, alg, rendered), rendered(&g, &jds), "part of the mailbox is threaded afresh");
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
                assert_eq!(with_threads(&m, &hits, alg, rendered), afresh(&m, &hits, alg), "round {round}, {alg:?}");
                let part: Vec<(u32, u32)> = hits.iter().copied().filter(|h| h.1 % 3 != 0).collect();
                let (f, ids) = thread(&m, &part, alg);
                assert_eq!(rendered(&f, &ids), afresh(&m, &part, alg), "round {round}, {alg:?}, part");
            }
            assert!(m.is_current(&m.derived(b"THREAD keys").unwrap()), "the keys were brought up to date");
        }
        assert_eq!(Forest::decode(&[1, 3, 0], &[]).map(|f| f.roots.len()), None, "a cut list is refused");
    }

    /// The linked threads kept with a mailbox grow with each arrival (only
    /// the threads new messages join are pruned again), and REFS and
    /// REFERENCES from them answer as threading afresh: replies to old messages, messages filling a reference seen
    /// before (a dummy), references linking two threads, duplicate and
    /// missing IDs, a reference loop; an expunge threads afresh.
    #[test]
    fn kept_links_grow_with_arrivals_and_thread_as_afresh() {
        for seed in [0x2545_f491, 1, 2] {
            grow_and_compare(seed, 100);
        }
    }

    fn grow_and_compare(mut seed: u32, rounds: usize) {
        let io: Rc<dyn Io> = Rc::new(MemIo::new());
        let settings = Settings { segment_size: 256 << 10, ..Settings::default() };
        let mut mb = Mailbox::create(io, std::path::Path::new("/grow"), 7, settings).unwrap();
        let mut next = move |n: u32| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (seed >> 8) % n
        };
        let mut message = |i: u32| {
            let id = match next(10) {
                0 => String::new(),
                1 => format!("Message-ID: <m{}@x>\r\n", next(i + 1)),
                _ => format!("Message-ID: <m{i}@x>\r\n"),
            };
            let refs = match next(6) {
                0 => String::new(),
                1 => format!("References: <m{}@x>\r\n", next(i + 1)),
                2 => format!("References: <m{}@x> <m{}@x>\r\n", next(i + 1), i + 1 + next(5)),
                3 => format!("References: <m{}@x> <m{}@x> <m{}@x>\r\n", next(i + 1), next(i + 1), next(i + 1)),
                4 => format!("In-Reply-To: <m{i}@x>\r\nReferences: <m{i}@x>\r\n"),
                _ => format!("In-Reply-To: <m{}@x>\r\n", next(i + 1)),
            };
            format!("Subject: t{}\r\n{id}{refs}Date: {} Jan 2024 10:{:02} +0000\r\n\r\nx\r\n", i % 5, 1 + next(28), next(60))
        };
        let mut i = 0;
        for _ in 0..(REMEMBER_FROM as u32 + 20) {
            mb.append_bytes(message(i).as_bytes(), 0, 0, 1_000).unwrap();
            i += 1;
        }
        mb.commit().unwrap();
        let afresh = |m: &Mailbox, hits: &[(u32, u32)], alg| {
            let (f, ids) = thread_over(&ThreadKeys::of(m, hits.iter().map(|h| h.1)), hits, alg);
            rendered(&f, &ids)
        };
        let both = [ThreadAlgorithm::Refs, ThreadAlgorithm::References];
        let kept = |m: &Mailbox| m.derived(b"THREAD links").and_then(|d| d.value.downcast::<RefCell<KeptLinks>>().ok()).expect("kept");
        let all = every_message(&mb);
        assert_eq!(with_threads(&mb, &all, ThreadAlgorithm::Refs, rendered), afresh(&mb, &all, ThreadAlgorithm::Refs));
        let mut then = kept(&mb);
        let mut grown = 0;
        for round in 0..rounds {
            for _ in 0..1 + round % 3 {
                mb.append_bytes(message(i).as_bytes(), 0, 0, 1_000).unwrap();
                i += 1;
            }
            mb.commit().unwrap();
            let all = every_message(&mb);
            for alg in both {
                assert_eq!(with_threads(&mb, &all, alg, rendered), afresh(&mb, &all, alg), "round {round}, {alg:?}");
            }
            // Grown, but for a fresh start once in a while, when threads
            // pruned again left too many nodes unused.
            let now = kept(&mb);
            grown += usize::from(Rc::ptr_eq(&now, &then));
            then = now;
        }
        assert!(grown * 10 >= rounds * 9, "grown {grown} times in {rounds} rounds");
        mb.expunge(&[5]).unwrap();
        let all = every_message(&mb);
        for alg in both {
            assert_eq!(with_threads(&mb, &all, alg, rendered), afresh(&mb, &all, alg), "after an expunge, {alg:?}");
        }
        assert!(!Rc::ptr_eq(&kept(&mb), &then), "threaded afresh after an expunge");
    }

    /// Orders and threads that fell behind the mailbox are brought up to
    /// date before they are saved at close: the first SORT and THREAD after
    /// a restart have nothing to catch up, and answer as afresh.
    #[test]
    fn what_is_saved_at_close_is_brought_up_to_date_first() {
        let io: Rc<dyn Io> = Rc::new(MemIo::new());
        let dir = std::path::Path::new("/behind");
        let message = |i: u32| {
            format!("Subject: {}t{}\r\nMessage-ID: <m{i}@x>\r\nReferences: <m{}@x>\r\n\r\nx\r\n", if i.is_multiple_of(3) { "Re: " } else { "" }, i % 13, i / 3)
        };
        let criteria = [crate::proto::SortCriterion { key: crate::proto::SortKey::Subject, reverse: false }];
        let (sort_key, thread_key) = (format!("SORT {criteria:?}"), format!("THREAD {:?}", ThreadAlgorithm::Refs));
        {
            let mut mb = Mailbox::create(io.clone(), dir, 5, Settings::default()).unwrap();
            for i in 0..(REMEMBER_FROM as u32 + 10) {
                mb.append_bytes(message(i).as_bytes(), 0, 0, 1_000).unwrap();
            }
            mb.commit().unwrap();
            let all = every_message(&mb);
            crate::session::sort::sorted(&mb, &all, &criteria);
            with_threads(&mb, &all, ThreadAlgorithm::Refs, rendered);
            mb.expunge(&[3, 8]).unwrap();
            for i in 0..6 {
                mb.append_bytes(message(500 + i).as_bytes(), 0, 0, 1_000).unwrap();
            }
            mb.commit().unwrap();
            assert!(!mb.is_current(&mb.derived(sort_key.as_bytes()).unwrap()));
            mb.checkpoint().unwrap();
            mb.save_derived().unwrap();
        }
        let mb = Mailbox::open(io, dir, 5, Settings::default()).unwrap();
        for key in [&sort_key, &thread_key] {
            assert!(mb.is_current(&mb.derived(key.as_bytes()).expect("saved")), "{key} saved up to date");
        }
        let all = every_message(&mb);
        let saved = mb.derived(sort_key.as_bytes()).unwrap();
        let saved: Vec<u32> = saved.value.downcast_ref::<Uids>().unwrap().0.clone();
        let fresh: Vec<u32> = crate::session::sort::SortTable::build(&mb, &all, &criteria).order().iter().map(|h| h.1).collect();
        assert_eq!(saved, fresh);
        let (g, jds) = thread_over(&ThreadKeys::of(&mb, all.iter().map(|h| h.1)), &all, ThreadAlgorithm::Refs);
        assert_eq!(with_threads(&mb, &all, ThreadAlgorithm::Refs, rendered), rendered(&g, &jds));
        let ids = [(1, 10), (2, 11)];
        assert_eq!(Forest::decode(&[2, 10, 0, 11, 0], &ids).map(|f| f.roots.len()), Some(2));
        assert!(Forest::decode(&[2, 10, 0, 10, 0], &ids).is_none(), "a message twice, another missing");
        assert!(Forest::decode(&[1, 10, 0], &ids).is_none(), "a message missing");
    }
}
