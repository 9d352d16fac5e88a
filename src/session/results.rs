//! What SEARCH, SORT and THREAD share: evaluating the search key over the
//! selected mailbox in slices, and the ESEARCH answer (RFC 4731, RFC 5267
//! ESORT and PARTIAL) of a result.

use super::search::Matcher;
use super::selected::Selected;
use super::sort::column_pays;
use crate::proto::seqset::compact;
use crate::proto::{Out, SearchKey, SearchReturn};

/// Bytes of messages one slice may scan (a few milliseconds of memmem).
const WORK_PER_SLICE: u64 = 8 << 20;
/// Messages one slice may evaluate.
const MESSAGES_PER_SLICE: usize = 16_384;

/// A search key evaluated over the mailbox, a slice at a time: no
/// SEARCH TEXT over a large mailbox holds the worker.
pub(crate) struct Evaluation {
    key: SearchKey,
    /// Seconds since the epoch when the command began (WITHIN).
    now: i64,
    /// The next position (0-based sequence number) to evaluate.
    next: usize,
    /// (sequence number, UID) of every match so far, in mailbox order.
    pub hits: Vec<(u32, u32)>,
    pub max_modseq: u64,
    /// A message of the session's numbering was expunged meanwhile.
    pub expunged: bool,
}

impl Evaluation {
    pub fn new(key: SearchKey, now: i64) -> Evaluation {
        Evaluation { key, now, next: 0, hits: Vec::new(), max_modseq: 0, expunged: false }
    }

    pub fn key(&self) -> &SearchKey {
        &self.key
    }

    pub fn now(&self) -> i64 {
        self.now
    }

    /// One slice; true when every message was looked at.
    pub fn step(&mut self, sel: &Selected) -> bool {
        let mb = sel.mbox.borrow();
        let uids = sel.uids();
        let reads_cache = Matcher::reads_cache(&self.key);
        let wants_column = Matcher::reads_column(&self.key) && column_pays(uids.len() - self.next, mb.msgs().len());
        let column = if wants_column { mb.key_column() } else { None };
        // Messages the column lacks (a store from before it) are given
        // their entries, so the next search finds them there.
        let mut missing = wants_column.then(|| mb.key_writer());
        let matcher = Matcher::new(&mb, sel, self.now).with_column(column.clone());
        let stop = (self.next + MESSAGES_PER_SLICE).min(uids.len());
        let mut finder = mb.finder();
        // Keys that read each message's cache ask for the one `AHEAD`
        // messages on while this one is looked at, so the waits for memory
        // overlap (the caches are a page apart, between the messages).
        const AHEAD: usize = 16;
        let mut ahead = reads_cache.then(|| mb.finder());
        while self.next < stop {
            let (i, u) = (self.next, uids[self.next]);
            self.next += 1;
            if let Some(f) = &mut ahead {
                if let Some(m) = uids.get(i + AHEAD).and_then(|u| f.find(u)) {
                    matcher.prefetch(m, f.position());
                }
            }
            let Some(m) = finder.find(u) else {
                self.expunged = true;
                continue;
            };
            let position = finder.position();
            if let Some(w) = missing.as_mut().filter(|_| column.as_ref().and_then(|c| c.entry(position)).is_none()) {
                if let Ok(c) = mb.cache(m) {
                    w.push_cached(m, c.bytes());
                }
            }
            if matcher.matches_at(&self.key, m, i as u32 + 1, Some(position)) {
                self.hits.push((i as u32 + 1, u));
                self.max_modseq = self.max_modseq.max(m.modseq);
            }
            if matcher.work() >= WORK_PER_SLICE {
                return false;
            }
        }
        self.next >= uids.len()
    }
}

/// The ESEARCH response for a result given in result order (mailbox order
/// for SEARCH, sort order for SORT). `modseq`: the MODSEQ to report
/// (RFC 7162 3.1.5), when the search used it. SAVE alone answers nothing
/// (RFC 5182 2.1); UPDATE alone answers with the tag only, the changes
/// follow as they happen (RFC 5267 4.3).
pub(crate) fn write_esearch(out: &mut Out, tag: &str, uid: bool, opts: &[SearchReturn], numbers: &[u32], modseq: Option<u64>) {
    if opts == [SearchReturn::Save] {
        return;
    }
    out.raw(b"* ESEARCH (TAG ").string(tag.as_bytes(), false).raw(b")");
    if uid {
        out.raw(b" UID");
    }
    for o in opts {
        match *o {
            SearchReturn::Min => {
                if let Some(&n) = numbers.iter().min() {
                    out.raw(b" MIN ").num(u64::from(n));
                }
            }
            SearchReturn::Max => {
                if let Some(&n) = numbers.iter().max() {
                    out.raw(b" MAX ").num(u64::from(n));
                }
            }
            SearchReturn::All if !numbers.is_empty() => {
                out.raw(b" ALL ").str(&compact(numbers));
            }
            SearchReturn::Count => {
                out.raw(b" COUNT ").num(numbers.len() as u64);
            }
            SearchReturn::Partial(first, last) => {
                // RFC 5267 4.4: the results at positions first..=last.
                out.raw(b" PARTIAL (").num(u64::from(first)).raw(b":").num(u64::from(last)).sp();
                let from = (first as usize - 1).min(numbers.len());
                let to = (last as usize).min(numbers.len());
                if from < to {
                    out.str(&compact(&numbers[from..to]));
                } else {
                    out.nil();
                }
                out.raw(b")");
            }
            _ => {}
        }
    }
    if let Some(ms) = modseq.filter(|_| !numbers.is_empty()) {
        out.raw(b" MODSEQ ").num(ms);
    }
    out.crlf();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_windows() {
        let mut out = Out::new();
        let n = [1, 2, 4, 5];
        write_esearch(&mut out, "t", false, &[SearchReturn::Partial(2, 3)], &n, None);
        write_esearch(&mut out, "t", false, &[SearchReturn::Partial(6, 6)], &n, None);
        write_esearch(&mut out, "t", false, &[SearchReturn::Save], &n, None);
        write_esearch(&mut out, "t", true, &[SearchReturn::Min, SearchReturn::Count], &[], None);
        assert_eq!(
            String::from_utf8(out.flatten()).unwrap(),
            "* ESEARCH (TAG \"t\") PARTIAL (2:3 2,4)\r\n* ESEARCH (TAG \"t\") PARTIAL (6:6 NIL)\r\n* ESEARCH (TAG \"t\") UID COUNT 0\r\n"
        );
    }
}
