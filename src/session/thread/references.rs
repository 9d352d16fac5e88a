//! REFERENCES and REFS (RFC 5256 section 3, steps 1 to 6).

use super::forest::Forest;
use super::keys::{Items, EMPTY, NONE};

/// The containers of the REFERENCES algorithm: one per message ID seen.
#[derive(Default)]
pub(super) struct Containers {
    /// The message in each container (None: a dummy).
    pub(super) msg: Vec<Option<u32>>,
    pub(super) parent: Vec<Option<u32>>,
    pub(super) children: Vec<Vec<u32>>,
}

impl Containers {
    pub(super) fn add(&mut self, msg: Option<u32>) -> u32 {
        self.msg.push(msg);
        self.parent.push(None);
        self.children.push(Vec::new());
        (self.msg.len() - 1) as u32
    }

    /// The top of the thread `c` is in.
    pub(super) fn root(&self, mut c: u32) -> u32 {
        while let Some(p) = self.parent[c as usize] {
            c = p;
        }
        c
    }

    /// (1) Links message `i` by its ID and references; gives its
    /// container. `ids` holds the container of each interned ID.
    pub(super) fn thread_in(&mut self, ids: &mut [u32], items: &Items, i: u32) -> u32 {
        // A container under the message's ID; a missing ID, or one an
        // earlier message has, gets a container of its own.
        let c = match items.message_id(i) {
            Some(id) => match ids[id as usize] {
                NONE => {
                    let c = self.add(Some(i));
                    ids[id as usize] = c;
                    c
                }
                c if self.msg[c as usize].is_none() => {
                    self.msg[c as usize] = Some(i);
                    c
                }
                _ => self.add(Some(i)),
            },
            None => self.add(Some(i)),
        };
        // (1.A) Each reference the parent of the next, keeping links
        // already made (a References line may have been cut short).
        let mut prev: Option<u32> = None;
        for &r in items.references(i) {
            let rc = match ids[r as usize] {
                NONE => {
                    let rc = self.add(None);
                    ids[r as usize] = rc;
                    rc
                }
                rc => rc,
            };
            if let Some(p) = prev {
                if self.parent[rc as usize].is_none() && p != rc {
                    self.link(p, rc);
                }
            }
            prev = Some(rc);
        }
        // (1.B) The last reference is the message's parent: any parent it
        // has goes first, then the new link is made unless it would loop.
        self.unlink(c);
        if let Some(p) = prev.filter(|&p| p != c) {
            self.link(p, c);
        }
        c
    }

