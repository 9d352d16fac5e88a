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
use references::references;

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
    let refresh = move |mb: &Mailbox| drop(thread_kept(mb, &every_message(mb), algorithm));
    mb.keep_saved(key.as_bytes(), Rc::new(Uids(f.encode(&ids))), Rc::new(refresh));
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
    }

    /// Orders and threads that fell behind the mailbox are brought up to
    /// date before they are saved at close: the first SORT and THREAD after
    /// a restart have nothing to catch up, and answer as afresh.
    #[test]
    fn what_is_saved_at_close_is_brought_up_to_date_first() {
        let io: Rc<dyn Io> = Rc::new(MemIo::new());
        let dir = std::path::Path::new("/behind");
        let message =
            |i: u32| format!("Subject: {}t{}\r\nMessage-ID: <m{i}@x>\r\nReferences: <m{}@x>\r\n\r\nx\r\n", if i % 3 == 0 { "Re: " } else { "" }, i % 13, i / 3);
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
            thread_kept(&mb, &all, ThreadAlgorithm::Refs);
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
        let (f, ids) = thread_kept(&mb, &all, ThreadAlgorithm::Refs);
        let (g, jds) = thread_over(&ThreadKeys::of(&mb, all.iter().map(|h| h.1)), &all, ThreadAlgorithm::Refs);
        assert_eq!(rendered(&f, &ids), rendered(&g, &jds));
        let ids = [(1, 10), (2, 11)];
        assert_eq!(Forest::decode(&[2, 10, 0, 11, 0], &ids).map(|f| f.roots.len()), Some(2));
        assert!(Forest::decode(&[2, 10, 0, 10, 0], &ids).is_none(), "a message twice, another missing");
        assert!(Forest::decode(&[1, 10, 0], &ids).is_none(), "a message missing");
    }
}
