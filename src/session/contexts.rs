//! Search results kept up to date (RFC 5267 section 4.3, CONTEXT=SEARCH
//! and CONTEXT=SORT): after `SEARCH RETURN (UPDATE)` or `SORT RETURN
//! (UPDATE)`, the session tells the client which messages join or leave
//! the result as the mailbox changes (`* ESEARCH (TAG ..) ADDTO/REMOVEFROM`),
//! along with the other untagged updates, until CANCELUPDATE or until the
//! mailbox is closed.
//!
//! SEARCH results are told without positions (0, as Dovecot does: the
//! result is a set); SORT results with the position each message takes or
//! had in the sorted result.

use super::search::{Matcher, Numbering};
use super::sort::SortTable;
use crate::proto::{Out, SearchKey, SortCriterion};
use crate::store::Mailbox;

/// At most this many results are kept up to date per session (Dovecot's
/// limit); a further UPDATE is answered `NO [NOUPDATE "tag"]`.
pub(crate) const MAX_CONTEXTS: usize = 10;

pub(crate) struct Context {
    pub tag: String,
    /// Numbers are UIDs (UID SEARCH / UID SORT).
    pub uid: bool,
    key: SearchKey,
    now: i64,
    /// SORT: the order the result is kept in.
    sort: Option<Vec<SortCriterion>>,
    /// The matching UIDs: ascending for SEARCH, in sort order for SORT.
    result: Vec<u32>,
}

impl Context {
    pub fn search(tag: &str, uid: bool, key: SearchKey, now: i64, result: Vec<u32>) -> Context {
        Context { tag: tag.to_string(), uid, key, now, sort: None, result }
    }

    pub fn sorted(tag: &str, uid: bool, key: SearchKey, now: i64, criteria: Vec<SortCriterion>, result: Vec<u32>) -> Context {
        Context { tag: tag.to_string(), uid, key, now, sort: Some(criteria), result }
    }

    fn contains(&self, uid: u32) -> Option<usize> {
        match self.sort {
            None => self.result.binary_search(&uid).ok(),
            Some(_) => self.result.iter().position(|&u| u == uid),
        }
    }
}

/// Keeps `c` up to date from now on (RETURN (UPDATE)), unless the session
/// already keeps as many as it may: then `* NO [NOUPDATE "tag"]` says so
/// and the result is not kept (RFC 5267 4.3).
pub(crate) fn keep(contexts: &mut Vec<Context>, c: Context, out: &mut Out) {
    if contexts.len() >= MAX_CONTEXTS {
        let code = {
            let mut o = Out::new();
            o.raw(b"NOUPDATE ").string(c.tag.as_bytes(), false);
            String::from_utf8_lossy(&o.buf).into_owned()
        };
        out.untagged_status("NO", Some(&code), "Too many updated searches");
        return;
    }
    contexts.retain(|k| k.tag != c.tag);
    contexts.push(c);
}

/// Stops updating the results of `tags` (CANCELUPDATE, RFC 5267 4.4).
/// False if one of them is not being updated.
pub(crate) fn cancel(contexts: &mut Vec<Context>, tags: &[String]) -> bool {
    if !tags.iter().all(|t| contexts.iter().any(|c| &c.tag == t)) {
        return false;
    }
    contexts.retain(|c| !tags.contains(&c.tag));
    true
}

/// The changes of one update, per context: (position, UID) of messages
/// that left, and of those that joined.
#[derive(Default)]
pub(crate) struct Changes {
    removed: Vec<(u32, u32)>,
    added: Vec<(u32, u32)>,
}

/// Messages `gone` (expunged) leave every result. Positions are those
/// before the removal.
pub(crate) fn expunged(contexts: &mut [Context], gone: &[u32]) -> Vec<Changes> {
    contexts
        .iter_mut()
        .map(|c| {
            let mut ch = Changes::default();
            for &u in gone {
                if let Some(i) = c.contains(u) {
                    ch.removed.push((i as u32 + 1, u));
                }
            }
            let drop: std::collections::HashSet<u32> = ch.removed.iter().map(|&(_, u)| u).collect();
            c.result.retain(|u| !drop.contains(u));
            ch
        })
        .collect()
}

/// Messages whose flags changed (`changed`) or that arrived (`added`) are
/// looked at again: those that now match join, those that no longer do
/// leave. `view` is the session's numbering after the update.
pub(crate) fn reevaluated(contexts: &mut [Context], mb: &Mailbox, view: &dyn Numbering, changed: &[u32], added: &[u32]) -> Vec<Changes> {
    let seq_of = |u: u32| view.uids().binary_search(u).ok().map(|i| i as u32 + 1);
    contexts
        .iter_mut()
        .map(|c| {
            let matcher = Matcher::new(mb, view, c.now);
            let mut ch = Changes::default();
            for &u in changed.iter().chain(added) {
                let (Some(m), Some(seq)) = (mb.find(u), seq_of(u)) else { continue };
                let now = matcher.matches(&c.key, m, seq);
                match (c.contains(u), now) {
                    (Some(i), false) => {
                        ch.removed.push((i as u32 + 1, u));
                        c.result.remove(i);
                    }
                    (None, true) => {
                        let at = match &c.sort {
                            None => c.result.partition_point(|&x| x < u),
                            Some(criteria) => sorted_position(mb, view, criteria, &c.result, (seq, u)),
                        };
                        c.result.insert(at, u);
                        ch.added.push((at as u32 + 1, u));
                    }
                    _ => {}
                }
            }
            ch
        })
        .collect()
}

/// Where `new` goes in `result` (UIDs in sort order): binary search with
/// the sort's comparison.
fn sorted_position(mb: &Mailbox, view: &dyn Numbering, criteria: &[SortCriterion], result: &[u32], new: (u32, u32)) -> usize {
    let seq_of = |u: u32| view.uids().binary_search(u).map_or(u32::MAX, |i| i as u32 + 1);
    let (mut lo, mut hi) = (0, result.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        let other = (seq_of(result[mid]), result[mid]);
        let t = SortTable::build(mb, &[other, new], criteria);
        // `order` puts the smaller first: is the one in the result first?
        if t.order().first() == Some(&other) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// The `* ESEARCH` lines for `changes` (one per context with any).
/// `seq_of` maps UIDs to the sequence numbers the client knows at the
/// point where the lines are sent.
pub(crate) fn write(out: &mut Out, contexts: &[Context], changes: &[Changes], seq_of: &dyn Fn(u32) -> Option<u32>) {
    for (c, ch) in contexts.iter().zip(changes) {
        if ch.removed.is_empty() && ch.added.is_empty() {
            continue;
        }
        let num = |u: u32| if c.uid { Some(u) } else { seq_of(u) };
        out.raw(b"* ESEARCH (TAG ").string(c.tag.as_bytes(), false).raw(b")");
        if c.uid {
            out.raw(b" UID");
        }
        for (word, list) in [(&b" REMOVEFROM ("[..], &ch.removed), (b" ADDTO (", &ch.added)] {
            if list.is_empty() {
                continue;
            }
            if c.sort.is_none() {
                // A set has no positions: 0, and the numbers as one set.
                let mut n: Vec<u32> = list.iter().filter_map(|&(_, u)| num(u)).collect();
                n.sort_unstable();
                out.raw(word).raw(b"0 ").str(&crate::proto::seqset::compact(&n)).raw(b")");
            } else {
                for &(pos, u) in list {
                    if let Some(n) = num(u) {
                        out.raw(word).num(u64::from(pos)).sp().num(u64::from(n)).raw(b")");
                    }
                }
            }
        }
        out.crlf();
    }
}
