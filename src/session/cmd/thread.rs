//! THREAD and UID THREAD (RFC 5256): ORDEREDSUBJECT, REFERENCES, REFS.
//! The search is evaluated in slices (`session::results`), threaded by
//! keys computed at delivery (`session::thread`), and the `* THREAD` line
//! goes out under the output budget.

use super::search::charset_ok;
use crate::proto::{Out, SearchKey, ThreadAlgorithm};
use crate::session::reply::{catch_up, ok};
use crate::session::results::Evaluation;
use crate::session::state::{run_in_mailbox, Directive, InMailbox, MailboxCursor, Progress, OUTPUT_BUDGET};
use crate::session::thread;

#[allow(clippy::too_many_arguments)]
pub fn run(m: InMailbox<'_>, tag: &str, algorithm: ThreadAlgorithm, charset: &str, key: &SearchKey, uid: bool, now: i64, out: &mut Out) -> Directive {
    let _ = m;
    if let Err(d) = charset_ok(out, tag, Some(charset)) {
        return d;
    }
    run_in_mailbox(Thread { tag: tag.to_string(), algorithm, eval: Evaluation::new(key.clone(), now), uid, catching_up: uid, text: None, emitted: 0 })
}

struct Thread {
    tag: String,
    algorithm: ThreadAlgorithm,
    eval: Evaluation,
    uid: bool,
    catching_up: bool,
    /// The response line once threaded, and how much of it is out.
    text: Option<Vec<u8>>,
    emitted: usize,
}

impl MailboxCursor for Thread {
    fn resume(&mut self, mut m: InMailbox<'_>, out: &mut Out) -> Progress {
        if let Some(p) = catch_up(&mut m, out, &mut self.catching_up) {
            return p;
        }
        if self.text.is_none() {
            if !self.eval.step(m.sel) {
                return Progress::More;
            }
            let mb = m.sel.mbox.borrow();
            let mut text = b"* THREAD".to_vec();
            thread::with_threads(&mb, &self.eval.hits, self.algorithm, |forest, ids| {
                let numbers: Vec<u32> = ids.iter().map(|&(seq, u)| if self.uid { u } else { seq }).collect();
                if !forest.roots.is_empty() {
                    text.push(b' ');
                }
                thread::render(forest, &numbers, &mut text);
            });
            text.extend_from_slice(b"\r\n");
            self.text = Some(text);
            self.eval.hits = Vec::new();
        }
        let text = self.text.as_deref().unwrap_or_default();
        let room = OUTPUT_BUDGET.saturating_sub(out.len()).max(4096);
        let end = (self.emitted + room).min(text.len());
        out.raw(&text[self.emitted..end]);
        self.emitted = end;
        if end < text.len() {
            return Progress::More;
        }
        let code = self.eval.expunged.then_some("EXPUNGEISSUED");
        Progress::Done(ok(&self.tag, code, "Thread completed."))
    }
}
