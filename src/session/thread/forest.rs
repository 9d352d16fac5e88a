//! Threads as an arena of nodes: built by the algorithms, kept as a flat
//! list of UIDs (`encode`/`decode`), written out as `THREAD` data.

use super::keys::Items;
use crate::session::sort::HitIndex;

#[derive(Clone)]
pub(super) struct Node {
    /// Index of the message (None: a dummy, at the top only).
    pub(super) msg: Option<u32>,
    pub(super) children: Vec<u32>,
}

/// Threads: the top-level nodes and the arena they point into.
#[derive(Default, Clone)]
pub(crate) struct Forest {
    pub(super) nodes: Vec<Node>,
    pub roots: Vec<u32>,
}

impl Forest {
    pub(super) fn node(&mut self, msg: Option<u32>, children: Vec<u32>) -> u32 {
        self.nodes.push(Node { msg, children });
        (self.nodes.len() - 1) as u32
    }

    /// The message that dates a node: itself, or a dummy's first child.
    pub(super) fn first_msg(&self, mut n: u32) -> Option<u32> {
        loop {
            let node = &self.nodes[n as usize];
            if node.msg.is_some() {
                return node.msg;
            }
            n = *node.children.first()?;
        }
    }

    /// Orders `list` by the sent date of each node's first message.
    pub(super) fn sort_by_date(&self, items: &Items, list: &mut [u32]) {
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
    pub(super) fn encode(&self, ids: &[(u32, u32)]) -> Vec<u32> {
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
    pub(super) fn decode(t: &[u32], ids: &[(u32, u32)]) -> Option<Forest> {
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

    /// The (sent date, sequence number) of the latest message under `n`
    /// (`stack`: room for the walk, empty).
    pub(super) fn latest(&self, items: &Items, n: u32, stack: &mut Vec<u32>) -> (i64, u32) {
        let mut best = (i64::MIN, 0);
        stack.push(n);
        while let Some(n) = stack.pop() {
            let node = &self.nodes[n as usize];
            if let Some(i) = node.msg {
                best = best.max((items[i].date, items.seq(i)));
            }
            stack.extend(node.children.iter());
        }
        best
    }

    /// Sorts the children of `n` by date.
    pub(super) fn sort_children_of(&mut self, items: &Items, n: u32) {
        let mut kids = std::mem::take(&mut self.nodes[n as usize].children);
        self.sort_by_date(items, &mut kids);
        self.nodes[n as usize].children = kids;
    }
}

/// Sent-date order, the sequence number breaking ties (RFC 5256 2.2), as
/// one integer (96 bits) that orders the same way.
pub(super) fn date_key(items: &Items, i: u32) -> u128 {
    u128::from(items[i].date as u64 ^ 1 << 63) << 32 | u128::from(items.seq(i))
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
