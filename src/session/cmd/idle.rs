//! IDLE (RFC 2177, RFC 9051 6.3.13): mailbox changes are pushed as they
//! happen until the client sends DONE.

use crate::proto::Out;
use crate::session::reply::{ok, sync_step};
use crate::session::selected::Synced;
use crate::session::state::{Cursor, Directive, Progress, Session, Step, Wait};

pub fn run(tag: String) -> Directive {
    Directive::Run(Box::new(Start { tag: Some(tag) }))
}

/// Whether mailbox changes wake this session (only while it idles).
fn watch(s: &mut Session, on: bool) {
    if let Some(m) = s.in_mailbox() {
        m.sel.watch(on);
    }
}

/// The updates pending when IDLE begins (in slices), then the continuation.
struct Start {
    tag: Option<String>,
}

impl Cursor for Start {
    fn resume(&mut self, s: &mut Session, out: &mut Out) -> Progress {
        if let Some(m) = s.in_mailbox() {
            match sync_step(m.cx, m.sel, out, true) {
                Synced::More => return Progress::More,
                Synced::Deleted => return Progress::Done(Directive::Return(Step::Close)),
                Synced::Done => {}
            }
        }
        out.raw(b"+ idling\r\n");
        watch(s, true);
        match self.tag.take() {
            Some(tag) => {
                s.cx.wait = Wait::Idle { tag };
                Progress::Done(Directive::ExpectIdleDone)
            }
            None => Progress::Done(Directive::Next),
        }
    }
}

/// The line after IDLE arrived: DONE ends it; anything else is an error
/// that also ends it.
pub fn done(s: &mut Session, is_done: bool, out: &mut Out) -> Directive {
    let Wait::Idle { tag } = std::mem::replace(&mut s.cx.wait, Wait::None) else {
        return Directive::Next;
    };
    // NOTIFY's selected group keeps the session woken after IDLE.
    let keep = crate::session::notify::watches_selected(&s.cx.notify);
    watch(s, keep);
    if is_done {
        ok(&tag, None, "Idle completed.")
    } else {
        out.tagged(&tag, "BAD", None, "Expected DONE.");
        Directive::Next
    }
}
