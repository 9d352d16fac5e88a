//! SEARCH and UID SEARCH (RFC 9051 6.4.4, ESEARCH RFC 4731, SEARCHRES
//! RFC 5182, CONDSTORE MODSEQ RFC 7162). Matching is in `session::search`.
//!
//! Runs in slices: messages are evaluated until a slice has looked at
//! [`WORK_PER_SLICE`] bytes of mail (or [`MESSAGES_PER_SLICE`] messages),
//! so a SEARCH TEXT over a large mailbox never holds the worker; then a
//! long `* SEARCH` line goes out in pieces under the output budget.

use crate::proto::{Out, SearchKey, SearchReturn};
use crate::session::reply::{catch_up, enable_condstore, no, ok, uid_set};
use crate::session::search::{uses_modseq, Matcher};
use crate::session::selected::Selected;
use crate::session::state::{run_in_mailbox, Directive, InMailbox, MailboxCursor, Progress, OUTPUT_BUDGET};

/// Bytes of messages one slice may scan (a few milliseconds of memmem).
const WORK_PER_SLICE: u64 = 8 << 20;
/// Messages one slice may evaluate.
const MESSAGES_PER_SLICE: usize = 16_384;

pub fn run(mut m: InMailbox<'_>, tag: &str, ret: Option<&[SearchReturn]>, charset: Option<&str>, key: &SearchKey, uid: bool, out: &mut Out) -> Directive {
    if let Some(cs) = charset {
        if !matches!(cs, "UTF-8" | "US-ASCII") {
            return no(out, tag, Some("BADCHARSET (UTF-8 US-ASCII)"), "Unsupported charset");
        }
    }
    let with_modseq = uses_modseq(key);
    if with_modseq {
        enable_condstore(&mut m, out);
    }
    let c = Search {
        tag: tag.to_string(),
        ret: ret.map(<[_]>::to_vec),
        key: key.clone(),
        uid,
        with_modseq,
        catching_up: uid,
        next: 0,
        hits: Vec::new(),
        max_modseq: 0,
        expunged: false,
        emitted: None,
    };
    run_in_mailbox(c)
}

struct Search {
    tag: String,
    ret: Option<Vec<SearchReturn>>,
    key: SearchKey,
    uid: bool,
    with_modseq: bool,
    catching_up: bool,
    /// The next position (0-based sequence number) to evaluate.
    next: usize,
    /// (sequence number, UID) of every match so far.
    hits: Vec<(u32, u32)>,
    max_modseq: u64,
    expunged: bool,
    /// Once evaluation is done: how many numbers of a `* SEARCH` line are out.
    emitted: Option<usize>,
}

impl MailboxCursor for Search {
    fn resume(&mut self, mut m: InMailbox<'_>, out: &mut Out) -> Progress {
        if let Some(p) = catch_up(&mut m, out, &mut self.catching_up) {
            return p;
        }
        if self.emitted.is_none() && !self.evaluate(m.sel) {
            return Progress::More;
        }
        self.emit(m.cx.enabled.rev2, m.sel, out)
    }
}

impl Search {
    /// The MODSEQ of an ESEARCH answer (RFC 7162 3.1.5): the highest of the
    /// messages returned: all matches for ALL and COUNT, else only the MIN
    /// and MAX messages.
    fn returned_modseq(&self, sel: &Selected, opts: &[SearchReturn]) -> u64 {
        if opts.iter().any(|o| matches!(o, SearchReturn::All | SearchReturn::Count)) {
            return self.max_modseq;
        }
        let mb = sel.mbox.borrow();
        let modseq = |h: Option<&(u32, u32)>| h.and_then(|&(_, u)| mb.find(u)).map_or(0, |m| m.modseq);
        let mut best = 0;
        if opts.contains(&SearchReturn::Min) {
            best = best.max(modseq(self.hits.first()));
        }
        if opts.contains(&SearchReturn::Max) {
            best = best.max(modseq(self.hits.last()));
        }
        best
    }

