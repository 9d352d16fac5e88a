//! IDLE (RFC 2177, RFC 9051 6.3.13): mailbox changes are pushed as they
//! happen until the client sends DONE.

use super::{ok, run_cursor, sync_step, Directive, Session, State, Step, Wait};
use crate::proto::Out;
use crate::session::{Cursor, Progress, Synced};

/// Whether mailbox changes wake this session (only while it idles).
fn watch(s: &Session, on: bool) {
    if let State::Selected(_, sel) = &s.state {
        sel.watch(on);
    }
}

pub fn run(s: &mut Session, tag: String, out: &mut Out) -> Directive {
    run_cursor(s, Box::new(Start { tag: Some(tag) }), out)
}

/// The updates pending when IDLE begins (in slices), then the continuation.
struct Start {
    tag: Option<String>,
}

impl Cursor for Start {
    fn resume(&mut self, s: &mut Session, out: &mut Out) -> Progress {
        match sync_step(s, out, true) {
            Synced::More => Progress::More,
            Synced::Deleted => Progress::Done(Directive::Return(Step::Close)),
            Synced::Done => {
                out.raw(b"+ idling\r\n");
                watch(s, true);
                s.wait = Wait::Idle { tag: self.tag.take().expect("resumed once after done") };
                Progress::Done(Directive::ExpectIdleDone)
            }
        }
    }
}

/// The line after IDLE arrived: DONE ends it; anything else is an error
/// that also ends it.
pub fn done(s: &mut Session, is_done: bool, out: &mut Out) -> Directive {
    let Wait::Idle { tag } = std::mem::replace(&mut s.wait, Wait::None) else {
        return Directive::Next;
    };
    watch(s, false);
    if is_done {
        ok(s, out, &tag, None, "Idle completed.", true)
    } else {
        out.tagged(&tag, "BAD", None, "Expected DONE.");
        Directive::Next
    }
}