    /// Whether `a` is `b` or below it. A container without children has
    /// nothing below it: checked first, it keeps the common case (a new
    /// message) constant time however deep the chain above it.
    pub(super) fn is_under(&self, mut a: u32, b: u32) -> bool {
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

    pub(super) fn unlink(&mut self, c: u32) {
        if let Some(p) = self.parent[c as usize].take() {
            self.children[p as usize].retain(|&x| x != c);
        }
    }

    /// Makes `p` the parent of `c`, unless that would make a loop.
    pub(super) fn link(&mut self, p: u32, c: u32) {
        if self.is_under(p, c) {
            return;
        }
        self.unlink(c);
        self.parent[c as usize] = Some(p);
        self.children[p as usize].push(c);
    }
}

/// REFERENCES (RFC 5256 steps 1 to 6).
pub(super) fn references(items: &Items) -> Forest {
    gathered_by_subject(Refs::new(items).forest, items)
}

/// REFERENCES' steps 4 to 6 over the threads of steps 1 to 3.
pub(super) fn gathered_by_subject(mut f: Forest, items: &Items) -> Forest {
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

/// REFS, as Dovecot offers it: the threads of REFERENCES' steps 1 to 3
/// (no merging by subject), ordered by their latest message. Kept with a
/// whole mailbox, they grow with its mail (`add`): only the threads that
/// new messages join or link are pruned again, so threading after an
/// arrival costs about what the arrival touched, not the mailbox.
#[derive(Default)]
pub(super) struct Refs {
    t: Containers,
    /// The container of each interned ID (NONE: none yet).
    ids: Vec<u32>,
    pub(super) forest: Forest,
    /// The threads in order: their latest message's (sent date, sequence
    /// number), all different; their node; the container they came from.
    tops: Vec<((i64, u32), u32, u32)>,
}

impl Refs {
    pub(super) fn new(items: &Items) -> Refs {
        let mut r = Refs::default();
        r.add(items, 0);
        r
    }

    /// Threads the messages of `items` from index `first` on, those before
    /// having been threaded already (with the same sequence numbers).
    pub(super) fn add(&mut self, items: &Items, first: u32) {
        self.ids.resize(items.keys.ids.len(), NONE);
        // The threads that change: those of every container a new message
        // names, before it links them (their tops then), and after.
        let (mut before, mut named) = (Vec::new(), Vec::new());
        for i in first..items.len() as u32 {
            let ids = || items.message_id(i).into_iter().chain(items.references(i).iter().copied());
            if first > 0 {
                before.extend(ids().map(|id| self.ids[id as usize]).filter(|&c| c != NONE).map(|c| self.t.root(c)));
            }
            let c = self.t.thread_in(&mut self.ids, items, i);
            if first > 0 {
                named.push(c);
                named.extend(ids().map(|id| self.ids[id as usize]));
            }
        }
        let moved: Vec<u32> = if first == 0 {
            (0..self.t.msg.len() as u32).filter(|&c| self.t.parent[c as usize].is_none()).collect()
        } else {
            before.extend(named.into_iter().map(|c| self.t.root(c)));
            before.sort_unstable();
            before.dedup();
            self.tops.retain(|top| before.binary_search(&top.2).is_err());
            before
        };
        let (t, f) = (&self.t, &mut self.forest);
        let mut stack = Vec::new();
        let mut new: Vec<((i64, u32), u32, u32)> = prune(t, items, f, moved.into_iter().filter(|&c| t.parent[c as usize].is_none()))
            .into_iter()
            .map(|(node, c)| (f.latest(items, node, &mut stack), node, c))
            .collect();
        // Every message's (date, sequence number) differs: unstable does.
        new.sort_unstable_by_key(|top| top.0);
        let old = std::mem::take(&mut self.tops);
        self.tops = merged(old, new, |top| top.0);
        self.forest.roots = self.tops.iter().map(|top| top.1).collect();
    }

    /// Whether threads pruned again left so many nodes unused that
    /// threading afresh costs less than carrying them.
    pub(super) fn is_bloated(&self) -> bool {
        self.forest.nodes.len() > 2 * self.t.msg.len() + 1024
    }
}

/// Two lists sorted by `key` as one.
fn merged<T: Copy, K: Ord>(a: Vec<T>, b: Vec<T>, key: impl Fn(&T) -> K) -> Vec<T> {
    if b.is_empty() {
        return a;
    }
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    while let (Some(x), Some(y)) = (a.peek(), b.peek()) {
        let next = if key(x) <= key(y) { a.next() } else { b.next() };
        out.extend(next);
    }
    out.extend(a);
    out.extend(b);
    out
}

/// (2) and (3) for the threads under the containers `roots`: a dummy
/// without children goes, a dummy with children gives them up to its
/// parent (at the top only when it has just one). Every set of children is
/// sorted by date on the way (step 6 below the top). Gives each thread's
/// node with the container it came from (each gives at most one).
pub(super) fn prune(t: &Containers, items: &Items, f: &mut Forest, roots: impl Iterator<Item = u32>) -> Vec<(u32, u32)> {
    f.nodes.reserve(t.msg.len().saturating_sub(f.nodes.len()));
    let mut tops = Vec::new();
    // Post-order without recursion, children before their parent. What
    // each container became (nodes to put where it was) goes on `became`;
    // a container's children left theirs above the mark it was given.
    let mut stack: Vec<(u32, Option<usize>)> = Vec::new();
    let mut became: Vec<u32> = Vec::new();
    for root in roots {
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
        tops.extend(became.drain(..).map(|n| (n, root)));
    }
    tops
}

/// (5) Gathers the top-level threads that share a base subject.
pub(super) fn merge_by_subject(f: &mut Forest, items: &Items) {
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