    /// One slice of evaluation; true when every message was looked at.
    fn evaluate(&mut self, sel: &mut Selected) -> bool {
        let mb = sel.mbox.borrow();
        let matcher = Matcher::new(&mb, sel);
        let uids = sel.uids();
        let stop = (self.next + MESSAGES_PER_SLICE).min(uids.len());
        while self.next < stop {
            let (i, u) = (self.next, uids[self.next]);
            self.next += 1;
            let Some(m) = mb.find(u) else {
                self.expunged = true;
                continue;
            };
            if matcher.matches(&self.key, m, i as u32 + 1) {
                self.hits.push((i as u32 + 1, u));
                self.max_modseq = self.max_modseq.max(m.modseq);
            }
            if matcher.work() >= WORK_PER_SLICE {
                return false;
            }
        }
        if self.next < uids.len() {
            return false;
        }
        drop(mb);
        let save = self.ret.as_deref().is_some_and(|r| r.contains(&SearchReturn::Save));
        if save {
            sel.saved = self.hits.iter().map(|&(_, u)| u).collect();
        }
        self.emitted = Some(0);
        true
    }

    /// The answer (in slices for a long `* SEARCH` line), then the tagged OK.
    fn emit(&mut self, rev2: bool, sel: &Selected, out: &mut Out) -> Progress {
        let numbers = |hits: &[(u32, u32)], uid: bool| -> Vec<u32> { hits.iter().map(|&(seq, u)| if uid { u } else { seq }).collect() };
        if self.ret.is_some() || rev2 {
            let opts: Vec<SearchReturn> = match self.ret.as_deref() {
                Some([]) | None => vec![SearchReturn::All],
                Some(r) => r.to_vec(),
            };
            let numbers = numbers(&self.hits, self.uid);
            // ESEARCH (RFC 4731); SAVE alone returns nothing (RFC 5182 2.1).
            if !(opts.len() == 1 && opts[0] == SearchReturn::Save) {
                out.raw(b"* ESEARCH (TAG ").string(self.tag.as_bytes(), false).raw(b")");
                if self.uid {
                    out.raw(b" UID");
                }
                for o in &opts {
                    match o {
                        SearchReturn::Min if !numbers.is_empty() => {
                            out.raw(b" MIN ").num(u64::from(numbers[0]));
                        }
                        SearchReturn::Max if !numbers.is_empty() => {
                            out.raw(b" MAX ").num(u64::from(*numbers.last().expect("non-empty")));
                        }
                        SearchReturn::All if !numbers.is_empty() => {
                            out.raw(b" ALL ").str(&uid_set(&numbers));
                        }
                        SearchReturn::Count => {
                            out.raw(b" COUNT ").num(numbers.len() as u64);
                        }
                        _ => {}
                    }
                }
                if self.with_modseq && !numbers.is_empty() {
                    out.raw(b" MODSEQ ").num(self.returned_modseq(sel, &opts));
                }
                out.crlf();
            }
        } else {
            let at = self.emitted.expect("evaluated");
            if at == 0 {
                out.raw(b"* SEARCH");
            }
            let mut i = at;
            while let Some(&(seq, u)) = self.hits.get(i) {
                out.sp().num(u64::from(if self.uid { u } else { seq }));
                i += 1;
                if out.len() >= OUTPUT_BUDGET {
                    self.emitted = Some(i);
                    return Progress::More;
                }
            }
            if self.with_modseq && !self.hits.is_empty() {
                out.raw(b" (MODSEQ ").num(self.max_modseq).raw(b")");
            }
            out.crlf();
        }
        // RFC 9051 7.1: the client learns that another session expunged
        // messages it still numbers, and may want to NOOP.
        let code = self.expunged.then_some("EXPUNGEISSUED");
        Progress::Done(ok(&self.tag, code, "Search completed."))
    }
}
