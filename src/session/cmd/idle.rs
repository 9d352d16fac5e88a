//! IDLE (RFC 2177, RFC 9051 6.3.13): mailbox changes are pushed as they
//! happen until the client sends DONE.

use super::{ok, sync, Directive, Session, State, Step, Wait};
use crate::proto::Out;

/// Whether mailbox changes wake this session (only while it idles).
fn watch(s: &Session, on: bool) {
    if let State::Selected(_, sel) = &s.state {
        sel.watch(on);
    }
}

pub fn run(s: &mut Session, tag: String, out: &mut Out) -> Directive {
    if !sync(s, out, true) {
        return Directive::Return(Step::Close);
    }
    out.raw(b"+ idling\r\n");
    watch(s, true);
    s.wait = Wait::Idle { tag };
    Directive::ExpectIdleDone
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
