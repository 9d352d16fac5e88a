//! REFERENCES and REFS (RFC 5256 section 3, steps 1 to 6).

use super::forest::Forest;
use super::keys::{Items, EMPTY, NONE};

/// The containers of the REFERENCES algorithm: one per message ID seen.
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

/// REFERENCES (RFC 5256 steps 1 to 6); without `by_subject`, REFS.
pub(super) fn references(items: &Items, by_subject: bool) -> Forest {
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
pub(super) fn prune(t: &Containers, items: &Items) -> Forest {
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
