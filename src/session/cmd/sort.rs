//! SORT and UID SORT (RFC 5256, SORT=DISPLAY RFC 5957, ESORT RFC 5267).
//! The search is evaluated in slices (`session::results`), the matches
//! ordered by keys computed at delivery (`session::sort`), and a long
//! `* SORT` line goes out under the output budget.

use super::search::charset_ok;
use crate::proto::{Out, SearchKey, SearchReturn, SortCriterion};
use crate::session::contexts::{self, Context};
use crate::session::reply::{catch_up, ok};
use crate::session::results::{write_esearch, Evaluation};
use crate::session::sort;
use crate::session::state::{run_in_mailbox, Directive, InMailbox, MailboxCursor, Progress, OUTPUT_BUDGET};

#[allow(clippy::too_many_arguments)]
pub fn run(
    m: InMailbox<'_>,
    tag: &str,
    ret: Option<&[SearchReturn]>,
    criteria: &[SortCriterion],
    charset: &str,
    key: &SearchKey,
    uid: bool,
    now: i64,
    out: &mut Out,
) -> Directive {
    let _ = m;
    if let Err(d) = charset_ok(out, tag, Some(charset)) {
        return d;
    }
    run_in_mailbox(Sort {
        tag: tag.to_string(),
        ret: ret.map(<[_]>::to_vec),
        criteria: criteria.to_vec(),
        eval: Evaluation::new(key.clone(), now),
        uid,
        catching_up: uid,
        sorted: None,
        emitted: 0,
    })
}

struct Sort {
    tag: String,
    ret: Option<Vec<SearchReturn>>,
    criteria: Vec<SortCriterion>,
    eval: Evaluation,
    uid: bool,
    catching_up: bool,
    /// The numbers to answer, in sort order, once sorted.
    sorted: Option<Vec<u32>>,
    /// How many of them are out (a long `* SORT` line goes in slices).
    emitted: usize,
}

impl MailboxCursor for Sort {
    fn resume(&mut self, mut m: InMailbox<'_>, out: &mut Out) -> Progress {
        if let Some(p) = catch_up(&mut m, out, &mut self.catching_up) {
            return p;
        }
        if self.sorted.is_none() {
            if !self.eval.step(m.sel) {
                return Progress::More;
            }
            let mb = m.sel.mbox.borrow();
            let order = sort::sorted(&mb, &self.eval.hits, &self.criteria);
            drop(mb);
            let uid = self.uid;
            self.sorted = Some(order.iter().map(|&(seq, u)| if uid { u } else { seq }).collect());
            self.eval.hits = Vec::new();
            if self.ret.as_deref().is_some_and(|r| r.contains(&SearchReturn::Update)) {
                let result = order.iter().map(|&(_, u)| u).collect();
                let c = Context::sorted(&self.tag, self.uid, self.eval.key().clone(), self.eval.now(), self.criteria.clone(), result);
                contexts::keep(&mut m.sel.contexts, c, out);
            }
        }
        let numbers = self.sorted.as_deref().unwrap_or_default();
        if let Some(r) = &self.ret {
            // ESORT (RFC 5267 3.1): the result as ESEARCH, ALL in sort order.
            let opts = if r.is_empty() { vec![SearchReturn::All] } else { r.clone() };
            write_esearch(out, &self.tag, self.uid, &opts, numbers, None);
        } else {
            if self.emitted == 0 {
                out.raw(b"* SORT");
            }
            while let Some(&n) = numbers.get(self.emitted) {
                out.sp().num(u64::from(n));
                self.emitted += 1;
                if out.len() >= OUTPUT_BUDGET && self.emitted < numbers.len() {
                    return Progress::More;
                }
            }
            out.crlf();
        }
        let code = self.eval.expunged.then_some("EXPUNGEISSUED");
        Progress::Done(ok(&self.tag, code, "Sort completed."))
    }
}
