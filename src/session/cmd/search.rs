//! SEARCH and UID SEARCH (RFC 9051 6.4.4, ESEARCH RFC 4731, SEARCHRES
//! RFC 5182, CONDSTORE MODSEQ RFC 7162, PARTIAL RFC 5267 4.4). Matching is
//! in `session::search`, evaluation in slices in `session::results`.
//!
//! Runs in slices: the key is evaluated a bounded amount at a time, so a
//! SEARCH TEXT over a large mailbox never holds the worker; then a long
//! `* SEARCH` line goes out in pieces under the output budget.

use crate::proto::{Out, SearchKey, SearchReturn};
use crate::session::contexts::{self, Context};
use crate::session::reply::{bad, catch_up, enable_condstore, no, ok};
use crate::session::results::{write_esearch, Evaluation};
use crate::session::search::uses_modseq;
use crate::session::selected::Selected;
use crate::session::state::{run_in_mailbox, Directive, InMailbox, MailboxCursor, Progress, OUTPUT_BUDGET};

/// The charsets a search string may be in (RFC 9051 6.4.4: US-ASCII and
/// UTF-8 must be, and are, supported).
pub(crate) fn charset_ok(out: &mut Out, tag: &str, charset: Option<&str>) -> Result<(), Directive> {
    match charset {
        None | Some("UTF-8" | "US-ASCII") => Ok(()),
        Some(_) => Err(no(out, tag, Some("BADCHARSET (UTF-8 US-ASCII)"), "Unsupported charset")),
    }
}

#[allow(clippy::too_many_arguments)]
pub fn run(
    mut m: InMailbox<'_>,
    tag: &str,
    ret: Option<&[SearchReturn]>,
    charset: Option<&str>,
    key: &SearchKey,
    uid: bool,
    now: i64,
    out: &mut Out,
) -> Directive {
    if m.cx.enabled.utf8 && charset.is_some() {
        // RFC 6855 3: after ENABLE UTF8=ACCEPT strings are UTF-8; a charset conflicts.
        return bad(out, tag, "SEARCH CHARSET is not allowed after ENABLE UTF8=ACCEPT");
    }
    if let Err(d) = charset_ok(out, tag, charset) {
        return d;
    }
    let with_modseq = uses_modseq(key);
    if with_modseq {
        enable_condstore(&mut m, out);
    }
    let c = Search {
        tag: tag.to_string(),
        ret: ret.map(<[_]>::to_vec),
        eval: Evaluation::new(key.clone(), now),
        uid,
        with_modseq,
        catching_up: uid,
        emitted: None,
    };
    run_in_mailbox(c)
}

struct Search {
    tag: String,
    ret: Option<Vec<SearchReturn>>,
    eval: Evaluation,
    uid: bool,
    with_modseq: bool,
    catching_up: bool,
    /// Once evaluation is done: how many numbers of a `* SEARCH` line are out.
    emitted: Option<usize>,
}

impl MailboxCursor for Search {
    fn resume(&mut self, mut m: InMailbox<'_>, out: &mut Out) -> Progress {
        if let Some(p) = catch_up(&mut m, out, &mut self.catching_up) {
            return p;
        }
        if self.emitted.is_none() {
            if !self.eval.step(m.sel) {
                return Progress::More;
            }
            if self.ret.as_deref().is_some_and(|r| r.contains(&SearchReturn::Save)) {
                m.sel.saved = self.eval.hits.iter().map(|&(_, u)| u).collect();
            }
            if self.ret.as_deref().is_some_and(|r| r.contains(&SearchReturn::Update)) {
                let result = self.eval.hits.iter().map(|&(_, u)| u).collect();
                let c = Context::search(&self.tag, self.uid, self.eval.key().clone(), self.eval.now(), result);
                contexts::keep(&mut m.sel.contexts, c, out);
            }
            self.emitted = Some(0);
        }
        self.emit(m.cx.enabled.rev2, m.sel, out)
    }
}

impl Search {
    /// The MODSEQ of an ESEARCH answer (RFC 7162 3.1.5): the highest of the
    /// messages returned: all matches for ALL and COUNT, else only the MIN
    /// and MAX messages.
    fn returned_modseq(&self, sel: &Selected, opts: &[SearchReturn]) -> u64 {
        if opts.iter().any(|o| matches!(o, SearchReturn::All | SearchReturn::Count | SearchReturn::Partial(..))) {
            return self.eval.max_modseq;
        }
        let mb = sel.mbox.borrow();
        let modseq = |h: Option<&(u32, u32)>| h.and_then(|&(_, u)| mb.find(u)).map_or(0, |m| m.modseq);
        let mut best = 0;
        if opts.contains(&SearchReturn::Min) {
            best = best.max(modseq(self.eval.hits.first()));
        }
        if opts.contains(&SearchReturn::Max) {
            best = best.max(modseq(self.eval.hits.last()));
        }
        best
    }

    /// The answer (in slices for a long `* SEARCH` line), then the tagged OK.
    fn emit(&mut self, rev2: bool, sel: &Selected, out: &mut Out) -> Progress {
        let hits = &self.eval.hits;
        if self.ret.is_some() || rev2 {
            let opts: Vec<SearchReturn> = match self.ret.as_deref() {
                Some([]) | None => vec![SearchReturn::All],
                Some(r) => r.to_vec(),
            };
            let numbers: Vec<u32> = hits.iter().map(|&(seq, u)| if self.uid { u } else { seq }).collect();
            let modseq = self.with_modseq.then(|| self.returned_modseq(sel, &opts));
            write_esearch(out, &self.tag, self.uid, &opts, &numbers, modseq);
        } else {
            let at = self.emitted.unwrap_or(0);
            if at == 0 {
                out.raw(b"* SEARCH");
            }
            let mut i = at;
            while let Some(&(seq, u)) = hits.get(i) {
                out.sp().num(u64::from(if self.uid { u } else { seq }));
                i += 1;
                if out.len() >= OUTPUT_BUDGET {
                    self.emitted = Some(i);
                    return Progress::More;
                }
            }
            if self.with_modseq && !hits.is_empty() {
                out.raw(b" (MODSEQ ").num(self.eval.max_modseq).raw(b")");
            }
            out.crlf();
        }
        // RFC 9051 7.1: the client learns that another session expunged
        // messages it still numbers, and may want to NOOP.
        let code = self.eval.expunged.then_some("EXPUNGEISSUED");
        Progress::Done(ok(&self.tag, code, "Search completed."))
    }
}
